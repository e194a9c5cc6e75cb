import System
/// Elementwise maps over broadcast, strided operands into a fresh contiguous output. Written
/// `@inline(__always)` so each call site's closure is inlined into the loop.
enum Map {
    /// Closure form for cold paths (the closure stays an indirect call per element).
    static func unary<T, U>(_ a: Tensor, _ out: Tensor, _: T.Type, _: U.Type, _ f: (T) -> U) {
        if out.storage.isOnDevice { CUDAOps.noKernel(out) }
        let plan = StridedPlan(shape: out.shape, strides: [out.strides, a.broadcastStrides(to: out.shape)])
        let o = out.pointer(U.self), s = a.pointer(T.self)
        plan.forEachRun(outer: 0..<plan.outerCount) { offs, n, st in
            let po = o + offs[0], ps = s + offs[1], ss = st[1]
            for i in 0..<n { po[i] = f(ps[i * ss]) }
        }
    }

    /// Closure form for cold paths.
    static func binary<T, U>(_ a: Tensor, _ b: Tensor, _ out: Tensor, _: T.Type, _: U.Type, _ f: (T, T) -> U) {
        if out.storage.isOnDevice { CUDAOps.noKernel(out) }
        let plan = StridedPlan(shape: out.shape, strides: [out.strides, a.broadcastStrides(to: out.shape), b.broadcastStrides(to: out.shape)])
        let o = out.pointer(U.self), pa0 = a.pointer(T.self), pb0 = b.pointer(T.self)
        plan.forEachRun(outer: 0..<plan.outerCount) { offs, n, st in
            let po = o + offs[0], pa = pa0 + offs[1], pb = pb0 + offs[2]
            for i in 0..<n { po[i] = f(pa[i * st[1]], pb[i * st[2]]) }
        }
    }

    static func unary<K: UnaryKernel>(_ a: Tensor, _ out: Tensor, _ f: K) {
        typealias T = K.Input
        typealias U = K.Output
        if out.storage.isOnDevice { CUDAOps.mapped(f, [a], into: out); return }
        let plan = StridedPlan(shape: out.shape, strides: [out.strides, a.broadcastStrides(to: out.shape)])
        let o = SendablePointer(out.pointer(U.self)), s = SendablePointer(a.pointer(T.self))
        plan.parallelRuns { offs, n, st in
            let po = o.p + offs[0], ps = s.p + offs[1], ss = st[1]
            if ss == 1 { for i in 0..<n { po[i] = f(ps[i]) } } else { for i in 0..<n { po[i] = f(ps[i * ss]) } }
        }
    }

