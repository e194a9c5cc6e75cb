import Foundation
import Testing
import TensorCore
@testable import Data

struct NPZTests {
    static func sampleArrays() -> [String: Tensor] {
        [
            "weights": Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 0.5, -1, 2.25, 3, 4e-3, -7)),
            "ids": Tensor(shape: [4], scalars: [Int64](arrayLiteral: 5, -2, 0, 1 << 40)),
            "x64": Tensor(shape: [2, 2], scalars: [Double](arrayLiteral: .pi, -.pi, 1e300, 0)),
            "mask": Tensor(shape: [3], scalars: [true, false, true]),
            "scalar": Tensor(scalar: Float(1.5)),
            "big": Tensor(shape: [100, 50], scalars: (0..<5000).map { Float($0 % 17) }),
        ]
    }

    static func expectEqual(_ a: [String: Tensor], _ b: [String: Tensor], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(Set(a.keys) == Set(b.keys), sourceLocation: sourceLocation)
        for (k, t) in a {
            guard let u = b[k] else { continue }
            #expect(t.shape == u.shape && t.dtype == u.dtype, "\(k)", sourceLocation: sourceLocation)
            #expect(t.scalars(as: Double.self) == u.scalars(as: Double.self), "\(k)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [false, true])
    func roundTrip(compressed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = dir.url.appendingPathComponent("a.npz")
        let arrays = Self.sampleArrays()
        try NPZ.write(arrays, to: url, compressed: compressed)
        Self.expectEqual(try NPZ.read(url), arrays)
        let size = try Data(contentsOf: url).count
        let storedSize = try NPZ.encode(arrays, compressed: false).count
        #expect(compressed ? size < storedSize : size == storedSize)
        let nowhere = dir.url.appendingPathComponent("missing/dir/a.npz")
        guard case .unwritable(nowhere.path, _)? = dataError({ try NPZ.write(arrays, to: nowhere) }) else {
            Issue.record("expected unwritable"); return
        }
    }

    @Test func roundTripWithZIP64Records() throws {
        // Lowering the threshold makes the writer use every ZIP64 record a >4 GiB archive needs.
        let arrays = Self.sampleArrays()
        for compressed in [false, true] {
            let data = try NPZ.encode(arrays, compressed: compressed, zip64Threshold: 1)
            #expect(data.range(of: Data([0x50, 0x4b, 0x06, 0x06])) != nil)    // the ZIP64 end record is there
            Self.expectEqual(try NPZ.decode(data), arrays)
        }
    }

    /// Archives written by numpy itself (scripts/fixtures/data_fixtures.py), against the values it recorded.
    @Test(arguments: ["numpy_savez.npz", "numpy_savez_compressed.npz", "zip64.npz"])
    func readsArchivesWrittenByNumpy(file: String) throws {
        let arrays = try NPZ.read(Fixtures.url(file))
        let expected = try Fixtures.json("npz_expected.json")
        #expect(Set(arrays.keys) == Set(expected.keys))
        for (key, value) in expected {
            let spec = try #require(value as? [String: Any])
            let t = try #require(arrays[key])
            #expect(t.shape == (spec["shape"] as? [Int]), "\(key)")
            let values = try #require(spec["values"] as? [Any])
            let numbers = values.map { v -> Double in
                if let d = v as? Double { return d }
                if let i = v as? Int { return Double(i) }
                if let b = v as? Bool { return b ? 1 : 0 }
                return .nan
            }
            let got = t.scalars(as: Double.self)
            #expect(got.count == numbers.count, "\(key)")
            for (g, e) in zip(got, numbers) {
                #expect(abs(g - e) <= 1e-7 * max(1, abs(e)), "\(key): \(g) vs \(e)")
            }
        }
        #expect(arrays["x"]?.dtype == .float32)
        #expect(arrays["y"]?.dtype == .int64)
        #expect(arrays["d"]?.dtype == .float64)
        #expect(arrays["b"]?.dtype == .bool)
        #expect(arrays["i32"]?.dtype == .int64)
        #expect(arrays["scalar"]?.shape == [])
    }

    @Test func tensorDatasetFromNPZ() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = dir.url.appendingPathComponent("d.npz")
        try NPZ.write(["x": Tensor(shape: [3, 2], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)),
                       "y": Tensor(shape: [3], scalars: [Int64](arrayLiteral: 0, 2, 1))], to: url, compressed: true)
        let ds = try TensorDataset(npz: url)
        #expect(ds.count == 3 && ds.sampleShape == [2])
        #expect(ds[1] == Example(features: [3, 4], shape: [2], label: 2))
        guard case .invalidContent(url.path, let reason)? = dataError({ try TensorDataset(npz: url, features: "images") }) else {
            Issue.record("expected invalidContent"); return
        }
        #expect(reason.contains("'images'") && reason.contains("x, y"))
    }

    @Test func tensorDatasetFromNPYFiles() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let x = dir.url.appendingPathComponent("x.npy"), y = dir.url.appendingPathComponent("y.npy")
        try Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)).writeNPY(to: x)
        try Tensor(shape: [2], scalars: [Int64](arrayLiteral: 1, 0)).writeNPY(to: y)
        let ds = try TensorDataset(npyFeatures: x, npyLabels: y)
        #expect(ds[1] == Example(features: [4, 5, 6], shape: [3], label: 0))
        try Tensor(shape: [3], scalars: [Int64](arrayLiteral: 1, 0, 2)).writeNPY(to: y)
        guard case .mismatchedFiles(x.path, y.path, _)? = dataError({ try TensorDataset(npyFeatures: x, npyLabels: y) }) else {
            Issue.record("expected mismatchedFiles"); return
        }
        try Data("junk".utf8).write(to: y)
        guard case .invalidContent(y.path, _)? = dataError({ try TensorDataset(npyFeatures: x, npyLabels: y) }) else {
            Issue.record("expected invalidContent"); return
        }
        let missing = dir.url.appendingPathComponent("none.npy")
        guard case .fileNotFound(missing.path, _)? = dataError({ try TensorDataset(npyFeatures: missing, npyLabels: y) }) else {
            Issue.record("expected fileNotFound"); return
        }
    }

    @Test func corruptedStoredEntryFailsItsCRC() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        var data = try NPZ.encode(["a": Tensor(shape: [64], scalars: [Float](repeating: 1, count: 64))])
        data[data.startIndex + 30 + 5 + 128 + 10] ^= 0x01     // inside the array's payload, past the .npy header
        let url = try dir.file("crc.npz", data)
        guard case .checksumMismatch(url.path, "a.npy", _, _)? = dataError({ try NPZ.read(url) }) else {
            Issue.record("expected checksumMismatch"); return
        }
    }

    @Test func corruptedDeflatedEntryIsCaught() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        var data = try NPZ.encode(["a": Tensor(shape: [4096], scalars: (0..<4096).map { Float($0 % 97) })], compressed: true)
        data[data.startIndex + 30 + 5 + 40] ^= 0x5A
        let url = try dir.file("deflate.npz", data)
        let error = dataError { try NPZ.read(url) }
        #expect(error?.path == url.path)
        switch error {
        case .corruptCompressedData?, .checksumMismatch?: break
        default: Issue.record("expected corrupt data or a CRC mismatch, got \(String(describing: error))")
        }
    }

    @Test func truncatedAndForeignFilesAreNamed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let data = try NPZ.encode(Self.sampleArrays())
        let cut = try dir.file("cut.npz", data.prefix(data.count / 2))
        guard case .corruptArchive(cut.path, let reason)? = dataError({ try NPZ.read(cut) }) else {
            Issue.record("expected corruptArchive"); return
        }
        #expect(reason.contains("truncated"))
        let text = try dir.file("text.npz", Data(String(repeating: "not a zip ", count: 10).utf8))
        guard case .badMagic(text.path, _, _)? = dataError({ try NPZ.read(text) }) else {
            Issue.record("expected badMagic"); return
        }
        let empty = try dir.file("empty.npz", Data())
        #expect(dataError { try NPZ.read(empty) }?.path == empty.path)
        // The central directory is intact but an entry's data runs past the end.
        var chopped = data
        let directory = try #require(chopped.range(of: Data([0x50, 0x4b, 0x01, 0x02])))
        chopped.removeSubrange((directory.lowerBound - 40)..<directory.lowerBound)
        let short = try dir.file("short.npz", chopped)
        #expect(dataError { try NPZ.read(short) }?.path == short.path)
    }

    @Test func badNPYInsideTheArchiveNamesTheEntry() throws {
        let zip = try ZipArchive.write([(name: "w.npy", contents: Data("garbage".utf8))], deflate: false, name: "t")
        guard case .invalidContent("mem.npz", let reason)? = dataError({ try NPZ.decode(zip, name: "mem.npz") }) else {
            Issue.record("expected invalidContent"); return
        }
        #expect(reason.contains("w.npy"))
    }
}
