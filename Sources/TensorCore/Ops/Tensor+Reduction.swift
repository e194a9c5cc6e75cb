import System
extension Tensor {
    func normalizeDims(_ dims: [Int]) -> [Int] {
        let ds = dims.map { normalizeDim($0) }
        if Set(ds).count != ds.count { shapeError("dimension repeated in \(dims) for shape \(shape)") }
        // Reducing a 0-d tensor over its dim 0 (or -1) reduces over nothing.
        return ndim == 0 ? [] : ds
    }

    /// The output shape of a reduction over `dims`.
    func reducedShape(_ dims: [Int], keepDim: Bool) -> [Int] {
        let set = Set(dims)
        if keepDim { return shape.enumerated().map { set.contains($0.offset) ? 1 : $0.element } }
        return shape.enumerated().filter { !set.contains($0.offset) }.map(\.element)
    }

    /// A gradient of a reduction's output, reshaped with the reduced dims kept and expanded back.
    static func expandReduced(_ g: Tensor, dims: [Int], inShape: [Int]) -> Tensor {
        let set = Set(dims)
        let kept = inShape.enumerated().map { set.contains($0.offset) ? 1 : $0.element }
        return g.reshape(kept).expand(inShape)
    }

    // MARK: sum / mean

    /// Sum over `dims` (all when empty). Integers and bools sum to int64.
    public func sum(dims: [Int], keepDim: Bool = false) -> Tensor {
        let ds = dims.isEmpty ? Array(0..<ndim) : normalizeDims(dims)
        let outShape = reducedShape(ds, keepDim: keepDim)
        let layout = ReduceLayout(self, dims: ds)
        let outType: DType = dtype.isFloatingPoint ? dtype : .int64
        let out = Tensor(uninitialized: outShape, dtype: outType, like: self)
        if storage.isOnDevice { CUDAOps.reduce(layout, op: 0, into: out) } else {
        switch dtype {
        case .float32:
            Reduce.sumFloat(layout, into: out.pointer(Float.self))
        case .float64:
            var q = out.pointer(Double.self)
            Reduce.fold(layout, Double.self, initial: 0.0, { $0 + $1 }) { q.pointee = $0; q += 1 }
        case .int64:
            var q = out.pointer(Int64.self)
            Reduce.fold(layout, Int64.self, initial: Int64(0), { $0 &+ $1 }) { q.pointee = $0; q += 1 }
        case .bool:
            var q = out.pointer(Int64.self)
            Reduce.fold(layout, Bool.self, initial: Int64(0), { $0 + ($1 ? 1 : 0) }) { q.pointee = $0; q += 1 }
        }
        }
        let inShape = shape
        // PyTorch's names: SumBackward0 for the sum of all elements, SumBackward1 over dims.
        return out.recorded(dims.isEmpty ? "SumBackward0" : "SumBackward1", [self]) { g in [Tensor.expandReduced(g, dims: ds, inShape: inShape)] }
    }

    /// Sum of all elements (a 0-d tensor).
    public func sum() -> Tensor { sum(dims: []) }
    public func sum(dim: Int, keepDim: Bool = false) -> Tensor { sum(dims: [dim], keepDim: keepDim) }

    /// Mean over `dims` (all when empty). Floating tensors only, as in PyTorch.
    public func mean(dims: [Int], keepDim: Bool = false) -> Tensor {
        if !dtype.isFloatingPoint { usageError("mean(): could not infer output dtype; input dtype must be floating point, got \(dtype) (use .float() first)") }
        let ds = dims.isEmpty ? Array(0..<ndim) : normalizeDims(dims)
        let n = ds.map { shape[$0] }.reduce(1, *)
        let out = noGrad { sum(dims: ds, keepDim: keepDim) / Double(Swift.max(n, 1)) * (n == 0 ? .nan : 1) }
        // One node named as PyTorch's (MeanBackward0/1), not the MulBackward0 of the composition.
        let inShape = shape
        return out.recorded(dims.isEmpty ? "MeanBackward0" : "MeanBackward1", [self]) { g in
            [Tensor.expandReduced(g, dims: ds, inShape: inShape) / Double(Swift.max(n, 1))]
        }
    }
    public func mean() -> Tensor { mean(dims: []) }
    public func mean(dim: Int, keepDim: Bool = false) -> Tensor { mean(dims: [dim], keepDim: keepDim) }

