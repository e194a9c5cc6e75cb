import Foundation
import Testing
@testable import TensorCore

/// `.npy` (numpy's format) and safetensors (what `safetensors.torch.load_file` reads): round trips,
/// the layouts other writers produce, the exact bytes we write, and corrupt files rejected with
/// `TensorError.invalidFile` naming the file.
@Suite struct SerializationTests {
    static func temporaryURL(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("tc-\(UUID().uuidString)-\(name)")
    }

    static func fixtureURL(_ name: String) throws -> URL {
        try #require(Bundle.module.url(forResource: name, withExtension: "npy", subdirectory: "Fixtures"), "Fixtures/\(name).npy")
    }

    /// The path named by an invalidFile error, or nil when `body` threw something else or nothing.
    static func invalidFilePath(_ body: () throws -> Void) -> (path: String, reason: String)? {
        do { try body() } catch let TensorError.invalidFile(path, reason) { return (path, reason) } catch { return nil }
        return nil
    }

    // MARK: .npy

    static var roundTripTensors: [(String, Tensor)] { [
        ("float32", Tensor([[1.5, -2.0, 3.25], [0.0, 1e-30, -7.0]])),
        ("float64", Tensor(shape: [3], scalars: [1.0 / 3.0, -2.5e300, Double.leastNonzeroMagnitude])),
        ("int64", Tensor([9_223_372_036_854_775_807, -9_223_372_036_854_775_807, 0, 42])),
        ("bool", Tensor([[true, false], [false, true], [true, true]])),
        ("0-d", Tensor(2.5, dtype: .float64)),
        ("empty", Tensor.zeros([0, 3])),
        ("transposed view", Tensor.arange(6).reshape(2, 3).T),
        ("strided slice", Tensor.arange(20).float().reshape(4, 5)[0..<4, stride: 2][.all, 1...]),
    ] }

