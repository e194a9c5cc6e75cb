import Foundation
import Optim
import TensorCore
import Testing
@testable import Data
@testable import Training
import TrainingTestSupport

/// SplitMix64: a fixed-seed generator of its own, so a failing case reproduces from (format, seed, case).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// Bit flips, truncations and field mutations of valid files.
enum Mutate {
    static let binaryValues: [UInt64] = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32,
                                         1 << 40, 1 << 62, UInt64(Int64.max), UInt64(Int64.max) - 29, UInt64.max]
    static let numbers = ["-3", "-1", "0", "1", "2.5", "1e308", "-1e308", "4294967296", "1099511627776", "4611686018427387904",
                          "9223372036854775807", "9223372036854775808", "18446744073709551616", "99999999999999999999999", "NaN"]

    static func flipBits(_ d: Data, _ g: inout SplitMix64) -> Data {
        var b = [UInt8](d)
        guard !b.isEmpty else { return d }
        for _ in 0...g.below(8) { b[g.below(b.count)] ^= UInt8(1 << g.below(8)) }
        return Data(b)
    }

    static func truncate(_ d: Data, _ g: inout SplitMix64) -> Data { d.prefix(g.below(d.count)) }

    /// Overwrites a 1-, 2-, 4- or 8-byte field at a random place with an interesting value, little- or big-endian.
    static func field(_ d: Data, _ g: inout SplitMix64) -> Data {
        var b = [UInt8](d)
        let width = g.pick([1, 2, 4, 8])
        guard b.count >= width else { return d }
        let at = g.below(b.count - width + 1), v = g.pick(binaryValues), bigEndian = g.below(2) == 0
        for i in 0..<width { b[at + (bigEndian ? width - 1 - i : i)] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        return Data(b)
    }

    /// Replaces one run of digits (with its sign) in `text` by an interesting number.
    static func number(_ text: String, _ g: inout SplitMix64) -> String {
        var runs: [Range<String.Index>] = []
        var i = text.startIndex
        while i < text.endIndex {
            if text[i].isNumber || (text[i] == "-" && text.index(after: i) < text.endIndex && text[text.index(after: i)].isNumber) {
                var j = text.index(after: i)
                while j < text.endIndex, text[j].isNumber || text[j] == "." || text[j] == "e" { j = text.index(after: j) }
                runs.append(i..<j)
                i = j
            } else {
                i = text.index(after: i)
            }
        }
        guard !runs.isEmpty else { return text }
        var t = text
        t.replaceSubrange(g.pick(runs), with: g.pick(numbers))
        return t
    }

    /// A generic mutation: a bit flip, a truncation or an overwritten field.
    static func bytes(_ d: Data, _ g: inout SplitMix64) -> Data {
        switch g.below(3) {
        case 0: return flipBits(d, &g)
        case 1: return truncate(d, &g)
        default: return field(d, &g)
        }
    }

    /// A safetensors file whose JSON header had a number replaced (the length prefix fixed up so the header parses).
    static func safetensorsHeaderNumber(_ d: Data, _ g: inout SplitMix64) -> Data {
        let n = Int(d.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        let header = String(decoding: d[8..<(8 + n)], as: UTF8.self)
        let mutated = Data(number(header, &g).utf8)
        var out = Data()
        var length = UInt64(mutated.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        return out + mutated + d[(8 + n)...]
    }
}

/// A decode that returned something wrong instead of throwing.
struct FuzzViolation: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a fuzz run saw.
final class FuzzTally: @unchecked Sendable {
    private let lock = NSLock()
    private var _accepted = 0, _rejected = 0, _current = -1
    private var _unexpected: [String] = []
    var current: Int { lock.withLock { _current } }
    var accepted: Int { lock.withLock { _accepted } }
    var rejected: Int { lock.withLock { _rejected } }
    var unexpected: [String] { lock.withLock { _unexpected } }
    func start(_ i: Int) { lock.withLock { _current = i } }
    func accept() { lock.withLock { _accepted += 1 } }
    func reject() { lock.withLock { _rejected += 1 } }
    func unexpected(_ s: String) { lock.withLock { _unexpected.append(s) } }
}

/// Bit flips, truncations and field mutations of valid files, with fixed seeds: every decode returns or
/// throws its module's error. A trap ends the test process (the failure); a hang is caught by a deadline.
@Suite struct DecoderFuzzTests {
    static let cases = 2000
    static let deadline: TimeInterval = 60

    /// Runs `cases` mutated inputs of one format on a thread of its own, so a hang is reported, not waited for.
    /// `body` decodes case `i` and returns whether it was accepted; it throws for a rejection.
    static func fuzz(_ format: String, seed: UInt64, cases: Int = cases,
                     expected: @escaping @Sendable (any Error) -> Bool,
                     _ body: @escaping @Sendable (_ g: inout SplitMix64) throws -> Void) {
        let tally = FuzzTally()
        let done = DispatchSemaphore(value: 0)
        let started = Date()
        let thread = Thread {
            var g = SplitMix64(seed: seed)
            for i in 0..<cases {
                tally.start(i)
                do {
                    try body(&g)
                    tally.accept()
                } catch {
                    tally.reject()
                    if !expected(error) { tally.unexpected("case \(i): \(type(of: error)): \(error)") }
                }
            }
            done.signal()
        }
        thread.stackSize = 16 << 20
        thread.start()
        guard done.wait(timeout: .now() + deadline) == .success else {
            Issue.record("\(format): case \(tally.current) (seed \(seed)) did not finish within \(Int(deadline)) s — a hang")
            return
        }
        let seconds = Date().timeIntervalSince(started)
        print("fuzz \(format): \(cases) cases, \(tally.accepted) accepted, \(tally.rejected) rejected, \(String(format: "%.2f", seconds)) s")
        #expect(tally.unexpected.isEmpty, "\(format): errors of an unexpected kind: \(tally.unexpected.prefix(5))")
        // The mutations must bite, or the test proves nothing.
        #expect(tally.rejected >= cases / 4, "\(format): only \(tally.rejected) of \(cases) mutated inputs were rejected")
    }

    static func isTensorError(_ e: any Error) -> Bool { e is TensorError }
    static func isDataError(_ e: any Error) -> Bool { e is DataError }

    @Test func safetensors() {
        let valid = SafeTensors.encode([
            "a": Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)),
            "b": Tensor(shape: [4], scalars: [Int64](arrayLiteral: 1, -2, 3, 1 << 40)),
            "c": Tensor.full([], value: 0.5, dtype: .float64),
            "m": Tensor(shape: [3], scalars: [true, false, true]),
        ], metadata: ["format": "pt", "note": "fuzz"])
        #expect((try? SafeTensors.decode(valid))?.tensors.count == 4)
        Self.fuzz("safetensors", seed: 1, expected: Self.isTensorError) { g in
            let input = g.below(2) == 0 ? Mutate.safetensorsHeaderNumber(valid, &g) : Mutate.bytes(valid, &g)
            let decoded = try SafeTensors.decode(input, name: "fuzz.safetensors")
            for t in decoded.tensors.values { _ = t.scalars(as: Double.self) }
        }
    }

    @Test func npy() {
        let valids = [
            NPY.encode(Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6))),
            NPY.encode(Tensor(shape: [5], scalars: [Int64](arrayLiteral: 1, 2, 3, 4, 5))),
            NPY.encode(Tensor(shape: [2, 2], scalars: [true, false, false, true])),
            NPY.encode(Tensor.full([], value: 2.5, dtype: .float64)),
        ]
        #expect(valids.allSatisfy { (try? NPY.decode($0)) != nil })
        Self.fuzz("npy", seed: 2, expected: Self.isTensorError) { g in
            let valid = g.pick(valids)
            var input: Data
            if g.below(2) == 0 {
                // A header field mutated in the text (shape numbers, descr, fortran_order), its length fixed up.
                let length = Int(valid[8]) | Int(valid[9]) << 8
                var header = String(decoding: valid[10..<(10 + length)], as: UTF8.self)
                switch g.below(3) {
                case 0: header = Mutate.number(header, &g)
                case 1: header = header.replacingOccurrences(of: "False", with: "True")
                default:
                    for d in ["<f4", "<i8", "|b1", "<f8"] {
                        header = header.replacingOccurrences(of: d, with: g.pick([">f8", "|u1", "<i2", "<f2", ">u8", "<c8", "|O", "<i4"]))
                    }
                }
                let h = Array(header.utf8)
                input = valid.prefix(8) + Data([UInt8(h.count & 0xff), UInt8((h.count >> 8) & 0xff)]) + Data(h) + valid[(10 + length)...]
            } else {
                input = Mutate.bytes(valid, &g)
            }
            let t = try NPY.decode(input, name: "fuzz.npy")
            _ = t.scalars(as: Double.self)
        }
    }

    @Test func npz() throws {
        let arrays: [String: Tensor] = [
            "w": Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)),
            "ids": Tensor(shape: [3], scalars: [Int64](arrayLiteral: 7, 8, 9)),
        ]
        let valids = [try NPZ.encode(arrays, compressed: false), try NPZ.encode(arrays, compressed: true),
                      try NPZ.encode(arrays, compressed: false, zip64Threshold: 0)]
        #expect(valids.allSatisfy { (try? NPZ.decode($0))?.count == 2 })
        Self.fuzz("npz", seed: 3, expected: Self.isDataError) { g in
            var input = Mutate.bytes(g.pick(valids), &g)
            if g.below(3) == 0 { input = Mutate.field(input, &g) }
            for t in try NPZ.decode(input, name: "fuzz.npz").values { _ = t.scalars(as: Double.self) }
        }
    }

    @Test func idx() throws {
        let array = IDXArray(dimensions: [3, 4, 5], bytes: (0..<60).map { UInt8($0) })
        let raw = IDX.encode(array)
        let gz = try Gzip.compress(raw)
        #expect(try IDX.parse(raw, name: "ok", rank: 3).dimensions == [3, 4, 5])
        Self.fuzz("idx", seed: 4, expected: Self.isDataError) { g in
            let compressed = g.below(3) == 0
            let input = Mutate.bytes(compressed ? gz : raw, &g)
            let bytes = Gzip.isGzip(input) ? try Gzip.decompress(input, name: "fuzz.idx.gz") : input
            let (dims, offset) = try IDX.parse(bytes, name: "fuzz.idx", rank: g.below(2) == 0 ? 3 : nil)
            if dims.reduce(1, *) != bytes.count - offset { throw FuzzViolation("dimensions \(dims) accepted for \(bytes.count - offset) payload bytes") }
        }
    }

    @Test func trainState() {
        let valid = TrainStateValidationTests.validState()
        let validBytes = SafeTensors.encode(valid.tensors, metadata: valid.metadata)
        #expect((try? Checkpoint.decodeState(validBytes, path: "ok")) != nil)
        let keys = valid.tensors.keys.sorted()
        let metadata = valid.metadata
        let shapes: [[Int]] = [[], [], [], [1], [2], [0], [2, 2]]
        let values: [Double] = [-3, -1, 0, 1, 1.5, 1e300, .nan, .infinity, -.infinity, 9_007_199_254_740_993, 9.3e18]
        let ints: [Int64] = [-3, -1, 0, 5, Int64.max, Int64.min, 1 << 53, (1 << 53) + 1]
        Self.fuzz("train_state", seed: 5, expected: { $0 is TrainingError }) { g in
            let input: Data
            switch g.below(3) {
            case 0:
                // One field replaced by a tensor of another shape, dtype or value.
                // Tensors do not cross threads: the valid state is decoded again here.
                guard var tensors = try? SafeTensors.decode(validBytes).tensors else { throw FuzzViolation("the valid state does not decode") }
                let shape = g.pick(shapes)
                let n = shape.reduce(1, *)
                tensors[g.pick(keys)] = g.below(2) == 0
                    ? Tensor(shape: shape, scalars: [Int64](repeating: g.pick(ints), count: n))
                    : Tensor(shape: shape, scalars: [Double](repeating: g.pick(values), count: n))
                input = SafeTensors.encode(tensors, metadata: metadata)
            case 1: input = Mutate.safetensorsHeaderNumber(validBytes, &g)
            default: input = Mutate.bytes(validBytes, &g)
            }
            let loaded = try Checkpoint.decodeState(input, path: "fuzz/train_state.safetensors")
            // What a resume does with it next: the optimizer and the scheduler load their parts.
            let p = Tensor.ones([3], requiresGrad: true)
            let opt = SGD([p], lr: 0.1, momentum: 0.9)
            do { try opt.loadStateDict(loaded.optimizer) } catch { throw TrainingError.checkpoint(path: "fuzz", reason: "\(error)") }
            StepLR(opt, stepSize: 2).loadStateDict(loaded.scheduler)
            WarmupLR(opt, warmupSteps: 3, then: CosineAnnealingLR(opt, tMax: 4)).loadStateDict(loaded.scheduler)
            ReduceLROnPlateau(opt).loadStateDict(loaded.scheduler)
        }
    }

    @Test func config() throws {
        let text = try fashionShapedConfig().serialized(pretty: true)
        let registry = TestRegistry.registry()
        #expect((try? TrainConfig.check(try json(text), file: "config.json", registry: registry, requireData: false)) != nil)
        Self.fuzz("config", seed: 6, expected: { $0 is TrainingError || $0 is JSONParser.SyntaxError }) { g in
            let mutated: String
            switch g.below(4) {
            case 0, 1: mutated = Mutate.number(Mutate.number(text, &g), &g)
            case 2: mutated = String(decoding: Mutate.flipBits(Data(text.utf8), &g), as: UTF8.self)
            default: mutated = String(decoding: Mutate.truncate(Data(text.utf8), &g), as: UTF8.self)
            }
            _ = try TrainConfig.check(try json(mutated), file: "config.json", registry: registry, requireData: false)
        }
    }
}
