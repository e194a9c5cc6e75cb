#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Tensor {
    /// A tensor of `shape` with every element `value` in `dtype`.
    public static func full(_ shape: [Int], value: Double, dtype: DType = .float32, requiresGrad: Bool = false, device: Device = .cpu) -> Tensor {
        if shape.contains(where: { $0 < 0 }) { shapeError("negative dimension in shape \(shape)") }
        if device != .cpu {
            let t = Tensor(uninitialized: shape, dtype: dtype, device: device)
            CUDAOps.fill(t, value)
            if requiresGrad { t.requiresGrad = true }
            return t
        }
        let t = Tensor(uninitialized: shape, dtype: dtype)
        let n = t.numel
        switch dtype {
        case .float32:
            let p = t.pointer(Float.self); let v = Float(value)
            if v == 0 { memset(p, 0, n * 4) } else { p.initialize(repeating: v, count: n) }
        case .float64: t.pointer(Double.self).initialize(repeating: value, count: n)
        case .int64: t.pointer(Int64.self).initialize(repeating: Int64(value), count: n)
        case .bool: t.pointer(Bool.self).initialize(repeating: value != 0, count: n)
        }
        if requiresGrad { t.requiresGrad = true }
        return t
    }

    /// `torch.full(shape, 7)`: an integer fill value gives int64, as in PyTorch.
    public static func full(_ shape: [Int], value: Int, dtype: DType = .int64, requiresGrad: Bool = false, device: Device = .cpu) -> Tensor {
        if device != .cpu {
            let t = Tensor(uninitialized: shape, dtype: dtype, device: device)
            CUDAOps.fill(t, Double(value), int: dtype == .int64 ? Int64(value) : nil)
            if requiresGrad { t.requiresGrad = true }
            return t
        }
        if dtype == .int64 && !requiresGrad {
            // Directly, not through Double: integers beyond 2^53 stay exact.
            let t = full(shape, value: 0.0, dtype: .int64)
            t.pointer(Int64.self).update(repeating: Int64(value), count: t.numel)
            return t
        }
        return full(shape, value: Double(value), dtype: dtype, requiresGrad: requiresGrad)
    }

    public static func zeros(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false, device: Device = .cpu) -> Tensor {
        full(shape, value: 0.0, dtype: dtype, requiresGrad: requiresGrad, device: device)
    }
    public static func zeros(_ shape: Int..., dtype: DType = .float32) -> Tensor { zeros(shape, dtype: dtype) }

    public static func ones(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false, device: Device = .cpu) -> Tensor {
        full(shape, value: 1.0, dtype: dtype, requiresGrad: requiresGrad, device: device)
    }
    public static func ones(_ shape: Int..., dtype: DType = .float32) -> Tensor { ones(shape, dtype: dtype) }

    public static func zeros(like t: Tensor) -> Tensor { zeros(t.shape, dtype: t.dtype, device: t.device) }
    public static func ones(like t: Tensor) -> Tensor { ones(t.shape, dtype: t.dtype, device: t.device) }
    public static func full(like t: Tensor, value: Double) -> Tensor { full(t.shape, value: value, dtype: t.dtype, device: t.device) }

    /// Uniform samples in [0, 1) on `device`. On a CUDA device they are drawn there, from the device
    /// generator (Philox4x32-10, `GlobalRandom.deviceState`), as torch.rand(device="cuda") draws
    /// from the CUDA generator: other values than the CPU's for the same seed.
    public static func rand(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false, device: Device) -> Tensor {
        let t = device == .cpu ? rand(shape, dtype: dtype) : CUDARandom.uniform(shape, dtype: dtype, device: device)
        if requiresGrad { t.requiresGrad = true }
        return t
    }

    /// `torch.arange(end, device=...)`.
    public static func arange(_ end: Int, device: Device) -> Tensor { arange(end).to(device) }
    /// `torch.randint(high, shape, device=...)`: on a CUDA device drawn there (device generator).
    public static func randint(_ high: Int, shape: [Int], device: Device) -> Tensor { randint(low: 0, high: high, shape: shape, device: device) }
    /// `torch.randint(low, high, shape, device=...)`: on a CUDA device drawn there (device generator).
    public static func randint(low: Int, high: Int, shape: [Int], device: Device) -> Tensor {
        if device == .cpu { return randint(low: low, high: high, shape: shape) }
        if high <= low { usageError("randint: high (\(high)) must be greater than low (\(low))") }
        return CUDARandom.integers(low: low, high: high, shape: shape, device: device)
    }
    /// The identity matrix on `device`.
    public static func eye(_ n: Int, dtype: DType = .float32, device: Device) -> Tensor { eye(n, dtype: dtype).to(device) }

    /// Standard normal samples on `device`; on a CUDA device drawn there (device generator).
    public static func randn(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false, device: Device) -> Tensor {
        let t = device == .cpu ? randn(shape, dtype: dtype) : CUDARandom.normal(shape, dtype: dtype, device: device)
        if requiresGrad { t.requiresGrad = true }
        return t
    }

    /// The identity matrix.
    public static func eye(_ n: Int, dtype: DType = .float32) -> Tensor {
        let t = zeros([n, n], dtype: dtype)
        for i in 0..<n {
            switch dtype {
            case .float32: t.pointer(Float.self)[i * n + i] = 1
            case .float64: t.pointer(Double.self)[i * n + i] = 1
            case .int64: t.pointer(Int64.self)[i * n + i] = 1
            case .bool: t.pointer(Bool.self)[i * n + i] = true
            }
        }
        return t
    }

    /// `torch.arange(end)`: int64 0..<end.
    public static func arange(_ end: Int) -> Tensor { arange(0, end, step: 1) }

    /// `torch.arange(start, end, step)` over integers: int64.
    public static func arange(_ start: Int, _ end: Int, step: Int = 1) -> Tensor {
        if step == 0 { usageError("arange: step must be nonzero") }
        let n = Swift.max(0, (end - start + step - (step > 0 ? 1 : -1)) / step)
        let t = Tensor(uninitialized: [n], dtype: .int64)
        let p = t.pointer(Int64.self)
        for i in 0..<n { p[i] = Int64(start + i * step) }
        return t
    }

    /// `torch.arange(start, end, step)` with a fractional bound or step: float32 by default.
    public static func arange(_ start: Double, _ end: Double, step: Double = 1, dtype: DType = .float32) -> Tensor {
        if step == 0 { usageError("arange: step must be nonzero") }
        let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        let values = (0..<n).map { start + Double($0) * step }
        return Tensor(shape: [n], scalars: values).to(dtype)
    }

    /// `torch.linspace(start, end, steps)`.
    public static func linspace(_ start: Double, _ end: Double, steps: Int, dtype: DType = .float32) -> Tensor {
        if steps < 0 { usageError("linspace: steps must be non-negative") }
        let values = (0..<steps).map { steps == 1 ? start : start + (end - start) * Double($0) / Double(steps - 1) }
        return Tensor(shape: [steps], scalars: values).to(dtype)
    }

    /// Seeds the global generator (`torch.manual_seed`).
    public static func manualSeed(_ seed: UInt64) { GlobalRandom.seed(seed) }

    /// Uniform samples in [0, 1).
    public static func rand(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape, dtype: dtype)
        let n = t.numel
        GlobalRandom.withGenerator { g in
            switch dtype {
            case .float32: let p = t.pointer(Float.self); for i in 0..<n { p[i] = g.nextFloat() }
            case .float64: let p = t.pointer(Double.self); for i in 0..<n { p[i] = g.nextDouble() }
            default: usageError("rand: dtype must be floating point, got \(dtype)")
            }
        }
        if requiresGrad { t.requiresGrad = true }
        return t
    }
    public static func rand(_ shape: Int...) -> Tensor { rand(shape) }

    /// Standard normal samples (Box–Muller).
    public static func randn(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape, dtype: dtype)
        let n = t.numel
        var values = [Double](repeating: 0, count: n)
        GlobalRandom.withGenerator { g in
            var i = 0
            while i < n {
                let u1 = 1 - g.nextDouble(), u2 = g.nextDouble()   // u1 in (0, 1]
                let r = (-2 * Foundation_log(u1)).squareRoot()
                values[i] = r * cos(2 * Double.pi * u2)
                if i + 1 < n { values[i + 1] = r * sin(2 * Double.pi * u2) }
                i += 2
            }
        }
        switch dtype {
        case .float32: let p = t.pointer(Float.self); for i in 0..<n { p[i] = Float(values[i]) }
        case .float64: let p = t.pointer(Double.self); for i in 0..<n { p[i] = values[i] }
        default: usageError("randn: dtype must be floating point, got \(dtype)")
        }
        if requiresGrad { t.requiresGrad = true }
        return t
    }
    public static func randn(_ shape: Int...) -> Tensor { randn(shape) }

    /// Uniform integers in `0..<high` (`torch.randint(high, shape)`), int64.
    public static func randint(_ high: Int, shape: [Int]) -> Tensor { randint(low: 0, high: high, shape: shape) }

    /// Uniform integers in `low..<high`, int64.
    public static func randint(low: Int, high: Int, shape: [Int]) -> Tensor {
        if high <= low { usageError("randint: high (\(high)) must be greater than low (\(low))") }
        let t = Tensor(uninitialized: shape, dtype: .int64)
        let p = t.pointer(Int64.self)
        let range = UInt64(high - low)
        GlobalRandom.withGenerator { g in
            for i in 0..<t.numel { p[i] = Int64(low) + Int64(bitPattern: UInt64.random(in: 0..<range, using: &g)) }
        }
        return t
    }

    /// A random permutation of `0..<n`, int64 (`torch.randperm`).
    public static func randperm(_ n: Int) -> Tensor {
        var order = Array(0..<n).map { Int64($0) }
        GlobalRandom.withGenerator { g in order.shuffle(using: &g) }
        return Tensor(shape: [n], scalars: order)
    }

    /// Fills this floating tensor in place with uniform samples in [low, high) from the global
    /// generator (`uniform_`), not recorded. Used by initialisers.
    public func uniformInPlace(low: Double, high: Double) {
        if !isContiguous || !dtype.isFloatingPoint { usageError("uniformInPlace needs a contiguous floating tensor") }
        if storage.isOnDevice { CUDARandom.fill(self, .uniform, p0: low, p1: high); return }
        let n = numel
        GlobalRandom.withGenerator { g in
            switch dtype {
            case .float32:
                let p = pointer(Float.self), lo = Float(low), w = Float(high - low)
                for i in 0..<n { p[i] = lo + w * g.nextFloat() }
            default:
                let p = pointer(Double.self)
                for i in 0..<n { p[i] = low + (high - low) * g.nextDouble() }
            }
        }
    }

    /// Fills this floating tensor in place with normal samples (`normal_`), not recorded.
    public func normalInPlace(mean: Double = 0, std: Double = 1) {
        if storage.isOnDevice && isContiguous {
            if !dtype.isFloatingPoint { usageError("normalInPlace needs a floating tensor, got \(dtype)") }
            CUDARandom.fill(self, .normal, p0: mean, p1: std)
            return
        }
        let r = Tensor.randn(shape, dtype: dtype, device: device)
        copy(from: r * std + mean)
    }
}
