/// A 2-d operand as `dnnl_sgemm` and cuBLAS take it: the storage, whether to transpose, and the
/// leading dimension. A transposed view is passed as a flag, never copied.
struct GEMMOperand {
    let tensor: Tensor      // keeps the storage alive
    let transposed: Bool
    let ld: Int

    init(_ t: Tensor) {
        let r = t.shape[0], c = t.shape[1]
        if (t.strides[1] == 1 || c == 1) && t.strides[0] >= Swift.max(c, 1) {
            tensor = t; transposed = false; ld = Swift.max(t.strides[0], 1)
        } else if (t.strides[0] == 1 || r == 1) && t.strides[1] >= Swift.max(r, 1) {
            tensor = t; transposed = true; ld = Swift.max(t.strides[1], 1)
        } else {
            let c2 = noGrad { t.contiguous() }
            tensor = c2; transposed = false; ld = Swift.max(c, 1)
        }
    }

    var pointer: UnsafePointer<Float> { UnsafePointer(tensor.pointer(Float.self)) }
}

enum GEMM {
    /// out[M, N] = alpha * a[M, K] @ b[K, N] + beta * out, float32 through oneDNN.
    static func float(_ a: Tensor, _ b: Tensor, into out: Tensor, alpha: Float = 1, beta: Float = 0) {
        let m = a.shape[0], k = a.shape[1], n = b.shape[1]
        if m == 0 || n == 0 { return }
        if k == 0 { if beta == 0 { out.fill(0) }; return }
        let oa = GEMMOperand(a), ob = GEMMOperand(b)
        DNNL.sgemm(transA: oa.transposed, transB: ob.transposed, m: m, n: n, k: k, alpha: alpha,
                   a: oa.pointer, lda: oa.ld, b: ob.pointer, ldb: ob.ld, beta: beta,
                   c: out.pointer(Float.self), ldc: n)
        withExtendedLifetime((oa, ob)) {}
    }

    /// Plain product for float64 / int64 (gradchecks and integer math), i-k-j order.
    static func generic<T: Numeric>(_ a: Tensor, _ b: Tensor, into out: Tensor, _: T.Type) {
        let m = a.shape[0], k = a.shape[1], n = b.shape[1]
        let ap = a.pointer(T.self), bp = b.pointer(T.self), op = out.pointer(T.self)
        let as0 = a.strides[0], as1 = a.strides[1], bs0 = b.strides[0], bs1 = b.strides[1]
        for i in 0..<(m * n) { op[i] = 0 }
        for i in 0..<m {
            for p in 0..<k {
                let av = ap[i * as0 + p * as1]
                for j in 0..<n { op[i * n + j] += av * bp[p * bs0 + j * bs1] }
            }
        }
    }

    static func product(_ a: Tensor, _ b: Tensor) -> Tensor {
        let dt = DType.promote(a.dtype, b.dtype)
        let ca = a.dtype == dt ? a : noGrad { a.to(dt) }, cb = b.dtype == dt ? b : noGrad { b.to(dt) }
        let out = Tensor(uninitialized: [a.shape[0], b.shape[1]], dtype: dt, like: ca)
        if out.storage.isOnDevice {
            if dt == .bool { CUDAOps.matmul(ca.to(.int64), cb.to(.int64), into: out) } else { CUDAOps.matmul(ca, cb, into: out) }
            return out
        }
        switch dt {
        case .float32: float(ca, cb, into: out)
        case .float64: generic(ca, cb, into: out, Double.self)
        case .int64: generic(ca, cb, into: out, Int64.self)
        case .bool: generic(ca.to(.int64), cb.to(.int64), into: out, Int64.self)
        }
        return out
    }
}

