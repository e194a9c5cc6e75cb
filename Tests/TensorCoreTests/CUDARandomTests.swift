import Foundation
import Testing
@testable import TensorCore

/// The device generator: Philox4x32-10 against Random123's published answers, the mock's draws
/// against a CPU reference of the same stream, and its state saved and restored.
@Suite struct CUDARandomTests {
    /// Random123's tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words),
    /// expected output (4 words).
    static let knownAnswers: [(counter: [UInt32], key: [UInt32], expected: [UInt32])] = [
        ([0, 0, 0, 0], [0, 0], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
        ([0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff], [0xffff_ffff, 0xffff_ffff], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
        ([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0], [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
    ]

    /// ferry's numbering of a known-answer line: block index = counter words 0-1, subsequence = 2-3, seed = the key.
    static func numbering(_ v: (counter: [UInt32], key: [UInt32], expected: [UInt32])) -> (seed: UInt64, index: UInt64, subsequence: UInt64) {
        func word(_ lo: UInt32, _ hi: UInt32) -> UInt64 { UInt64(hi) << 32 | UInt64(lo) }
        return (word(v.key[0], v.key[1]), word(v.counter[0], v.counter[1]), word(v.counter[2], v.counter[3]))
    }

    @Test func philoxCoreMatchesRandom123KnownAnswers() {
        for v in Self.knownAnswers {
            let r = Philox4x32.block(counter: (v.counter[0], v.counter[1], v.counter[2], v.counter[3]), key: (v.key[0], v.key[1]))
            #expect([r.0, r.1, r.2, r.3] == v.expected, "counter \(v.counter) key \(v.key)")
            let n = Self.numbering(v)
            #expect(Philox4x32.block(seed: n.seed, index: n.index, subsequence: n.subsequence) == v.expected)
        }
    }

    /// The kernel's own Philox (kernels.cu, compiled for the mock) gives the same known answers.
    @Test func deviceKernelMatchesRandom123KnownAnswers() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 16 << 20)
        withCUDADriver(mock) {
            for v in Self.knownAnswers {
                let n = Self.numbering(v)
                let t = Tensor(uninitialized: [4], dtype: .int64, device: .cuda(0))
                CUDARandom.fill(t, .rawWords, subsequence: n.subsequence, state: PhiloxState(seed: n.seed, offset: n.index))
                #expect(t.scalars(as: Int64.self) == v.expected.map { Int64($0) }, "counter \(v.counter) key \(v.key)")
            }
            #expect(mock.launchCounts["philox_fill"] == 3)
        }
    }

    // MARK: a CPU reference of the stream, written from the definitions in kernels.cu

    /// The words of `blocks` blocks from `offset` of `seed`'s stream.
    static func words(seed: UInt64, offset: UInt64, blocks: Int) -> [UInt32] {
        (0..<blocks).flatMap { Philox4x32.block(seed: seed, index: offset + UInt64($0)) }
    }
    static func unit24(_ w: UInt32) -> Float { Float(w >> 8) * (1.0 / 16_777_216.0) }
    static func unit53(_ hi: UInt32, _ lo: UInt32) -> Double { Double((UInt64(hi) << 32 | UInt64(lo)) >> 11) * (1.0 / 9_007_199_254_740_992.0) }
    static func boxMuller(_ u1: Double, _ u2: Double) -> (Double, Double) {
        let r = (-2.0 * Foundation.log(u1)).squareRoot(), t = 6.283185307179586 * u2
        return (r * Foundation.cos(t), r * Foundation.sin(t))
    }

    /// The float32 uniforms [0, 1) of a draw of `n` values at block `offset`.
    static func uniformF32(_ s: UInt64, _ offset: UInt64, _ n: Int) -> [Float] {
        Array(words(seed: s, offset: offset, blocks: (n + 3) / 4).map(unit24).prefix(n))
    }
    static func uniformF64(_ s: UInt64, _ offset: UInt64, _ n: Int) -> [Double] {
        let w = words(seed: s, offset: offset, blocks: (n + 1) / 2)
        return Array(stride(from: 0, to: w.count, by: 2).map { unit53(w[$0], w[$0 + 1]) }.prefix(n))
    }
    /// Standard normals from float32 uniforms, in double (the kernel rounds after scaling).
    static func normalF32(_ s: UInt64, _ offset: UInt64, _ n: Int) -> [Double] {
        let w = words(seed: s, offset: offset, blocks: (n + 3) / 4)
        var out: [Double] = []
        for i in stride(from: 0, to: w.count, by: 2) {
            let z = boxMuller(1 - Double(unit24(w[i])), Double(unit24(w[i + 1])))
            out += [z.0, z.1]
        }
        return Array(out.prefix(n))
    }
    static func normalF64(_ s: UInt64, _ offset: UInt64, _ n: Int) -> [Double] {
        let w = words(seed: s, offset: offset, blocks: (n + 1) / 2)
        var out: [Double] = []
        for i in stride(from: 0, to: w.count, by: 4) {
            let z = boxMuller(1 - unit53(w[i], w[i + 1]), unit53(w[i + 2], w[i + 3]))
            out += [z.0, z.1]
        }
        return Array(out.prefix(n))
    }
    static func integers(_ s: UInt64, _ offset: UInt64, _ n: Int, low: Int64, high: Int64) -> [Int64] {
        let w = words(seed: s, offset: offset, blocks: (n + 1) / 2)
        let range = UInt64(high - low)
        return Array(stride(from: 0, to: w.count, by: 2).map { i -> Int64 in
            low + Int64(bitPattern: (UInt64(w[i]) << 32 | UInt64(w[i + 1])).multipliedFullWidth(by: range).high)
        }.prefix(n))
    }

    /// Each device random op equals the reference, value for value, and advances the offset by the
    /// blocks it used: rand, randn (float32 and float64, odd counts), randint, dropout masks, and the
    /// in-place initialisers.
    @Test func mockDrawsEqualTheCPUReferenceOfTheStream() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 64 << 20)
        withCUDADriver(mock) {
            GlobalRandom.withSeed(2024) {
                let seed: UInt64 = 2024
                #expect(GlobalRandom.deviceState == PhiloxState(seed: seed, offset: 0))
                let before = mock.launchCounts["philox_fill", default: 0]
                let r = Tensor.rand([3, 7], device: .cuda(0))                       // 21 values: 6 blocks
                #expect(r.scalars(as: Float.self) == Self.uniformF32(seed, 0, 21))
                #expect(GlobalRandom.deviceState.offset == 6)
                let r64 = Tensor.rand([5], dtype: .float64, device: .cuda(0))         // 3 blocks
                #expect(r64.scalars(as: Double.self) == Self.uniformF64(seed, 6, 5))
                let n = Tensor.randn([9], device: .cuda(0))                           // 3 blocks
                #expect(n.scalars(as: Float.self) == Self.normalF32(seed, 9, 9).map { Float($0) })
                let n64 = Tensor.randn([2, 3], dtype: .float64, device: .cuda(0))     // 3 blocks
                #expect(n64.scalars(as: Double.self) == Self.normalF64(seed, 12, 6))
                let k = Tensor.randint(low: -3, high: 1_000_003, shape: [7], device: .cuda(0))   // 4 blocks
                #expect(k.scalars(as: Int64.self) == Self.integers(seed, 15, 7, low: -3, high: 1_000_003))
                #expect(GlobalRandom.deviceState.offset == 19)
                // Dropout: x * mask, the mask from the stream (float32: 4 per block), its gradient the mask.
                let x = Tensor.ones([10], device: .cuda(0)).requiresGrad(true)
                let d = F.dropout(x, p: 0.25)
                let mask = Self.uniformF32(seed, 19, 10).map { $0 < Float(0.75) ? Float(1 / 0.75) : 0 }
                #expect(d.scalars(as: Float.self) == mask)
                d.sum().backward()
                #expect(x.grad?.scalars(as: Float.self) == mask)
                let x64 = Tensor.ones([2, 3, 1, 1], dtype: .float64, device: .cuda(0))
                let d2 = F.dropout2d(x64, p: 0.5)                                     // 6 channels, 3 blocks
                #expect(d2.scalars(as: Double.self) == Self.uniformF64(seed, 22, 6).map { $0 < 0.5 ? 2 : 0 })
                let w = Tensor.zeros([6], device: .cuda(0))
                w.uniformInPlace(low: -0.5, high: 0.5)                                 // 2 blocks
                #expect(w.scalars(as: Float.self) == Self.uniformF32(seed, 25, 6).map { Float(-0.5) + Float(1.0) * $0 })
                w.normalInPlace(mean: 1, std: 2)                                       // 2 blocks
                #expect(w.scalars(as: Float.self) == Self.normalF32(seed, 27, 6).map { Float(1 + 2 * $0) })
                #expect(GlobalRandom.deviceState == PhiloxState(seed: seed, offset: 29))
                #expect(mock.launchCounts["philox_fill", default: 0] - before == 9, "every draw is one device launch")
            }
        }
    }

