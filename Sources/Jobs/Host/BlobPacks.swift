import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Where the store keeps what one `blob_put` received: one pack file with the verified contents back
/// to back (`blobs/packs/NAME.pack`) and its index (`NAME.idx`), instead of a file, a rename and a
/// folder per blob. A pack is written once and never changed; a job's `work/` gets copies of its
/// ranges, so nothing a job does reaches it, except a large content's pack of one, which one job
/// at a time may hold as a hard link and which is verified before it is used again (`LentPack`).
///
/// The index is published (renamed into place) only after every byte it names was checked against
/// its sha256. The pack is not synced first: its first line names the boot it was written in, and
/// while that boot lasts the page cache serves exactly what was written. After a reboot (a crash
/// may have lost unsynced bytes) an index of an earlier boot is trusted only once its ranges were
/// read back and hashed again (`PackIndex.load` does that, drops what fails, then marks the index
/// checked). Where the boot cannot be told (no /proc), the pack is synced before its index appears.
///
///     ferry-pack 1 boot=BOOTID        (or `checked`: synced or verified after a reboot)
///     SHA256 OFFSET SIZE              one line per blob
enum BlobPack {
    static let header = "ferry-pack 1 "

    /// A pack's name: this process's pid (a pack without an index whose writer is gone is a
    /// leftover of a crash) and a random part.
    static func newName() -> String {
        "\(getpid())-" + String(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF, radix: 36)
    }

    /// Writes `entries` as `name`'s index (a temporary file renamed into place).
    static func publish(_ entries: [(hash: String, offset: Int64, size: Int64)], name: String, in folder: String, boot: String?) throws {
        var text = header + (boot.map { "boot=\($0)" } ?? "checked") + "\n"
        text.reserveCapacity(entries.count * 90 + 64)
        for e in entries { text += "\(e.hash) \(e.offset) \(e.size)\n" }
        let path = (folder as NSString).appendingPathComponent(name + ".idx")
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o400)
        guard fd >= 0 else { throw JobsError.io(path: temporary, reason: SystemError.text(errno)) }
        do {
            try JobsError.system { try FileIO.writeAll(fd, Array(text.utf8), path: temporary) }
            if boot == nil { fsync(fd) }
            close(fd)
        } catch {
            close(fd); unlink(temporary); throw error
        }
        guard rename(temporary, path) == 0 else {
            let why = SystemError.text(errno)
            unlink(temporary)
            throw JobsError.io(path: path, reason: why)
        }
    }
}

/// Every pack index of a store, read once per request: sha256 → (pack, offset, size).
final class PackIndex: @unchecked Sendable {
    struct Location { var pack: Int; var offset: Int64; var size: Int64 }
    let folder: String
    private(set) var packs: [String] = []
    private(set) var locations: [String: Location] = [:]
    /// How many blobs each pack holds (a pack of one is a whole file: a reflink may copy it).
    private(set) var counts: [Int] = []

    init(folder: String) { self.folder = folder }

    func location(_ hash: String) -> Location? { locations[hash] }
    func isWhole(_ at: Location) -> Bool { counts[at.pack] == 1 && at.offset == 0 }
    func packPath(_ pack: Int) -> String { (folder as NSString).appendingPathComponent(packs[pack] + ".pack") }

    /// A pack this process just published (its index need not be read again).
    func add(pack: String, _ blobs: [(hash: String, offset: Int64, size: Int64)]) {
        let number = packs.count
        packs.append(pack)
        counts.append(blobs.count)
        for e in blobs where locations[e.hash] == nil { locations[e.hash] = Location(pack: number, offset: e.offset, size: e.size) }
    }