extension Tensor {
    /// Matrix product of two 2-d tensors (`torch.mm`).
    public func mm(_ other: Tensor) -> Tensor {
        if ndim != 2 || other.ndim != 2 {
            shapeError("mm: both arguments must be 2-d matrices, got shapes \(shape) and \(other.shape) (use matmul for vectors and batches)")
        }
        if shape[1] != other.shape[0] {
            shapeError("mm: shapes \(shape) and \(other.shape) cannot be multiplied (\(shape[0])x\(shape[1]) and \(other.shape[0])x\(other.shape[1]))")
        }
        let (a, b) = Tensor.onOneDevice(self, other, "mm")
        let out = GEMM.product(a, b)
        let needA = a.requiresGradFlag, needB = b.requiresGradFlag
        return out.recorded("MmBackward0", [a, b]) { g in
            [needA ? g.mm(b.transpose(0, 1)).to(a.dtype) : nil, needB ? a.transpose(0, 1).mm(g).to(b.dtype) : nil]
        }
    }

    /// Inner product of two 1-d tensors (`torch.dot`), a 0-d tensor.
    public func dot(_ other: Tensor) -> Tensor {
        if ndim != 1 || other.ndim != 1 {
            shapeError("dot: 1D tensors expected, but got \(ndim)D and \(other.ndim)D tensors (shapes \(shape) and \(other.shape))")
        }
        if shape[0] != other.shape[0] {
            shapeError("dot: inconsistent tensor size, expected tensor [\(shape[0])] and src [\(other.shape[0])] to have the same number of elements")
        }
        return (self * other).sum()
    }

    /// Batched matrix product of two 3-d tensors with equal batch sizes (`torch.bmm`).
    public func bmm(_ other: Tensor) -> Tensor {
        if ndim != 3 || other.ndim != 3 { shapeError("bmm: both arguments must be 3-d, got shapes \(shape) and \(other.shape)") }
        if shape[0] != other.shape[0] || shape[2] != other.shape[1] {
            shapeError("bmm: shapes \(shape) and \(other.shape) cannot be multiplied (batch \(shape[0]) vs \(other.shape[0]), inner \(shape[2]) vs \(other.shape[1]))")
        }
        let batch = shape[0]
        _ = Tensor.onOneDevice(self, other, "bmm")
        let dt = DType.promote(dtype, other.dtype)
        let out = Tensor(uninitialized: [batch, shape[1], other.shape[2]], dtype: dt, like: self)
        noGrad {
            let a = self.to(dt), b = other.to(dt)
            if out.storage.isOnDevice {
                CUDAOps.bmm(dt == .bool ? a.to(.int64) : a, dt == .bool ? b.to(.int64) : b, into: out)
                return
            }
            for i in 0..<batch {
                let oi = out.select(dim: 0, index: i)
                let ai = a.select(dim: 0, index: i), bi = b.select(dim: 0, index: i)
                switch dt {
                case .float32: GEMM.float(ai, bi, into: oi)
                case .float64: GEMM.generic(ai, bi, into: oi, Double.self)
                default: GEMM.generic(ai.to(.int64), bi.to(.int64), into: oi, Int64.self)
                }
            }
        }
        let a = self, b = other
        let needA = a.requiresGradFlag, needB = b.requiresGradFlag
        return out.recorded("BmmBackward0", [a, b]) { g in
            [needA ? g.bmm(b.transpose(1, 2)) : nil, needB ? a.transpose(1, 2).bmm(g) : nil]
        }
    }

