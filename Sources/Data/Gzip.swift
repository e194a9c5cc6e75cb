import CZlib
import Foundation

/// gzip through zlib: what `.gz` IDX files need, and what tests need to make them.
public enum Gzip {
    /// Whether `data` starts with the gzip magic bytes 1f 8b.
    public static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1f && data[data.startIndex + 1] == 0x8b
    }

    /// Inflates gzip (or zlib) data; concatenated gzip members are joined, as `gunzip` does.
    /// `name` labels errors (usually the file path).
    public static func decompress(_ data: Data, name: String = "<gzip data>") throws -> Data {
        // ISIZE, the last four bytes of a gzip member, is the uncompressed size mod 2^32: a good first
        // guess for the buffer, capped by deflate's best ratio so a corrupt trailer cannot ask for too much.
        var hint = data.count * 4
        if isGzip(data), data.count >= 18 {
            let end = data.endIndex
            let isize = Int(data[end - 4]) | Int(data[end - 3]) << 8 | Int(data[end - 2]) << 16 | Int(data[end - 1]) << 24
            hint = min(max(isize, 64), data.count * 1032)
        }
        return try data.withUnsafeBytes { input in
            try Zlib.inflate(input, windowBits: 15 + 32, sizeHint: hint, multipleMembers: true, name: name)
        }
    }

    /// Compresses `data` as a single gzip member (`level` 0–9).
    public static func compress(_ data: Data, level: Int32 = 6) throws -> Data {
        try data.withUnsafeBytes { input in
            try Zlib.deflate(input, level: level, windowBits: 15 + 16, name: "<gzip data>")
        }
    }
}

/// The zlib calls shared by gzip and zip: one loop each for inflate and deflate, and CRC32.
enum Zlib {
    /// Inflates all of `input` into one buffer. `windowBits` picks the wrapper: 15+32 gzip/zlib
    /// auto-detect, -15 raw deflate. With `exactSize` the output must be exactly that long (zip entries know their size).
    static func inflate(_ input: UnsafeRawBufferPointer, windowBits: Int32, sizeHint: Int, exactSize: Int? = nil,
                        multipleMembers: Bool = false, name: String) throws -> Data {
        var output = Data()
        output.reserveCapacity(exactSize ?? sizeHint)
        try inflateChunks(input, windowBits: windowBits, limit: exactSize, multipleMembers: multipleMembers, name: name) { chunk in
            output.append(contentsOf: chunk)
        }
        if let exactSize, output.count != exactSize {
            throw DataError.corruptCompressedData(path: name, reason: "inflates to \(output.count) bytes, its header announces \(exactSize)")
        }
        return output
    }

    /// Inflates all of `input`, handing the output to `sink` a chunk at a time (so a reader can convert
    /// it while it is in cache instead of keeping the whole inflated file). More than `limit` bytes is an error.
    static func inflateChunks(_ input: UnsafeRawBufferPointer, windowBits: Int32, limit: Int? = nil, multipleMembers: Bool = false,
                              name: String, chunkSize: Int = 1 << 20, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        func corrupt(_ reason: String) -> DataError { .corruptCompressedData(path: name, reason: reason) }
        guard let base = input.baseAddress?.assumingMemoryBound(to: Bytef.self), input.count > 0 else { throw corrupt("empty input") }
        var stream = z_stream()
        guard ferry_inflateInit2(&stream, windowBits) == Z_OK else { throw corrupt("zlib could not start inflating") }
        defer { inflateEnd(&stream) }

        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 64)
        defer { scratch.deallocate() }
        let out = scratch.baseAddress!.assumingMemoryBound(to: Bytef.self)   // allocate never returns an empty buffer here
        var produced = 0
        var consumed = 0            // bytes of `input` handed to zlib so far
        while true {
            if stream.avail_in == 0 && consumed < input.count {
                let chunk = min(input.count - consumed, Int(UInt32.max))
                stream.next_in = UnsafeMutablePointer(mutating: base + consumed)
                stream.avail_in = uInt(chunk)
                consumed += chunk
            }
            stream.next_out = out
            stream.avail_out = uInt(chunkSize)
            let status = CZlib.inflate(&stream, Z_NO_FLUSH)
            let wrote = chunkSize - Int(stream.avail_out)
            if wrote > 0 {
                produced += wrote
                if let limit, produced > limit { throw corrupt("inflates to more than the \(limit) bytes its header announces") }
                try sink(UnsafeRawBufferPointer(start: scratch.baseAddress, count: wrote))
            }
            let remaining = Int(stream.avail_in) + (input.count - consumed)
            switch status {
            case Z_OK:
                continue
            case Z_STREAM_END:
                // Another gzip member may follow (gzip -c a b > ab.gz); anything else after the end is ignored, as gunzip does.
                if multipleMembers, remaining >= 2 {
                    let next = input.count - remaining
                    if input[next] == 0x1f && input[next + 1] == 0x8b {
                        guard inflateReset(&stream) == Z_OK else { throw corrupt("zlib could not restart") }
                        continue
                    }
                }
                return
            case Z_BUF_ERROR where remaining == 0 && wrote == 0:
                throw corrupt("the compressed stream ends early after \(input.count) bytes (truncated file)")
            case Z_BUF_ERROR:
                continue
            default:
                let message = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                throw corrupt(message)
            }
        }
    }

    /// Deflates all of `input` at `level`; `windowBits` 15+16 writes gzip, -15 raw deflate.
    static func deflate(_ input: UnsafeRawBufferPointer, level: Int32, windowBits: Int32, name: String) throws -> Data {
        var stream = z_stream()
        guard ferry_deflateInit2(&stream, level, windowBits) == Z_OK else {
            throw DataError.invalidArgument("\(name): zlib could not start deflating (level \(level))")
        }
        defer { deflateEnd(&stream) }
        var output = Data(count: Int(deflateBound(&stream, uLong(input.count))) + 64)
        var produced = 0
        var consumed = 0
        let base = input.baseAddress.map { $0.assumingMemoryBound(to: Bytef.self) }
        while true {
            if stream.avail_in == 0 && consumed < input.count, let base {
                let chunk = min(input.count - consumed, Int(UInt32.max))
                stream.next_in = UnsafeMutablePointer(mutating: base + consumed)
                stream.avail_in = uInt(chunk)
                consumed += chunk
            }
            if produced == output.count { output.count *= 2 }
            let finishing = consumed == input.count
            let status: Int32 = output.withUnsafeMutableBytes { out in
                let room = min(out.count - produced, Int(UInt32.max))
                stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self) + produced
                stream.avail_out = uInt(room)
                let status = CZlib.deflate(&stream, finishing ? Z_FINISH : Z_NO_FLUSH)
                produced += room - Int(stream.avail_out)
                return status
            }
            if status == Z_STREAM_END { break }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                throw DataError.invalidArgument("\(name): zlib deflate failed with status \(status)")
            }
        }
        output.count = produced
        return output
    }

    /// CRC32 of `bytes` (as zip and gzip use it).
    static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CZlib.crc32(0, nil, 0)
        guard var p = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return UInt32(crc) }
        var left = bytes.count
        while left > 0 {
            let chunk = min(left, 1 << 30)
            crc = CZlib.crc32(crc, p, uInt(chunk))
            p += chunk
            left -= chunk
        }
        return UInt32(truncatingIfNeeded: crc)
    }
}
