import Foundation
import Testing
import TensorCore
@testable import Data

/// Values from a file (or an argument) that overflowed `Int` arithmetic and trapped.
@Suite struct OverflowTests {
    /// A stored ZIP64 `.npz` whose one entry's local-header offset (a 64-bit field) is `offset`.
    static func npzWithLocalHeaderOffset(_ offset: UInt64) throws -> Data {
        var data = try NPZ.encode(["a": Tensor(shape: [2], scalars: [Float(1), 2])], compressed: false, zip64Threshold: 0)
        let bytes = [UInt8](data)
        // The central directory entry (PK\1\2); with ZIP64 its extra field holds size, compressed size, offset.
        let signature: [UInt8] = [0x50, 0x4b, 1, 2]
        let found = (0..<(bytes.count - 4)).first { (at: Int) -> Bool in Array(bytes[at..<(at + 4)]) == signature }
        let entry = try #require(found)
        let nameLength = Int(bytes[entry + 28]) | Int(bytes[entry + 29]) << 8
        let extraLength = Int(bytes[entry + 30]) | Int(bytes[entry + 31]) << 8
        #expect(extraLength == 28, "size, compressed size and offset in the ZIP64 extra field")
        let field = entry + 46 + nameLength + 4 + 16
        for i in 0..<8 { data[data.startIndex + field + i] = UInt8(truncatingIfNeeded: offset >> (8 * UInt64(i))) }
        return data
    }

    @Test func zip64LocalHeaderOffsetNearIntMaxIsAnError() throws {
        // The unpatched file reads; with the offset at Int.max - 10, `offset + 30` overflowed.
        #expect(try NPZ.decode(try Self.npzWithLocalHeaderOffset(0))["a"]?.scalars(as: Float.self) == [1, 2])
        for offset in [UInt64(Int.max) - 10, UInt64(Int.max), UInt64(Int.max) - 29] {
            do {
                _ = try NPZ.decode(try Self.npzWithLocalHeaderOffset(offset), name: "bad.npz")
                Issue.record("offset \(offset) was accepted")
            } catch let error as DataError {
                #expect(error.description.contains("no local header at offset"), "\(error)")
            }
        }
    }

    @Test func batchSizeNearIntMaxMakesOneBatch() throws {
        let set = try TensorDataset(features: [1, 2, 3], sampleShape: [1], labels: [0, 1, 0])
        #expect(DataLoader(set, batchSize: Int.max).count == 1)
        #expect(DataLoader(set, batchSize: Int.max, dropLast: true).count == 0)
        #expect(DataLoader(set, batchSize: 2).count == 2)
        #expect(DataLoader(set, batchSize: 3).count == 1)
        #expect(DataLoader(set, batchSize: Int.max).batchIndices(epoch: 0).map(\.count) == [3])
    }
}
