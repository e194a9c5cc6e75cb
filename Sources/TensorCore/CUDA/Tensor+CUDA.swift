/// CUDA tensors: allocation, moves between host and device, and the launches behind each op.
/// Ops branch here once at entry (`storage.isOnDevice`); the CPU paths are unchanged.
extension Tensor {
    /// A fresh, uninitialised, contiguous tensor on the device of `like` (the host when it is there).
    convenience init(uninitialized shape: [Int], dtype: DType, like: Tensor) {
        if let c = like.storage.cuda {
            self.init(uninitialized: shape, dtype: dtype, context: c.context)
        } else {
            self.init(uninitialized: shape, dtype: dtype)
        }
    }

    /// A fresh, uninitialised, contiguous tensor on `device` under the driver in effect.
    convenience init(uninitialized shape: [Int], dtype: DType, device: Device) {
        switch device {
        case .cpu: self.init(uninitialized: shape, dtype: dtype)
        case .cuda(let n): self.init(uninitialized: shape, dtype: dtype, context: CUDARuntime.context(n, for: "a tensor on cuda:\(n)"))
        }
    }

    convenience init(uninitialized shape: [Int], dtype: DType, context: CUDAContext) {
        let n = shape.reduce(1, *)
        self.init(storage: TensorStorage(byteCount: n * dtype.byteSize, on: context), shape: shape,
                  strides: Tensor.contiguousStrides(shape), offset: 0, dtype: dtype)
    }

    var cudaContext: CUDAContext? { storage.cuda?.context }

    /// The device address of this view's first element.
    var devicePointer: CUDADevicePointer {
        guard let c = storage.cuda else { usageError("internal: devicePointer of a host tensor") }
        return c.pointer + CUDADevicePointer(offset * dtype.byteSize)
    }

    /// `t.cuda()`: the tensor on cuda:`device`.
    public func cuda(_ device: Int = 0) -> Tensor { to(.cuda(device)) }
    /// `t.cpu()`: the tensor on the host.
    public func cpu() -> Tensor { to(.cpu) }
    /// Whether the elements are on a CUDA device (`t.is_cuda`).
    public var isCUDA: Bool { storage.isOnDevice }

    /// The copy behind `to(device)`, not recorded.
    func movedCopy(to device: Device) -> Tensor {
        switch device {
        case .cpu:
            let src = noGrad { contiguous() }
            let out = Tensor(uninitialized: shape, dtype: dtype)
            guard let c = src.storage.cuda else { return src }
            c.context.driver.copyToHost(device: c.context.index, out.storage.raw, from: src.devicePointer, byteCount: numel * dtype.byteSize)
            return out
        case .cuda(let n):
            let host = storage.isOnDevice ? movedCopy(to: .cpu) : noGrad { contiguous() }
            let ctx = CUDARuntime.context(n, for: "to(.cuda(\(n)))")
            let out = Tensor(uninitialized: shape, dtype: dtype, context: ctx)
            ctx.staging.upload(out.devicePointer, from: host.storage.raw + host.offset * dtype.byteSize, byteCount: numel * dtype.byteSize)
            return out
        }
    }

    /// The operands of an elementwise op on one device: a 0-d host tensor (a Python scalar in
    /// PyTorch's terms) follows the other operand; any other mix stops, as PyTorch's message does.
    static func onOneDevice(_ ts: [Tensor], _ op: @autoclosure () -> String) -> [Tensor] {
        guard let lead = ts.first(where: { $0.storage.isOnDevice }) else { return ts }
        let device = lead.device
        return ts.map { t in
            let d = t.device
            if d == device { return t }
            if d == .cpu && t.ndim == 0 { return t.to(device) }
            usageError("\(op()): Expected all tensors to be on the same device, but found at least two devices, \(device) and \(d)!")
        }
    }

    static func onOneDevice(_ a: Tensor, _ b: Tensor, _ op: @autoclosure () -> String) -> (Tensor, Tensor) {
        if !a.storage.isOnDevice && !b.storage.isOnDevice { return (a, b) }
        let r = onOneDevice([a, b], op())
        return (r[0], r[1])
    }
}

