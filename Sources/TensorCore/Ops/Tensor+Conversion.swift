import System
extension Tensor {
    /// Copies `src` (any layout, any dtype) into the contiguous `dst` of the same shape.
    static func copyConverting(_ src: Tensor, into dst: Tensor) {
        if src.storage.isOnDevice || dst.storage.isOnDevice { CUDAOps.convert(src, into: dst); return }
        let plan = StridedPlan(shape: src.shape, strides: [dst.strides, src.strides])
        func same<T: TensorScalar>(_: T.Type) {
            let o = SendablePointer(dst.pointer(T.self)), s = SendablePointer(src.pointer(T.self))
            plan.parallelRuns { offs, n, st in
                let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]
                if ss == 1 { po.update(from: ps, count: n) } else { for i in 0..<n { po[i] = ps[i * ss] } }
            }
        }
        func convert<S: TensorScalar, D: TensorScalar>(_: S.Type, _: D.Type) {
            let o = SendablePointer(dst.pointer(D.self)), s = SendablePointer(src.pointer(S.self))
            plan.parallelRuns { offs, n, st in
                let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]
                for i in 0..<n { po[i] = D(fromDouble: ps[i * ss].asDouble) }
            }
        }
        if src.dtype == dst.dtype {
            switch src.dtype {
            case .float32: same(Float.self)
            case .float64: same(Double.self)
            case .int64: same(Int64.self)
            case .bool: same(Bool.self)
            }
            return
        }
        // Hot conversions get direct loops; the rest go through Double.
        switch (src.dtype, dst.dtype) {
        case (.float32, .float64):
            let o = SendablePointer(dst.pointer(Double.self)), s = SendablePointer(src.pointer(Float.self))
            plan.parallelRuns { offs, n, st in let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]; for i in 0..<n { po[i] = Double(ps[i * ss]) } }
        case (.float64, .float32):
            let o = SendablePointer(dst.pointer(Float.self)), s = SendablePointer(src.pointer(Double.self))
            plan.parallelRuns { offs, n, st in let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]; for i in 0..<n { po[i] = Float(ps[i * ss]) } }
        case (.int64, .float32):
            let o = SendablePointer(dst.pointer(Float.self)), s = SendablePointer(src.pointer(Int64.self))
            plan.parallelRuns { offs, n, st in let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]; for i in 0..<n { po[i] = Float(ps[i * ss]) } }
        case (.bool, .float32):
            let o = SendablePointer(dst.pointer(Float.self)), s = SendablePointer(src.pointer(Bool.self))
            plan.parallelRuns { offs, n, st in let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]; for i in 0..<n { po[i] = ps[i * ss] ? 1 : 0 } }
        default:
            func outer<S: TensorScalar>(_ s: S.Type) {
                switch dst.dtype {
                case .float32: convert(S.self, Float.self)
                case .float64: convert(S.self, Double.self)
                case .int64: convert(S.self, Int64.self)
                case .bool: convert(S.self, Bool.self)
                }
            }
            switch src.dtype {
            case .float32: outer(Float.self)
            case .float64: outer(Double.self)
            case .int64: outer(Int64.self)
            case .bool: outer(Bool.self)
            }
        }
    }

    /// A contiguous tensor with the same values: `self` when already contiguous.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        Tensor.copyConverting(self, into: out)
        return out.recorded("CloneBackward0", [self]) { g in [g] }
    }

    /// A copy with its own storage (`t.clone()`), differentiable.
    public func clone() -> Tensor {
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        Tensor.copyConverting(self, into: out)
        return out.recorded("CloneBackward0", [self]) { g in [g] }
    }

    /// The values converted to `dtype` (`self` when it already has it).
    public func to(_ dtype: DType) -> Tensor {
        if dtype == self.dtype { return self }
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        Tensor.copyConverting(self, into: out)
        if !dtype.isFloatingPoint || !self.dtype.isFloatingPoint { return out }
        let from = self.dtype
        return out.recorded("ToCopyBackward0", [self]) { g in [g.to(from)] }
    }

    /// The tensor on `device` (a copy; `self` when already there). Gradients flow back across.
    public func to(_ device: Device) -> Tensor {
        if device == self.device { return self }
        if case .cuda(let n) = device, !Device.isCUDAAvailable {
            usageError("to(.cuda(\(n))): CUDA is not available on this machine (\(Device.cudaDriverStatus.detail)); check Device.isCUDAAvailable and stay on .cpu")
        }
        let out = movedCopy(to: device)
        if !dtype.isFloatingPoint { return out }
        let from = self.device
        return out.recorded("ToCopyBackward0", [self]) { g in [g.to(from)] }
    }

    /// `torch.float()` / `double()` / `long()` shorthands.
    public func float() -> Tensor { to(.float32) }
    public func double() -> Tensor { to(.float64) }
    public func long() -> Tensor { to(.int64) }

    /// The elements in row-major order, converted to `T` (`t.numpy()` / `t.tolist()` flattened).
    public func scalars<T: TensorScalar>(as type: T.Type) -> [T] {
        if storage.isOnDevice { return noGrad { movedCopy(to: .cpu) }.scalars(as: T.self) }
        let c = (dtype == T.dtype ? self : to(T.dtype)).contiguous()
        let p = c.pointer(T.self)
        return Array(UnsafeBufferPointer(start: p, count: c.numel))
    }

    /// The single element as a Double (`t.item()`).
    public func item() -> Double {
        if numel != 1 { shapeError("item(): a tensor with \(numel) elements cannot be converted to a scalar (shape \(shape))") }
        if storage.isOnDevice { return movedCopy(to: .cpu).item() }
        switch dtype {
        case .float32: return Double(pointer(Float.self).pointee)
        case .float64: return pointer(Double.self).pointee
        case .int64: return Double(pointer(Int64.self).pointee)
        case .bool: return pointer(Bool.self).pointee ? 1 : 0
        }
    }

    /// Copies `source` (broadcast to this shape) into this tensor's elements in place (`copy_`).
    /// Not recorded by autograd: use on leaves under `noGrad`, as optimizers and loaders do.
    public func copy(from source: Tensor) {
        if storage.isOnDevice || source.storage.isOnDevice {
            var src = source
            if src.device != device { src = noGrad { src.to(device) } }
            CUDAOps.convert(src.shape == shape ? src : src.expand(shape), into: self)
            return
        }
        let src = source.shape == shape ? source : source.expand(shape)
        if isContiguous {
            Tensor.copyConverting(src, into: self)
        } else {
            let tmp = Tensor(uninitialized: shape, dtype: dtype)
            Tensor.copyConverting(src, into: tmp)
            let plan = StridedPlan(shape: shape, strides: [strides, tmp.strides])
            func run<T: TensorScalar>(_: T.Type) {
                let o = pointer(T.self), s = tmp.pointer(T.self)
                plan.forEachRun(outer: 0..<plan.outerCount) { offs, n, st in
                    for i in 0..<n { o[offs[0] + i * st[0]] = s[offs[1] + i * st[1]] }
                }
            }
            switch dtype {
            case .float32: run(Float.self)
            case .float64: run(Double.self)
            case .int64: run(Int64.self)
            case .bool: run(Bool.self)
            }
        }
    }
}
