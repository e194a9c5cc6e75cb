import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one fetched file became.
public struct FetchedFile: Codable, Sendable, Equatable {
    /// Path in the job's folder on the host.
    public var remotePath: String
    public var localPath: String
    public var size: Int64
    public var transferredBytes: Int64
    public var resumedFrom: Int64
    /// Already here with the same sha256: not sent.
    public var unchanged: Bool
    public var sha256: String

}

public enum FetchEvent: Sendable {
    case file(path: String, done: Int64, total: Int64)
    case fetched(FetchedFile)
    case waiting(state: JobState)
}

/// Brings a job's files home: resumable (a `.ferry-partial` continues), sha256-verified against the
/// host's listing, landed by rename. Every path of the listing is checked: nothing is written outside
/// the destination, whatever the host says.
public struct Fetcher: Sendable {
    public let client: AgentSession
    public init(client: AgentSession) { self.client = client }

    /// The local place of a listed path: `output/…` drops its `output/`.
    public static func localPath(for remote: String, in destination: String) throws -> String {
        var parts = try Names.validateRelativePath(remote)
        if parts.count > 1 && parts[0] == "output" { parts.removeFirst() }
        var path = destination
        for (i, part) in parts.enumerated() {
            path = (path as NSString).appendingPathComponent(part)
            // Never write through a symlink someone left in the destination.
            var st = stat()
            if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
                throw JobsError.unsafePath(path: path, reason: "it is a symlink; ferry does not write through links (remove it to fetch here)")
            }
            if i < parts.count - 1 && lstat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR {
                throw JobsError.unsafePath(path: path, reason: "a file is in the way of a folder of the same name")
            }
        }
        return path
    }

    /// Fetches `what` (best, last, all, or a path in the job's folder) into `destination`.
    public func fetch(_ id: String, what: String, into destination: String,
                      events: (@Sendable (FetchEvent) -> Void)? = nil) async throws -> [FetchedFile] {
        var listing = try await client.files(id, what: what)
        // Check the whole listing before writing anything.
        for entry in listing.files { _ = try Fetcher.localPath(for: entry.path, in: destination) }
        guard !listing.files.isEmpty else { throw JobsError.nothingToFetch(id: id, what: what) }
        var results: [FetchedFile] = []
        var retries = 0
        var index = 0
        while index < listing.files.count {
            let entry = listing.files[index]
            do {
                results.append(try await fetchOne(entry, root: listing.root, destination: destination, events: events))
                index += 1
            } catch JobsError.checksumMismatch(let path, let expected, let actual) {
                // The host replaced the file while we read it (a checkpoint rewritten): list again.
                retries += 1
                guard retries <= 3 else { throw JobsError.checksumMismatch(path: path, expected: expected, actual: actual) }
                listing = try await client.files(id, what: what)
                for entry in listing.files { _ = try Fetcher.localPath(for: entry.path, in: destination) }
                results.removeAll()
                index = 0
            }
        }
        return results
    }

    func fetchOne(_ entry: FileListing.Entry, root: String, destination: String,
                  events: (@Sendable (FetchEvent) -> Void)?) async throws -> FetchedFile {
        let local = try Fetcher.localPath(for: entry.path, in: destination)
        if POSIX.fileSize(local) == entry.size, (try? HashCache.hashFile(local)) == entry.sha256 {
            let file = FetchedFile(remotePath: entry.path, localPath: local, size: entry.size, transferredBytes: 0, resumedFrom: 0,
                                   unchanged: true, sha256: entry.sha256)
            events?(.fetched(file))
            return file
        }
        try POSIX.makeDirectory((local as NSString).deletingLastPathComponent)
        let remote = (root as NSString).appendingPathComponent(entry.path)
        let size = entry.size
        let path = entry.path
        let report = try await client.transport.download(remote, to: local, expectedSHA256: entry.sha256) { done in
            events?(.file(path: path, done: done, total: size))
        }
        let file = FetchedFile(remotePath: entry.path, localPath: local, size: report.totalBytes, transferredBytes: report.transferredBytes,
                               resumedFrom: report.resumedFrom, unchanged: false, sha256: report.sha256 ?? entry.sha256)
        events?(.fetched(file))
        return file
    }

    /// Fetches again every `interval` seconds while the job runs (new checkpoints trickle down),
    /// then once more after it ended.
    public func follow(_ id: String, what: String, into destination: String, interval: Double = 5,
                       events: (@Sendable (FetchEvent) -> Void)? = nil) async throws -> [FetchedFile] {
        var latest: [String: FetchedFile] = [:]
        while true {
            let state = try await client.status(id).status.state
            do {
                for file in try await fetch(id, what: what, into: destination, events: events) { latest[file.remotePath] = file }
            } catch JobsError.nothingToFetch(_, _) where !state.isFinal {
                // Nothing yet: keep waiting.
            }
            if state.isFinal { break }
            events?(.waiting(state: state))
            try await Task.sleep(nanoseconds: UInt64(interval * 1e9))
        }
        return latest.values.sorted { $0.remotePath < $1.remotePath }
    }
}