    @Test func npyRoundTripsEveryDType() throws {
        for (name, t) in Self.roundTripTensors {
            let url = Self.temporaryURL("\(name).npy")
            defer { try? FileManager.default.removeItem(at: url) }
            try t.writeNPY(to: url)
            let back = try Tensor(npyFile: url)
            #expect(back.dtype == t.dtype && back.shape == t.shape, "\(name): \(back.dtype) \(back.shape)")
            #expect(back.scalars(as: Double.self).map(\.bitPattern) == t.scalars(as: Double.self).map(\.bitPattern), "\(name)")
            if t.dtype == .int64 { #expect(back.scalars(as: Int64.self) == t.scalars(as: Int64.self), "\(name)") }
        }
    }

    /// What we write is byte for byte what numpy wrote for the same array (the fixtures are np.save output).
    @Test(arguments: ["ew_a", "red_argmax_dim2", "red_mean_all", "npy_bool", "ce_target", "conv_w"])
    func npyEncodingIsNumpys(_ fixture: String) throws {
        let data = try Data(contentsOf: try Self.fixtureURL(fixture))
        let t = try NPY.decode(data, name: fixture)
        #expect(NPY.encode(t) == data)
        let header = String(decoding: NPY.encode(t).prefix(128), as: UTF8.self)
        #expect(header.contains("'fortran_order': False"))
    }

    @Test func npyHeaderIsAlignedAndDescribesTheArray() {
        let data = NPY.encode(Tensor.zeros([2, 3], dtype: .int64))
        #expect(Array(data.prefix(8)) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }"))
        #expect(header.hasSuffix("\n"))
        #expect(data.count == 10 + headerLength + 6 * 8)
        #expect(String(decoding: NPY.encode(Tensor.zeros([5])).dropFirst(10), as: UTF8.self).contains("'shape': (5,)"))
    }

    @Test func npyReadsWhatNumpyWrites() throws {
        let fortran = try Tensor(npyFile: try Self.fixtureURL("npy_fortran_f8"))    // np.asfortranarray(arange(12).reshape(3, 4) * 0.5 - 1)
        #expect(fortran.dtype == .float64 && fortran.shape == [3, 4])
        #expect(fortran.scalars(as: Double.self) == (0..<12).map { Double($0) * 0.5 - 1 })
        let bigInt = try Tensor(npyFile: try Self.fixtureURL("npy_bigendian_i8"))   // '>i8', arange(6).reshape(2, 3) - 3
        #expect(bigInt.dtype == .int64 && bigInt.shape == [2, 3] && bigInt.scalars(as: Int64.self) == [-3, -2, -1, 0, 1, 2])
        let bigFloat = try Tensor(npyFile: try Self.fixtureURL("npy_bigendian_f4"))
        #expect(bigFloat.dtype == .float32 && bigFloat.scalars(as: Float.self) == [1.5, -2.25, 3e-5])
        let bools = try Tensor(npyFile: try Self.fixtureURL("npy_bool"))
        #expect(bools.dtype == .bool && bools.shape == [1, 3] && bools.scalars(as: Bool.self) == [true, false, true])
        let i4 = try Tensor(npyFile: try Self.fixtureURL("npy_i4"))
        #expect(i4.dtype == .int64 && i4.scalars(as: Int64.self) == [-7, 0, 2_147_483_647])
        let u1 = try Tensor(npyFile: try Self.fixtureURL("npy_u1"))
        #expect(u1.dtype == .int64 && u1.scalars(as: Int64.self) == [0, 200, 255])
        let f2 = try Tensor(npyFile: try Self.fixtureURL("npy_f2"))
        #expect(f2.dtype == .float32 && f2.scalars(as: Float.self) == [0.5, -1.25, 65504])
        let scalar = try Tensor(npyFile: try Self.fixtureURL("npy_scalar_f8"))
        #expect(scalar.shape == [] && scalar.item() == 2.5)
        let v2 = try Tensor(npyFile: try Self.fixtureURL("npy_v2_f4"))                // format version 2.0 header
        #expect(v2.shape == [2, 2] && v2.scalars(as: Float.self) == [1, 2, 3, 4])
    }

    @Test func npyRejectsTruncatedAndCorruptFiles() throws {
        let good = NPY.encode(Tensor([[1.0, 2.0], [3.0, 4.0]]))
        let headerEnd = good.count - 16
        /// `good` with one piece of its header text replaced by another of the same length.
        func replacing(_ old: String, _ new: String) -> Data {
            var bytes = [UInt8](good)
            let o = [UInt8](old.utf8), n = [UInt8](new.utf8)
            for i in 0...(bytes.count - o.count) where Array(bytes[i..<(i + o.count)]) == o {
                bytes.replaceSubrange(i..<(i + o.count), with: n)
                break
            }
            return Data(bytes)
        }
        let cases: [(String, Data)] = [
            ("empty", Data()),
            ("bad magic", Data([0x89, 0x50, 0x4E, 0x47]) + good.dropFirst(4)),
            ("cut in the magic", good.prefix(5)),
            ("cut in the header", good.prefix(40)),
            ("cut in the data", good.prefix(headerEnd + 10)),
            ("unsupported version", good.prefix(6) + Data([9, 0]) + good.dropFirst(8)),
            ("unsupported dtype", replacing("'<f4'", "'<U4'")),
            ("no shape", replacing("'shape'", "'shope'")),
            ("negative dimension", replacing("(2, 2)", "(2,-2)")),
        ]
        for (name, data) in cases {
            let url = Self.temporaryURL("\(name.replacingOccurrences(of: " ", with: "_")).npy")
            try data.write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            let failure = Self.invalidFilePath { _ = try Tensor(npyFile: url) }
            #expect(failure?.path == url.path, "\(name): expected TensorError.invalidFile naming \(url.lastPathComponent), got \(String(describing: failure))")
        }
        let missing = Self.temporaryURL("missing.npy")
        #expect(Self.invalidFilePath { _ = try Tensor(npyFile: missing) }?.path == missing.path)
        // The error's description leads with the path.
        do { _ = try NPY.decode(good.prefix(40), name: "/data/x.npy"); Issue.record("truncated header accepted") } catch {
            #expect("\(error)".hasPrefix("/data/x.npy: "))
        }
    }

    // MARK: safetensors

    /// The header JSON and data section of safetensors bytes, parsed independently of the decoder.
    static func layout(_ data: Data) throws -> (header: [String: Any], dataStart: Int) {
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        let json = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        return (json, 8 + n)
    }

    static var sampleDict: [String: Tensor] {
        [
            "fc1.weight": Tensor([[0.5, -1.5, 2.0], [3.0, 4.0, -5.0]]),
            "fc1.bias": Tensor([0.25, -0.75]),
            "scale": Tensor(3.5, dtype: .float64),
            "step": Tensor(1234),
            "mask": Tensor([true, false, true]),
            "table": Tensor.arange(12).reshape(3, 4).T,            // a non-contiguous view
            "empty": Tensor.zeros([0, 4]),
        ]
    }

    @Test func safetensorsLayout() throws {
        let data = SafeTensors.encode(Self.sampleDict)
        let (header, dataStart) = try Self.layout(data)
        #expect(dataStart % 8 == 0, "data starts at \(dataStart), not 8-byte aligned")
        #expect(header["__metadata__"] as? [String: String] == ["format": "pt"])
        let codes: [String: String] = ["fc1.weight": "F32", "fc1.bias": "F32", "scale": "F64", "step": "I64", "mask": "BOOL", "table": "I64", "empty": "F32"]
        var ranges: [(Int, Int, String)] = []
        for (name, code) in codes {
            let entry = try #require(header[name] as? [String: Any], "\(name) missing from the header")
            #expect(entry["dtype"] as? String == code, "\(name)")
            let offsets = try #require(entry["data_offsets"] as? [Int])
            let t = Self.sampleDict[name]!
            #expect(entry["shape"] as? [Int] == t.shape, "\(name)")
            #expect(offsets[1] - offsets[0] == t.numel * t.dtype.byteSize, "\(name)")
            #expect(offsets[0] % t.dtype.byteSize == 0, "\(name) is not aligned to its element size")
            ranges.append((offsets[0], offsets[1], name))
        }
        #expect(Set(header.keys) == Set(codes.keys).union(["__metadata__"]))
        // Contiguous offsets without holes, covering the data section exactly.
        ranges.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        var expectedStart = 0
        for (begin, end, name) in ranges {
            #expect(begin == expectedStart, "\(name) starts at \(begin), expected \(expectedStart)")
            expectedStart = end
        }
        #expect(dataStart + expectedStart == data.count)
        // The bytes of a tensor are its contiguous little-endian elements.
        let table = try #require(header["table"] as? [String: Any])["data_offsets"] as? [Int]
        let values = data.subdata(in: (dataStart + table![0])..<(dataStart + table![1])).withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        #expect(values == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
    }

    @Test func safetensorsRoundTrip() throws {
        let url = Self.temporaryURL("model.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(Self.sampleDict, to: url, metadata: ["format": "pt", "epoch": "3"])
        let (tensors, metadata) = try SafeTensors.readWithMetadata(url)
        #expect(metadata == ["format": "pt", "epoch": "3"])
        #expect(Set(tensors.keys) == Set(Self.sampleDict.keys))
        for (name, t) in Self.sampleDict {
            let back = try #require(tensors[name])
            #expect(back.dtype == t.dtype && back.shape == t.shape, "\(name)")
            #expect(back.scalars(as: Double.self) == t.scalars(as: Double.self), "\(name)")
        }
        #expect(try SafeTensors.read(url).count == Self.sampleDict.count)
        // No temporary files are left beside the target.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
        #expect(!siblings.contains { $0.hasPrefix(".\(url.lastPathComponent).tmp") })
        // Without metadata there is no __metadata__ entry.
        #expect(try Self.layout(SafeTensors.encode(["x": Tensor([1.0])], metadata: [:])).header["__metadata__"] == nil)
    }

    @Test func safetensorsRejectsCorruptFiles() throws {
        func file(header: String, dataBytes: Int) -> Data {
            var json = Data(header.utf8)
            while json.count % 8 != 0 { json.append(0x20) }
            var n = UInt64(json.count).littleEndian
            var d = Data(bytes: &n, count: 8)
            d.append(json)
            d.append(Data(count: dataBytes))
            return d
        }
        let good = file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 8)
        #expect((try? SafeTensors.decode(good))?.tensors["a"]?.shape == [2], "the well-formed baseline must load")
        var huge = good
        huge.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
        let cases: [(String, Data)] = [
            ("shorter than 8 bytes", Data([1, 2, 3])),
            ("header length beyond the file", good.prefix(20)),
            ("absurd header length", huge),
            ("header not JSON", file(header: "{not json", dataBytes: 0)),
            ("header a JSON array", file(header: "[1, 2]", dataBytes: 0)),
            ("entry without dtype", file(header: #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 8)),
            ("unsupported dtype", file(header: #"{"a":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}}"#, dataBytes: 16)),
            ("offsets past the data", file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 4)),
            ("size disagrees with shape", file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, dataBytes: 8)),
            ("negative dimension", file(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, dataBytes: 8)),
            ("reversed offsets", file(header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, dataBytes: 8)),
            ("overlapping entries", file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, dataBytes: 12)),
            ("a hole between entries", file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, dataBytes: 12)),
            ("data not covered to its end", file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 16)),
            ("metadata not an object", file(header: #"{"__metadata__":"pt"}"#, dataBytes: 0)),
        ]
        for (name, data) in cases {
            let url = Self.temporaryURL("\(name.replacingOccurrences(of: " ", with: "_")).safetensors")
            try data.write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            let failure = Self.invalidFilePath { _ = try SafeTensors.read(url) }
            #expect(failure?.path == url.path, "\(name): expected TensorError.invalidFile naming the file, got \(String(describing: failure))")
        }
        let missing = Self.temporaryURL("missing.safetensors")
        #expect(Self.invalidFilePath { _ = try SafeTensors.read(missing) }?.path == missing.path)
    }
}

/// PyTorch's other checkpoint shapes: bf16 tensors load (widened to float32, exactly); a
/// `torch.save` pickle is named for what it is, with how to convert it.
@Suite struct PyTorchInteropTests {
    static func file(header: String, payload: [UInt8]) -> Data {
        var json = Array(header.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data()
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { data.append(contentsOf: $0) }
        data.append(contentsOf: json)
        data.append(contentsOf: payload)
        return data
    }

    @Test func bf16Loads() throws {
        // 1.0, -2.5, 0.15625, -0.0 as bfloat16 (little-endian).
        let payload: [UInt8] = [0x80, 0x3F, 0x20, 0xC0, 0x20, 0x3E, 0x00, 0x80]
        let data = Self.file(header: #"{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}"#, payload: payload)
        let w = try #require(try SafeTensors.decode(data).tensors["w"])
        #expect(w.dtype == .float32 && w.shape == [2, 2])
        let values = w.scalars(as: Float.self)
        #expect(values[0] == 1 && values[1] == -2.5 && values[2] == 0.15625 && values[3] == 0 && values[3].sign == .minus)
    }

    @Test func aTorchPickleSaysSo() {
        let zip = Data([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 0, count: 60))   // torch.save since 1.6
        let legacy = Data([0x80, 0x02, 0x8A, 0x0A] + [UInt8](repeating: 0, count: 60))   // pickle protocol 2
        for data in [zip, legacy] {
            do {
                _ = try SafeTensors.decode(data, name: "model.pt")
                Issue.record("a pickle decoded")
            } catch {
                #expect("\(error)".contains("PyTorch pickle") && "\(error)".contains("safetensors.torch.save_file"), "\(error)")
            }
        }
    }
}
