import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The host's content-addressed store: every distinct content once, found by its sha256, so a file
/// that did not change since any earlier launch is never sent again. Contents live in packs
/// (`BlobPack`: one file and one index per `blob_put`); a store written by an older ferry also has
/// one file per content under `blobs/sha256/`, read as before.
struct BlobStore {
    let layout: HostLayout
    private let packs: PackIndexSlot

    init(layout: HostLayout, packs: PackIndexSlot = PackIndexSlot()) {
        self.layout = layout
        self.packs = packs
    }

    /// The packs' index, read on first use (one read of every index per request).
    var index: PackIndex {
        packs.value { PackIndex.load(folder: layout.packsDirectory, boot: POSIX.bootId) }
    }

    func has(_ hash: String) -> Bool { index.location(hash) != nil || POSIX.exists(layout.blob(hash)) }

    /// A content's bytes (tests, checks): nil when the store lacks it.
    func contents(_ hash: String) -> Data? {
        guard let source = try? source(hash) else { return nil }
        defer { close(source.fd) }
        var out = Data()
        guard (try? FileIO.readChunks(source.fd, from: source.offset, limit: source.size) { out.append(contentsOf: $0) }) == source.size else { return nil }
        if let pack = source.pack, LentPack.broken(source.fd, pack: pack) { return nil }
        return out
    }

