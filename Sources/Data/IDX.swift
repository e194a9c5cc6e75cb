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
        let bytes = data.startIndex
        let expectedMagic = rank.map { String(format: "0x%08x", 0x0800 + $0) } ?? "0x000008NN"
        guard data.count >= 4 else {
            throw DataError.truncated(path: name, expectedBytes: 4, actualBytes: data.count)
        }
        let magic = UInt32(data[bytes]) << 24 | UInt32(data[bytes + 1]) << 16 | UInt32(data[bytes + 2]) << 8 | UInt32(data[bytes + 3])
        let found = String(format: "0x%08x", magic)
        guard data[bytes] == 0, data[bytes + 1] == 0 else {
            throw DataError.badMagic(path: name, expected: expectedMagic, found: found)
        }
        let dtype = data[bytes + 2]
        let ndim = Int(data[bytes + 3])
        guard [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E].contains(dtype) else {
            throw DataError.badMagic(path: name, expected: expectedMagic, found: found)
        }
        guard dtype == 0x08 else {
            throw DataError.unsupportedFormat(path: name, reason: "IDX dtype 0x\(String(dtype, radix: 16)) (only unsigned bytes, 0x08, are read)")
        }
        if let rank, ndim != rank {
            throw DataError.badMagic(path: name, expected: expectedMagic, found: found)
        }
        let headerSize = 4 + 4 * ndim
        guard data.count >= headerSize else {
            throw DataError.truncated(path: name, expectedBytes: headerSize, actualBytes: data.count)
        }
        var dims: [Int] = []
        var total = 1
        for i in 0..<ndim {
            let p = bytes + 4 + 4 * i
            let d = Int(data[p]) << 24 | Int(data[p + 1]) << 16 | Int(data[p + 2]) << 8 | Int(data[p + 3])
            dims.append(d)
            let (product, overflow) = total.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int(Int32.max) * 16 else {
                throw DataError.badDimensions(path: name, reason: "dimensions \(dims)… describe more data than any IDX file holds")
            }
            total = product
        }
        let payload = data.count - headerSize
        if payload < total {
            throw DataError.truncated(path: name, expectedBytes: headerSize + total, actualBytes: data.count)
        }
        if payload > total {
            throw DataError.badDimensions(path: name, reason: "dimensions \(dims) describe \(total) bytes, but \(payload) follow the header")
        }
        return (dims, headerSize)
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