    /// Reads every `*.idx` in `folder`. One written before this boot and not yet checked is
    /// checked now (its ranges hashed again; failures dropped; the pack synced) and rewritten as checked.
    static func load(folder: String, boot: String) -> PackIndex {
        let index = PackIndex(folder: folder)
        guard let names = Packager.names(in: folder)?.names else { return index }
        for name in names where name.hasSuffix(".idx") {
            let pack = String(name.dropLast(4))
            guard let data = POSIX.read((folder as NSString).appendingPathComponent(name)) else { continue }
            guard var entries = parse(data) else { continue }
            let packPath = (folder as NSString).appendingPathComponent(pack + ".pack")
            if entries.boot != "checked" && (boot.isEmpty || entries.boot != "boot=" + boot) {
                entries.blobs = recheck(pack: packPath, entries.blobs)
                try? BlobPack.publish(entries.blobs, name: pack, in: folder, boot: nil)
            }
            if entries.blobs.count == 1, !LentPack.review(pack: packPath, blob: entries.blobs[0]) { continue }
            let number = index.packs.count
            index.packs.append(pack)
            index.counts.append(entries.blobs.count)
            for e in entries.blobs where index.locations[e.hash] == nil {
                index.locations[e.hash] = Location(pack: number, offset: e.offset, size: e.size)
            }
        }
        return index
    }

    /// An index file's boot word and entries; nil when it is not one.
    static func parse(_ data: Data) -> (boot: String, blobs: [(hash: String, offset: Int64, size: Int64)])? {
        // One pass over the bytes (an index holds a line per blob: 10,000 lines for a typical upload).
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> (boot: String, blobs: [(hash: String, offset: Int64, size: Int64)])? in
            let bytes = raw.bindMemory(to: UInt8.self)
            guard let firstEnd = bytes.firstIndex(of: 0x0A) else { return nil }
            let head = String(decoding: UnsafeBufferPointer(rebasing: bytes[0..<firstEnd]), as: UTF8.self)
            guard head.hasPrefix(BlobPack.header) else { return nil }
            var blobs: [(String, Int64, Int64)] = []
            blobs.reserveCapacity(bytes.count / 90)
            var i = firstEnd + 1
            while i < bytes.count {
                var end = i
                while end < bytes.count && bytes[end] != 0x0A { end += 1 }
                defer { i = end + 1 }
                // "HASH OFFSET SIZE": 64 hex digits, a space, two decimal numbers.
                guard end - i > 66, bytes[i + 64] == 0x20 else { continue }
                let hash = String(decoding: UnsafeBufferPointer(rebasing: bytes[i..<(i + 64)]), as: UTF8.self)
                guard Manifest.isHash(hash) else { continue }
                var numbers: [Int64] = []
                var value: Int64 = 0, digits = 0, ok = true
                for j in (i + 65)..<end {
                    let c = bytes[j]
                    if c == 0x20 {
                        guard digits > 0 else { ok = false; break }
                        numbers.append(value); value = 0; digits = 0
                    } else if c >= 0x30 && c <= 0x39, digits < 18 {
                        value = value * 10 + Int64(c - 0x30); digits += 1
                    } else { ok = false; break }
                }
                guard ok, digits > 0 else { continue }
                numbers.append(value)
                guard numbers.count == 2 else { continue }
                blobs.append((hash, numbers[0], numbers[1]))
            }
            return (String(head.dropFirst(BlobPack.header.count)), blobs)
        }
    }

    /// The entries whose bytes in `pack` still hash to their name (after a reboot).
    static func recheck(pack: String, _ blobs: [(hash: String, offset: Int64, size: Int64)]) -> [(hash: String, offset: Int64, size: Int64)] {
        let fd = open(pack, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        fsync(fd)
        return blobs.filter { blob in
            var hasher = SHA256()
            guard let read = try? FileIO.readChunks(fd, from: blob.offset, limit: blob.size, path: pack, { hasher.update(bufferPointer: $0) }),
                  read == blob.size else { return false }
            return HashCache.hex(hasher.finalize()) == blob.hash
        }
    }
}

/// One `blob_put`'s pack while it is written: verified blobs are appended; a blob that fails its
/// check is cut off again. Bytes gather in a buffer and reach the file 1 MiB at a time (10,000
/// blobs of 10 kB were 10,000 writes or more).
final class PackWriter {
    let folder: String
    let name: String
    private var fd: Int32 = -1
    private(set) var size: Int64 = 0
    private(set) var entries: [(hash: String, offset: Int64, size: Int64)] = []
    private var names = Set<String>()
    /// Bytes not yet written, which belong at `bufferStart` in the file.
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0
    static let bufferSize = 1 << 20