    /// Where `hash`'s bytes are: an open descriptor (the caller closes it), their offset and size,
    /// and the pack's path when it is a pack of one (which may be lent: check `LentPack.broken` after reading).
    func source(_ hash: String) throws -> (fd: Int32, offset: Int64, size: Int64, pack: String?) {
        if let at = index.location(hash) {
            let path = index.packPath(at.pack)
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
            return (fd, at.offset, at.size, index.isWhole(at) ? path : nil)
        }
        let path = layout.blob(hash)
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { close(fd); throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        return (fd, 0, Int64(st.st_size), nil)
    }

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
    /// Small ones are appended to this request's pack, each checked against its hash as it arrives
    /// (one that fails is cut off again); a large one goes to its own resumable partial (under a
    /// lock, so two clients never interleave), which becomes a pack of one when whole. Indexes are
    /// published once their bytes are verified; when the input breaks off, what arrived whole is
    /// still stored (and the partial of the blob it broke in is resumed next time).
    func receive(from reader: ByteReader) throws -> BlobPutReply {
        try POSIX.makeDirectory(layout.partialBlobsDirectory, mode: 0o700)
        try POSIX.makeDirectory(layout.packsDirectory, mode: 0o700)
        PackWriter.removeLeftovers(packs: layout.packsDirectory, partial: layout.partialBlobsDirectory)
        var reply = BlobPutReply(stored: 0, bytes: 0, failed: [])
        let pack = PackWriter(folder: layout.packsDirectory)
        do {
            while let header = try reader.readLine(), header != AgentProtocol.blobsEnd {
                let fields = header.split(separator: " ")
                guard fields.count == 3, Manifest.isHash(String(fields[0])), let size = Int64(fields[1]), let offset = Int64(fields[2]),
                      size >= 0, offset >= 0, offset <= size else {
                    throw JobsError.io(path: "blob-put", reason: "bad frame header \(header.prefix(200).debugDescription)")
                }
                let hash = String(fields[0])
                switch try receiveOne(hash, size: size, offset: offset, from: reader, pack: pack) {
                case .verified(let bytes): reply.stored += 1; reply.bytes += bytes
                case .failed: reply.failed.append(hash)
                case .skipped: break
                }
            }
        } catch {
            try? pack.finish()
            packs.reset()
            throw error
        }
        try pack.finish()
        if !pack.entries.isEmpty { packs.added(pack.name, pack.entries) }
        return reply
    }

    private enum Received { case verified(Int64), failed, skipped }

    /// Blobs from this size on are received into the shared, resumable partial; smaller ones into
    /// the request's pack (a cut one is resent).
    static let resumableSize: Int64 = 1 << 20

    private func receiveOne(_ hash: String, size: Int64, offset: Int64, from reader: ByteReader, pack: PackWriter) throws -> Received {
        let count = size - offset
        if size < BlobStore.resumableSize && offset == 0 {
            if has(hash) || pack.contains(hash) { try reader.read(count: count) { _ in }; return .skipped }
            return try pack.append(hash, count: count, from: reader) ? .verified(count) : .failed
        }
        let partialPath = layout.partialBlob(hash)
        let fd = open(partialPath, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JobsError.io(path: partialPath, reason: SystemError.text(errno)) }
        defer { close(fd) }
        _ = Syscall.retrying { flock(fd, LOCK_EX) }
        // Another client may have finished (or dropped) this partial while we waited for the lock:
        // then ours is no longer the file at that name.
        var mine = stat(), named = stat()
        let stillNamed = fstat(fd, &mine) == 0 && stat(partialPath, &named) == 0 && mine.st_ino == named.st_ino && mine.st_dev == named.st_dev
        let existing = Int64(lseek(fd, 0, SEEK_END))
        if !stillNamed || has(hash) || existing < offset {
            // Stored meanwhile by another client, or our partial is shorter than the client thinks:
            // drop these bytes (the client asks again next time).
            try reader.read(count: count) { _ in }
            packs.reset()   // another client's pack may have been published since the index was read
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
        fchmod(fd, 0o400)
        // Whole and verified: the partial becomes a pack of one (still under the lock, so no other
        // client's upload of the same blob writes into it once it is in the store).
        let name = BlobPack.newName()
        let packPath = (layout.packsDirectory as NSString).appendingPathComponent(name + ".pack")
        guard rename(partialPath, packPath) == 0 else { throw JobsError.io(path: partialPath, reason: SystemError.text(errno)) }
        let boot = POSIX.bootId
        if boot.isEmpty { fsync(fd) }
        try BlobPack.publish([(hash, 0, size)], name: name, in: layout.packsDirectory, boot: boot.isEmpty ? nil : boot)
        packs.added(name, [(hash, 0, size)])
        return .verified(count)
    }

    private func hashPrefix(_ path: String, bytes: Int64, into hasher: inout SHA256) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        defer { close(fd) }
        let read = try FileIO.readChunks(fd, limit: bytes, path: path) { hasher.update(bufferPointer: $0) }
        guard read == bytes else { throw JobsError.io(path: path, reason: "shorter than expected") }
    }

    /// Builds `directory` from the manifest: every file a copy of its bytes in the store (a reflink
    /// where the filesystem has them and the content is a whole file, else an in-kernel copy), so a
    /// job that rewrites a file in place — also as root, for whom the store's modes protect
    /// nothing — cannot change what the store serves. Folders are made once each; each pack is
    /// opened once; files are copied on as many threads as there are cores (at most 4), each
    /// taking whole folders: creates in one folder take its lock in turn, and threads waiting on
    /// it (spinning, on a busy machine) cost more than they copy.
    ///
    /// With `lending`, a large content whose pack of one no job holds is lent instead: `work/`'s
    /// file is a hard link to it, sealed (`LentPack`), and nothing is copied.
    func materialise(_ manifest: Manifest, into directory: String, lending: Bool = false) throws {
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
        let index = self.index
        var packFDs: [Int: Int32] = [:]
        defer { for fd in packFDs.values { close(fd) } }
        // Where each file's bytes are: (pack descriptor, offset, size, whole file), or nil for a file of the old layout.
        var sources: [(fd: Int32, offset: Int64, size: Int64, whole: Bool)?] = []
        sources.reserveCapacity(manifest.files.count)
        // The pack of each large content, which may be lent: to its first file (if at all); each copy of it is checked.
        var largePacks: [Int: String] = [:]
        var lendAt = Set<Int>()
        var offered = Set<Int>()
        for file in manifest.files {
            try make((file.path as NSString).deletingLastPathComponent)
            if let at = index.location(file.sha256) {
                var fd = packFDs[at.pack] ?? -1
                if fd < 0 {
                    let path = index.packPath(at.pack)
                    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                    guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
                    packFDs[at.pack] = fd
                }
                let whole = at.offset == 0 && index.isWhole(at)
                if whole && at.size >= LentPack.minimumSize {
                    let i = sources.count
                    largePacks[i] = index.packPath(at.pack)
                    if lending && offered.insert(at.pack).inserted { lendAt.insert(i) }
                }
                sources.append((fd, at.offset, at.size, whole))
            } else if POSIX.exists(layout.blob(file.sha256)) {
                sources.append(nil)
            } else {
                throw JobsError.io(path: file.path, reason: "its content (\(file.sha256.prefix(12))…) is not in the host's store; launch again to send it")
            }
        }
        let files = manifest.files
        let copies = sources
        let large = largePacks, lend = lendAt
        // The files of each folder, in manifest order.
        var groupOf: [String: Int] = [:]
        var groups: [[Int]] = []
        for (i, file) in files.enumerated() {
            let folder = (file.path as NSString).deletingLastPathComponent
            if let g = groupOf[folder] { groups[g].append(i) } else { groupOf[folder] = groups.count; groups.append([i]) }
        }
        let folderFiles = groups
        let failure = FirstError()
        let mask = BlobStore.umaskBits
        let next = WorkCounter()
        let lanes = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount, folderFiles.count))
        DispatchQueue.concurrentPerform(iterations: lanes) { _ in
            while !failure.isSet {
                let g = next.take(1)
                guard g < folderFiles.count else { break }
                for i in folderFiles[g] where !failure.isSet {
                    let file = files[i]
                    let destination = (directory as NSString).appendingPathComponent(file.path)
                    let mode: mode_t = file.executable ? 0o755 : 0o644
                    do {
                        if let source = copies[i] {
                            if lend.contains(i), let pack = large[i], LentPack.lend(source.fd, pack: pack, to: destination, mode: mode) { continue }
                            try BlobStore.writeCopy(of: source, to: destination, mode: mode, umask: mask)
                            if let pack = large[i] { try LentPack.checkCopy(from: source.fd, pack: pack, to: destination) }
                        } else {
                            // A content of the old layout: its own file, opened for this copy only.
                            let old = try self.source(file.sha256)
                            defer { close(old.fd) }
                            try BlobStore.writeCopy(of: (old.fd, old.offset, old.size, true), to: destination, mode: mode, umask: mask)
                        }
                    } catch {
                        failure.set(error)
                    }
                }
            }
        }
        if let error = failure.value { throw error }
        for link in manifest.symlinks {
            let destination = (directory as NSString).appendingPathComponent(link.path)
            try make((link.path as NSString).deletingLastPathComponent)
            guard symlink(link.target, destination) == 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
        }
    }

    /// The process's umask (the bits a create leaves out): read once.
    static let umaskBits: mode_t = {
        let bits = umask(0o022)
        umask(bits)
        return bits
    }()

    /// Writes `source`'s bytes (`whole`: all of its file, which a reflink may share) into the new
    /// file `destination` with `mode`, whatever the umask.
    static func writeCopy(of source: (fd: Int32, offset: Int64, size: Int64, whole: Bool), to destination: String,
                          mode: mode_t, umask: mode_t) throws {
        // O_EXCL|O_NOFOLLOW: never write through something already there.
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard output >= 0 else { throw JobsError.io(path: destination, reason: SystemError.text(errno)) }
        defer { close(output) }
        do {
            try FastFile.copy(source.fd, from: source.offset, to: output, size: source.size, wholeFile: source.whole)
        } catch JobsError.io(_, let reason) {
            throw JobsError.io(path: destination, reason: reason)
        }
        if mode & umask != 0 { fchmod(output, mode) }
    }
}

/// Hands out runs of indices to parallel workers.
final class WorkCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    func take(_ count: Int) -> Int { lock.lock(); defer { lock.unlock() }; let first = next; next += count; return first }
}

/// A request's pack index, read once on first use (a served session's requests share it).
final class PackIndexSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var index: PackIndex?
    /// Forgets the index (this request published a pack): the next use reads it again.
    func reset() { lock.lock(); index = nil; lock.unlock() }
    /// This request published pack `name`: the index, when read, learns it without reading again.
    func added(_ name: String, _ blobs: [(hash: String, offset: Int64, size: Int64)]) {
        lock.lock(); index?.add(pack: name, blobs); lock.unlock()
    }
    func value(_ load: () -> PackIndex) -> PackIndex {
        lock.lock(); defer { lock.unlock() }
        if let index { return index }
        let loaded = load()
        index = loaded
        return loaded
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
