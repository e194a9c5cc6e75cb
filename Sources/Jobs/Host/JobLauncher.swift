import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// How a job is started, observed and stopped on a host. The agent prepares the job's folder
/// (spec, manifest, work/) and leaves the rest to a launcher; status.json is the launcher's record.
/// One implementation today, the plain host's supervisor; a scheduler (Slurm) adds a second whose
/// state comes from the scheduler, not from a local pid.
protocol JobLauncher: Sendable {
    /// Starts job `id` (its folder complete, its status `queued`); returns once the launcher has
    /// taken it (running, or pending with a scheduler).
    func start(_ id: String) throws
    /// The job's status: what status.json says, corrected by what the launcher sees (a supervisor
    /// that vanished makes the job `lost`; a scheduler's state).
    func status(_ id: String) throws -> JobStatus
    /// Asks the job to stop: SIGTERM to what it runs, SIGKILL after `grace` seconds. A job that is
    /// over already has its leftovers stopped.
    func cancel(_ id: String, grace: Int) throws
}

/// The plain host: a detached supervisor (`ferry agent supervise ID`, its own session) runs the
/// command, writes status.json and outlives the client; a job whose supervisor is gone (killed,
/// host rebooted; checked by pid, start time and boot id) is `lost`.
struct SupervisorLauncher: JobLauncher {
    let store: JobStore
    let home: String
    let binary: String
    /// A supervisor started ahead (at the preflight), when there is one.
    var standby: StandbySupervisor? = nil

    /// Starts the supervisor in its own session (or hands the job to the one waiting) and waits
    /// until it has claimed the job.
    func start(_ id: String) throws {
        let paths = try store.paths(id)
        if standby?.hand(id) != true {
            var env = ProcessInfo.processInfo.environment
            env["FERRY_HOME"] = home
            _ = try JobsError.system { () throws(SystemError) in
                try Spawn.start([binary, AgentProtocol.subcommand, AgentProtocol.homeFlag, home, AgentProtocol.superviseVerb, id], environment: env, stdin: .null,
                                stdout: .file(paths.supervisorLog, append: true), stderr: .file(paths.supervisorLog, append: true),
                                newSession: true, blocked: Supervisor.handledSignals)
            }
        }
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let status = try? store.rawStatus(paths, id: id), status.supervisorPid != nil || status.state.isFinal { return }
            usleep(5_000)
        }
        let log = POSIX.read(paths.supervisorLog).map { String(decoding: $0.suffix(2000), as: UTF8.self) } ?? ""
        _ = try? store.update(id) { $0.state = .failed; $0.message = "the supervisor did not start"; $0.endedAt = Date() }
        throw JobsError.supervisorDidNotStart(id: id, detail: log.isEmpty ? "no word from it within 15 s" : log)
    }

    /// The status, with a job whose supervisor is gone (killed, or the host rebooted) marked lost.
    func status(_ id: String) throws -> JobStatus {
        let p = try store.paths(id)
        let status = try store.rawStatus(p, id: id)
        guard !status.state.isFinal else { return status }
        if supervisorAlive(status) { return status }
        if status.supervisorPid == nil {
            // Queued and not yet claimed by a supervisor: give the start its few seconds.
            let created = (try? FileManager.default.attributesOfItem(atPath: p.spec)[.modificationDate] as? Date) ?? Date()
            if Date().timeIntervalSince(created) < 30 { return status }
        }
        // Re-read under the lock: a supervisor writes its final status before it exits.
        return try withLock(p.lock) {
            var current = try store.rawStatus(p, id: id)
            guard !current.state.isFinal, !supervisorAlive(current) else { return current }
            current.state = .lost
            current.endedAt = Date()
            current.message = current.supervisorPid == nil ? "its supervisor never started" : "its supervisor (pid \(current.supervisorPid ?? 0)) vanished — killed, or the host rebooted"
            try store.write(current, p)
            return current
        }
    }

    /// cancel.json for the supervisor (the grace it uses), then SIGTERM to it; it stops the job's group.
    func cancel(_ id: String, grace: Int) throws {
        let paths = try store.paths(id)
        let status = try self.status(id)
        if status.state.isFinal {
            stopOrphans(status)
            return
        }
        try JSON.write(CancelRequest(graceSeconds: grace, requestedAt: Date()), to: paths.cancel, pretty: false)
        if let pid = status.supervisorPid, supervisorAlive(status) { kill(pid, SIGTERM) }
    }

    /// A lost job (its supervisor gone) may still run: its process group gets SIGTERM, then SIGKILL.
    func stopOrphans(_ status: JobStatus) {
        guard status.state == .lost, let pid = status.pid, pid > 1, status.bootId == POSIX.bootId, kill(-pid, 0) == 0 else { return }
        kill(-pid, SIGTERM)
        for _ in 0..<20 where kill(-pid, 0) == 0 { usleep(50_000) }
        kill(-pid, SIGKILL)
    }

    func supervisorAlive(_ status: JobStatus) -> Bool {
        guard let pid = status.supervisorPid else { return false }
        if let boot = status.bootId, !boot.isEmpty, boot != POSIX.bootId { return false }
        guard POSIX.isAlive(pid) else { return false }
        if let start = status.supervisorStart, let now = POSIX.procStat(pid)?.startTicks, now != start { return false }
        return true
    }
}