    /// Undoes broadcasting: sums this gradient down to `target` (the one place that does it).
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = ndim - target.count
        if lead < 0 { shapeError("sumTo: cannot reduce shape \(shape) to the larger shape \(target)") }
        var dims = Array(0..<lead)
        for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { dims.append(lead + i) }
        let s = dims.isEmpty ? self : sum(dims: dims, keepDim: true)
        return s.reshape(target)
    }

    // MARK: variance

    /// Variance over `dims` with Bessel's `correction` (PyTorch's default 1).
    public func `var`(dims: [Int], correction: Int = 1, keepDim: Bool = false) -> Tensor {
        let ds = dims.isEmpty ? Array(0..<ndim) : normalizeDims(dims)
        let n = ds.map { shape[$0] }.reduce(1, *)
        let mu = mean(dims: ds, keepDim: true)
        let diff = self - mu
        return (diff * diff).sum(dims: ds, keepDim: keepDim) / Double(Swift.max(n - correction, 0))
    }
    public func `var`(correction: Int = 1) -> Tensor { self.var(dims: [], correction: correction) }
    public func `var`(dim: Int, correction: Int = 1, keepDim: Bool = false) -> Tensor { self.var(dims: [dim], correction: correction, keepDim: keepDim) }

    /// Standard deviation (square root of `var`).
    public func std(dims: [Int], correction: Int = 1, keepDim: Bool = false) -> Tensor { self.var(dims: dims, correction: correction, keepDim: keepDim).sqrt() }
    public func std(correction: Int = 1) -> Tensor { std(dims: [], correction: correction) }
    public func std(dim: Int, correction: Int = 1, keepDim: Bool = false) -> Tensor { std(dims: [dim], correction: correction, keepDim: keepDim) }

    // MARK: max / min

    /// Values and first indices of the extreme along `dim`; NaN wins, as in PyTorch.
    func extreme(dim: Int, keepDim: Bool, max: Bool) -> (values: Tensor, indices: Tensor) {
        let d = normalizeDim(dim)
        if shape.isEmpty { return (self, Tensor.zeros([], dtype: .int64, device: device)) }
        if shape[d] == 0 { shapeError("\(max ? "max" : "min")(dim: \(dim)): cannot reduce an empty dimension (shape \(shape))") }
        let layout = ReduceLayout(self, dims: [d])
        let outShape = reducedShape([d], keepDim: keepDim)
        let values = Tensor(uninitialized: outShape, dtype: dtype, like: self)
        let indices = Tensor(uninitialized: outShape, dtype: .int64, like: self)
        if storage.isOnDevice && dtype != .bool { CUDAOps.reduce(layout, op: max ? 1 : 2, into: values, indices: indices) } else {
        func run<T: Comparable>(_: T.Type, isNaN: (T) -> Bool) {
            let src = layout.source.pointer(T.self), vp = values.pointer(T.self), ip = indices.pointer(Int64.self)
            var k = 0
            for o in 0..<layout.outer {
                for j in 0..<layout.inner {
                    var q = src + o * layout.count * layout.inner + j
                    var best = q.pointee, bestIndex = 0
                    if !isNaN(best) {
                        for r in 1..<Swift.max(layout.count, 1) {
                            q += layout.inner
                            let v = q.pointee
                            if isNaN(v) { best = v; bestIndex = r; break }
                            if max ? v > best : v < best { best = v; bestIndex = r }
                        }
                    }
                    vp[k] = best; ip[k] = Int64(bestIndex); k += 1
                }
            }
        }
        switch dtype {
        case .float32: run(Float.self) { $0.isNaN }
        case .float64: run(Double.self) { $0.isNaN }
        case .int64: run(Int64.self) { _ in false }
        case .bool: let r = to(.int64).extreme(dim: dim, keepDim: keepDim, max: max); return (r.values.to(.bool), r.indices)
        }
        }
        let inShape = shape
        let idx = keepDim ? indices : indices.unsqueeze(d)
        let result = values.recorded(max ? "MaxBackward0" : "MinBackward0", [self]) { g in
            let gk = keepDim ? g : g.unsqueeze(d)
            return [Tensor.zeros(inShape, dtype: g.dtype, device: g.device).scatterAdd(dim: d, index: idx, source: gk)]
        }
        return (result, indices)
    }

    /// `(values, indices)` of the maximum along `dim`.
    public func max(dim: Int, keepDim: Bool = false) -> (values: Tensor, indices: Tensor) { extreme(dim: dim, keepDim: keepDim, max: true) }
    /// `(values, indices)` of the minimum along `dim`.
    public func min(dim: Int, keepDim: Bool = false) -> (values: Tensor, indices: Tensor) { extreme(dim: dim, keepDim: keepDim, max: false) }

    /// The largest element (0-d); the gradient is shared evenly among ties.
    public func max() -> Tensor { overallExtreme(max: true) }
    /// The smallest element (0-d).
    public func min() -> Tensor { overallExtreme(max: false) }

    func overallExtreme(max: Bool) -> Tensor {
        if numel == 0 { shapeError("\(max ? "max" : "min")(): cannot reduce an empty tensor; specify a dimension") }
        let flat = noGrad { reshape([-1]) }.detach()
        let value = flat.extreme(dim: 0, keepDim: false, max: max).values.detach()
        // The rule compares with a detached alias: capturing `value` itself, which holds this node,
        // made a retain cycle that leaked the graph whenever backward() was not called.
        let x = self, saved = value.detach()
        return value.recorded(max ? "MaxBackward1" : "MinBackward1", [self]) { g in
            let mask = x.eq(saved).to(g.dtype)
            return [mask * (g / mask.sum())]
        }
    }

    /// Index of the maximum along `dim` (int64).
    public func argmax(dim: Int, keepDim: Bool = false) -> Tensor { noGrad { max(dim: dim, keepDim: keepDim).indices } }
    /// Index of the minimum along `dim` (int64).
    public func argmin(dim: Int, keepDim: Bool = false) -> Tensor { noGrad { min(dim: dim, keepDim: keepDim).indices } }
    /// Index of the maximum in the flattened tensor.
    public func argmax() -> Tensor { noGrad { reshape([-1]).argmax(dim: 0) } }
    /// Index of the minimum in the flattened tensor.
    public func argmin() -> Tensor { noGrad { reshape([-1]).argmin(dim: 0) } }

    /// Maximum over `dims` (`torch.amax`), gradient shared among ties.
    public func amax(dims: [Int], keepDim: Bool = false) -> Tensor {
        var r = self
        for d in normalizeDims(dims).sorted(by: >) { r = r.max(dim: d, keepDim: true).values }
        return keepDim ? r : r.reshape(reducedShape(normalizeDims(dims), keepDim: false))
    }

    // MARK: softmax family

    /// Softmax along `dim`, computed stably (max subtracted).
    public func softmax(dim: Int) -> Tensor {
        let d = normalizeDim(dim)
        let x = dtype.isFloatingPoint ? self : to(.float32)
        let out = SoftmaxKernel.forward(x, dim: d, log: false)
        let saved = out.detach()
        return out.recorded("SoftmaxBackward0", [x]) { g in
            [SoftmaxKernel.backward(g, output: saved, dim: d, log: false)]
        }
    }

    /// log(softmax) along `dim`, computed stably.
    public func logSoftmax(dim: Int) -> Tensor {
        let d = normalizeDim(dim)
        let x = dtype.isFloatingPoint ? self : to(.float32)
        let out = SoftmaxKernel.forward(x, dim: d, log: true)
        let saved = out.detach()
        return out.recorded("LogSoftmaxBackward0", [x]) { g in
            [SoftmaxKernel.backward(g, output: saved, dim: d, log: true)]
        }
    }

    /// log(sum(exp(x))) along `dim`, computed stably.
    public func logsumexp(dim: Int, keepDim: Bool = false) -> Tensor {
        let d = normalizeDim(dim)
        let m = noGrad { max(dim: d, keepDim: true).values }.detach()
        let r = ((self - m).exp().sum(dim: d, keepDim: true)).log() + m
        return keepDim ? r : r.squeeze(dim: d)
    }
}