    /// `torch.matmul`: dot, matrix-vector, matrix-matrix, and batched products with the batch
    /// dims broadcast as in PyTorch.
    public func matmul(_ other: Tensor) -> Tensor {
        let a = self, b = other
        if a.ndim == 0 || b.ndim == 0 { shapeError("matmul: both arguments need at least 1 dimension, got shapes \(a.shape) and \(b.shape)") }
        switch (a.ndim, b.ndim) {
        case (1, 1): return a.dot(b)
        case (2, 2): return a.mm(b)
        case (1, 2): return a.unsqueeze(0).mm(b).squeeze(dim: 0)
        case (2, 1): return a.mm(b.unsqueeze(1)).squeeze(dim: 1)
        default: break
        }
        // a is N-d (N >= 3) and b is 1-d or 2-d: fold a's batch into rows, one GEMM.
        if b.ndim <= 2 && a.ndim >= 3 {
            let bm = b.ndim == 1 ? b.unsqueeze(1) : b
            let k = a.shape[a.ndim - 1]
            if k != bm.shape[0] { shapeError("matmul: shapes \(a.shape) and \(b.shape) cannot be multiplied (\(k) vs \(bm.shape[0]))") }
            let rows = a.reshape([-1, k])
            var outShape = Array(a.shape.dropLast())
            let r = rows.mm(bm)
            if b.ndim == 2 { outShape.append(b.shape[1]) }
            return r.reshape(outShape)
        }
        // General: broadcast batch dims, then bmm.
        let a2 = a.ndim == 1 ? a.unsqueeze(0) : a
        let b2 = b.ndim == 1 ? b.unsqueeze(1) : b
        let n = a2.shape[a2.ndim - 2], k = a2.shape[a2.ndim - 1]
        let k2 = b2.shape[b2.ndim - 2], p = b2.shape[b2.ndim - 1]
        if k != k2 { shapeError("matmul: shapes \(a.shape) and \(b.shape) cannot be multiplied (\(k) vs \(k2))") }
        let batch = Tensor.broadcastShapes(Array(a2.shape.dropLast(2)), Array(b2.shape.dropLast(2)))
        let bcount = batch.reduce(1, *)
        let ea = a2.expand(batch + [n, k]).reshape([bcount, n, k])
        let eb = b2.expand(batch + [k, p]).reshape([bcount, k, p])
        var result = ea.bmm(eb).reshape(batch + [n, p])
        if a.ndim == 1 { result = result.squeeze(dim: -2) }
        if b.ndim == 1 { result = result.squeeze(dim: -1) }
        return result
    }

    /// `x @ wᵀ + b` in one GEMM with the bias preloaded (`torch.nn.functional.linear`).
    /// x: [*, in], weight: [out, in], bias: [out].
    public static func linear(_ x: Tensor, weight w: Tensor, bias b: Tensor?) -> Tensor {
        if w.ndim != 2 { shapeError("linear: weight must be 2-d [out_features, in_features], got \(w.shape)") }
        let inF = w.shape[1], outF = w.shape[0]
        if x.ndim == 0 || x.shape[x.ndim - 1] != inF {
            shapeError("linear: input of shape \(x.shape) does not match weight \(w.shape): expected last dimension \(inF)")
        }
        if let b, b.shape != [outF] { shapeError("linear: bias must have shape [\(outF)], got \(b.shape)") }
        let batchShape = Array(x.shape.dropLast())
        let x2 = x.ndim == 2 ? x : x.reshape([-1, inF])
        guard x.dtype == .float32, w.dtype == .float32, b == nil || b!.dtype == .float32, !x.isCUDA, !w.isCUDA else {
            let y = x2.mm(w.transpose(0, 1))
            let r = b.map { y + $0 } ?? y
            return x.ndim == 2 ? r : r.reshape(batchShape + [outF])
        }
        let rows = x2.shape[0]
        let out = Tensor(uninitialized: [rows, outF], dtype: .float32)
        if let b {
            let bc = b.contiguous()
            let bp = bc.pointer(Float.self), op = out.pointer(Float.self)
            for r in 0..<rows { (op + r * outF).update(from: bp, count: outF) }
            GEMM.float(x2.detach(), w.detach().transpose(0, 1), into: out, beta: 1)
        } else {
            GEMM.float(x2.detach(), w.detach().transpose(0, 1), into: out, beta: 0)
        }
        let needX = x2.requiresGradFlag, needW = w.requiresGradFlag, needB = b?.requiresGradFlag ?? false
        let operands = b.map { [x2, w, $0] } ?? [x2, w]
        let r = out.recorded("AddmmBackward0", operands) { g in
            var grads: [Tensor?] = [
                needX ? noGrad { GEMM.product(g, w) } : nil,
                needW ? noGrad { GEMM.product(g.transpose(0, 1), x2) } : nil,
            ]
            if b != nil { grads.append(needB ? g.sum(dim: 0) : nil) }
            return grads
        }
        return x.ndim == 2 ? r : r.reshape(batchShape + [outF])
    }
}
