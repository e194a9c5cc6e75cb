import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The client's end of a `filesGet` stream: each file's bytes go into its sha256 as they arrive
/// (no second read), and into its `.ferry-partial` (made ahead by `PartialMaker`); a small new
/// file is held in memory until whole and checked, then `SmallFileWriters` writes it on another
/// thread. A finished file gets the host's mode bits and is handed to `FileLander`, which syncs and
/// renames files on a few threads while the stream goes on. (10,000 files of 10 kB: the receiving
/// thread had spent 0.25 s writing and 0.39 s waiting for partials of its 0.9 s.)
final class FetchReceiver {
    struct Want {
        /// Its index in the listing.
        var listed: Int
        var entry: FileListing.Entry
        var local: String
        var offset: Int64
        /// The sha256 of the copy here, when the listing had no hash to compare it with.
        var have: String? = nil
        /// Nothing of it is here: no partial to resume, no copy for the host to compare.
        var isNew: Bool { offset == 0 && have == nil }
    }
    private struct Current {
        var index: Int
        /// -1 while a small new file is held in `memory` (written whole by `writers` once checked).
        var fd: Int32
        var memory: [UInt8]? = nil
        var hasher: SHA256
        var position: Int64
        var resumedFrom: Int64
        var mode: Int
        /// Bytes up to here were handed to the disk already (`FileIO.startWriteback`).
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
    /// Write small files once they are whole and checked, beside the stream.
    private let writers: SmallFileWriters
    /// A new file up to this size is held in memory until whole, then written by `writers`.
    static let smallFileSize: Int64 = 256 << 10
    private let events: (@Sendable (FetchEvent) -> Void)?
    private var totalBytes: Int64
    private var bytes: Int64 = 0
    private var files = 0

    init(wants: [Want], events: (@Sendable (FetchEvent) -> Void)?) {
        self.wants = wants; self.events = events
        fetched = Array(repeating: nil, count: wants.count)
        totalBytes = wants.reduce(0) { $0 + max(0, $1.entry.size - $1.offset) }
        maker = PartialMaker(paths: wants.map { $0.isNew ? $0.local + partialSuffix : nil })
        writers = SmallFileWriters(maker: maker, lander: lander)
    }

    deinit {
        _ = writers.finish()
        maker.stop()
    }

    /// Every file asked for arrived and the stream ended cleanly.
    var complete: Bool { parser.ended && nextIndex == wants.count && current == nil }

