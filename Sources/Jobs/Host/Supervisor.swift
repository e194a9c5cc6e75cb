import Foundation
import RunContract
import System
#if canImport(Glibc)
import Glibc
#endif

/// The detached process that runs one job: started by `job-start` in a new session (setsid), so it
/// outlives the SSH connection; it starts the command as the leader of its own process group,
/// writes the status atomically, and on SIGTERM (a cancel) signals the group, waits the grace
/// period, then kills it.
struct Supervisor {
    let layout: HostLayout
    let id: String
    /// The ferry binary that a command's leading `ferry` stands for.
    let ferryBinary: String

    /// Signals that mean "stop the job". The agent starts the supervisor with them blocked (so one
    /// arriving while it starts is not fatal: Spawn's `blocked`); it then catches them with a
    /// handler that only notes the signal (any thread may receive it), and its loop acts on the note.
    static let handledSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Drops what came while the supervisor started (ignoring a pending signal discards it, as
    /// when they came ignored), then catches them and unblocks them.
    static func catchSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handledSignals {
            signal(s, SIG_IGN)
            signal(s) { number in supervisorReceivedSignal = number }
            sigaddset(&set, s)
        }
        sigprocmask(SIG_UNBLOCK, &set, nil)
    }

    func run() -> Int32 {
        Supervisor.catchSignals()

        let store = JobStore(layout: layout)
        let paths = layout.job(id)
        let spec: JobSpec
        do { spec = try store.spec(id) } catch {
            note(paths, "cannot read the spec: \(error)")
            return 1
        }
        let me = getpid()
        let myStart = POSIX.procStat(me)?.startTicks
        do {
            _ = try store.update(id) { s in
                s.state = .running
                s.supervisorPid = me
                s.supervisorStart = myStart
                s.bootId = POSIX.bootId
                s.pid = nil
                s.startedAt = Date()
                s.endedAt = nil; s.exitCode = nil; s.signal = nil; s.message = nil
                s.attempt = spec.attempt
                s.cancelRequested = POSIX.exists(paths.cancel)
            }
        } catch {
            note(paths, "cannot write the status: \(error)")
            return 1
        }
        if POSIX.exists(paths.cancel) {
            finish(store, paths, state: .cancelled, code: nil, signal: nil, message: "cancelled before it started")
            return 0
        }

        try? POSIX.makeDirectory(paths.output)
        let logFD = open(paths.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else {
            finish(store, paths, state: .failed, code: nil, signal: nil, message: "cannot open \(paths.log): \(SystemError.text(errno))")
            return 1
        }
        defer { close(logFD) }

        let directory = spec.directory == "." ? paths.work : (paths.work as NSString).appendingPathComponent(spec.directory)
        guard chdir(directory) == 0 else {
            finish(store, paths, state: .failed, code: nil, signal: nil, message: "cannot enter \(directory): \(SystemError.text(errno))")
            return 1
        }
        var arguments = spec.command
        if arguments.first == "ferry" { arguments[0] = ferryBinary }
        var environment = jobEnvironment(spec, paths)
        if let request = spec.gpus.flatMap(GPURequest.init(parsing:)), case .count(let wanted) = request {
            // A count: this host's supervisor picks that many of the least busy GPUs.
            let (gpus, smiError) = NvidiaSMI.query()
            guard let picked = GPURequest.pick(wanted, from: gpus) else {
                let have = smiError ?? "\(gpus.count) GPU\(gpus.count == 1 ? "" : "s")"
                let message = "the job asks for \(wanted) GPU\(wanted == 1 ? "" : "s") and this host has \(have) — launch with fewer (--gpus N) or on another host"
                try? FileIO.writeAll(logFD, Data("ferry: \(message)\n".utf8), path: paths.log)
                finish(store, paths, state: .failed, code: nil, signal: nil, message: message)
                return 1
            }
            environment["CUDA_VISIBLE_DEVICES"] = picked
            note(paths, "GPUs \(picked) chosen for the job (it asked for \(wanted))")
        }
        let pid: pid_t
        do throws(SystemError) {
            pid = try Spawn.start(arguments, environment: environment, stdin: .null, stdout: .fd(logFD), stderr: .fd(logFD), newGroup: true)
        } catch {
            let message = "\(JobsError(error))"
            try? FileIO.writeAll(logFD, Data("ferry: cannot start the job: \(message)\n".utf8), path: paths.log)
            finish(store, paths, state: .failed, code: 127, signal: nil, message: message)
            return 1
        }
        _ = try? store.update(id) { $0.pid = pid }

        var waitStatus: Int32 = 0
        var killDeadline: Date?
        var cancelRequested = false
        let timeLimit = spec.timeLimitSeconds.map { Date().addingTimeInterval(TimeInterval($0)) }
        var timedOut = false
        while true {
            let r = Syscall.retrying { waitpid(pid, &waitStatus, WNOHANG) }
            if r == pid || r < 0 { break }
            usleep(50_000)
            if let timeLimit, killDeadline == nil, Date() >= timeLimit {
                // --time: TERM at the limit (ferry train writes last/ and exits 75), KILL after the grace.
                timedOut = true
                note(paths, "time limit of \(spec.timeLimitSeconds ?? 0) s reached: SIGTERM to the job's process group, SIGKILL in \(spec.graceSeconds) s")
                try? FileIO.writeAll(logFD, Data("ferry: time limit reached (--time); stopping the job\n".utf8), path: paths.log)
                kill(-pid, SIGTERM)
                killDeadline = Date().addingTimeInterval(TimeInterval(spec.graceSeconds))
            }
            let signal = supervisorReceivedSignal
            if signal > 0 && killDeadline == nil {
                cancelRequested = POSIX.exists(paths.cancel)
                let grace = cancelGrace(paths) ?? spec.graceSeconds
                note(paths, "SIG\(POSIX.signalName(signal)) received: SIGTERM to the job's process group, SIGKILL in \(grace) s")
                kill(-pid, SIGTERM)
                killDeadline = Date().addingTimeInterval(TimeInterval(grace))
                _ = try? store.update(id) { $0.cancelRequested = cancelRequested }
            }
            if let deadline = killDeadline, Date() >= deadline {
                note(paths, "grace period over: SIGKILL to the job's process group")
                kill(-pid, SIGKILL)
                killDeadline = .distantFuture
            }
        }
        // Whatever the command left behind in its group ends with it.
        kill(-pid, SIGKILL)
        let (code, signal) = Spawn.decodeWaitStatus(waitStatus)
        cancelRequested = cancelRequested || POSIX.exists(paths.cancel)
        let state: JobState
        if code == 0 && signal == nil { state = .succeeded } else if cancelRequested { state = .cancelled } else if timedOut { state = .timeout } else { state = .failed }
        finish(store, paths, state: state, code: signal == nil ? code : nil, signal: signal.map(POSIX.signalName), message: nil)
        return 0
    }

    /// The session's environment, then the spec's, then ferry's contract variables.
    func jobEnvironment(_ spec: JobSpec, _ paths: JobPaths) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["PYTHONUNBUFFERED"] = env["PYTHONUNBUFFERED"] ?? "1"
        for (k, v) in spec.environment { env[k] = v }
        env[RunEnvironment.jobID] = spec.id
        env[RunEnvironment.events] = paths.events
        env[RunEnvironment.output] = paths.output
        env[RunEnvironment.attempt] = String(spec.attempt)
        env["FERRY_JOB_DIR"] = paths.directory
        if let gpus = spec.gpus, case .list(let list)? = GPURequest(parsing: gpus) { env["CUDA_VISIBLE_DEVICES"] = list }
        return env
    }

