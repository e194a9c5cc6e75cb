import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The client's end of a `filesGet` stream: each file's bytes go into its `.ferry-partial` and its
/// sha256 as they arrive (no second read); a finished file gets the host's mode bits and is handed
/// to `FileLander`, which syncs and renames files on a few threads while the stream goes on.
final class FetchReceiver {
    struct Want {
        /// Its index in the listing.
        var listed: Int
        var entry: FileListing.Entry
        var local: String
        var offset: Int64
        /// The sha256 of the copy here, when the listing had no hash to compare it with.
        var have: String? = nil
    }
    private struct Current {
        var index: Int
        var fd: Int32
        var hasher: SHA256
        var position: Int64
        var resumedFrom: Int64
        var mode: Int
        /// Bytes up to here were handed to the disk already (`FastFile.startWriteback`).
        var writtenBack: Int64
    }

    let wants: [Want]
    private(set) var fetched: [FetchedFile?]
    private var parser = FilesStreamParser()
    private var current: Current?
    private var nextIndex = 0
    private let lander = FileLander()
    /// Makes the new partials ahead of the stream.
    private let maker: PartialMaker
    private let events: (@Sendable (FetchEvent) -> Void)?
    private var totalBytes: Int64
    private var bytes: Int64 = 0
    private var files = 0

    init(wants: [Want], events: (@Sendable (FetchEvent) -> Void)?) {
        self.wants = wants; self.events = events
        fetched = Array(repeating: nil, count: wants.count)
        totalBytes = wants.reduce(0) { $0 + max(0, $1.entry.size - $1.offset) }
        maker = PartialMaker(paths: wants.map { $0.offset == 0 && $0.have == nil ? $0.local + partialSuffix : nil })
    }

    deinit { maker.stop() }

    /// Every file asked for arrived and the stream ended cleanly.
    var complete: Bool { parser.ended && nextIndex == wants.count && current == nil }

    func feed(_ data: Data) throws {
        try parser.feed(data) { event in
            switch event {
            case .begin(let index, let offset, _, let mode): try begin(index, offset: offset, mode: mode)
            case .bytes(let chunk): try write(chunk)
            case .finish(let index, let sha256): try finish(index, host: sha256)
            case .unchanged(let index): try unchanged(index)
            case .skipped(let index, let error):
                guard index == nextIndex, index < wants.count else { throw FilesStreamError.malformed("file #\(index) out of order") }
                if case .unsafePath = error { throw error }
                // Vanished or replaced since the listing: list again.
                let entry = wants[index].entry
                throw JobsError.checksumMismatch(path: entry.path, expected: entry.sha256, actual: "none (\(error.description))")
            case .end:
                guard nextIndex == wants.count, current == nil else { throw FilesStreamError.malformed("the end before file #\(nextIndex)") }
            case .error(let error): throw error
            }
        }
    }