    func feed(_ data: Data) throws {
        try parser.feed(data) { event in
            switch event {
            case .begin(let index, let offset, let length, let mode): try begin(index, offset: offset, length: length, mode: mode)
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
    private func begin(_ index: Int, offset: Int64, length: Int64, mode: Int) throws {
        guard index == nextIndex, index < wants.count, current == nil else { throw FilesStreamError.malformed("file #\(index) out of order") }
        let want = wants[index]
        let bits = mode & (want.entry.mode ?? 0o777) & 0o777
        if offset == 0, want.isNew, length <= FetchReceiver.smallFileSize {
            // Small and new: its bytes wait here until whole and checked; a thread of `writers`
            // writes it (the receiving thread only parses and hashes).
            var memory: [UInt8] = []
            memory.reserveCapacity(Int(length))
            current = Current(index: index, fd: -1, memory: memory, hasher: SHA256(), position: 0, resumedFrom: 0, mode: bits, writtenBack: 0)
            return
        }
        let partial = want.local + partialSuffix
        // A new partial (made ahead) needs no truncating or chmod: only an existing one does.
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
        current = Current(index: index, fd: fd, hasher: hasher, position: offset, resumedFrom: offset, mode: bits, writtenBack: offset)
    }

    private func write(_ chunk: UnsafeRawBufferPointer) throws {
        guard var file = current else { throw FilesStreamError.malformed("bytes outside a file") }
        let want = wants[file.index]
        if file.memory != nil {
            guard file.position + Int64(chunk.count) <= FetchReceiver.smallFileSize else { throw FilesStreamError.malformed("file #\(file.index) longer than its frame") }
            file.memory!.append(contentsOf: chunk)
        } else {
            do { try FileIO.writeAll(file.fd, chunk, at: file.position, path: want.local + partialSuffix) } catch { throw JobsError(error) }
        }
        file.hasher.update(bufferPointer: chunk)
        file.position += Int64(chunk.count)
        bytes += Int64(chunk.count)
        // Every 8 MiB the disk starts writing what arrived, so the file's one fsync at the end
        // finds little left to wait for.
        if file.fd >= 0 && file.position - file.writtenBack >= 8 << 20 {
            FileIO.startWriteback(file.fd, offset: file.writtenBack, length: file.position - file.writtenBack)
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
            if file.fd >= 0 { close(file.fd) }
            unlink(partial)
            throw JobsError.checksumMismatch(path: want.entry.path, expected: want.entry.sha256.isEmpty ? expected : want.entry.sha256, actual: digest)
        }
        if let memory = file.memory {
            try writers.write(SmallFileWriters.File(index: index, partial: partial, final: want.local, bytes: memory, mode: mode_t(file.mode)))
        } else {
            fchmod(file.fd, mode_t(file.mode))
            close(file.fd)
            lander.land(partial, as: want.local, size: file.position)
        }
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
        let written = writers.finish()
        maker.stop()
        try await lander.finish()
        if let written { throw written }
    }

    /// After a failure: the open partial stays (a later fetch resumes it); those made ahead that
    /// got no bytes go.
    func abandon() {
        if let file = current, file.fd >= 0 { fsync(file.fd); close(file.fd) }
        current = nil
        // (The small files already checked are still written and landed by `landAll`.)
    }
}

/// Writes small fetched files, whole and checked, on threads of their own: each gets its partial
/// (made ahead by `maker`, else made here), its bytes and the host's mode bits, and goes to the
/// lander. The receiving thread hands them over and goes on parsing and hashing the stream; at
/// most `limit` bytes wait here.
final class SmallFileWriters: @unchecked Sendable {
    struct File {
        var index: Int
        var partial: String
        var final: String
        var bytes: [UInt8]
        var mode: mode_t
    }
    private let maker: PartialMaker
    private let lander: FileLander
    private let limit: Int
    private let condition = NSCondition()
    private var queue: [File] = []
    private var head = 0
    private var queuedBytes = 0
    private var ending = false
    private var running = 0
    private var failure: JobsError?

    init(maker: PartialMaker, lander: FileLander, threads: Int = 2, limit: Int = 32 << 20) {
        self.maker = maker; self.lander = lander; self.limit = limit
        running = threads
        for _ in 0..<threads {
            let thread = Thread { [self] in work() }
            thread.name = "ferry-small-files"
            thread.start()
        }
    }

    /// Queues a file (waits while `limit` bytes are queued); throws the first error met writing
    /// one, so the fetch stops there.
    func write(_ file: File) throws {
        condition.lock()
        defer { condition.unlock() }
        while failure == nil && queuedBytes > 0 && queuedBytes + file.bytes.count > limit && running > 0 { condition.wait() }
        if let failure { throw failure }
        queue.append(file)
        queuedBytes += file.bytes.count
        condition.broadcast()
    }

    /// Waits until every queued file is written and handed to the lander; the first error.
    func finish() -> JobsError? {
        condition.lock()
        defer { condition.unlock() }
        ending = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        return failure
    }

    private func work() {
        condition.lock()
        while true {
            while head == queue.count && !ending { condition.wait() }
            guard head < queue.count else { break }
            let file = queue[head]
            queue[head].bytes = []
            head += 1
            if head > 1024 { queue.removeFirst(head); head = 0 }
            condition.unlock()
            let problem = land(file)
            condition.lock()
            queuedBytes -= file.bytes.count
            if let problem, failure == nil { failure = problem }
            condition.broadcast()
        }
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    private func land(_ file: File) -> JobsError? {
        var fd = maker.take(file.index) ?? open(file.partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 && errno == EEXIST {
            // Left by an earlier fetch: ours now, from its first byte.
            fd = open(file.partial, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC)
            if fd >= 0 { fchmod(fd, 0o600) }
        }
        guard fd >= 0 else { return JobsError.io(path: file.partial, reason: SystemError.text(errno)) }
        let written: Result<Void, SystemError> = file.bytes.withUnsafeBytes { bytes in
            do throws(SystemError) { try FileIO.writeAll(fd, bytes, at: 0, path: file.partial); return .success(()) } catch { return .failure(error) }
        }
        if case .failure(let error) = written {
            close(fd)
            return JobsError(error)
        }
        fchmod(fd, file.mode)
        close(fd)
        lander.land(file.partial, as: file.final, size: Int64(file.bytes.count))
        return nil
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
