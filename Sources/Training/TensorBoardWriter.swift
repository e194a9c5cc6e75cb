import Foundation

/// Writes TensorBoard scalar summaries (`events.out.tfevents.<time>.<host>`) without TensorFlow:
/// TFRecord framing (length, masked CRC32C of the length, `Event` protobuf bytes, masked CRC32C
/// of those) around hand-encoded `Event{wall_time, step, summary{value{tag, simple_value}}}`.
public final class TensorBoardWriter {
    public let url: URL
    private let handle: FileHandle

    /// Creates the events file in `directory` and writes the file-version record.
    public init(directory: URL, wallTime: Double = Date().timeIntervalSince1970) throws {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        var name = "events.out.tfevents.\(Int(wallTime)).\(host)"
        var n = 1
        while FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) {   // a resume within the same second
            name = "events.out.tfevents.\(Int(wallTime)).\(host).\(n)"
            n += 1
        }
        url = directory.appendingPathComponent(name)
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let h = try? FileHandle(forWritingTo: url) else {
            throw TrainingError.io(path: url.path, reason: "cannot create the TensorBoard events file")
        }
        handle = h
        var event = ProtoWriter()
        event.double(field: 1, wallTime)
        event.string(field: 3, "brain.Event:2")
        write(record: event.bytes)
    }

    deinit { try? handle.close() }

    /// Adds scalars under `tags` at `step` (one Event holding them all).
    public func add(scalars: [(tag: String, value: Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) {
        guard !scalars.isEmpty else { return }
        var summary = ProtoWriter()
        for (tag, value) in scalars {
            var v = ProtoWriter()
            v.string(field: 1, tag)
            v.float(field: 2, Float(value))
            summary.message(field: 1, v.bytes)
        }
        var event = ProtoWriter()
        event.double(field: 1, wallTime)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        event.message(field: 5, summary.bytes)
        write(record: event.bytes)
    }

    /// Pushes what was written to the disk (TensorBoard reads the file while it grows).
    public func flush() { try? handle.synchronize() }

    private func write(record data: [UInt8]) {
        try? handle.write(contentsOf: TFRecord.frame(data))
    }
}

/// TFRecord framing: `uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data)`, little-endian.
public enum TFRecord {
    public static func frame(_ data: [UInt8]) -> Data {
        var out = Data(capacity: data.count + 16)
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        out.append(contentsOf: lengthBytes)
        var lengthCRC = maskedCRC32C(lengthBytes).littleEndian
        withUnsafeBytes(of: &lengthCRC) { out.append(contentsOf: $0) }
        out.append(contentsOf: data)
        var dataCRC = maskedCRC32C(data).littleEndian
        withUnsafeBytes(of: &dataCRC) { out.append(contentsOf: $0) }
        return out
    }

    /// CRC32C rotated right by 15 plus a constant, as TFRecord stores it.
    public static func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
        let crc = crc32c(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }
}

/// Just enough protobuf encoding for TensorBoard events.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func tag(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }
    mutating func varint(field: Int, _ v: UInt64) { tag(field, 0); rawVarint(v) }
    mutating func double(field: Int, _ v: Double) {
        tag(field, 1)
        var bits = v.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { bytes.append(contentsOf: $0) }
    }
    mutating func float(field: Int, _ v: Float) {
        tag(field, 5)
        var bits = v.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { bytes.append(contentsOf: $0) }
    }
    mutating func message(field: Int, _ payload: [UInt8]) {
        tag(field, 2)
        rawVarint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }
    mutating func string(field: Int, _ s: String) { message(field: field, Array(s.utf8)) }
}
