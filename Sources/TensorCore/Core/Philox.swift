/// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11), the
/// counter-based generator behind device random ops, as curand and PyTorch's CUDA generator use it.
/// A draw is a pure function of (key, counter): the device computes any block without a shared
/// state, and the host keeps only the seed and how many blocks were drawn (`PhiloxState`).
public enum Philox4x32 {
    static let multipliers: (UInt32, UInt32) = (0xD251_1F53, 0xCD9E_8D57)
    static let weyl: (UInt32, UInt32) = (0x9E37_79B9, 0xBB67_AE85)

    /// The ten-round bijection of one 128-bit counter under a 64-bit key (Random123's `philox4x32_R(10, …)`).
    public static func block(counter c: (UInt32, UInt32, UInt32, UInt32), key k: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var (x0, x1, x2, x3) = c
        var (k0, k1) = k
        for round in 0..<10 {
            if round > 0 { k0 &+= weyl.0; k1 &+= weyl.1 }
            let p0 = UInt64(multipliers.0) * UInt64(x0), p1 = UInt64(multipliers.1) * UInt64(x2)
            (x0, x1, x2, x3) = (UInt32(truncatingIfNeeded: p1 >> 32) ^ x1 ^ k0, UInt32(truncatingIfNeeded: p1),
                                UInt32(truncatingIfNeeded: p0 >> 32) ^ x3 ^ k1, UInt32(truncatingIfNeeded: p0))
        }
        return (x0, x1, x2, x3)
    }

    /// Block `index` of the stream of `seed` as ferry's kernels number it: key = the seed's low and
    /// high words, counter = (index low, index high, subsequence low, subsequence high).
    public static func block(seed: UInt64, index: UInt64, subsequence: UInt64 = 0) -> [UInt32] {
        let r = block(counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                                UInt32(truncatingIfNeeded: subsequence), UInt32(truncatingIfNeeded: subsequence >> 32)),
                      key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
        return [r.0, r.1, r.2, r.3]
    }
}

/// The state of the device generator: its seed (the Philox key) and how many 128-bit counter
/// blocks have been drawn (the next draw starts at block `offset`). Saved in train_state as
/// `rng.cuda_state`, so a resumed GPU run draws what an uninterrupted one would.
public struct PhiloxState: Sendable, Equatable, CustomStringConvertible {
    public var seed: UInt64
    public var offset: UInt64
    public init(seed: UInt64, offset: UInt64 = 0) { self.seed = seed; self.offset = offset }

    /// Reserves `blocks` counter blocks for one draw: returns where it starts, and moves past it.
    mutating func reserve(_ blocks: UInt64) -> UInt64 {
        let start = offset
        offset &+= blocks
        return start
    }

    public var description: String { "philox(seed: \(seed), offset: \(offset))" }
}