    /// Draw, save the state, draw more; restoring the state draws the same again. CPU draws and
    /// device draws use separate generators: neither moves the other.
    @Test func savedDeviceStateRedrawsTheSameValues() {
        withCUDADriver(MockCUDADriver(devices: 1, memoryBytes: 16 << 20)) {
            GlobalRandom.withSeed(7) {
                _ = Tensor.randn([33], device: .cuda(0))
                let saved = GlobalRandom.deviceState, cpuSaved = GlobalRandom.state
                let a = Tensor.rand([17], device: .cuda(0)).scalars(as: Float.self)
                let b = F.dropout(Tensor.ones([50], device: .cuda(0)), p: 0.5).scalars(as: Float.self)
                #expect(GlobalRandom.state == cpuSaved, "device draws leave the CPU generator alone")
                _ = Tensor.rand([4])
                #expect(GlobalRandom.deviceState.offset == saved.offset + 5 + 13, "CPU draws leave the device generator alone")
                GlobalRandom.deviceState = saved
                #expect(Tensor.rand([17], device: .cuda(0)).scalars(as: Float.self) == a)
                #expect(F.dropout(Tensor.ones([50], device: .cuda(0)), p: 0.5).scalars(as: Float.self) == b)
                // manualSeed restarts the device stream at offset 0.
                Tensor.manualSeed(7)
                #expect(GlobalRandom.deviceState == PhiloxState(seed: 7, offset: 0))
            }
        }
    }

