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
    /// Each is appended to its partial file (under a lock, so two clients never interleave), checked
    /// against its hash and renamed into the store.
    func receive(from reader: ByteReader) throws -> BlobPutReply {
        try POSIX.makeDirectory(layout.partialBlobsDirectory, mode: 0o700)
        var reply = BlobPutReply(stored: 0, bytes: 0, failed: [])
        while let header = try reader.readLine() {
            let fields = header.split(separator: " ")
            guard fields.count == 3, Manifest.isHash(String(fields[0])), let size = Int64(fields[1]), let offset = Int64(fields[2]),
                  size >= 0, offset >= 0, offset <= size else {
                throw JobsError.io(path: "blob-put", reason: "bad frame header \(header.prefix(200).debugDescription)")
            }
            let hash = String(fields[0])
            let count = size - offset
            let partialPath = layout.partialBlob(hash)
            let fd = open(partialPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw JobsError.io(path: partialPath, reason: SystemError.text(errno)) }
            defer { close(fd) }
            _ = Syscall.retrying { flock(fd, LOCK_EX) }
            let existing = Int64(lseek(fd, 0, SEEK_END))
            if has(hash) || existing < offset {
                // Stored meanwhile by another client, or our partial is shorter than the client thinks:
                // drop these bytes (the client asks again next time).
                try reader.read(count: count) { _ in }
                if !has(hash) { reply.failed.append(hash) }
                continue
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
            let actual = hasher.finalize().map { String(format: "%02x", $0) }.joined()
            guard actual == hash else {
                unlink(partialPath)
                reply.failed.append(hash)
                continue
            }
            fsync(fd)
            let final = layout.blob(hash)
            try POSIX.makeDirectory((final as NSString).deletingLastPathComponent, mode: 0o700)
            guard rename(partialPath, final) == 0 else { throw JobsError.io(path: final, reason: SystemError.text(errno)) }
            chmod(final, 0o444)
            reply.stored += 1
            reply.bytes += count
        }
        return reply
    }

    private func hashPrefix(_ path: String, bytes: Int64, into hasher: inout SHA256) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        defer { close(fd) }
        let read = try FileIO.readChunks(fd, limit: bytes, path: path) { hasher.update(bufferPointer: $0) }
        guard read == bytes else { throw JobsError.io(path: path, reason: "shorter than expected") }
    }

    /// Builds `directory` from the manifest: every file copied out of the store (a copy, not a
    /// hard link, so a job that edits a file in place cannot damage the store), then the symlinks.
    func materialise(_ manifest: Manifest, into directory: String) throws {
        try manifest.validate()
        try POSIX.makeDirectory(directory)
        for dir in manifest.directories {
            try POSIX.makeDirectory((directory as NSString).appendingPathComponent(dir))
        }
        for file in manifest.files {
            let destination = (directory as NSString).appendingPathComponent(file.path)
            try POSIX.makeDirectory((destination as NSString).deletingLastPathComponent)
            let source = layout.blob(file.sha256)
            guard has(file.sha256) else { throw JobsError.io(path: file.path, reason: "its content (\(file.sha256.prefix(12))…) is not in the host's store; launch again to send it") }
            try copyFile(source, to: destination, mode: file.executable ? 0o755 : 0o644)
        }
        for link in manifest.symlinks {
            let destination = (directory as NSString).appendingPathComponent(link.path)
            try POSIX.makeDirectory((destination as NSString).deletingLastPathComponent)
            guard symlink(link.target, destination) == 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
        }
    }

    private func copyFile(_ source: String, to destination: String, mode: mode_t) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw JobsError.io(path: source, reason: SystemError.text(errno)) }
        defer { close(input) }
        // O_EXCL|O_NOFOLLOW: never write through something already there.
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard output >= 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
        defer { close(output) }
        var st = stat()
        fstat(input, &st)
        var left = Int(st.st_size)
        while left > 0 {
            let n = Syscall.retrying { sendfile(output, input, nil, min(left, 1 << 30)) }
            guard n > 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
            left -= n
        }
        fchmod(output, mode)
    }
}

/// What `blob-put` did.
struct BlobPutReply: Codable, Sendable {
    var stored: Int
    var bytes: Int64
    var failed: [String]
}
