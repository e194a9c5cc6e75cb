import Foundation

/// The zip subset `.npz` needs: read an archive's entries (stored or deflated, ZIP64 included,
/// every CRC32 checked) and write one. The central directory is the source of truth for sizes
/// (numpy writes ZIP64 local headers whose sizes are placeholders).
enum ZipArchive {
    struct Entry {
        var name: String
        var method: UInt16
        var flags: UInt16
        var crc: UInt32
        var compressedSize: Int
        var size: Int
        var localHeaderOffset: Int
    }

    static let maxUInt32 = 0xFFFF_FFFF

    /// The entries and their contents, in the order of the central directory.
    static func read(_ data: Data, name: String) throws -> [(name: String, contents: Data)] {
        try data.withUnsafeBytes { raw in
            let reader = ByteReader(raw, name: name)
            let entries = try centralDirectory(reader)
            var out: [(String, Data)] = []
            for entry in entries where !entry.name.hasSuffix("/") {
                out.append((entry.name, try contents(of: entry, reader)))
            }
            return out
        }
    }

    private static func centralDirectory(_ r: ByteReader) throws -> [Entry] {
        // The end-of-central-directory record sits in the last 22 bytes plus at most a 64 KiB comment.
        guard r.count >= 22 else { throw r.corrupt("\(r.count) bytes is too short for a zip archive") }
        var eocd = -1
        var p = r.count - 22
        let lowest = max(0, r.count - 22 - 0xFFFF)
        while p >= lowest {
            if r.u32(p) == 0x0605_4b50, p + 22 + Int(r.u16(p + 20)) <= r.count { eocd = p; break }
            p -= 1
        }
        guard eocd >= 0 else {
            if r.count >= 4, r.u32(0) == 0x0403_4b50 {
                throw r.corrupt("no end of central directory (the archive is truncated)")
            }
            throw DataError.badMagic(path: r.name, expected: "a zip archive (PK\\x03\\x04)", found: r.prefixDescription)
        }
        var entryCount = Int(r.u16(eocd + 10))
        var directorySize = Int(r.u32(eocd + 12))
        var directoryOffset = Int(r.u32(eocd + 16))
        if entryCount == 0xFFFF || directorySize == maxUInt32 || directoryOffset == maxUInt32 {
            // ZIP64: a locator just before the record points at the ZIP64 end record.
            let locator = eocd - 20
            guard locator >= 0, r.u32(locator) == 0x0706_4b50 else { throw r.corrupt("ZIP64 sizes without a ZIP64 locator") }
            let record = try r.int64(locator + 8)
            guard record >= 0, record <= r.count - 56, r.u32(record) == 0x0606_4b50 else {
                throw r.corrupt("ZIP64 end of central directory is missing")
            }
            entryCount = try r.int64(record + 32)
            directorySize = try r.int64(record + 40)
            directoryOffset = try r.int64(record + 48)
        }
        guard directoryOffset >= 0, directorySize >= 0, directoryOffset <= r.count, directorySize <= r.count - directoryOffset else {
            throw r.corrupt("central directory at \(directoryOffset) (+\(directorySize) bytes) lies outside the \(r.count)-byte file")
        }
        var entries: [Entry] = []
        var q = directoryOffset
        for index in 0..<entryCount {
            guard q + 46 <= r.count, r.u32(q) == 0x0201_4b50 else {
                throw r.corrupt("central directory entry \(index) is missing or damaged")
            }
            let nameLength = Int(r.u16(q + 28)), extraLength = Int(r.u16(q + 30)), commentLength = Int(r.u16(q + 32))
            guard q + 46 + nameLength + extraLength + commentLength <= r.count else {
                throw r.corrupt("central directory entry \(index) runs past the end of the file")
            }
            let name = String(decoding: r.bytes(q + 46, nameLength), as: UTF8.self)
            var entry = Entry(name: name, method: r.u16(q + 10), flags: r.u16(q + 8), crc: r.u32(q + 16),
                              compressedSize: Int(r.u32(q + 20)), size: Int(r.u32(q + 24)),
                              localHeaderOffset: Int(r.u32(q + 42)))
            try applyZip64Extra(&entry, r, at: q + 46 + nameLength, length: extraLength)
            entries.append(entry)
            q += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    /// Replaces 0xFFFFFFFF sizes and offset with the 64-bit values of the ZIP64 extra field (id 1).
    private static func applyZip64Extra(_ e: inout Entry, _ r: ByteReader, at start: Int, length: Int) throws {
        guard e.size == maxUInt32 || e.compressedSize == maxUInt32 || e.localHeaderOffset == maxUInt32 else { return }
        var p = start
        while p + 4 <= start + length {
            let id = r.u16(p), size = Int(r.u16(p + 2))
            if id == 0x0001 {
                var field = p + 4
                let end = field + size
                func next() throws -> Int {
                    guard field + 8 <= end else { throw r.corrupt("entry \(e.name): ZIP64 extra field too short") }
                    defer { field += 8 }
                    return try r.int64(field)
                }
                if e.size == maxUInt32 { e.size = try next() }
                if e.compressedSize == maxUInt32 { e.compressedSize = try next() }
                if e.localHeaderOffset == maxUInt32 { e.localHeaderOffset = try next() }
                return
            }
            p += 4 + size
        }
        throw r.corrupt("entry \(e.name): 32-bit sizes are 0xFFFFFFFF but there is no ZIP64 extra field")
    }

    private static func contents(of e: Entry, _ r: ByteReader) throws -> Data {
        guard e.flags & 1 == 0 else {
            throw DataError.unsupportedFormat(path: r.name, reason: "entry \(e.name) is encrypted")
        }
        let h = e.localHeaderOffset
        // `h` may be a ZIP64 value up to Int.max: compare without adding to it.
        guard h >= 0, h <= r.count - 30, r.u32(h) == 0x0403_4b50 else {
            throw r.corrupt("entry \(e.name): no local header at offset \(h)")
        }
        let start = h + 30 + Int(r.u16(h + 26)) + Int(r.u16(h + 28))
        guard start <= r.count, e.compressedSize >= 0, e.size >= 0 else {
            throw r.corrupt("entry \(e.name): its local header runs past the end of the file")
        }
        guard e.compressedSize <= r.count - start else {
            let (end, overflow) = start.addingReportingOverflow(e.compressedSize)
            throw DataError.truncated(path: r.name, expectedBytes: overflow ? Int.max : end, actualBytes: r.count)
        }
        let stored = UnsafeRawBufferPointer(rebasing: r.raw[start..<(start + e.compressedSize)])
        let contents: Data
        switch e.method {
        case 0:
            guard e.compressedSize == e.size else {
                throw r.corrupt("stored entry \(e.name) has compressed size \(e.compressedSize) but size \(e.size)")
            }
            contents = Data(stored)
        case 8:
            // Deflate cannot expand more than about 1032:1; a bigger claim is a damaged header, not a reason to allocate.
            guard e.size / 1032 <= e.compressedSize + 1 else {
                throw r.corrupt("entry \(e.name) claims \(e.size) bytes from \(e.compressedSize) compressed bytes")
            }
            do {
                contents = try Zlib.inflate(stored, windowBits: -15, sizeHint: e.size, exactSize: e.size, name: r.name)
            } catch let DataError.corruptCompressedData(path, reason) {
                throw DataError.corruptCompressedData(path: path, reason: "entry \(e.name): \(reason)")
            }
        default:
            throw DataError.unsupportedFormat(path: r.name, reason: "entry \(e.name) uses compression method \(e.method) (only stored, 0, and deflate, 8, are read)")
        }
        let crc = contents.withUnsafeBytes { Zlib.crc32($0) }
        guard crc == e.crc else {
            throw DataError.checksumMismatch(path: r.name, entry: e.name, expected: e.crc, actual: crc)
        }
        return contents
    }

    // MARK: writing

    /// A zip archive of `entries`, each stored or deflated. Records switch to ZIP64 past
    /// `zip64Threshold` bytes (4 GiB; tests lower it to exercise that path).
    static func write(_ entries: [(name: String, contents: Data)], deflate: Bool, name: String,
                      zip64Threshold: Int = 0xFFFF_FFFF) throws -> Data {
        var out = Data()
        var central = Data()
        let dosTime: UInt16 = 0, dosDate: UInt16 = (0 << 9) | (1 << 5) | 1   // 1980-01-01, for reproducible files
        for entry in entries {
            let nameBytes = Array(entry.name.utf8)
            let crc = entry.contents.withUnsafeBytes { Zlib.crc32($0) }
            let body = deflate ? try entry.contents.withUnsafeBytes { try Zlib.deflate($0, level: 6, windowBits: -15, name: name) } : entry.contents
            let offset = out.count
            let big = entry.contents.count >= zip64Threshold || body.count >= zip64Threshold
            let bigOffset = offset >= zip64Threshold
            let method: UInt16 = deflate ? 8 : 0
            let version: UInt16 = (big || bigOffset) ? 45 : 20

            // Local header: with ZIP64 both sizes live in the extra field.
            var local = Data()
            local.le32(0x0403_4b50); local.le16(version); local.le16(0x0800); local.le16(method)
            local.le16(dosTime); local.le16(dosDate); local.le32(crc)
            local.le32(big ? UInt32.max : UInt32(body.count)); local.le32(big ? UInt32.max : UInt32(entry.contents.count))
            local.le16(UInt16(nameBytes.count)); local.le16(big ? 20 : 0)
            local.append(contentsOf: nameBytes)
            if big { local.le16(1); local.le16(16); local.le64(UInt64(entry.contents.count)); local.le64(UInt64(body.count)) }
            out.append(local)
            out.append(body)

            var extra = Data()
            if big { extra.le64(UInt64(entry.contents.count)); extra.le64(UInt64(body.count)) }
            if bigOffset { extra.le64(UInt64(offset)) }
            central.le32(0x0201_4b50); central.le16(0x0300 | 45); central.le16(version); central.le16(0x0800)
            central.le16(method); central.le16(dosTime); central.le16(dosDate); central.le32(crc)
            central.le32(big ? UInt32.max : UInt32(body.count)); central.le32(big ? UInt32.max : UInt32(entry.contents.count))
            central.le16(UInt16(nameBytes.count)); central.le16(extra.isEmpty ? 0 : UInt16(4 + extra.count)); central.le16(0)
            central.le16(0); central.le16(0); central.le32(0o100644 << 16)
            central.le32(bigOffset ? UInt32.max : UInt32(offset))
            central.append(contentsOf: nameBytes)
            if !extra.isEmpty { central.le16(1); central.le16(UInt16(extra.count)); central.append(extra) }
        }
        let directoryOffset = out.count
        out.append(central)
        let needs64 = entries.count >= 0xFFFF || central.count >= zip64Threshold || directoryOffset >= zip64Threshold
        if needs64 {
            let record = out.count
            out.le32(0x0606_4b50); out.le64(44); out.le16(0x0300 | 45); out.le16(45); out.le32(0); out.le32(0)
            out.le64(UInt64(entries.count)); out.le64(UInt64(entries.count))
            out.le64(UInt64(central.count)); out.le64(UInt64(directoryOffset))
            out.le32(0x0706_4b50); out.le32(0); out.le64(UInt64(record)); out.le32(1)
        }
        out.le32(0x0605_4b50); out.le16(0); out.le16(0)
        let count16 = needs64 ? UInt16.max : UInt16(entries.count)
        out.le16(count16); out.le16(count16)
        out.le32(needs64 ? UInt32.max : UInt32(central.count))
        out.le32(needs64 ? UInt32.max : UInt32(directoryOffset))
        out.le16(0)
        return out
    }
}

/// Bounds-checked little-endian reads over a file's bytes; callers check ranges before reading.
struct ByteReader {
    let raw: UnsafeRawBufferPointer
    let name: String
    init(_ raw: UnsafeRawBufferPointer, name: String) { self.raw = raw; self.name = name }

    var count: Int { raw.count }
    func u16(_ p: Int) -> UInt16 { UInt16(raw[p]) | UInt16(raw[p + 1]) << 8 }
    func u32(_ p: Int) -> UInt32 { UInt32(u16(p)) | UInt32(u16(p + 2)) << 16 }
    func u64(_ p: Int) -> UInt64 { UInt64(u32(p)) | UInt64(u32(p + 4)) << 32 }
    func int64(_ p: Int) throws -> Int {
        guard p + 8 <= count else { throw corrupt("a 64-bit field at \(p) runs past the end") }
        let v = u64(p)
        guard v <= UInt64(Int.max) else { throw corrupt("a 64-bit field at \(p) is out of range") }
        return Int(v)
    }
    func bytes(_ p: Int, _ n: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: raw[p..<(p + n)]) }
    func corrupt(_ reason: String) -> DataError { .corruptArchive(path: name, reason: reason) }
    var prefixDescription: String {
        let n = min(4, count)
        return n == 0 ? "an empty file" : (0..<n).map { String(format: "%02x", raw[$0]) }.joined(separator: " ")
    }
}

extension Data {
    mutating func le16(_ v: UInt16) { append(contentsOf: [UInt8(v & 0xff), UInt8(v >> 8)]) }
    mutating func le32(_ v: UInt32) { le16(UInt16(v & 0xffff)); le16(UInt16(v >> 16)) }
    mutating func le64(_ v: UInt64) { le32(UInt32(v & 0xffff_ffff)); le32(UInt32(v >> 32)) }
}