/// Row-wise softmax / log-softmax: the softmax dim is moved last and made contiguous.
enum SoftmaxKernel {
    static func forward(_ x: Tensor, dim d: Int, log: Bool) -> Tensor {
        // Before any transpose: a 0-d tensor has no dims to swap (softmax of it is 1, as in PyTorch).
        if x.ndim == 0 { return Tensor.full([], value: log ? 0 : 1, dtype: x.dtype, device: x.device) }
        let last = x.ndim - 1
        let moved = d == last ? x.contiguous() : x.transpose(d, last).contiguous()
        let rows = moved.numel / Swift.max(moved.shape.last ?? 1, 1), n = moved.shape.last ?? 1
        if moved.storage.isOnDevice {
            let out = CUDAOps.softmaxRows(moved, rows: rows, n: n, log: log)
            return d == last ? out : out.transpose(d, last).contiguous()
        }
        let out = Tensor(uninitialized: moved.shape, dtype: x.dtype)
        switch x.dtype {
        case .float32:
            let s = SendablePointer(moved.pointer(Float.self)), o = SendablePointer(out.pointer(Float.self))
            Threading.parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
                for row in r { rowFloat(s.p + row * n, o.p + row * n, n, log: log) }
            }
        default:
            let s = moved.pointer(Double.self), o = out.pointer(Double.self)
            for row in 0..<rows {
                let src = s + row * n, dst = o + row * n
                var m = -Double.infinity
                for i in 0..<n where src[i] > m || src[i].isNaN { m = src[i] }
                var sum = 0.0
                for i in 0..<n { sum += Foundation_exp(src[i] - m) }
                if log { let ls = Foundation_log(sum); for i in 0..<n { dst[i] = src[i] - m - ls } }
                else { for i in 0..<n { dst[i] = Foundation_exp(src[i] - m) / sum } }
            }
        }
        return d == last ? out : out.transpose(d, last).contiguous()
    }

    @inline(__always)
    static func rowFloat(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, log: Bool) {
        var m = -Float.infinity
        for i in 0..<n where src[i] > m || src[i].isNaN { m = src[i] }
        if m == -.infinity { m = 0 }
        // dst = exp(src - m), summed.
        VectorMath.map(src, dst, n, ShiftedExpV(shift: SIMD8<Float>(repeating: m)))
        var sum: Float = 0
        for i in 0..<n { sum += dst[i] }
        if log {
            let ls = Foundation_logf(sum) + m
            for i in 0..<n { dst[i] = src[i] - ls }
        } else {
            let inv = 1 / sum
            for i in 0..<n { dst[i] *= inv }
        }
    }

    /// softmax: y * (g - sum(g * y)); log-softmax: g - exp(y) * sum(g).
    static func backward(_ g: Tensor, output y: Tensor, dim d: Int, log: Bool) -> Tensor {
        if log {
            return g - y.exp() * g.sum(dim: d, keepDim: true)
        }
        return y * (g - (g * y).sum(dim: d, keepDim: true))
    }
}
