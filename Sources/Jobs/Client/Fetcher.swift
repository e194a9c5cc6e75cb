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
    /// The whole fetch so far: files landed and bytes received, of those it sends (unchanged files
    /// are not counted).
    case progress(files: Int, totalFiles: Int, bytes: Int64, totalBytes: Int64)
}

/// Brings a job's files home in one stream from the host's agent (`filesFetch`: the listing and
/// the files on one channel, no SFTP needed, no round trip per file): resumable (a `.ferry-partial`
/// continues from its size), hashed while it arrives and checked against the sha256 the host
/// computed while reading it (and the listing's, when the host knew it already: no file is read
/// twice on either side), given the host's permission bits (never wider),
/// synced and landed by rename. Every path of the listing is checked: nothing is written outside
/// the destination or through a link, whatever the host says; the host follows no link either.
public struct Fetcher: Sendable {
    public let client: AgentSession
    /// Details for `-v`.
    public var note: (@Sendable (String) -> Void)?
    public init(client: AgentSession, note: (@Sendable (String) -> Void)? = nil) { self.client = client; self.note = note }

    /// The `--what` values that name a selection (the output, a checkpoint, the log, the events);
    /// any other is a path.
    public static let selections: Set<String> = ["all", "best", "last", "log", "events"]

    /// Where a listed file lands: the destination plus the listing's landing path (`--what P`:
    /// `P/…`; the output's files without `output/`). Refuses anything that would leave the
    /// destination or write through a symlink there.
    public static func localPath(for landing: String, in destination: String) throws -> String {
        var places = Destination(destination)
        return try places.path(for: landing).path
    }

    /// The destination's folders as a fetch finds them: each is looked at once, and below one
    /// that does not exist nothing is looked at (nothing can be there yet), so 10,000 files
    /// into a new folder cost no lookups of their own.
    struct Destination {
        let root: String
        /// Each folder looked at: whether it exists.
        private var folders: [String: Bool] = [:]

        init(_ root: String) {
            var root = root.isEmpty ? "." : root
            while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
            self.root = root
        }

        /// The file's path here, and whether its folder exists already (else nothing of it can).
        mutating func path(for landing: String) throws -> (path: String, folderExists: Bool) {
            try Names.checkRelativePath(landing)
            var path = root
            var exists = true
            let parts = landing.split(separator: "/")
            for (i, part) in parts.enumerated() {
                path += path == "/" ? String(part) : "/" + part
                let folder = i < parts.count - 1
                if folder, let known = folders[path] { exists = known; continue }
                guard exists else {
                    if folder { folders[path] = false }
                    continue
                }
                var st = stat()
                if lstat(path, &st) == 0 {
                    // Never write through a symlink someone left in the destination.
                    if (st.st_mode & S_IFMT) == S_IFLNK {
                        throw JobsError.unsafePath(path: path, reason: "it is a symlink; ferry does not write through links (remove it to fetch here)")
                    }
                    if folder && (st.st_mode & S_IFMT) != S_IFDIR {
                        throw JobsError.unsafePath(path: path, reason: "a file is in the way of a folder of the same name")
                    }
                } else if folder {
                    exists = false
                }
                if folder { folders[path] = exists }
            }
            return (path, exists)
        }
    }

    /// A listing entry's landing path (an agent of protocol 3 states it; the output's files
    /// otherwise lose their `output/`).
    static func landing(of entry: FileListing.Entry) -> String {
        if let local = entry.local, !local.isEmpty { return local }
        let parts = entry.path.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count > 1 && parts[0] == "output" ? parts.dropFirst().joined(separator: "/") : entry.path
    }

    /// Fetches `what` (best, last, all, log, events, or a path: `work/P`, else `output/P`) into `destination`.
    public func fetch(_ id: String, what: String, into destination: String,
                      events: (@Sendable (FetchEvent) -> Void)? = nil) async throws -> [FetchedFile] {
        var retries = 0
        while true {
            let channel = try await client.openFetch(id, what: what)
            let listing = channel.listing
            do {
                // Check the whole listing before writing anything.
                var places = Destination(destination)
                let locals = try listing.files.map { try places.path(for: Fetcher.landing(of: $0)) }
                guard !listing.files.isEmpty else { throw JobsError.nothingToFetch(id: id, what: what) }
                return try await receive(id, listing: listing, locals: locals, channel: channel, events: events)
            } catch JobsError.checksumMismatch(let path, let expected, let actual) {
                channel.command.cancel()
                // The host replaced a file while we read it (a checkpoint rewritten): list again.
                retries += 1
                guard retries <= 3 else { throw JobsError.checksumMismatch(path: path, expected: expected, actual: actual) }
            } catch {
                channel.command.cancel()
                throw error
            }
        }
    }

