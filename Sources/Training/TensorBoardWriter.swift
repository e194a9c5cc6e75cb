import Foundation
import System
import TensorCore

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

    /// Before a run resumes from a checkpoint: drops, from the events files already in
    /// `directory`, the scalars that the resumed run will write again — every scalar after the
    /// checkpoint's global step (epoch scalars stand at the global step of their epoch's last batch,
    /// one x-axis for all) — so TensorBoard draws each point once, as `metrics.jsonl` keeps each
    /// epoch once. Files are rewritten atomically; a record that does not parse ends the file there
    /// (what follows a torn write is dropped too).
    public static func dropScalars(in directory: URL, afterStep step: Int) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names.sorted() where name.hasPrefix("events.out.tfevents.") {
            let url = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: url.path) else { continue }
            var kept = Data(capacity: data.count)
            var dropped = false
            for record in TFRecord.records(in: data) {
                guard let record else { dropped = true; break }
                if let (eventStep, _) = EventSummary.stepAndFirstTag(record) {
                    if eventStep > step { dropped = true; continue }
                }
                kept.append(TFRecord.frame(record))
            }
            guard dropped else { continue }
            do { try AtomicFile.write(kept, to: url.path) } catch {
                throw TrainingError.io(path: url.path, reason: "cannot rewrite the TensorBoard events file: \(error)")
            }
        }
    }
}

/// The step and first tag of a scalar `Event` (nil for an event without a summary).
enum EventSummary {
    static func stepAndFirstTag(_ event: [UInt8]) -> (Int, String)? {
        var step = 0
        var tag: String?
        for field in ProtoReader.fields(event) {
            switch (field.number, field.payload) {
            case (2, .varint(let v)): step = Int(truncatingIfNeeded: v)
            case (5, .bytes(let summary)):
                for value in ProtoReader.fields(summary) where value.number == 1 {
                    guard case .bytes(let v) = value.payload else { continue }
                    for f in ProtoReader.fields(v) where f.number == 1 {
                        if case .bytes(let t) = f.payload, tag == nil { tag = String(decoding: t, as: UTF8.self) }
                    }
                }
            default: break
            }
        }
        return tag.map { (step, $0) }
    }
}

/// Just enough protobuf decoding to read back the events this file writes.
enum ProtoReader {
    enum Payload { case varint(UInt64), bytes([UInt8]), fixed }
    struct Field { var number: Int; var payload: Payload }

    /// The fields of a message; stops at the first malformed one.
    static func fields(_ buf: [UInt8]) -> [Field] {
        var out: [Field] = []
        var i = 0
        func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while i < buf.count && shift < 64 {
                let b = buf[i]; i += 1
                result |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }
        while i < buf.count {
            guard let key = varint() else { break }
            let number = Int(key >> 3)
            switch key & 7 {
            case 0:
                guard let v = varint() else { return out }
                out.append(Field(number: number, payload: .varint(v)))
            case 1:
                guard i + 8 <= buf.count else { return out }
                i += 8; out.append(Field(number: number, payload: .fixed))
            case 5:
                guard i + 4 <= buf.count else { return out }
                i += 4; out.append(Field(number: number, payload: .fixed))
            case 2:
                guard let n = varint(), n <= UInt64(buf.count - i) else { return out }
                out.append(Field(number: number, payload: .bytes(Array(buf[i..<i + Int(n)]))))
                i += Int(n)
            default:
                return out
            }
        }
        return out
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

    /// The records of a TFRecord file, each checked against both CRCs; nil for the first one that
    /// is torn or corrupt (and nothing after it).
    public static func records(in data: Data) -> [[UInt8]?] {
        let bytes = [UInt8](data)
        var out: [[UInt8]?] = []
        var i = 0
        func le<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for k in 0..<MemoryLayout<T>.size { v |= T(bytes[at + k]) << (8 * k) }
            return v
        }
        while i < bytes.count {
            guard i + 12 <= bytes.count else { out.append(nil); break }
            let length = le(i, UInt64.self)
            guard le(i + 8, UInt32.self) == maskedCRC32C(Array(bytes[i..<i + 8])),
                  length <= UInt64(bytes.count - i - 16) else { out.append(nil); break }
            let start = i + 12, end = start + Int(length)
            let record = Array(bytes[start..<end])
            guard le(end, UInt32.self) == maskedCRC32C(record) else { out.append(nil); break }
            out.append(record)
            i = end + 4
        }
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
