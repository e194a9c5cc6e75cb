import Foundation
import Testing
@testable import TensorCore

/// Headers whose shapes overflow `Int` (or the file) are errors, not traps: before the readers used
/// checked arithmetic, `shape.reduce(1, *)` and `count * itemSize` trapped on these.
@Suite struct HugeShapeTests {
    /// Safetensors bytes with `header` as the JSON header and `dataBytes` zero bytes of data.
    static func safetensors(_ header: String, dataBytes: Int = 0) -> Data {
        var json = Data(header.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data()
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { data.append(contentsOf: $0) }
        data.append(json)
        data.append(Data(count: dataBytes))
        return data
    }

    /// `.npy` bytes (version 1.0) with `shape` as the header's shape text and `dataBytes` zero bytes.
    static func npy(shape: String, descr: String = "<f4", dataBytes: Int = 0) -> Data {
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        var data = Data(NPY.magic)
        data.append(contentsOf: [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(Data(count: dataBytes))
        return data
    }

    static func reason(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch let TensorError.invalidFile(_, reason) { return reason } catch { return "\(error)" }
    }

    @Test(arguments: ["[4611686018427387904]", "[4294967296, 4294967296]", "[0, 4611686018427387904, 4611686018427387904]",
                      "[2305843009213693952]", "[9223372036854775807]"])
    func safetensorsShapesThatOverflowAreRefused(shape: String) {
        let data = Self.safetensors(#"{"w": {"dtype": "F32", "shape": \#(shape), "data_offsets": [0, 0]}}"#, dataBytes: 0)
        let reason = Self.reason { _ = try SafeTensors.decode(data, name: "huge.safetensors") }
        #expect(reason?.contains("entry 'w'") == true, "got \(reason ?? "no error")")
    }

    @Test func safetensorsShapeLargerThanTheDataIsRefusedBeforeAllocating() {
        // 2^40 floats would need 4 TiB; the data section has 16 bytes.
        let data = Self.safetensors(#"{"w": {"dtype": "F32", "shape": [1099511627776], "data_offsets": [0, 16]}}"#, dataBytes: 16)
        let reason = Self.reason { _ = try SafeTensors.decode(data, name: "huge.safetensors") }
        #expect(reason?.contains("needs more bytes than the 16") == true, "got \(reason ?? "no error")")
    }

    @Test func safetensorsDecodesASliceOfALargerBuffer() throws {
        let encoded = SafeTensors.encode(["a": Tensor(shape: [2], scalars: [Float(1), 2])])
        let padded = Data([9, 9, 9]) + encoded
        let slice = padded[3...]
        #expect(try SafeTensors.decode(slice).tensors["a"]?.scalars(as: Float.self) == [1, 2])
    }

    @Test(arguments: ["(4611686018427387904,)", "(4294967296, 4294967296)", "(0, 4611686018427387904, 4611686018427387904)",
                      "(9223372036854775807,)"])
    func npyShapesThatOverflowAreRefused(shape: String) {
        let data = Self.npy(shape: shape, dataBytes: 8)
        let reason = Self.reason { _ = try NPY.decode(data, name: "huge.npy") }
        #expect(reason?.contains("describes more bytes than any file holds") == true, "got \(reason ?? "no error")")
    }

    @Test func npyShapeLargerThanTheFileIsTruncation() {
        let reason = Self.reason { _ = try NPY.decode(Self.npy(shape: "(1099511627776,)", dataBytes: 8), name: "huge.npy") }
        #expect(reason?.hasPrefix("truncated data: shape [1099511627776] of <f4 needs 4398046511104 bytes") == true, "got \(reason ?? "no error")")
    }

    @Test func checkedCounts() {
        #expect(Tensor.checkedElementCount([2, 3, 4]) == 24)
        #expect(Tensor.checkedElementCount([]) == 1)
        #expect(Tensor.checkedElementCount([0, 5]) == 0)
        #expect(Tensor.checkedElementCount([-1, 5]) == nil)
        #expect(Tensor.checkedElementCount([1 << 32, 1 << 32]) == nil)
        #expect(Tensor.checkedElementCount([0, 1 << 62, 1 << 62]) == nil)
        #expect(Tensor.checkedByteCount([1 << 61], itemSize: 8) == nil)
        #expect(Tensor.checkedByteCount([1 << 59], itemSize: 8) == 1 << 62)
    }
}