    init(folder: String) {
        self.folder = folder
        name = BlobPack.newName()
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { bytes in try JobsError.system { try FileIO.writeAll(fd, bytes, at: bufferStart, path: path) } }
        bufferStart += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Drops everything from file offset `start` on (a blob cut off or failing its check).
    private func discard(from start: Int64) {
        if start >= bufferStart {
            buffer.removeSubrange(Int(start - bufferStart)...)
        } else {
            buffer.removeAll(keepingCapacity: true)
            _ = ftruncate(fd, off_t(start))
            bufferStart = start
        }
    }

    var path: String { (folder as NSString).appendingPathComponent(name + ".pack") }

    func contains(_ hash: String) -> Bool { names.contains(hash) }

    /// Appends `count` bytes from `reader`, hashing them; keeps them when they are `hash`'s.
    func append(_ hash: String, count: Int64, from reader: ByteReader) throws -> Bool {
        if fd < 0 {
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o400)
            guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        }
        if buffer.capacity < PackWriter.bufferSize { buffer.reserveCapacity(PackWriter.bufferSize) }
        let start = size
        var hasher = SHA256()
        var position = start
        do {
            try reader.read(count: count) { chunk in
                buffer.append(contentsOf: chunk)
                position += Int64(chunk.count)
                hasher.update(bufferPointer: chunk)
                if buffer.count >= PackWriter.bufferSize { try flush() }
            }
        } catch {
            discard(from: start)
            throw error
        }
        guard HashCache.hex(hasher.finalize()) == hash else {
            discard(from: start)
            return false
        }
        size = position
        entries.append((hash, start, count))
        names.insert(hash)
        return true
    }

    /// Publishes the index of what was kept (nothing written: nothing left behind).
    func finish() throws {
        defer { if fd >= 0 { close(fd); fd = -1 } }
        guard fd >= 0 else { return }
        guard !entries.isEmpty else { unlink(path); return }
        try flush()
        let boot = POSIX.bootId
        if boot.isEmpty { fsync(fd) }
        try BlobPack.publish(entries, name: name, in: folder, boot: boot.isEmpty ? nil : boot)
    }

    /// A leftover must be untouched this long before it is removed: on a cluster's shared
    /// filesystem another login node's agent may be writing it, and its pid means nothing here.
    static let leftoverAge: TimeInterval = 3600

    /// Removes packs without an index and `partial/*.ok.PID` files whose writing process is gone
    /// (left by a crash or a kill) and that nothing has written for `leftoverAge`.
    static func removeLeftovers(packs: String, partial: String, now: Date = Date()) {
        func writerGone(_ pid: Substring, _ path: String) -> Bool {
            guard let pid = Int32(pid), pid > 0, !POSIX.isAlive(pid) else { return false }
            var st = stat()
            guard lstat(path, &st) == 0 else { return false }
            return now.timeIntervalSince1970 - TimeInterval(st.st_mtim.tv_sec) >= leftoverAge
        }
        if let names = Packager.names(in: packs)?.names {
            let indexed = Set(names.filter { $0.hasSuffix(".idx") }.map { $0.dropLast(4) })
            for name in names where name.hasSuffix(".pack") {
                let base = name.dropLast(5)
                let path = (packs as NSString).appendingPathComponent(name)
                if !indexed.contains(base), let dash = base.firstIndex(of: "-"), writerGone(base[..<dash], path) { unlink(path) }
            }
            for name in names where name.hasSuffix(".idx.tmp") {
                let path = (packs as NSString).appendingPathComponent(name)
                if let dash = name.firstIndex(of: "-"), writerGone(name[..<dash], path) { unlink(path) }
            }
        }
        if let names = Packager.names(in: partial)?.names {
            for name in names {
                guard let dot = name.range(of: ".ok.", options: .backwards) else { continue }
                let path = (partial as NSString).appendingPathComponent(name)
                if writerGone(name[dot.upperBound...], path) { unlink(path) }
            }
        }
    }
}