/// CUDA's dtype codes in kernels.cu.
extension DType {
    var cudaCode: Int {
        switch self { case .float32: return 0; case .float64: return 1; case .int64: return 2; case .bool: return 3 }
    }
}

/// Parameters of one launch, laid out as cuLaunchKernel takes them; keeps its tensors alive.
final class KernelArgs {
    private var slots: [UnsafeMutableRawPointer] = []
    private var keep: [Tensor] = []

    private func add(bytes: Int, _ write: (UnsafeMutableRawPointer) -> Void) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        write(p)
        slots.append(p)
    }
    @discardableResult func int(_ v: Int) -> KernelArgs { add(bytes: 8) { $0.storeBytes(of: Int64(v), as: Int64.self) }; return self }
    @discardableResult func double(_ v: Double) -> KernelArgs { add(bytes: 8) { $0.storeBytes(of: v, as: Double.self) }; return self }
    @discardableResult func word(_ v: UInt64) -> KernelArgs { add(bytes: 8) { $0.storeBytes(of: v, as: UInt64.self) }; return self }
    @discardableResult func tensor(_ t: Tensor) -> KernelArgs { keep.append(t); return word(t.devicePointer) }
    @discardableResult func null() -> KernelArgs { word(0) }
    /// A struct of int64 fields, as one parameter.
    @discardableResult func words(_ values: [Int]) -> KernelArgs {
        add(bytes: 8 * values.count) { p in for (i, v) in values.enumerated() { p.storeBytes(of: Int64(v), toByteOffset: 8 * i, as: Int64.self) } }
        return self
    }
    /// `struct Dims { i64 nd; i64 size[8]; }`
    @discardableResult func dims(_ shape: [Int]) -> KernelArgs {
        add(bytes: 72) { p in
            p.storeBytes(of: Int64(shape.count), as: Int64.self)
            for i in 0..<8 { p.storeBytes(of: Int64(i < shape.count ? shape[i] : 1), toByteOffset: 8 + 8 * i, as: Int64.self) }
        }
        return self
    }
    /// `struct Strides { i64 s[8]; }`
    @discardableResult func strides(_ s: [Int]) -> KernelArgs {
        add(bytes: 64) { p in for i in 0..<8 { p.storeBytes(of: Int64(i < s.count ? s[i] : 0), toByteOffset: 8 * i, as: Int64.self) } }
        return self
    }

    func withParams<R>(_ body: (UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> R) -> R {
        var ps: [UnsafeMutableRawPointer?] = slots
        return ps.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    deinit { for p in slots { p.deallocate() } }
}

/// The launches behind each op on a CUDA tensor.
enum CUDAOps {
    static let blockSize = 256

    /// Launches `kernel` over `count` work items (grid-stride loops inside).
    static func launch(_ ctx: CUDAContext, _ kernel: String, count: Int, _ args: KernelArgs) {
        if count <= 0 { return }
        let grid = Swift.min((count + blockSize - 1) / blockSize, 4096)
        args.withParams { ctx.driver.launch(device: ctx.index, kernel: kernel, grid: grid, block: blockSize, params: $0) }
    }

    static func context(_ ts: Tensor...) -> CUDAContext {
        guard let c = ts.first(where: { $0.storage.isOnDevice })?.cudaContext else { usageError("internal: no CUDA operand") }
        for t in ts where t.cudaContext !== c {
            usageError("Expected all tensors to be on the same device, but found at least two devices, \(ts[0].device) and \(t.device)!")
        }
        return c
    }

    /// Collapsed iteration shape and per-operand strides (at most 8 dims after collapsing).
    static func plan(_ shape: [Int], _ operands: [[Int]]) -> (dims: [Int], strides: [[Int]]) {
        let p = StridedPlan(shape: shape, strides: operands)
        if p.shape.count > 8 { shapeError("CUDA kernels take at most 8 non-collapsible dims, got shape \(shape)") }
        return (p.shape, p.strides)
    }

    /// dst (any layout) = src converted to dst's dtype; shapes equal.
    static func convert(_ src: Tensor, into dst: Tensor) {
        let ctx = context(dst, src)
        let p = plan(src.shape, [dst.strides, src.strides])
        let args = KernelArgs().int(src.numel).dims(p.dims).int(src.dtype.cudaCode).tensor(src).strides(p.strides[1])
            .int(dst.dtype.cudaCode).tensor(dst).strides(p.strides[0])
        launch(ctx, "convert", count: src.numel, args)
    }

    static func fill(_ t: Tensor, _ value: Double, int: Int64? = nil) {
        let ctx = context(t)
        let iv: Int64 = int ?? (t.dtype == .bool ? (value != 0 ? 1 : 0) : Int64(fromDouble: value))
        launch(ctx, "fill", count: t.numel, KernelArgs().int(t.numel).int(t.dtype.cudaCode).tensor(t).double(value).int(Int(iv)))
    }

    /// out (contiguous, broadcast shape) = a op b (same dtype); see kernels.cu's `binary` for codes.
    static func binary(_ a: Tensor, _ b: Tensor, _ out: Tensor, op: Int, alpha: Double = 0) {
        let ctx = context(out, a, b)
        let p = plan(out.shape, [out.strides, a.broadcastStrides(to: out.shape), b.broadcastStrides(to: out.shape)])
        let args = KernelArgs().int(out.numel).dims(p.dims).int(a.dtype.cudaCode).int(op).tensor(out)
            .tensor(a).strides(p.strides[1]).tensor(b).strides(p.strides[2]).double(alpha)
        launch(ctx, "binary", count: out.numel, args)
    }

    /// out (bool) = a cmp b; codes as kernels.cu's `compare`.
    static func compare(_ a: Tensor, _ b: Tensor, _ out: Tensor, op: Int) {
        let ctx = context(out, a, b)
        let p = plan(out.shape, [out.strides, a.broadcastStrides(to: out.shape), b.broadcastStrides(to: out.shape)])
        let args = KernelArgs().int(out.numel).dims(p.dims).int(a.dtype.cudaCode).int(op).tensor(out)
            .tensor(a).strides(p.strides[1]).tensor(b).strides(p.strides[2])
        launch(ctx, "compare", count: out.numel, args)
    }

    /// out = f(a) elementwise; codes as kernels.cu's `unary`.
    static func unary(_ a: Tensor, _ out: Tensor, op: Int, _ p0: Double = .nan, _ p1: Double = .nan) {
        let ctx = context(out, a)
        let p = plan(out.shape, [out.strides, a.broadcastStrides(to: out.shape)])
        let args = KernelArgs().int(out.numel).dims(p.dims).int(a.dtype.cudaCode).int(op).tensor(out)
            .tensor(a).strides(p.strides[1]).double(p0).double(p1)
        launch(ctx, "unary", count: out.numel, args)
    }

    static func unary(_ a: Tensor, op: Int, _ p0: Double = .nan, _ p1: Double = .nan) -> Tensor {
        let out = Tensor(uninitialized: a.shape, dtype: a.dtype, like: a)
        unary(a, out, op: op, p0, p1)
        return out
    }

    static func select(_ cond: Tensor, _ a: Tensor, _ b: Tensor, _ out: Tensor) {
        let ctx = context(out, cond, a, b)
        let s = out.shape
        let p = plan(s, [out.strides, cond.broadcastStrides(to: s), a.broadcastStrides(to: s), b.broadcastStrides(to: s)])
        let args = KernelArgs().int(out.numel).dims(p.dims).int(out.dtype.byteSize).tensor(out)
            .tensor(cond).strides(p.strides[1]).tensor(a).strides(p.strides[2]).tensor(b).strides(p.strides[3])
        launch(ctx, "where_select", count: out.numel, args)
    }

    /// Sum (op 0) or max/min (1/2, with indices) over the middle axis of a contiguous layout.
    static func reduce(_ l: ReduceLayout, op: Int, into out: Tensor, indices: Tensor? = nil) {
        let ctx = context(out, l.source)
        let n = l.outer * l.inner
        if op == 0 && l.source.dtype == .float32 && n == 1 && l.count >= 1 << 16 {
            // One long sum: block partials (a shared-memory tree), then their sum.
            let blocks = 64
            let partials = Tensor(uninitialized: [blocks], dtype: .float64, context: ctx)
            let args = KernelArgs().int(l.count).tensor(l.source).tensor(partials)
            args.withParams { ctx.driver.launch(device: ctx.index, kernel: "sum_partials_f32", grid: blocks, block: 64, params: $0) }
            let total = Tensor(uninitialized: [1], dtype: .float64, context: ctx)
            launch(ctx, "reduce", count: 1, KernelArgs().int(1).int(blocks).int(1).int(DType.float64.cudaCode).int(0).tensor(partials).tensor(total).null())
            convert(total.reshape([]), into: out.reshape([]))
            return
        }
        let args = KernelArgs().int(l.outer).int(l.count).int(l.inner).int(l.source.dtype.cudaCode).int(op).tensor(l.source).tensor(out)
        if let indices { args.tensor(indices) } else { args.null() }
        launch(ctx, "reduce", count: n, args)
    }

    /// Row-wise softmax of a contiguous [rows, n] tensor.
    static func softmaxRows(_ x: Tensor, rows: Int, n: Int, log: Bool) -> Tensor {
        let ctx = context(x)
        let out = Tensor(uninitialized: x.shape, dtype: x.dtype, context: ctx)
        launch(ctx, "softmax_rows", count: rows, KernelArgs().int(rows).int(n).int(x.dtype.cudaCode).int(log ? 1 : 0).tensor(x).tensor(out))
        return out
    }

    /// out[M, N] = a[M, K] @ b[K, N] (2-d, any strides) through cuBLAS (float) or a kernel (int64).
    static func matmul(_ a: Tensor, _ b: Tensor, into out: Tensor) {
        let ctx = context(out, a, b)
        let m = a.shape[0], k = a.shape[1], n = b.shape[1]
        if m == 0 || n == 0 { return }
        if k == 0 { fill(out, 0); return }
        if a.dtype == .int64 {
            let args = KernelArgs().int(1).int(m).int(n).int(k).tensor(a).int(0).int(a.strides[0]).int(a.strides[1])
                .tensor(b).int(0).int(b.strides[0]).int(b.strides[1]).tensor(out)
            launch(ctx, "matmul_i64", count: m * n, args)
            return
        }
        // Row-major out = a·b is column-major outᵀ = bᵀ·aᵀ: cuBLAS's A is b, its B is a.
        let oa = GEMMOperand(a), ob = GEMMOperand(b)   // the same layout rule as the CPU GEMM (its pointer is not used here)
        let call = CUDAGemmCall(dtype: a.dtype, transA: ob.transposed, transB: oa.transposed, m: n, n: m, k: k, alpha: 1, beta: 0,
                                a: ob.tensor.devicePointer, lda: ob.ld, strideA: 0, b: oa.tensor.devicePointer, ldb: oa.ld, strideB: 0,
                                c: out.devicePointer, ldc: n, strideC: 0, batch: 1, allowTF32: Tensor.allowTF32)
        ctx.driver.gemm(device: ctx.index, call)
        withExtendedLifetime((oa, ob)) {}
    }

    /// bmm of [B, M, K] and [B, K, N] (contiguous inner matrices) through StridedBatched.
    static func bmm(_ a: Tensor, _ b: Tensor, into out: Tensor) {
        let ctx = context(out, a, b)
        let batch = a.shape[0], m = a.shape[1], k = a.shape[2], n = b.shape[2]
        if batch == 0 || m == 0 || n == 0 { return }
        if k == 0 { fill(out, 0); return }
        let ca = a.contiguous(), cb = b.contiguous()
        if a.dtype == .int64 {
            let args = KernelArgs().int(batch).int(m).int(n).int(k).tensor(ca).int(m * k).int(k).int(1)
                .tensor(cb).int(k * n).int(n).int(1).tensor(out)
            launch(ctx, "matmul_i64", count: batch * m * n, args)
            return
        }
        let call = CUDAGemmCall(dtype: a.dtype, transA: false, transB: false, m: n, n: m, k: k, alpha: 1, beta: 0,
                                a: cb.devicePointer, lda: n, strideA: k * n, b: ca.devicePointer, ldb: k, strideB: m * k,
                                c: out.devicePointer, ldc: n, strideC: m * n, batch: batch, allowTF32: Tensor.allowTF32)
        ctx.driver.gemm(device: ctx.index, call)
        withExtendedLifetime((ca, cb)) {}
    }

    /// gather along `dim` (index of the source's rank; indices validated by the caller).
    static func gather(_ src: Tensor, dim: Int, index: Tensor) -> Tensor {
        let ctx = context(src, index)
        let s = src.contiguous(), idx = index.contiguous()
        let outer = src.shape[..<dim].reduce(1, *), inner = src.shape[(dim + 1)...].reduce(1, *)
        let count = index.shape[dim]
        let out = Tensor(uninitialized: index.shape, dtype: src.dtype, context: ctx)
        let args = KernelArgs().int(outer).int(src.shape[dim]).int(count).int(inner).int(src.dtype.byteSize).tensor(s)
            .tensor(idx).int(count * inner).int(inner).int(1).tensor(out)
        launch(ctx, "gather", count: out.numel, args)
        return out
    }

    /// zeros(shape) with `source` summed into the positions `index` names along `dim`.
    static func scatterAdd(shape: [Int], dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let ctx = context(source, index)
        let src = source.contiguous(), idx = index.contiguous()
        let out = Tensor(uninitialized: shape, dtype: source.dtype, context: ctx)
        fill(out, 0)
        let outer = shape[..<dim].reduce(1, *), inner = shape[(dim + 1)...].reduce(1, *)
        let count = index.shape[dim]
        let args = KernelArgs().int(outer).int(shape[dim]).int(count).int(inner).int(source.dtype.cudaCode).tensor(src)
            .tensor(idx).int(count * inner).int(inner).int(1).tensor(out)
        launch(ctx, "scatter_add", count: out.numel, args)
        return out
    }
}

extension Tensor {
    nonisolated(unsafe) private static var tf32 = false
    /// Whether float32 GEMMs on CUDA may use TF32 tensor cores (`torch.backends.cuda.matmul.allow_tf32`).
    /// Off by default, as in PyTorch.
    public static var allowTF32: Bool {
        get { tf32 }
        set { tf32 = newValue }
    }
}

extension Device {
    /// The number of CUDA devices under the driver in effect (0 without one).
    public static var cudaDeviceCount: Int {
        switch CUDARuntime.current {
        case .success(let d): return d.deviceCount()
        case .failure: return 0
        }
    }
}

extension Tensor {
    /// An index on this tensor's device with negatives wrapped and bounds checked on the host
    /// (a GPU kernel cannot stop the program with a message).
    func cudaCheckedIndex(_ index: Tensor, dimSize: Int, _ op: String) -> Tensor {
        let values = index.scalars(as: Int64.self)
        if let bad = values.first(where: { $0 < -Int64(dimSize) || $0 >= Int64(dimSize) }) {
            shapeError("\(op): index \(bad) is out of bounds for dimension with size \(dimSize)")
        }
        let idx = Tensor.onOneDevice([self, index], op)[1].contiguous()
        return values.contains(where: { $0 < 0 }) ? noGrad { Tensor.where(idx .< 0.0, idx + dimSize, idx) } : idx
    }

    func cudaGather(dim d: Int, index: Tensor) -> Tensor {
        let idx = cudaCheckedIndex(index, dimSize: shape[d], "gather")
        var src = self
        for i in 0..<ndim where i != d && index.shape[i] < shape[i] { src = noGrad { src.narrow(dim: i, start: 0, length: index.shape[i]) } }
        let out = noGrad { CUDAOps.gather(src.detach(), dim: d, index: idx) }
        let inShape = shape
        return out.recorded("GatherBackward0", [self]) { g in
            [Tensor.zeros(inShape, dtype: g.dtype, device: g.device).scatterAdd(dim: d, index: idx, source: g)]
        }
    }

    func cudaScatterAdd(dim d: Int, index: Tensor, source: Tensor) -> Tensor {
        if index.shape != source.shape { shapeError("scatterAdd: index shape \(index.shape) must equal source shape \(source.shape)") }
        for i in 0..<ndim where i != d && index.shape[i] != shape[i] {
            usageError("scatterAdd on \(device): index shape \(index.shape) must match the tensor's \(shape) outside dimension \(d)")
        }
        if !dtype.isFloatingPoint { usageError("scatterAdd on \(device) supports float32/float64, got \(dtype)") }
        let idx = cudaCheckedIndex(index, dimSize: shape[d], "scatterAdd")
        let src = Tensor.onOneDevice([self, source.to(dtype)], "scatterAdd")[1]
        let added = noGrad { CUDAOps.scatterAdd(shape: shape, dim: d, index: idx, source: src.detach()) }
        let out = noGrad { self.detach() + added }
        return out.recorded("ScatterAddBackward0", [self, source]) { g in [g, g.gather(dim: d, index: idx)] }
    }
}

extension KernelArgs {
    /// `struct Window` of kernels.cu.
    @discardableResult func window(_ g: ConvGeometry) -> KernelArgs {
        words([g.channels, g.height, g.width, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.outH, g.outW])
    }
}

extension Tensor {
    /// im2col on the device: [N, C, H, W] → [N, C·kh·kw, outH·outW], `pad` outside the input;
    /// differentiable (its backward is col2im).
    static func cudaUnfold(_ x: Tensor, _ g: ConvGeometry, pad: Double) -> Tensor {
        if !x.dtype.isFloatingPoint { usageError("convolution and pooling on \(x.device) need a floating point input, got \(x.dtype)") }
        let xc = noGrad { x.contiguous() }.detach()
        let ctx = CUDAOps.context(xc)
        let n = x.shape[0], k = g.colRows, l = g.colCols
        let col = Tensor(uninitialized: [n, k, l], dtype: x.dtype, context: ctx)
        CUDAOps.launch(ctx, "im2col", count: col.numel,
                       KernelArgs().int(col.numel).window(g).int(x.dtype.cudaCode).tensor(xc).tensor(col).double(pad))
        let inShape = x.shape
        return col.recorded("Im2ColBackward0", [x]) { grad in
            let gc = grad.contiguous()
            let dx = Tensor(uninitialized: inShape, dtype: gc.dtype, context: ctx)
            CUDAOps.launch(ctx, "col2im", count: dx.numel, KernelArgs().int(dx.numel).window(g).int(gc.dtype.cudaCode).tensor(gc).tensor(dx))
            return [dx]
        }
    }

    /// conv2d on the device: im2col, one batched GEMM (cuBLAS StridedBatched), bias added.
    static func cudaConv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ g: ConvGeometry, dtype dt: DType) -> Tensor {
        let ops = onOneDevice([x, w] + (b.map { [$0] } ?? []), "conv2d")
        let col = cudaUnfold(ops[0].to(dt), g, pad: 0)
        let outC = w.shape[0]
        var y = ops[1].to(dt).reshape([outC, g.colRows]).matmul(col)
        if b != nil { y = y + ops[2].to(dt).reshape([1, outC, 1]) }
        return y.reshape([x.shape[0], outC, g.outH, g.outW])
    }

    /// Max (or average) pooling on the device: each plane unfolded, then reduced over the window.
    static func cudaPool2d(_ x: Tensor, _ g: ConvGeometry, max: Bool) -> Tensor {
        let n = x.shape[0], c = x.shape[1]
        let plane = ConvGeometry(channels: 1, height: g.height, width: g.width, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw,
                                 ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw)
        let col = cudaUnfold(x.reshape([n * c, 1, g.height, g.width]), plane, pad: max ? -.infinity : 0)
        let r = max ? col.max(dim: 1).values : col.mean(dim: 1)
        return r.reshape([n, c, g.outH, g.outW])
    }
}
