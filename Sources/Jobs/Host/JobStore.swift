import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The jobs folder on a host: reading specs and statuses as written, and writing statuses atomically
/// under the job's lock (whether a job still runs is its launcher's to say).
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

    func ids() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: layout.jobsDirectory)) ?? []
        return names.filter { Names.isValidJobID($0) && POSIX.exists(layout.job($0).spec) }.sorted()
    }
}
