import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The host's content-addressed store: one file per distinct content, named by its sha256, so a
/// file that did not change since any earlier launch is never sent again.
struct BlobStore {
    let layout: HostLayout

    func has(_ hash: String) -> Bool { POSIX.exists(layout.blob(hash)) }

    /// Of `hashes`: the ones the store lacks, and for those, bytes already received in a partial.
    func missing(_ hashes: [String]) throws -> (missing: [String], partial: [String: Int64]) {
        var missing: [String] = []
        var partial: [String: Int64] = [:]
        for hash in Set(hashes).sorted() {
            guard Manifest.isHash(hash) else { throw JobsError.unsafePath(path: hash, reason: "not a sha256") }
            if has(hash) { continue }
            missing.append(hash)
            if let size = POSIX.fileSize(layout.partialBlob(hash)), size > 0 { partial[hash] = size }
        }
        return (missing, partial)
    }

    /// Receives blobs framed as `SHA256 SIZE OFFSET\n` + (SIZE - OFFSET) bytes, until the input ends.
    /// Each is appended to its partial file (under a lock, so two clients never interleave) and
    /// checked against its hash as it arrives. The verified ones are synced to disk together (one
    /// syncfs, not an fsync per blob), then renamed into the store: a name in the store always
    /// holds its whole content, also after a crash. When the input breaks off, what arrived whole
    /// is still stored (and the partial of the blob it broke in is resumed next time).
    func receive(from reader: ByteReader) throws -> BlobPutReply {
        try POSIX.makeDirectory(layout.partialBlobsDirectory, mode: 0o700)
        var reply = BlobPutReply(stored: 0, bytes: 0, failed: [])
        var verified: [(hash: String, bytes: Int64)] = []
        do {
            while let header = try reader.readLine() {
                let fields = header.split(separator: " ")
                guard fields.count == 3, Manifest.isHash(String(fields[0])), let size = Int64(fields[1]), let offset = Int64(fields[2]),
                      size >= 0, offset >= 0, offset <= size else {
                    throw JobsError.io(path: "blob-put", reason: "bad frame header \(header.prefix(200).debugDescription)")
                }
                let hash = String(fields[0])
                switch try receiveOne(hash, size: size, offset: offset, from: reader) {
                case .verified(let bytes): verified.append((hash, bytes))
                case .failed: reply.failed.append(hash)
                case .skipped: break
                }
            }
        } catch {
            _ = try? store(verified, into: &reply)
            throw error
        }
        try store(verified, into: &reply)
        return reply
    }

    private enum Received { case verified(Int64), failed, skipped }

    /// Blobs from this size on are received into the shared, resumable partial; smaller ones into
    /// a file of this process's own (one create and one rename each, no lock: a cut one is resent).
    static let resumableSize: Int64 = 1 << 20