    /// Skips files already here, asks for the rest on the fetch's channel and lands each as it completes.
    func receive(_ id: String, listing: FileListing, locals: [(path: String, folderExists: Bool)], channel: AgentSession.FetchChannel,
                 events: (@Sendable (FetchEvent) -> Void)?) async throws -> [FetchedFile] {
        var results = [FetchedFile?](repeating: nil, count: listing.files.count)
        var wants: [FetchReceiver.Want] = []
        var made = Set<Substring>()
        for (i, entry) in listing.files.enumerated() {
            let (local, folderExists) = locals[i]
            let folder = local[..<(local.lastIndex(of: "/") ?? local.startIndex)]
            if !folderExists {
                // A new folder: nothing of this file is here (no copy, no partial).
                if made.insert(folder).inserted { try POSIX.makeDirectory(String(folder)) }
                wants.append(FetchReceiver.Want(listed: i, entry: entry, local: local, offset: 0))
                continue
            }
            // A copy of the same size here: unchanged when it hashes as the listing says; when the
            // listing has no hash yet (the host has not read the file), the host compares.
            var have: String?
            if POSIX.fileSize(local) == entry.size, let sha = try? HashCache.hashFile(local) {
                if sha == entry.sha256 {
                    let file = FetchedFile(remotePath: entry.path, localPath: local, size: entry.size, transferredBytes: 0, resumedFrom: 0,
                                           unchanged: true, sha256: entry.sha256)
                    events?(.fetched(file))
                    results[i] = file
                    continue
                }
                if entry.sha256.isEmpty { have = sha }
            }
            if made.insert(folder).inserted { try POSIX.makeDirectory(String(folder)) }
            let partial = local + partialSuffix
            var offset: Int64 = 0
            var st = stat()
            if have == nil, lstat(partial, &st) == 0 {
                if (st.st_mode & S_IFMT) == S_IFREG && Int64(st.st_size) <= entry.size { offset = Int64(st.st_size) } else { unlink(partial) }
            }
            wants.append(FetchReceiver.Want(listed: i, entry: entry, local: local, offset: offset, have: have))
        }
        let started = Date()
        defer {
            let sent = wants.reduce(Int64(0)) { $0 + $1.entry.size - $1.offset }
            note?("fetch: \(wants.count) of \(listing.files.count) files (\(ByteCount.format(sent))) in one exec-channel stream from the agent (files_fetch: listed and sent on one channel, no SFTP), each checked against the sha256 the host computed while reading it, in \(String(format: "%.2f", Date().timeIntervalSince(started))) s; \(client.transport.counters.commands) remote command(s) on this connection")
        }
        let command = channel.command
        try await channel.choose(wants.map { FileWant(path: $0.entry.path, offset: $0.offset, have: $0.have) })
        if wants.isEmpty { command.cancel() }
        if !wants.isEmpty {
            let receiver = FetchReceiver(wants: wants, events: events)
            do {
                var errors = Data()
                if !channel.leftover.isEmpty { try receiver.feed(channel.leftover) }
                // Until the stream's end (the agent then saves its hash cache: nothing to wait for).
                while !receiver.complete, let chunk = try await channel.output.next() {
                    try Task.checkCancellation()
                    switch chunk {
                    case .stdout(let data): try receiver.feed(data)
                    case .stderr(let data): if errors.count < 4096 { errors.append(data) }
                    }
                }
                try await receiver.landAll()
                guard receiver.complete else {
                    let status = try await command.exitStatus()
                    let text = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    throw JobsError.transferFailed(path: id, reason: "the host's file stream ended early (exit status \(status)) \(text.prefix(300))")
                }
            } catch {
                command.cancel()
                receiver.abandon()
                try? await receiver.landAll()
                if let error = error as? FilesStreamError { throw JobsError.protocolViolation(host: client.host, detail: error.description) }
                throw error
            }
            for (want, file) in zip(wants, receiver.fetched) { results[want.listed] = file }
        }
        return results.compactMap { $0 }
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
