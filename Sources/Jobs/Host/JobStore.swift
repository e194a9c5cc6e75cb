import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The jobs folder on a host: reading specs and statuses (noticing jobs whose supervisor vanished),
/// and writing statuses atomically under the job's lock.
struct JobStore {
    let layout: HostLayout

    func paths(_ id: String) throws -> JobPaths {
        try Names.validateJobID(id)
        let paths = layout.job(id)
        guard POSIX.isDirectory(paths.directory) else { throw JobsError.unknownJob(id) }
        return paths
    }

    func spec(_ id: String) throws -> JobSpec {
        let p = try paths(id)
        guard let data = POSIX.read(p.spec) else { throw JobsError.unknownJob(id) }
        return try JSON.decode(JobSpec.self, from: data, what: p.spec)
    }

    func rawStatus(_ paths: JobPaths, id: String) throws -> JobStatus {
        guard let data = POSIX.read(paths.status) else { return JobStatus(id: id, state: .queued) }
        return try JSON.decode(JobStatus.self, from: data, what: paths.status)
    }

    func write(_ status: JobStatus, _ paths: JobPaths) throws {
        try JSON.write(status, to: paths.status)
    }

    /// Changes the status under the job's lock.
    func update(_ id: String, _ change: (inout JobStatus) throws -> Void) throws -> JobStatus {
        let p = try paths(id)
        return try withLock(p.lock) {
            var status = try rawStatus(p, id: id)
            try change(&status)
            try write(status, p)
            return status
        }
    }

    /// The status, with a job whose supervisor is gone (killed, or the host rebooted) marked lost.
    func status(_ id: String) throws -> JobStatus {
        let p = try paths(id)
        let status = try rawStatus(p, id: id)
        guard !status.state.isFinal else { return status }
        if supervisorAlive(status) { return status }
        if status.supervisorPid == nil {
            // Queued and not yet claimed by a supervisor: give job-start its few seconds.
            let created = (try? FileManager.default.attributesOfItem(atPath: p.spec)[.modificationDate] as? Date) ?? Date()
            if Date().timeIntervalSince(created) < 30 { return status }
        }
        // Re-read under the lock: a supervisor writes its final status before it exits.
        return try withLock(p.lock) {
            var current = try rawStatus(p, id: id)
            guard !current.state.isFinal, !supervisorAlive(current) else { return current }
            current.state = .lost
            current.endedAt = Date()
            current.message = current.supervisorPid == nil ? "its supervisor never started" : "its supervisor (pid \(current.supervisorPid ?? 0)) vanished — killed, or the host rebooted"
            try write(current, p)
            return current
        }
    }

    func supervisorAlive(_ status: JobStatus) -> Bool {
        guard let pid = status.supervisorPid else { return false }
        if let boot = status.bootId, !boot.isEmpty, boot != POSIX.bootId { return false }
        guard POSIX.isAlive(pid) else { return false }
        if let start = status.supervisorStart, let now = POSIX.procStat(pid)?.startTicks, now != start { return false }
        return true
    }

    func ids() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: layout.jobsDirectory)) ?? []
        return names.filter { Names.isValidJobID($0) && POSIX.exists(layout.job($0).spec) }.sorted()
    }
}
