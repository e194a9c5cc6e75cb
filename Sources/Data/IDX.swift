import Foundation

/// An unsigned-byte IDX array (the MNIST family's format): its dimensions and row-major bytes.
public struct IDXArray: Sendable, Equatable {
    public var dimensions: [Int]
    public var bytes: [UInt8]

    public init(dimensions: [Int], bytes: [UInt8]) {
        self.dimensions = dimensions
        self.bytes = bytes
    }
}

/// Reads and writes IDX files (MNIST, Fashion-MNIST, EMNIST), gzip'd or raw: a 4-byte magic
/// (two zero bytes, a dtype byte — 0x08 for unsigned bytes — and the number of dimensions),
/// the dimensions as big-endian 32-bit integers, then the payload.
public enum IDX {
    /// The magic of label files (`0x00000801`: ubyte, one dimension).
    public static let labelsMagic: UInt32 = 0x0000_0801
    /// The magic of image files (`0x00000803`: ubyte, three dimensions).
    public static let imagesMagic: UInt32 = 0x0000_0803

    /// Reads an IDX file (gzip'd or not). `rank`, when given, is the number of dimensions required.
    public static func read(_ url: URL, rank: Int? = nil) throws -> IDXArray {
        let data = try readFile(url)
        let (dims, offset) = try parse(data, name: url.path, rank: rank)
        return IDXArray(dimensions: dims, bytes: [UInt8](data[(data.startIndex + offset)...]))
    }

    /// Reads a label file (magic 0x0801): one byte per sample.
    public static func readLabels(_ url: URL) throws -> [UInt8] {
        try read(url, rank: 1).bytes
    }

    /// Reads an image file (magic 0x0803): `[count, rows, columns]`.
    public static func readImages(_ url: URL) throws -> IDXArray {
        try read(url, rank: 3)
    }