    private func cancelGrace(_ paths: JobPaths) -> Int? {
        guard let data = POSIX.read(paths.cancel), let request = try? JSONCoding.decoder().decode(CancelRequest.self, from: data) else { return nil }
        return request.graceSeconds
    }

    private func finish(_ store: JobStore, _ paths: JobPaths, state: JobState, code: Int32?, signal: String?, message: String?) {
        do {
            _ = try store.update(id) { s in
                s.state = state
                s.exitCode = code
                s.signal = signal
                s.message = message
                s.endedAt = Date()
                s.cancelRequested = POSIX.exists(paths.cancel)
            }
        } catch {
            note(paths, "cannot write the final status: \(error)")
        }
    }

    private func note(_ paths: JobPaths, _ text: String) {
        let line = "\(ISO8601DateFormatter().string(from: Date())) supervisor[\(getpid())]: \(text)\n"
        let fd = open(paths.supervisorLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        _ = try? FileIO.writeAll(fd, Data(line.utf8), path: paths.supervisorLog)
        close(fd)
    }
}

/// The last stop signal received (written by the signal handler, read by the supervisor's loop).
nonisolated(unsafe) private var supervisorReceivedSignal: Int32 = 0

/// `cancel.json`: who asked and the grace they gave.
struct CancelRequest: Codable {
    var graceSeconds: Int
    var requestedAt: Date
}
