import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// sha256 of files, remembered by (size, mtime, inode): a dataset that did not change is not read
/// again on the next launch, nor a checkpoint on every `fetch --follow` pass.
final class HashCache {
    struct Entry: Codable {
        var size: Int64
        var mtimeNanos: Int64
        var inode: UInt64
        var sha256: String
    }

    let path: String
    private var entries: [String: Entry]
    private var used: Set<String> = []
    private var changed = false

    init(path: String) {
        self.path = path
        entries = POSIX.read(path).map(HashCache.decode) ?? [:]
    }

    /// The file's lines, `SHA256 SIZE MTIME_NANOS INODE KEY` (a key with a newline is not kept):
    /// read and written far faster than JSON for a workdir of 10,000 files. A cache in the JSON of
    /// an older ferry reads as empty (its files are hashed once more).
    static func decode(_ data: Data) -> [String: Entry] {
        var entries: [String: Entry] = [:]
        guard data.first != UInt8(ascii: "{") else { return entries }
        for line in data.split(separator: 0x0A) {
            let fields = line.split(separator: 0x20, maxSplits: 4, omittingEmptySubsequences: false)
            guard fields.count == 5, fields[0].count == 64,
                  let size = Int64(String(decoding: fields[1], as: UTF8.self)),
                  let mtime = Int64(String(decoding: fields[2], as: UTF8.self)),
                  let inode = UInt64(String(decoding: fields[3], as: UTF8.self)) else { continue }
            entries[String(decoding: fields[4], as: UTF8.self)] = Entry(size: size, mtimeNanos: mtime, inode: inode,
                                                                        sha256: String(decoding: fields[0], as: UTF8.self))
        }
        return entries
    }

    static func encode(_ entries: [String: Entry]) -> Data {
        var text = ""
        text.reserveCapacity(entries.count * 120)
        for (key, e) in entries where !key.contains("\n") && Manifest.isHash(e.sha256) {
            text += "\(e.sha256) \(e.size) \(e.mtimeNanos) \(e.inode) \(key)\n"
        }
        return Data(text.utf8)
    }

    /// The hash of `file`, from the cache when its size, mtime and inode are unchanged.
    func sha256(of file: String, key: String) throws -> String {
        var st = stat()
        guard stat(file, &st) == 0 else { throw JobsError.io(path: file, reason: SystemError.text(errno)) }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        used.insert(key)
        if let e = entries[key], e.size == Int64(st.st_size), e.mtimeNanos == mtime, e.inode == UInt64(st.st_ino) {
            return e.sha256
        }
        let digest = try HashCache.hashFile(file)
        entries[key] = Entry(size: Int64(st.st_size), mtimeNanos: mtime, inode: UInt64(st.st_ino), sha256: digest)
        changed = true
        return digest
    }

    /// The remembered hash of `key` when its size, mtime and inode are those of `st`.
    func cached(key: String, stat st: stat) -> String? {
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        used.insert(key)
        guard let e = entries[key], e.size == Int64(st.st_size), e.mtimeNanos == mtime, e.inode == UInt64(st.st_ino) else { return nil }
        return e.sha256
    }

    /// Remembers `sha256` for `key` as of `st`.
    func record(key: String, stat st: stat, sha256: String) {
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        used.insert(key)
        entries[key] = Entry(size: Int64(st.st_size), mtimeNanos: mtime, inode: UInt64(st.st_ino), sha256: sha256)
        changed = true
    }

    /// The hash of an open file (its `stat` from fstat), from the cache when its size, mtime and
    /// inode are unchanged; read from the descriptor otherwise (no path is opened again).
    func sha256(of fd: Int32, stat st: stat, key: String) throws -> String {
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        used.insert(key)
        if let e = entries[key], e.size == Int64(st.st_size), e.mtimeNanos == mtime, e.inode == UInt64(st.st_ino) {
            return e.sha256
        }
        var hasher = SHA256()
        do { try FileIO.readChunks(fd, from: 0, path: key) { hasher.update(bufferPointer: $0) } } catch let error as SystemError {
            throw JobsError(error)
        }
        let digest = HashCache.hex(hasher.finalize())
        entries[key] = Entry(size: Int64(st.st_size), mtimeNanos: mtime, inode: UInt64(st.st_ino), sha256: digest)
        changed = true
        return digest
    }

    /// Writes the cache back (entries not asked for this time are dropped). Best effort.
    func save() {
        let stale = Set(entries.keys).subtracting(used)
        if !stale.isEmpty { for k in stale { entries[k] = nil }; changed = true }
        guard changed else { return }
        try? AtomicFile.write(HashCache.encode(entries), to: path, mode: .umask(0o600), directoryMode: 0o700)
    }

    static func hashFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        defer { close(fd) }
        var hasher = SHA256()
        do { try FileIO.readChunks(fd, path: path) { hasher.update(bufferPointer: $0) } } catch let error as SystemError {
            throw JobsError(error)
        }
        return hex(hasher.finalize())
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let table = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in digest { out.append(table[Int(b >> 4)]); out.append(table[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
