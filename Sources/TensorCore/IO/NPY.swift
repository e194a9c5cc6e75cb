import Foundation

/// numpy's `.npy` format (versions 1–3), C or Fortran order, little- or big-endian.
/// float32, float64, int64 and bool round-trip; other integer types read as int64 and float16 as float32.
public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// Encodes a tensor as `.npy` bytes (version 1.0, C order, little-endian).
    public static func encode(_ t: Tensor) -> Data {
        let descr: String
        switch t.dtype {
        case .float32: descr = "<f4"
        case .float64: descr = "<f8"
        case .int64: descr = "<i8"
        case .bool: descr = "|b1"
        }
        let shapeText = t.shape.isEmpty ? "()" : t.shape.count == 1 ? "(\(t.shape[0]),)" : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var data = Data(magic)
        data.append(contentsOf: [1, 0])
        let len = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(len & 0xff), UInt8(len >> 8)])
        data.append(contentsOf: Array(header.utf8))
        let c = t.cpu().contiguous()
        data.append(Data(bytes: c.storage.raw + c.offset * c.dtype.byteSize, count: c.numel * c.dtype.byteSize))
        return data
    }

    /// Decodes `.npy` bytes; `name` labels errors (usually the file path).
    public static func decode(_ data: Data, name: String = "<npy>") throws -> Tensor {
        let bytes = [UInt8](data)
        func fail(_ reason: String) -> TensorError { .invalidFile(path: name, reason: reason) }
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("not a .npy file (bad magic)") }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24; headerStart = 12
        default:
            throw fail("unsupported .npy version \(major)")
        }
        guard bytes.count >= headerStart + headerLength else { throw fail("truncated header (\(bytes.count) bytes)") }
        guard let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw fail("header is not text")
        }
        guard let descr = field(header, "descr").map({ $0.trimmingCharacters(in: CharacterSet(charactersIn: "'\"")) }),
              let fortranText = field(header, "fortran_order"), let shapeText = field(header, "shape") else {
            throw fail("header lacks descr, fortran_order or shape: \(header)")
        }
        let fortran = fortranText == "True"
        let dims = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        for d in dims {
            guard let v = Int(d), v >= 0 else { throw fail("bad shape \(shapeText)") }
            shape.append(v)
        }
        let endian = descr.first ?? "<"
        let kind = String(descr.dropFirst())
        let bigEndian = endian == ">"
        let itemSize: Int
        let dtype: DType
        switch kind {
        case "f4": itemSize = 4; dtype = .float32
        case "f8": itemSize = 8; dtype = .float64
        case "f2": itemSize = 2; dtype = .float32
        case "i8", "u8": itemSize = 8; dtype = .int64
        case "i4", "u4": itemSize = 4; dtype = .int64
        case "i2", "u2": itemSize = 2; dtype = .int64
        case "i1", "u1": itemSize = 1; dtype = .int64
        case "b1": itemSize = 1; dtype = .bool
        default: throw fail("unsupported dtype '\(descr)' (float32, float64, integers and bool are read)")
        }
        let dataStart = headerStart + headerLength
        // Sizes with checked arithmetic, against the file's length, before anything is allocated.
        guard let count = Tensor.checkedElementCount(shape), let byteCount = Tensor.checkedByteCount(shape, itemSize: itemSize) else {
            throw fail("shape \(shape) of \(descr) describes more bytes than any file holds")
        }
        guard bytes.count - dataStart >= byteCount else {
            throw fail("truncated data: shape \(shape) of \(descr) needs \(byteCount) bytes, file has \(bytes.count - dataStart)")
        }
        let storageShape = fortran ? shape.reversed() : shape
        let t = Tensor(uninitialized: Array(storageShape), dtype: dtype)
        try bytes.withUnsafeBufferPointer { buf in
            let base = buf.baseAddress! + dataStart
            func word(_ i: Int) -> UInt64 {
                var v: UInt64 = 0
                for b in 0..<itemSize {
                    let byte = UInt64(base[i * itemSize + (bigEndian ? itemSize - 1 - b : b)])
                    v |= byte << (8 * UInt64(b))
                }
                return v
            }
            switch (kind, dtype) {
            case ("f4", _): let p = t.pointer(Float.self); for i in 0..<count { p[i] = Float(bitPattern: UInt32(word(i))) }
            case ("f8", _): let p = t.pointer(Double.self); for i in 0..<count { p[i] = Double(bitPattern: word(i)) }
            case ("f2", _): let p = t.pointer(Float.self); for i in 0..<count { p[i] = Float(Float16(bitPattern: UInt16(word(i)))) }
            case ("b1", _): let p = t.pointer(Bool.self); for i in 0..<count { p[i] = base[i] != 0 }
            case (_, .int64):
                let p = t.pointer(Int64.self)
                let signed = kind.hasPrefix("i")
                for i in 0..<count {
                    let w = word(i)
                    if signed && itemSize < 8 {
                        let shift = UInt64(64 - 8 * itemSize)
                        p[i] = Int64(bitPattern: w << shift) >> Int64(shift)
                    } else if !signed && itemSize == 8 && w > UInt64(Int64.max) {
                        throw fail("uint64 value \(w) does not fit int64")
                    } else {
                        p[i] = Int64(bitPattern: w)
                    }
                }
            default: throw fail("unsupported dtype '\(descr)'")
            }
        }
        return fortran ? t.permute(Array((0..<shape.count).reversed())).contiguous() : t
    }

    /// The text after `'key':` in a numpy header dict, up to the next top-level comma.
    static func field(_ header: String, _ key: String) -> String? {
        guard let r = header.range(of: "'\(key)':") ?? header.range(of: "\"\(key)\":") else { return nil }
        var depth = 0
        var out = ""
        for ch in header[r.upperBound...] {
            if ch == "(" { depth += 1 }
            if ch == ")" { depth -= 1 }
            if (ch == "," && depth == 0) || (ch == "}" && depth == 0) { break }
            out.append(ch)
        }
        return out.trimmingCharacters(in: .whitespaces)
    }
}

extension Tensor {
    /// Reads a `.npy` file (`np.load`).
    public convenience init(npyFile url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TensorError.invalidFile(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let t = try NPY.decode(data, name: url.path)
        self.init(storage: t.storage, shape: t.shape, strides: t.strides, offset: t.offset, dtype: t.dtype)
    }

    /// Writes this tensor as a `.npy` file (`np.save`), atomically.
    public func writeNPY(to url: URL) throws {
        try NPY.encode(self).write(to: url, options: .atomic)
    }
}