    /// The draws look like their distributions (a mistake in a transform shows here even where the
    /// reference repeats it): range, mean and spread of 40,000 values.
    @Test func deviceDrawsHaveTheirDistributions() {
        withCUDADriver(MockCUDADriver(devices: 1, memoryBytes: 64 << 20)) {
            GlobalRandom.withSeed(11) {
                let u = Tensor.rand([40_000], device: .cuda(0)).scalars(as: Float.self)
                #expect(u.allSatisfy { $0 >= 0 && $0 < 1 })
                #expect(Swift.abs(u.reduce(0, +) / Float(u.count) - 0.5) < 0.01)
                let z = Tensor.randn([40_000], dtype: .float64, device: .cuda(0)).scalars(as: Double.self)
                let mean = z.reduce(0, +) / Double(z.count)
                let sd = (z.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(z.count)).squareRoot()
                #expect(Swift.abs(mean) < 0.02 && Swift.abs(sd - 1) < 0.02, "mean \(mean) sd \(sd)")
                let k = Tensor.randint(low: 5, high: 9, shape: [40_000], device: .cuda(0)).scalars(as: Int64.self)
                #expect(Set(k) == [5, 6, 7, 8])
                let kept = F.dropout(Tensor.ones([40_000], device: .cuda(0)), p: 0.3).scalars(as: Float.self).filter { $0 != 0 }.count
                #expect(Swift.abs(Double(kept) / 40_000 - 0.7) < 0.01)
            }
        }
    }
}
