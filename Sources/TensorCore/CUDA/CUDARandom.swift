/// Random ops on a CUDA device: drawn on the device by kernels.cu's `philox_fill` from the device
/// generator (`GlobalRandom.deviceState`), never on the host and copied. The host only reserves
/// counter blocks: each draw takes the next ceil(n / valuesPerBlock) blocks of the stream.
enum CUDARandom {
    enum Kind: Int {
        case uniform = 0, normal = 1, bernoulli = 2, integer = 3, rawWords = 4
    }

    /// Values one Philox block (four 32-bit words) gives: four float32 values or raw words, two of
    /// anything 64-bit (a float64 takes 53 bits of two words, an int64 a whole 64-bit pair).
    static func valuesPerBlock(_ kind: Kind, _ dtype: DType) -> Int {
        kind == .rawWords || dtype == .float32 ? 4 : 2
    }

    /// Fills the contiguous device tensor `t` with one draw of `kind`; `subsequence` only for the
    /// known-answer test (every draw of the engine is on subsequence 0).
    static func fill(_ t: Tensor, _ kind: Kind, p0: Double = 0, p1: Double = 0, low: Int64 = 0, range: UInt64 = 0,
                     subsequence: UInt64 = 0, state: PhiloxState? = nil) {
        let ctx = CUDAOps.context(t)
        if !t.isContiguous { usageError("internal: a device random draw into a non-contiguous tensor") }
        let n = t.numel
        if n == 0 { return }
        let blocks = (n + valuesPerBlock(kind, t.dtype) - 1) / valuesPerBlock(kind, t.dtype)
        let (seed, offset): (UInt64, UInt64)
        if let state {
            (seed, offset) = (state.seed, state.offset)
        } else {
            (seed, offset) = GlobalRandom.withDeviceGenerator { g in (g.seed, g.reserve(UInt64(blocks))) }
        }
        let args = KernelArgs().int(n).int(kind.rawValue).int(t.dtype.cudaCode).tensor(t).word(seed).word(offset).word(subsequence)
            .double(p0).double(p1).int(Int(low)).word(range)
        CUDAOps.launch(ctx, "philox_fill", count: blocks, args)
    }

    static func floating(_ what: String, _ dtype: DType) {
        if !dtype.isFloatingPoint { usageError("\(what): dtype must be floating point, got \(dtype)") }
    }

    /// `rand` on the device: uniform in [0, 1).
    static func uniform(_ shape: [Int], dtype: DType, device: Device, low: Double = 0, high: Double = 1) -> Tensor {
        floating("rand", dtype)
        let t = Tensor(uninitialized: shape, dtype: dtype, device: device)
        fill(t, .uniform, p0: low, p1: high)
        return t
    }

    /// `randn` on the device: normal (Box–Muller on the device).
    static func normal(_ shape: [Int], dtype: DType, device: Device, mean: Double = 0, std: Double = 1) -> Tensor {
        floating("randn", dtype)
        let t = Tensor(uninitialized: shape, dtype: dtype, device: device)
        fill(t, .normal, p0: mean, p1: std)
        return t
    }

    /// `randint(low, high)` on the device, int64.
    static func integers(low: Int, high: Int, shape: [Int], device: Device) -> Tensor {
        let t = Tensor(uninitialized: shape, dtype: .int64, device: device)
        fill(t, .integer, low: Int64(low), range: UInt64(bitPattern: Int64(high) &- Int64(low)))
        return t
    }

    /// A dropout mask on the device: `1/keep` with probability `keep`, else 0.
    static func bernoulliMask(_ shape: [Int], keep: Double, dtype: DType, device: Device) -> Tensor {
        let t = Tensor(uninitialized: shape, dtype: dtype, device: device)
        fill(t, .bernoulli, p0: keep, p1: keep > 0 ? 1 / keep : 0)
        return t
    }
}