    private func receiveOne(_ hash: String, size: Int64, offset: Int64, from reader: ByteReader) throws -> Received {
        let count = size - offset
        if size < BlobStore.resumableSize && offset == 0 {
            if has(hash) { try reader.read(count: count) { _ in }; return .skipped }
            let path = verifiedPath(hash)
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o444)
            guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
            defer { close(fd) }
            var hasher = SHA256()
            var position: Int64 = 0
            do {
                try reader.read(count: count) { chunk in
                    try JobsError.system { try FileIO.writeAll(fd, chunk, at: position, path: path) }
                    position += Int64(chunk.count)
                    hasher.update(bufferPointer: chunk)
                }
            } catch {
                unlink(path)
                throw error
            }
            guard HashCache.hex(hasher.finalize()) == hash else { unlink(path); return .failed }
            return .verified(count)
        }
        let partialPath = layout.partialBlob(hash)
        let fd = open(partialPath, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JobsError.io(path: partialPath, reason: SystemError.text(errno)) }
        defer { close(fd) }
        _ = Syscall.retrying { flock(fd, LOCK_EX) }
        let existing = Int64(lseek(fd, 0, SEEK_END))
        if has(hash) || existing < offset {
            // Stored meanwhile by another client, or our partial is shorter than the client thinks:
            // drop these bytes (the client asks again next time).
            try reader.read(count: count) { _ in }
            return has(hash) ? .skipped : .failed
        }
        if existing > offset { _ = ftruncate(fd, off_t(offset)) }
        var hasher = SHA256()
        if offset > 0 { try hashPrefix(partialPath, bytes: offset, into: &hasher) }
        var position = offset
        try reader.read(count: count) { chunk in
            try JobsError.system { try FileIO.writeAll(fd, chunk, at: position, path: partialPath) }
            position += Int64(chunk.count)
            hasher.update(bufferPointer: chunk)
        }
        let actual = HashCache.hex(hasher.finalize())
        guard actual == hash else {
            unlink(partialPath)
            return .failed
        }
        fchmod(fd, 0o444)
        // Out of the way (still under the lock) so no other client's upload of the same blob writes
        // into it before it has its name in the store.
        guard rename(partialPath, verifiedPath(hash)) == 0 else { throw JobsError.io(path: partialPath, reason: SystemError.text(errno)) }
        return .verified(count)
    }

    /// A verified blob waiting for the batch's sync, private to this process.
    private func verifiedPath(_ hash: String) -> String { layout.partialBlob(hash) + ".ok.\(BlobStore.pid)" }
    private static let pid = getpid()

    /// One sync for the batch (fsyncs for a few blobs), then each verified partial renamed into its fan-out folder (each
    /// folder made once).
    private func store(_ verified: [(hash: String, bytes: Int64)], into reply: inout BlobPutReply) throws {
        guard !verified.isEmpty else { return }
        if verified.count <= 32 {
            // A few blobs (one edited file): their own fsyncs, not a sync of the whole filesystem,
            // which on a busy disk waits for everyone's dirty pages.
            for (hash, _) in verified {
                let fd = open(verifiedPath(hash), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if fd >= 0 { fsync(fd); close(fd) }
            }
        } else {
            FastFile.syncFilesystem(containing: layout.partialBlobsDirectory)
        }
        var folders = Set<String>()
        for (hash, bytes) in verified {
            let final = layout.blob(hash)
            let folder = (final as NSString).deletingLastPathComponent
            if folders.insert(folder).inserted, !POSIX.isDirectory(folder) { try POSIX.makeDirectory(folder, mode: 0o700) }
            guard rename(verifiedPath(hash), final) == 0 else { throw JobsError.io(path: final, reason: SystemError.text(errno)) }
            reply.stored += 1
            reply.bytes += bytes
        }
        // The folders are not synced one by one: a name lost in a crash only means that blob is
        // sent again; its content, synced above, is never wrong.
    }

    private func hashPrefix(_ path: String, bytes: Int64, into hasher: inout SHA256) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        defer { close(fd) }
        let read = try FileIO.readChunks(fd, limit: bytes, path: path) { hasher.update(bufferPointer: $0) }
        guard read == bytes else { throw JobsError.io(path: path, reason: "shorter than expected") }
    }

    /// Builds `directory` from the manifest: every file a copy of its blob (a reflink where the
    /// filesystem has them, else an in-kernel copy; never a hard link), so a job that rewrites a
    /// file in place — also as root, for whom the store's 0444 protects nothing — cannot change
    /// the store. Folders are made once each; files are copied on a few threads.
    func materialise(_ manifest: Manifest, into directory: String) throws {
        try manifest.validate()
        try POSIX.makeDirectory(directory)
        var folders = Set<String>([""])
        func make(_ relative: String) throws {
            guard !relative.isEmpty, !folders.contains(relative) else { return }
            try make((relative as NSString).deletingLastPathComponent)
            let path = (directory as NSString).appendingPathComponent(relative)
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
            folders.insert(relative)
        }
        for dir in manifest.directories { try make(dir) }
        for file in manifest.files {
            try make((file.path as NSString).deletingLastPathComponent)
            guard has(file.sha256) else { throw JobsError.io(path: file.path, reason: "its content (\(file.sha256.prefix(12))…) is not in the host's store; launch again to send it") }
        }
        let files = manifest.files
        let failure = FirstError()
        let lanes = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            var i = lane
            while i < files.count, !failure.isSet {
                let file = files[i]
                do {
                    try copyFile(layout.blob(file.sha256), to: (directory as NSString).appendingPathComponent(file.path),
                                 mode: file.executable ? 0o755 : 0o644)
                } catch {
                    failure.set(error)
                }
                i += lanes
            }
        }
        if let error = failure.value { throw error }
        for link in manifest.symlinks {
            let destination = (directory as NSString).appendingPathComponent(link.path)
            try make((link.path as NSString).deletingLastPathComponent)
            guard symlink(link.target, destination) == 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
        }
    }

    func copyFile(_ source: String, to destination: String, mode: mode_t) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw JobsError.io(path: source, reason: SystemError.text(errno)) }
        defer { close(input) }
        // O_EXCL|O_NOFOLLOW: never write through something already there.
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard output >= 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
        defer { close(output) }
        var st = stat()
        guard fstat(input, &st) == 0 else { throw JobsError.io(path: source, reason: SystemError.text(errno)) }
        do { try FastFile.copy(input, to: output, size: Int64(st.st_size)) } catch JobsError.io(_, let reason) {
            throw JobsError.io(path: destination, reason: reason)
        }
        fchmod(output, mode)
    }
}

/// The first error of parallel work.
final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var error: (any Error)?
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return error != nil }
    var value: (any Error)? { lock.lock(); defer { lock.unlock() }; return error }
    func set(_ e: any Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
}

/// What `blob-put` did.
struct BlobPutReply: Codable, Sendable {
    var stored: Int
    var bytes: Int64
    var failed: [String]
}
