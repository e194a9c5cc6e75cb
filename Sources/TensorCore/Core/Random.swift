import Synchronization

/// xoshiro256** — small, fast, and its whole state (four words) can be saved with a checkpoint
/// so a resumed run draws the same numbers as an uninterrupted one.
public struct Xoshiro256: RandomNumberGenerator, Sendable, Equatable {
    public private(set) var state: [UInt64]

    /// Seeds the four words through splitmix64, as the xoshiro authors recommend.
    public init(seed: UInt64) {
        var x = seed
        var words: [UInt64] = []
        for _ in 0..<4 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words.append(z ^ (z >> 31))
        }
        state = words
    }

    /// Restores a saved state (four words, not all zero).
    public init?(state: [UInt64]) {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
        self.state = state
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A float in [0, 1) with 24 random bits.
    @inline(__always) public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }
    /// A double in [0, 1) with 53 random bits.
    @inline(__always) public mutating func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
}

/// A generator that one scope owns (see `GlobalRandom.withSeed`): the host's and the device's.
public final class RandomSource: Sendable {
    let generator: Mutex<Xoshiro256>
    let device: Mutex<PhiloxState>
    public init(seed: UInt64) { generator = Mutex(Xoshiro256(seed: seed)); device = Mutex(PhiloxState(seed: seed)) }
}

/// The process-wide generator behind `rand`, `randn`, `randint`, dropout and initialisers,
/// seeded by `Tensor.manualSeed` (like `torch.manual_seed`). A scope can run on its own seeded
/// generator with `withSeed`, which concurrent code elsewhere cannot disturb.
/// Random ops on a CUDA device draw from a second, counter-based generator (Philox4x32-10, as
/// PyTorch's CUDA generator), seeded by the same calls: `deviceState`. CPU draws never touch it.
public enum GlobalRandom {
    static let generator = Mutex(Xoshiro256(seed: 0x5EED))
    static let deviceGenerator = Mutex(PhiloxState(seed: 0x5EED))
    @TaskLocal static var scoped: RandomSource? = nil

    /// Runs `body` with every random draw in it (this task) coming from a fresh generator seeded with `seed`.
    public static func withSeed<R>(_ seed: UInt64, _ body: () throws -> R) rethrows -> R {
        try $scoped.withValue(RandomSource(seed: seed)) { try body() }
    }

    /// Seeds the current generator: this task's `withSeed` scope's, else the process-wide one (as
    /// `torch.manual_seed` inside `torch.random.fork_rng` seeds the forked state).
    /// The device generator gets the same seed at offset 0 (as `torch.manual_seed` seeds every device).
    public static func seed(_ seed: UInt64) {
        withGenerator { $0 = Xoshiro256(seed: seed) }
        withDeviceGenerator { $0 = PhiloxState(seed: seed) }
    }

    /// The current generator's state (the scope's inside `withSeed`), to save in a checkpoint.
    public static var state: [UInt64] {
        get { withGenerator { $0.state } }
        set {
            guard let g = Xoshiro256(state: newValue) else { shapeError("GlobalRandom.state: expected four words, not all zero") }
            withGenerator { $0 = g }
        }
    }

    /// The current device generator's seed and offset (the scope's inside `withSeed`), to save in a
    /// checkpoint beside `state`.
    public static var deviceState: PhiloxState {
        get { withDeviceGenerator { $0 } }
        set { withDeviceGenerator { $0 = newValue } }
    }

    /// Runs `body` with exclusive use of the current device generator.
    static func withDeviceGenerator<R>(_ body: (inout PhiloxState) -> R) -> R {
        if let source = scoped { return source.device.withLock { body(&$0) } }
        return deviceGenerator.withLock { body(&$0) }
    }

    /// Runs `body` with exclusive use of the current generator (the scope's inside `withSeed`).
    public static func withGenerator<R>(_ body: (inout Xoshiro256) -> R) -> R {
        if let source = scoped { return source.generator.withLock { body(&$0) } }
        return generator.withLock { body(&$0) }
    }
}