    static func binary<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _ out: Tensor, _ f: K) {
        typealias T = K.Input
        typealias U = K.Output
        if out.storage.isOnDevice { CUDAOps.mapped(f, [a, b], into: out); return }
        let plan = StridedPlan(shape: out.shape, strides: [out.strides, a.broadcastStrides(to: out.shape), b.broadcastStrides(to: out.shape)])
        let o = SendablePointer(out.pointer(U.self)), pa0 = SendablePointer(a.pointer(T.self)), pb0 = SendablePointer(b.pointer(T.self))
        plan.parallelRuns { offs, n, st in
            let po = o.p + offs[0], pa = pa0.p + offs[1], pb = pb0.p + offs[2]
            let sa = st[1], sb = st[2]
            if sa == 1 && sb == 1 {
                for i in 0..<n { po[i] = f(pa[i], pb[i]) }
            } else if sa == 1 && sb == 0 {
                let v = pb[0]
                for i in 0..<n { po[i] = f(pa[i], v) }
            } else if sa == 0 && sb == 1 {
                let v = pa[0]
                for i in 0..<n { po[i] = f(v, pb[i]) }
            } else {
                for i in 0..<n { po[i] = f(pa[i * sa], pb[i * sb]) }
            }
        }
    }

    /// out = cond ? a : b, all three broadcast.
    static func select<T>(_ cond: Tensor, _ a: Tensor, _ b: Tensor, _ out: Tensor, _: T.Type) {
        if out.storage.isOnDevice { CUDAOps.select(cond, a, b, out); return }
        let plan = StridedPlan(shape: out.shape, strides: [out.strides, cond.broadcastStrides(to: out.shape),
                                                           a.broadcastStrides(to: out.shape), b.broadcastStrides(to: out.shape)])
        let o = SendablePointer(out.pointer(T.self)), pc0 = SendablePointer(cond.pointer(Bool.self))
        let pa0 = SendablePointer(a.pointer(T.self)), pb0 = SendablePointer(b.pointer(T.self))
        plan.parallelRuns { offs, n, st in
            let po = o.p + offs[0], pc = pc0.p + offs[1], pa = pa0.p + offs[2], pb = pb0.p + offs[3]
            let sc = st[1], sa = st[2], sb = st[3]
            for i in 0..<n { po[i] = pc[i * sc] ? pa[i * sa] : pb[i * sb] }
        }
    }

    /// float32 through eight-lane SIMD functions; `a` is made contiguous first.
    static func simd<K: SIMDKernel>(_ a: Tensor, _ f: K) -> Tensor {
        if a.storage.isOnDevice {
            let out = Tensor(uninitialized: a.shape, dtype: .float32, like: a)
            CUDAOps.mapped(f, [a], into: out)
            return out
        }
        let src = a.contiguous()
        let out = Tensor(uninitialized: a.shape, dtype: .float32)
        let s = SendablePointer(src.pointer(Float.self)), o = SendablePointer(out.pointer(Float.self))
        Threading.parallelFor(src.numel, grain: 16_384) { r in
            VectorMath.map(s.p + r.lowerBound, o.p + r.lowerBound, r.count, f)
        }
        return out
    }

    /// float32 binary through SIMD (same shapes, both made contiguous): used by fused backward rules.
    static func simd2<K: SIMDBinaryKernel>(_ a: Tensor, _ b: Tensor, _ f: K) -> Tensor {
        if a.storage.isOnDevice || b.storage.isOnDevice {
            let out = Tensor(uninitialized: a.shape, dtype: .float32, like: a)
            CUDAOps.mapped(f, [a, b], into: out)
            return out
        }
        let sa = a.contiguous(), sb = b.contiguous()
        let out = Tensor(uninitialized: a.shape, dtype: .float32)
        let pa = SendablePointer(sa.pointer(Float.self)), pb = SendablePointer(sb.pointer(Float.self)), o = SendablePointer(out.pointer(Float.self))
        Threading.parallelFor(sa.numel, grain: 16_384) { r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let va = UnsafeRawPointer(pa.p + i).loadUnaligned(as: SIMD8<Float>.self)
                let vb = UnsafeRawPointer(pb.p + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(o.p + i).storeBytes(of: f(va, vb), as: SIMD8<Float>.self)
                i += 8
            }
            if i < r.upperBound {
                var va = SIMD8<Float>(repeating: 0), vb = SIMD8<Float>(repeating: 0)
                for j in 0..<(r.upperBound - i) { va[j] = pa.p[i + j]; vb[j] = pb.p[i + j] }
                let v = f(va, vb)
                for j in 0..<(r.upperBound - i) { o.p[i + j] = v[j] }
            }
        }
        return out
    }
}

extension Tensor {
    /// numpy/PyTorch broadcasting of two shapes, or a stop naming both.
    static func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int] {
        if a == b { return a }
        let n = Swift.max(a.count, b.count)
        var out = [Int](repeating: 1, count: n)
        for i in 0..<n {
            let da = i < n - a.count ? 1 : a[i - (n - a.count)]
            let db = i < n - b.count ? 1 : b[i - (n - b.count)]
            if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
                shapeError("shapes \(a) and \(b) cannot be broadcast together (dimension \(i): \(da) vs \(db))")
            }
        }
        return out
    }

    /// Strides that read this tensor as if expanded to `target` (0 along broadcast dims).
    func broadcastStrides(to target: [Int]) -> [Int] {
        if target == shape { return strides }
        let lead = target.count - ndim
        var out = [Int](repeating: 0, count: target.count)
        for i in 0..<ndim where shape[i] != 1 { out[lead + i] = strides[i] }
        return out
    }
}