/// A large content's pack of one may be lent to one job's `work/` as a hard link instead of being
/// copied (`BlobStore.materialise`): the job's file and the store's are then one file, and nothing
/// is written twice. What a job does to its file then reaches the store, so a lent pack is
/// verified before it is used again: `NAME.lent` seals its inode, size, mtime and ctime as they
/// were once lent (a write changes the mtime, a chmod or a new or removed link the ctime). While
/// the seal holds, the pack is trusted as it is. Once it breaks, the next request that reads the
/// store's index hashes the pack again: when it still holds its content it is kept (sealed again
/// while the job's link remains, no longer lent once it is the only one), and when not it leaves
/// the store (the job keeps its file; the next launch sends the content again). Only one job at a
/// time holds a lent pack: another gets a copy, checked against the seal after it was made.
enum LentPack {
    /// Contents from this size on are lent (below it a copy costs little).
    static let minimumSize: Int64 = 8 << 20

    static func sealPath(ofPack pack: String) -> String { String(pack.dropLast(".pack".count)) + ".lent" }

    static func seal(_ st: stat) -> String {
        "\(st.st_ino) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)\n"
    }

    /// Whether `pack` (open as `fd`) is lent and its seal broken: a copy just made from it may hold a job's bytes.
    static func broken(_ fd: Int32, pack: String) -> Bool {
        guard let sealed = POSIX.read(sealPath(ofPack: pack)) else { return false }
        var st = stat()
        return fstat(fd, &st) != 0 || String(decoding: sealed, as: UTF8.self) != seal(st)
    }

    /// After `destination` was copied from `pack` (open as `fd`): fails when the pack is lent and
    /// its seal broke, so the copy may hold a job's bytes.
    static func checkCopy(from fd: Int32, pack: String, to destination: String) throws {
        guard broken(fd, pack: pack) else { return }
        throw JobsError.io(path: destination, reason: "its content in the host's store changed while it was copied (a running job rewrote the copy it holds); launch again: the content is sent afresh")
    }

    /// Checks a pack of one before the store trusts it (`PackIndex.load`): false when it left the store.
    static func review(pack: String, blob: (hash: String, offset: Int64, size: Int64)) -> Bool {
        let sealFile = sealPath(ofPack: pack)
        var st = stat()
        guard lstat(pack, &st) == 0 else { return true }   // gone: reading it fails as before
        let sealed = POSIX.read(sealFile).map { String(decoding: $0, as: UTF8.self) }
        if sealed == nil && st.st_nlink <= 1 { return true }   // never lent
        if sealed == seal(st) { return true }                 // lent, untouched
        // Touched since it was lent (or a link without a seal): its bytes say whether it is still its content.
        if PackIndex.recheck(pack: pack, [blob]).isEmpty {
            unlink(String(pack.dropLast(".pack".count)) + ".idx")
            unlink(pack)
            unlink(sealFile)
            return false
        }
        if st.st_nlink <= 1 { unlink(sealFile) } else { writeSeal(seal(st), to: sealFile) }
        return true
    }

    /// Lends `pack` (open as `fd`) to `destination` with `mode` when no one holds it: true when
    /// `destination` is now the pack's file. Under the pack's lock, so two launches never both hold it.
    static func lend(_ fd: Int32, pack: String, to destination: String, mode: mode_t) -> Bool {
        _ = Syscall.retrying { flock(fd, LOCK_EX) }
        defer { _ = flock(fd, LOCK_UN) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_nlink == 1, link(pack, destination) == 0 else { return false }
        // The store's file gets the job's mode too (the store's folder is private).
        guard chmod(destination, mode) == 0, fstat(fd, &st) == 0, writeSeal(seal(st), to: sealPath(ofPack: pack)) else {
            unlink(destination)
            return false
        }
        return true
    }

    /// Not synced: a seal lost or torn in a crash no longer matches, and the pack is hashed again.
    @discardableResult
    private static func writeSeal(_ text: String, to path: String) -> Bool {
        (try? AtomicFile.write(Data(text.utf8), to: path, mode: .exact(0o600), directoryMode: 0o700, durable: false)) != nil
    }
}
