import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// A supervisor started ahead: at a launch's preflight the agent starts `ferry agent standby`,
/// which loads while the client sends files and waits on its stdin for the job's id; the job's
/// start then hands the id over instead of starting a process (about 25 ms, most of a relaunch's
/// start). It is the same detached supervisor as `supervise ID` from then on. A standby that
/// gets no id (no start came: the launch failed, or the agent ended) exits when its input ends.
final class StandbySupervisor: @unchecked Sendable {
    private let lock = NSLock()
    /// Our end of the standby's stdin (a socket pair: a write to a dead one is an error, no SIGPIPE).
    private var channel: Int32 = -1
    private var pid: pid_t = 0
    /// The waiting standby's pid (0: none).
    var processID: pid_t { lock.lock(); defer { lock.unlock() }; return channel >= 0 ? pid : 0 }

    /// Its input ends: a standby nobody handed a job to exits.
    deinit { if channel >= 0 { close(channel) } }

    /// Starts one when none waits (errors are ignored: the start then spawns a supervisor itself).
    func prepare(binary: String, home: String) {
        lock.lock(); defer { lock.unlock() }
        guard channel < 0 else { return }
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { return }
        var env = ProcessInfo.processInfo.environment
        env["FERRY_HOME"] = home
        do {
            pid = try Spawn.start([binary, AgentProtocol.subcommand, AgentProtocol.homeFlag, home, AgentProtocol.standbyVerb],
                                  environment: env, stdin: .fd(fds[1]), stdout: .null, stderr: .null,
                                  newSession: true, blocked: Supervisor.handledSignals)
            channel = fds[0]
        } catch {
            close(fds[0])
        }
        close(fds[1])
    }

    /// Hands `id` to the waiting standby; false when none waits or it is gone (start one then).
    func hand(_ id: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard channel >= 0 else { return false }
        defer { close(channel); channel = -1 }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == 0 else { return false }   // it exited already
        let line = Array((id + "\n").utf8)
        return line.withUnsafeBytes { send(channel, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == line.count
    }

    /// The standby's side: the id from stdin (nil at its end), its stdout and stderr then the job's
    /// supervisor.log and its stdin /dev/null, as `supervise ID` would have them.
    static func awaitJob(layout: HostLayout) throws -> String? {
        guard let id = try ByteReader(fd: 0).readLine(limit: 256) else { return nil }
        try Names.validateJobID(id)
        let log = layout.job(id).supervisorLog
        let out = try JobsError.system { () throws(SystemError) in try FileIO.open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC) }
        let null = try JobsError.system { () throws(SystemError) in try FileIO.open("/dev/null", O_RDONLY | O_CLOEXEC) }
        dup2(null, 0); dup2(out, 1); dup2(out, 2)
        close(null); close(out)
        return id
    }
}
