import Foundation
import System

/// The safetensors format (what `safetensors.torch.load_file` reads): an 8-byte little-endian
/// header length, a JSON header of dtype/shape/data_offsets per tensor plus `__metadata__`, then
/// the tensors' bytes back to back. Tensors are ordered by element size (largest first), then by
/// name, so each starts aligned to its element size; the header is padded so data starts on 8.
public enum SafeTensors {
    static func code(_ d: DType) -> String {
        switch d {
        case .float32: return "F32"
        case .float64: return "F64"
        case .int64: return "I64"
        case .bool: return "BOOL"
        }
    }

    static func dtype(_ code: String) -> (DType, Int)? {
        switch code {
        case "F32": return (.float32, 4)
        case "F64": return (.float64, 8)
        case "I64": return (.int64, 8)
        case "BOOL": return (.bool, 1)
        case "I32": return (.int64, 4)
        case "U8": return (.int64, 1)
        case "F16": return (.float32, 2)
        case "BF16": return (.float32, 2)
        default: return nil
        }
    }

    /// Serialises tensors and metadata to bytes.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = ["format": "pt"]) -> Data {
        let names = tensors.keys.sorted { a, b in
            let sa = tensors[a]!.dtype.byteSize, sb = tensors[b]!.dtype.byteSize
            return sa != sb ? sa > sb : a < b
        }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        var blobs: [Tensor] = []
        for name in names {
            let t = tensors[name]!.cpu().contiguous()   // a checkpoint from a GPU run loads anywhere
            let size = t.numel * t.dtype.byteSize
            header[name] = ["dtype": code(t.dtype), "shape": t.shape, "data_offsets": [offset, offset + size]] as [String: Any]
            offset += size
            blobs.append(t)
        }
        var json = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data("{}".utf8)
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { data.append(contentsOf: $0) }
        data.append(json)
        for t in blobs { data.append(Data(bytes: t.storage.raw + t.offset * t.dtype.byteSize, count: t.numel * t.dtype.byteSize)) }
        return data
    }

    /// Writes a file atomically: a temporary name, fsync, then rename (a crash never leaves a torn file).
    public static func write(_ tensors: [String: Tensor], to url: URL, metadata: [String: String] = ["format": "pt"]) throws {
        let data = encode(tensors, metadata: metadata)
        do throws(SystemError) { try AtomicFile.write(data, to: url.path) } catch {
            throw TensorError.invalidFile(path: url.path, reason: error.detail)
        }
    }

    /// Parses safetensors bytes; `name` labels errors.
    public static func decode(_ data: Data, name: String = "<safetensors>") throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        func fail(_ reason: String) -> TensorError { .invalidFile(path: name, reason: reason) }
        // What `torch.save` writes (a zip since PyTorch 1.6, a bare pickle before) is not safetensors.
        let magic = [UInt8](data.prefix(4))
        if magic == [0x50, 0x4B, 0x03, 0x04] || (magic.first == 0x80 && (magic.count < 2 || (2...5).contains(magic[1]))) {
            throw fail("this is a PyTorch pickle (.pt/.pth, from torch.save), not safetensors — save it with "
                       + "safetensors.torch.save_file(model.state_dict(), \"model.safetensors\") and load that")
        }
        guard data.count >= 8 else { throw fail("too short for a safetensors header (\(data.count) bytes)") }
        let n = data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard n <= 100_000_000, 8 + Int(n) <= data.count else { throw fail("header length \(n) exceeds the file (\(data.count) bytes)") }
        // Offsets below are from the start of `data`, which need not be index 0 (a slice of a bigger Data).
        let headerData = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + 8 + Int(n)))
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + Int(n)
        let available = data.count - dataStart
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        var ranges: [(Int, Int, String)] = []
        for (key, value) in header {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m { metadata[k] = v as? String ?? "\(v)" }
                continue
            }
            guard let entry = value as? [String: Any], let code = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("entry '\(key)' lacks dtype, shape or data_offsets")
            }
            guard let (dt, itemSize) = dtype(code) else { throw fail("entry '\(key)' has unsupported dtype \(code)") }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("entry '\(key)' has a negative dimension in \(shape)") }
            // Sizes with checked arithmetic, against the data's length, before anything is allocated.
            guard let count = Tensor.checkedElementCount(shape), let byteCount = Tensor.checkedByteCount(shape, itemSize: itemSize),
                  byteCount <= available else {
                throw fail("entry '\(key)': shape \(shape) of \(code) needs more bytes than the \(available) of the data section")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= available else { throw fail("entry '\(key)' has offsets \(offsets) outside the data (\(available) bytes)") }
            guard end - begin == byteCount else {
                throw fail("entry '\(key)': shape \(shape) of \(code) needs \(byteCount) bytes, offsets give \(end - begin)")
            }
            ranges.append((begin, end, key))
            let t = Tensor(uninitialized: shape, dtype: dt)
            data.withUnsafeBytes { raw in
                let src = raw.baseAddress! + dataStart + begin
                switch (code, dt) {
                case ("I32", _): let p = t.pointer(Int64.self); for i in 0..<count { p[i] = Int64(src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
                case ("U8", _): let p = t.pointer(Int64.self); for i in 0..<count { p[i] = Int64(src.load(fromByteOffset: i, as: UInt8.self)) }
                case ("F16", _): let p = t.pointer(Float.self); for i in 0..<count { p[i] = Float(src.loadUnaligned(fromByteOffset: i * 2, as: Float16.self)) }
                case ("BF16", _):
                    // bfloat16 is the top half of a float32: widening is exact.
                    let p = t.pointer(Float.self)
                    for i in 0..<count { p[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16) }
                default: t.storage.raw.copyMemory(from: src, byteCount: count * itemSize)
                }
            }
            tensors[key] = t
        }
        // The entries must tile the data section exactly, as the reference reader requires. Sorting
        // by (begin, end) puts an empty tensor ([x, x]) before its neighbour starting at x.
        ranges.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        var covered = 0
        for (i, (begin, end, key)) in ranges.enumerated() {
            if begin < covered { throw fail("entries '\(ranges[i - 1].2)' and '\(key)' overlap") }
            if begin > covered { throw fail("entry '\(key)' starts at data byte \(begin), leaving a hole after byte \(covered)") }
            covered = end
        }
        if covered != available { throw fail("the entries cover \(covered) of the \(available) data bytes") }
        return (tensors, metadata)
    }

    /// Reads every tensor of a file (`safetensors.torch.load_file`).
    public static func read(_ url: URL) throws -> [String: Tensor] { try readWithMetadata(url).tensors }

    /// Reads every tensor and the `__metadata__` of a file.
    public static func readWithMetadata(_ url: URL) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw TensorError.invalidFile(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try decode(data, name: url.path)
    }
}