    /// An IDX file's bytes for `array` (not compressed; pass them to `Gzip.compress` for `.gz`).
    public static func encode(_ array: IDXArray) -> Data {
        var data = Data([0, 0, 0x08, UInt8(truncatingIfNeeded: array.dimensions.count)])
        for d in array.dimensions {
            let v = UInt32(truncatingIfNeeded: d)
            data.append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)])
        }
        data.append(contentsOf: array.bytes)
        return data
    }

    /// The file's bytes, inflated when they are gzip'd.
    static func readFile(_ url: URL) throws -> Data {
        let raw = try readWholeFile(url)
        return Gzip.isGzip(raw) ? try Gzip.decompress(raw, name: url.path) : raw
    }

    /// Checks the header of IDX bytes and returns the dimensions and where the payload starts.
    static func parse(_ data: Data, name: String, rank: Int?) throws -> (dimensions: [Int], payloadOffset: Int) {
        try data.withUnsafeBytes { raw in
            guard let header = try parseHeader(raw, name: name, rank: rank) else {
                throw DataError.truncated(path: name, expectedBytes: headerSize(raw), actualBytes: raw.count)
            }
            try checkPayload(header, actual: raw.count - header.size, name: name)
            return (header.dimensions, header.size)
        }
    }

    struct Header {
        var dimensions: [Int]
        var size: Int           // bytes of header
        var payload: Int        // bytes of payload the dimensions describe
    }

    /// The header's size as far as `bytes` tell (4 until the rank byte is there).
    static func headerSize(_ bytes: UnsafeRawBufferPointer) -> Int {
        bytes.count >= 4 ? 4 + 4 * Int(bytes[3]) : 4
    }

    /// Parses the header at the start of `bytes`: nil while more bytes are needed, an error when it is wrong.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, name: String, rank: Int?) throws -> Header? {
        guard bytes.count >= 4 else { return nil }
        let expectedMagic = rank.map { String(format: "0x%08x", 0x0800 + $0) } ?? "0x000008NN"
        let magic = UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3])
        let found = String(format: "0x%08x", magic)
        let dtype = bytes[2]
        let ndim = Int(bytes[3])
        guard bytes[0] == 0, bytes[1] == 0, [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E].contains(dtype) else {
            throw DataError.badMagic(path: name, expected: expectedMagic, found: found)
        }
        guard dtype == 0x08 else {
            throw DataError.unsupportedFormat(path: name, reason: "IDX dtype 0x\(String(dtype, radix: 16)) (only unsigned bytes, 0x08, are read)")
        }
        if let rank, ndim != rank {
            throw DataError.badMagic(path: name, expected: expectedMagic, found: found)
        }
        let size = 4 + 4 * ndim
        guard bytes.count >= size else { return nil }
        var dims: [Int] = []
        var total = 1
        for i in 0..<ndim {
            let p = 4 + 4 * i
            let d = Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
            dims.append(d)
            let (product, overflow) = total.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int(Int32.max) * 16 else {
                throw DataError.badDimensions(path: name, reason: "dimensions \(dims)… describe more data than any IDX file holds")
            }
            total = product
        }
        return Header(dimensions: dims, size: size, payload: total)
    }

    /// Compares the payload that followed a header with what its dimensions describe.
    static func checkPayload(_ header: Header, actual: Int, name: String) throws {
        if actual < header.payload {
            throw DataError.truncated(path: name, expectedBytes: header.size + header.payload, actualBytes: header.size + actual)
        }
        if actual > header.payload {
            throw DataError.badDimensions(path: name, reason: "dimensions \(header.dimensions) describe \(header.payload) bytes, but \(actual) follow the header")
        }
    }

    /// Streams an IDX file through `visit`: its header once, then its payload in chunks (inflated
    /// on the fly when gzip'd), so a large file is converted without holding its inflated bytes.
    static func stream(_ url: URL, rank: Int?, header visitHeader: (Header) throws -> Void,
                       payload visitPayload: (_ offset: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws {
        let raw = try readWholeFile(url)
        var header: Header?
        var pending: [UInt8] = []       // header bytes gathered across chunks
        var received = 0
        func consume(_ chunk: UnsafeRawBufferPointer) throws {
            var chunk = chunk
            if header == nil {
                let needed = pending.count < 4 ? 4 : 4 + 4 * Int(pending[3])
                let take = min(needed - pending.count, chunk.count)
                pending.append(contentsOf: chunk.prefix(take))
                chunk = UnsafeRawBufferPointer(rebasing: chunk.dropFirst(take))
                header = try pending.withUnsafeBytes { try parseHeader($0, name: url.path, rank: rank) }
                if let h = header { try visitHeader(h) } else { if !chunk.isEmpty { try consume(chunk) }; return }
            }
            guard let h = header, !chunk.isEmpty else { return }
            guard chunk.count <= h.payload - received else {
                try checkPayload(h, actual: received + chunk.count, name: url.path)
                return
            }
            try visitPayload(received, chunk)
            received += chunk.count
        }
        try raw.withUnsafeBytes { bytes in
            if Gzip.isGzip(raw) {
                try Zlib.inflateChunks(bytes, windowBits: 15 + 32, multipleMembers: true, name: url.path, sink: consume)
            } else {
                try consume(bytes)
            }
        }
        guard let h = header else {
            throw DataError.truncated(path: url.path, expectedBytes: pending.count < 4 ? 4 : 4 + 4 * Int(pending[3]), actualBytes: pending.count)
        }
        try checkPayload(h, actual: received, name: url.path)
    }
}

/// The whole file, or a `DataError` naming it.
func readWholeFile(_ url: URL, hint: String = "check the path") throws -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
        throw DataError.fileNotFound(path: url.path, hint: hint)
    }
    guard !isDirectory.boolValue else { throw DataError.unreadable(path: url.path, reason: "it is a directory") }
    do {
        return try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
        throw DataError.unreadable(path: url.path, reason: error.localizedDescription)
    }
}