    /// A file's bytes start (a length that does not add up to the listed size fails its check at the end).
    private func begin(_ index: Int, offset: Int64, mode: Int) throws {
        guard index == nextIndex, index < wants.count, current == nil else { throw FilesStreamError.malformed("file #\(index) out of order") }
        let want = wants[index]
        let partial = want.local + partialSuffix
        // A new partial (the usual case, made ahead) needs no truncating or chmod: only an existing one does.
        var fd = maker.take(index) ?? open(partial, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        let fresh = fd >= 0
        if !fresh && errno == EEXIST { fd = open(partial, O_RDWR | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw JobsError.io(path: partial, reason: SystemError.text(errno)) }
        var hasher = SHA256()
        var start = offset
        if offset > 0 {
            // A resume: the partial's bytes before the offset count toward the hash.
            do {
                let read = try FileIO.readChunks(fd, from: 0, limit: offset, path: partial) { hasher.update(bufferPointer: $0) }
                if read < offset { start = -1 }
            } catch { close(fd); throw JobsError.from(error, verb: "fetch") }
        }
        guard start >= 0, offset <= want.offset else {
            close(fd)
            unlink(partial)
            throw JobsError.transferFailed(path: want.entry.path, reason: "its partial file changed while resuming; run the same command again")
        }
        if !fresh {
            // (Only when it has more: ext4 writes a truncated file back at its close.)
            var st = stat()
            if fstat(fd, &st) != 0 || Int64(st.st_size) != offset { _ = ftruncate(fd, off_t(offset)) }
            // Only we read or write it until it is whole; the host's bits come at the end.
            fchmod(fd, 0o600)
        }
        let bits = mode & (want.entry.mode ?? 0o777) & 0o777
        current = Current(index: index, fd: fd, hasher: hasher, position: offset, resumedFrom: offset, mode: bits, writtenBack: offset)
    }

    private func write(_ chunk: UnsafeRawBufferPointer) throws {
        guard var file = current else { throw FilesStreamError.malformed("bytes outside a file") }
        let want = wants[file.index]
        do { try FileIO.writeAll(file.fd, chunk, at: file.position, path: want.local + partialSuffix) } catch { throw JobsError(error) }
        file.hasher.update(bufferPointer: chunk)
        file.position += Int64(chunk.count)
        bytes += Int64(chunk.count)
        // Every 8 MiB the disk starts writing what arrived, so the file's one fsync at the end
        // finds little left to wait for.
        if file.position - file.writtenBack >= 8 << 20 {
            FastFile.startWriteback(file.fd, offset: file.writtenBack, length: file.position - file.writtenBack)
            file.writtenBack = file.position
        }
        current = file
        events?(.file(path: want.entry.path, done: file.position, total: want.entry.size))
        events?(.progress(files: files, totalFiles: wants.count, bytes: bytes, totalBytes: totalBytes))
    }

    /// The file's bytes are all here: what arrived must hash to what the host read (`host`), and
    /// to the listing's hash when it gave one (else the file changed since: the fetch lists again).
    private func finish(_ index: Int, host: String?) throws {
        guard let file = current, file.index == index else { throw FilesStreamError.malformed("the end of file #\(index) out of order") }
        current = nil
        nextIndex += 1
        let want = wants[index]
        let partial = want.local + partialSuffix
        let digest = HashCache.hex(file.hasher.finalize())
        let expected = host ?? "none (the file changed on the host while it was read)"
        guard digest == host, want.entry.sha256.isEmpty || digest == want.entry.sha256, file.position == want.entry.size else {
            close(file.fd)
            unlink(partial)
            throw JobsError.checksumMismatch(path: want.entry.path, expected: want.entry.sha256.isEmpty ? expected : want.entry.sha256, actual: digest)
        }
        fchmod(file.fd, mode_t(file.mode))
        close(file.fd)
        lander.land(partial, as: want.local, size: file.position)
        files += 1
        let result = FetchedFile(remotePath: want.entry.path, localPath: want.local, size: file.position,
                                 transferredBytes: file.position - file.resumedFrom, resumedFrom: file.resumedFrom,
                                 unchanged: false, sha256: digest)
        fetched[index] = result
        events?(.fetched(result))
        events?(.progress(files: files, totalFiles: wants.count, bytes: bytes, totalBytes: totalBytes))
    }

    /// The host's file hashed to the copy here: nothing was sent.
    private func unchanged(_ index: Int) throws {
        guard index == nextIndex, index < wants.count, current == nil, let have = wants[index].have else {
            throw FilesStreamError.malformed("file #\(index) out of order")
        }
        nextIndex += 1
        let want = wants[index]
        totalBytes -= max(0, want.entry.size - want.offset)
        let result = FetchedFile(remotePath: want.entry.path, localPath: want.local, size: want.entry.size, transferredBytes: 0,
                                 resumedFrom: 0, unchanged: true, sha256: have)
        fetched[index] = result
        events?(.fetched(result))
        events?(.progress(files: files, totalFiles: wants.count, bytes: bytes, totalBytes: totalBytes))
    }

    /// Waits until every finished file is synced and has its name.
    func landAll() async throws {
        maker.stop()
        try await lander.finish()
    }

    /// After a failure: the open partial stays (a later fetch resumes it); those made ahead that
    /// got no bytes go.
    func abandon() {
        maker.stop()
        if let file = current { fsync(file.fd); close(file.fd); current = nil }
    }
}

/// Syncs finished partial files and renames them into place on a few threads, so the next file's
/// bytes keep arriving meanwhile, none on the receiving thread. A large file gets its own fsync;
/// small ones are landed in batches: one sync of their filesystem for the batch (a few files: their
/// own fsyncs), then their renames, so 10,000 small files do not wait for 10,000 journal commits.
/// Either way a file has its name only once its bytes are on disk.
final class FileLander: @unchecked Sendable {
    private let queue: OperationQueue
    private let lock = NSLock()
    private var failure: JobsError?
    private var batch: [(partial: String, final: String)] = []
    /// Files from this size on are synced one by one.
    static let ownSyncSize: Int64 = 1 << 20
    /// A batch lands once it has this many files (and at the end).
    static let batchFiles = 2048

    init(threads: Int = 4) {
        queue = OperationQueue()
        queue.maxConcurrentOperationCount = threads
    }

    func land(_ partial: String, as final: String, size: Int64) {
        if size >= FileLander.ownSyncSize {
            queue.addOperation { [self] in
                let fd = open(partial, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if fd >= 0 { fsync(fd); close(fd) }
                rename(partial, to: final)
            }
            return
        }
        lock.lock()
        batch.append((partial, final))
        let full = batch.count >= FileLander.batchFiles ? takeBatch() : []
        lock.unlock()
        if !full.isEmpty { queue.addOperation { [self] in landBatch(full) } }
    }

    /// Under the lock.
    private func takeBatch() -> [(partial: String, final: String)] {
        defer { batch = [] }
        return batch
    }

    private func landBatch(_ files: [(partial: String, final: String)]) {
        if files.count <= 32 {
            for file in files {
                let fd = open(file.partial, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if fd >= 0 { fsync(fd); close(fd) }
            }
        } else {
            // One sync per filesystem the batch's folders are on.
            var devices = Set<UInt64>()
            for folder in Set(files.map { ($0.partial as NSString).deletingLastPathComponent }) {
                var st = stat()
                if stat(folder, &st) == 0, devices.insert(UInt64(st.st_dev)).inserted { FastFile.syncFilesystem(containing: folder) }
            }
        }
        for file in files { rename(file.partial, to: file.final) }
    }

    private func rename(_ partial: String, to final: String) {
        if Glibc.rename(partial, final) != 0 {
            let error = JobsError.io(path: final, reason: SystemError.text(errno))
            lock.lock(); if failure == nil { failure = error }; lock.unlock()
        }
    }

    func finish() async throws {
        let rest = lock.withLock { takeBatch() }
        if !rest.isEmpty { queue.addOperation { [self] in landBatch(rest) } }
        let queue = self.queue
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { queue.waitUntilAllOperationsAreFinished(); done.resume() }
        }
        if let failure = takeFailure() { throw failure }
    }

    private func takeFailure() -> JobsError? { lock.lock(); defer { lock.unlock() }; return failure }
}
