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

    /// The form of the previous version, read once: `{"records": …}`, every entry as
    /// `CompactRecords` (key, size, mtime ns, inode, sha256) in one JSON string.
    struct Stored: Decodable {
        var entries: [String: Entry]
        private enum CodingKeys: String, CodingKey { case records }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            guard let entries = HashCache.entries(records: try c.decode(String.self, forKey: .records)) else {
                throw DecodingError.dataCorruptedError(forKey: .records, in: c, debugDescription: "not a hash cache's records")
            }
            self.entries = entries
        }
    }

    let path: String
    private var entries: [String: Entry]
    private var used: Set<String> = []
    private var changed = false

    /// The file's first line; then the records (`CompactRecords`' bytes as they are: no JSON to
    /// unescape, which took a launch of 10,000 files 30 ms on each side).
    static let header = "ferry-hashes 2\n"

    /// `olderPath`: where an older ferry kept it, as JSON (read when `path` is missing, then written to `path`).
    init(path: String, olderPath: String? = nil) {
        self.path = path
        entries = [:]
        if let data = POSIX.read(path), let records = HashCache.records(data) {
            entries = records
        } else if let older = olderPath, let data = POSIX.read(older) {
            if let decoded = try? JSONDecoder().decode(Stored.self, from: data) {
                entries = decoded.entries
            } else if let objects = try? JSONDecoder().decode([String: Entry].self, from: data) {
                entries = objects   // an object per file, as a still older ferry wrote it
            }
            changed = !entries.isEmpty
            unlink(older)
        }
    }

    /// The entries of a file in the current form; nil when it is not one.
    static func records(_ data: Data) -> [String: Entry]? {
        let head = Array(header.utf8)
        guard data.count >= head.count, data.prefix(head.count).elementsEqual(head) else { return nil }
        return entries(records: String(decoding: data.dropFirst(head.count), as: UTF8.self))
    }

    /// Entries from their `CompactRecords` (key, size, mtime ns, inode, sha256); nil when malformed.
    static func entries(records text: String) -> [String: Entry]? {
        var entries: [String: Entry] = [:]
        let whole = CompactRecords.parse(text, fields: 5) { f in
            guard let size = Int64(f[1]), let mtime = Int64(f[2]), let inode = UInt64(f[3]) else { return false }
            entries[String(f[0])] = Entry(size: size, mtimeNanos: mtime, inode: inode, sha256: String(f[4]))
            return true
        }
        return whole ? entries : nil
    }

    /// The hash of `file`, from the cache when its size, mtime and inode are unchanged.
    func sha256(of file: String, key: String) throws -> String {
        var st = stat()
        guard stat(file, &st) == 0 else { throw JobsError.io(path: file, reason: SystemError.text(errno)) }
        if let known = cached(key: key, stat: st) { return known }
        let digest = try HashCache.hashFile(file)
        record(key: key, stat: st, sha256: digest)
        return digest
    }

    /// The remembered hash of `key` when its size, mtime and inode are those of `st`.
    func cached(key: String, stat st: stat) -> String? {
        used.insert(key)
        guard let e = entries[key], e.size == Int64(st.st_size), e.mtimeNanos == HashCache.mtimeNanos(st), e.inode == UInt64(st.st_ino) else { return nil }
        return e.sha256
    }

    /// Remembers `sha256` for `key` as of `st`.
    func record(key: String, stat st: stat, sha256: String) {
        used.insert(key)
        entries[key] = Entry(size: Int64(st.st_size), mtimeNanos: HashCache.mtimeNanos(st), inode: UInt64(st.st_ino), sha256: sha256)
        changed = true
    }

    private static func mtimeNanos(_ st: stat) -> Int64 { Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec) }

    /// The hash of an open file (its `stat` from fstat), from the cache when its size, mtime and
    /// inode are unchanged; read from the descriptor otherwise (no path is opened again).
    func sha256(of fd: Int32, stat st: stat, key: String) throws -> String {
        if let known = cached(key: key, stat: st) { return known }
        var hasher = SHA256()
        do { try FileIO.readChunks(fd, from: 0, path: key) { hasher.update(bufferPointer: $0) } } catch let error as SystemError {
            throw JobsError(error)
        }
        let digest = HashCache.hex(hasher.finalize())
        record(key: key, stat: st, sha256: digest)
        return digest
    }

    /// Writes the cache back (with `pruning`, entries not asked for this time are dropped). Best effort.
    func save(pruning: Bool = true) {
        let stale = pruning ? Set(entries.keys).subtracting(used) : []
        if !stale.isEmpty { for k in stale { entries[k] = nil }; changed = true }
        guard changed else { return }
        var records = CompactRecords(capacity: entries.count * 120 + 16)
        for (key, e) in entries { records.append(key, String(e.size), String(e.mtimeNanos), String(e.inode), e.sha256) }
        // A cache: a crash that loses it costs hashing again, so no sync waits for it.
        try? AtomicFile.write(Data((HashCache.header + records.text).utf8), to: path, mode: .umask(0o600), directoryMode: 0o700, durable: false)
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
