import System
/// torch.nn.functional, in Swift: one namespace; other modules only extend it.
public enum F {}

extension F {
    /// 2-d convolution (cross-correlation, as PyTorch): x [N, C, H, W], weight [O, C, kh, kw],
    /// bias [O] → [N, O, OH, OW]. im2col + GEMM per sample, samples spread over the threads.
    public static func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                              dilation: Int = 1) -> Tensor {
        conv2d(x, weight, bias, stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation))
    }

    public static func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
                              dilation: (Int, Int)) -> Tensor {
        if x.ndim != 4 { shapeError("conv2d: expected a 4-d input [N, C, H, W], got shape \(x.shape)") }
        if weight.ndim != 4 { shapeError("conv2d: expected a 4-d weight [out, in, kh, kw], got shape \(weight.shape)") }
        if x.shape[1] != weight.shape[1] {
            shapeError("conv2d: input has \(x.shape[1]) channels (shape \(x.shape)) but weight \(weight.shape) expects \(weight.shape[1])")
        }
        if stride.0 < 1 || stride.1 < 1 || dilation.0 < 1 || dilation.1 < 1 || padding.0 < 0 || padding.1 < 0 {
            usageError("conv2d: stride and dilation must be >= 1 and padding >= 0")
        }
        let geo = ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3], kh: weight.shape[2], kw: weight.shape[3],
                               sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1, dh: dilation.0, dw: dilation.1)
        if geo.outH <= 0 || geo.outW <= 0 {
            shapeError("conv2d: kernel \(weight.shape[2])x\(weight.shape[3]) (dilation \(dilation)) is larger than the padded input \(x.shape[2] + 2 * padding.0)x\(x.shape[3] + 2 * padding.1)")
        }
        let outC = weight.shape[0]
        if let bias, bias.shape != [outC] { shapeError("conv2d: bias must have shape [\(outC)], got \(bias.shape)") }
        let dt = DType.promote(x.dtype, weight.dtype)
        if !dt.isFloatingPoint { usageError("conv2d: expected floating point tensors, got \(x.dtype) and \(weight.dtype)") }
        if x.isCUDA || weight.isCUDA { return Tensor.cudaConv2d(x, weight, bias, geo, dtype: dt) }
        let xc = noGrad { x.to(dt).contiguous() }.detach(), wc = noGrad { weight.to(dt).contiguous() }.detach()
        let bc = bias.map { b in noGrad { b.to(dt).contiguous() }.detach() }
        let n = x.shape[0]
        let out = Tensor(uninitialized: [n, outC, geo.outH, geo.outW], dtype: dt)
        if dt == .float32 { ConvKernel.forwardFloat(xc, wc, bc, geo, out) } else { ConvKernel.forwardGeneric(xc, wc, bc, geo, out) }
        let needX = x.requiresGradFlag, needW = weight.requiresGradFlag, needB = bias?.requiresGradFlag ?? false
        let operands = bias.map { [x, weight, $0] } ?? [x, weight]
        return out.recorded("ConvolutionBackward0", operands) { g in
            let gc = g.contiguous()
            let (gx, gw) = dt == .float32
                ? ConvKernel.backwardFloat(gc, xc, wc, geo, needX: needX, needW: needW)
                : ConvKernel.backwardGeneric(gc, xc, wc, geo, needX: needX, needW: needW)
            var grads: [Tensor?] = [gx.map { $0.to(x.dtype) }, gw.map { $0.to(weight.dtype) }]
            if let bias { grads.append(needB ? gc.sum(dims: [0, 2, 3]).to(bias.dtype) : nil) }
            return grads
        }
    }
}

enum ConvKernel {
    static func forwardFloat(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ geo: ConvGeometry, _ out: Tensor) {
        let n = x.shape[0], outC = w.shape[0]
        let k = geo.colRows, l = geo.colCols
        let xp = SendablePointer(x.pointer(Float.self)), wp = SendablePointer(w.pointer(Float.self)), op = SendablePointer(out.pointer(Float.self))
        let bp = b.map { SendablePointer($0.pointer(Float.self)) }
        let sampleIn = geo.channels * geo.height * geo.width, sampleOut = outC * l
        let threads = Swift.min(Threading.threadCount, n)
        // A 1x1 stride-1 unpadded kernel needs no unfolding: the input is already the column matrix.
        let direct = geo.kh == 1 && geo.kw == 1 && geo.sh == 1 && geo.sw == 1 && geo.ph == 0 && geo.pw == 0
        Threading.run(threads: threads) { t, nt in
            let lo = n * t / nt, hi = n * (t + 1) / nt
            let col = direct ? nil : UnsafeMutablePointer<Float>.allocate(capacity: k * l)
            defer { col?.deallocate() }
            for s in lo..<hi {
                let dst = op.p + s * sampleOut
                let src: UnsafePointer<Float>
                if let col { Im2Col.unfold(xp.p + s * sampleIn, geo, col); src = UnsafePointer(col) } else { src = UnsafePointer(xp.p + s * sampleIn) }
                if let bp { for o in 0..<outC { (dst + o * l).initialize(repeating: bp.p[o], count: l) } }
                DNNL.sgemm(transA: false, transB: false, m: outC, n: l, k: k, alpha: 1, a: wp.p, lda: k, b: src, ldb: l,
                           beta: bp == nil ? 0 : 1, c: dst, ldc: l)
            }
        }
    }

    static func backwardFloat(_ g: Tensor, _ x: Tensor, _ w: Tensor, _ geo: ConvGeometry, needX: Bool, needW: Bool) -> (Tensor?, Tensor?) {
        let n = x.shape[0], outC = w.shape[0]
        let k = geo.colRows, l = geo.colCols
        let sampleIn = geo.channels * geo.height * geo.width, sampleOut = outC * l
        let gx = needX ? Tensor.zeros(x.shape, dtype: .float32) : nil
        let threads = Swift.min(Threading.threadCount, n)
        // Per-thread weight-gradient partials, summed at the end.
        let partials = needW ? (0..<threads).map { _ in Tensor.zeros([outC, k], dtype: .float32) } : []
        let pp = partials.map { SendablePointer($0.pointer(Float.self)) }
        let xp = SendablePointer(x.pointer(Float.self)), wp = SendablePointer(w.pointer(Float.self)), gp = SendablePointer(g.pointer(Float.self))
        let gxp = gx.map { SendablePointer($0.pointer(Float.self)) }
        Threading.run(threads: threads) { t, nt in
            let lo = n * t / nt, hi = n * (t + 1) / nt
            let col = UnsafeMutablePointer<Float>.allocate(capacity: k * l)
            defer { col.deallocate() }
            for s in lo..<hi {
                let gs = gp.p + s * sampleOut
                if needW {
                    Im2Col.unfold(xp.p + s * sampleIn, geo, col)
                    // dW[outC, k] += g[outC, l] @ colᵀ[l, k]
                    DNNL.sgemm(transA: false, transB: true, m: outC, n: k, k: l, alpha: 1, a: gs, lda: l, b: col, ldb: l,
                               beta: 1, c: pp[t].p, ldc: k)
                }
                if let gxp {
                    // dcol[k, l] = Wᵀ[k, outC] @ g[outC, l], folded back into dx.
                    DNNL.sgemm(transA: true, transB: false, m: k, n: l, k: outC, alpha: 1, a: wp.p, lda: k, b: gs, ldb: l,
                               beta: 0, c: col, ldc: l)
                    Im2Col.fold(col, geo, gxp.p + s * sampleIn)
                }
            }
        }
        var gw: Tensor? = nil
        if needW {
            let total = partials[0]
            for p in partials.dropFirst() { total.addInPlace(p) }
            gw = total.reshape(w.shape)
        }
        return (gx, gw)
    }

    static func forwardGeneric(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ geo: ConvGeometry, _ out: Tensor) {
        let n = x.shape[0], outC = w.shape[0], k = geo.colRows, l = geo.colCols
        let sampleIn = geo.channels * geo.height * geo.width
        let w2 = w.reshape([outC, k])
        let col = Tensor(uninitialized: [k, l], dtype: .float64)
        for s in 0..<n {
            Im2Col.unfold(x.pointer(Double.self) + s * sampleIn, geo, col.pointer(Double.self))
            let o = out.select(dim: 0, index: s).reshape([outC, l])
            GEMM.generic(w2, col, into: o, Double.self)
            if let b {
                let op = o.pointer(Double.self), bp = b.pointer(Double.self)
                for c in 0..<outC { for j in 0..<l { op[c * l + j] += bp[c] } }
            }
        }
    }

    static func backwardGeneric(_ g: Tensor, _ x: Tensor, _ w: Tensor, _ geo: ConvGeometry, needX: Bool, needW: Bool) -> (Tensor?, Tensor?) {
        let n = x.shape[0], outC = w.shape[0], k = geo.colRows, l = geo.colCols
        let sampleIn = geo.channels * geo.height * geo.width
        let w2 = w.reshape([outC, k])
        let gx = needX ? Tensor.zeros(x.shape, dtype: .float64) : nil
        let gw = needW ? Tensor.zeros([outC, k], dtype: .float64) : nil
        let col = Tensor(uninitialized: [k, l], dtype: .float64)
        let tmp = Tensor(uninitialized: [outC, k], dtype: .float64)
        for s in 0..<n {
            let gs = g.select(dim: 0, index: s).reshape([outC, l])
            if let gw {
                Im2Col.unfold(x.pointer(Double.self) + s * sampleIn, geo, col.pointer(Double.self))
                GEMM.generic(gs, col.transpose(0, 1), into: tmp, Double.self)
                gw.addInPlace(tmp)
            }
            if let gx {
                let dcol = Tensor(uninitialized: [k, l], dtype: .float64)
                GEMM.generic(w2.transpose(0, 1), gs, into: dcol, Double.self)
                Im2Col.fold(dcol.pointer(Double.self), geo, gx.pointer(Double.self) + s * sampleIn)
            }
        }
        return (gx, gw?.reshape(w.shape))
    }
}

// MARK: - pooling

extension F {
    /// Max pooling over [N, C, H, W] (stride defaults to the kernel size, as in PyTorch).
    public static func maxPool2d(_ x: Tensor, kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1) -> Tensor {
        let geo = poolGeometry("maxPool2d", x, kernelSize, stride ?? kernelSize, padding, dilation)
        if padding * 2 > kernelSize { shapeError("maxPool2d: padding \(padding) should be at most half of the kernel size \(kernelSize)") }
        if x.isCUDA { return Tensor.cudaPool2d(x, geo, max: true) }
        let xc = noGrad { x.contiguous() }.detach()
        let planes = x.shape[0] * x.shape[1]
        let out = Tensor(uninitialized: [x.shape[0], x.shape[1], geo.outH, geo.outW], dtype: x.dtype)
        let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: out.numel)
        let ab = ArgmaxBuffer(argmax)
        let inPlane = geo.height * geo.width, outPlane = geo.outH * geo.outW
        func run<T: Comparable & Numeric>(_: T.Type, isNaN: @escaping (T) -> Bool) {
            let xp = SendablePointer(xc.pointer(T.self)), op = SendablePointer(out.pointer(T.self))
            let ap = SendablePointer(argmax)
            let unpadded = geo.ph == 0 && geo.pw == 0
            Threading.parallelFor(planes, grain: Swift.max(1, 16_384 / Swift.max(inPlane, 1))) { r in
                for p in r {
                    let src = xp.p + p * inPlane, dst = op.p + p * outPlane, arg = ap.p + p * outPlane
                    for oy in 0..<geo.outH {
                        for ox in 0..<geo.outW {
                            // The first in-range element starts the scan; a NaN wins and stays.
                            var best = T.zero
                            var bestIndex: Int32 = -1
                            if unpadded {
                                let i0 = (oy * geo.sh) * geo.width + ox * geo.sw
                                best = src[i0]; bestIndex = Int32(i0)
                            }
                            scan: for ki in 0..<geo.kh {
                                let iy = oy * geo.sh - geo.ph + ki * geo.dh
                                if iy < 0 || iy >= geo.height { continue }
                                for kj in 0..<geo.kw {
                                    let ix = ox * geo.sw - geo.pw + kj * geo.dw
                                    if ix < 0 || ix >= geo.width { continue }
                                    let i = iy * geo.width + ix
                                    let v = src[i]
                                    if bestIndex < 0 || v > best || isNaN(v) {
                                        best = v; bestIndex = Int32(i)
                                        if isNaN(v) { break scan }
                                    }
                                }
                            }
                            dst[oy * geo.outW + ox] = best
                            arg[oy * geo.outW + ox] = bestIndex
                        }
                    }
                }
            }
        }
        /// The reference models' case: float32, 2×2 windows, stride 2, no padding.
        func run2x2() {
            let xp = SendablePointer(xc.pointer(Float.self)), op = SendablePointer(out.pointer(Float.self))
            let ap = SendablePointer(argmax)
            let w = geo.width, ow = geo.outW
            Threading.parallelFor(planes, grain: Swift.max(1, 16_384 / Swift.max(inPlane, 1))) { r in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 32)
                scratch.initialize(repeating: 0, count: 32)
                defer { scratch.deallocate() }
                for p in r {
                    let src = xp.p + p * inPlane, dst = op.p + p * outPlane, arg = ap.p + p * outPlane
                    for oy in 0..<geo.outH {
                        let row0 = src + 2 * oy * w, row1 = row0 + w
                        let base = Int32(2 * oy * w)
                        var ox = 0
                        // Eight windows at a time, branch-free (the comparisons are data-dependent
                        // and mispredict half the time as branches).
                        typealias V = SIMD8<Float>
                        typealias I = SIMD8<Int32>
                        let lane = I(0, 2, 4, 6, 8, 10, 12, 14)
                        while ox < ow {
                            // A full block loads straight from the rows; the last, partial one is
                            // gathered into zero-padded vectors and only its valid lanes stored.
                            let count = Swift.min(8, ow - ox)
                            var top = SIMD16<Float>(), bottom = SIMD16<Float>()
                            if 2 * ox + 16 <= w {
                                top = UnsafeRawPointer(row0 + 2 * ox).loadUnaligned(as: SIMD16<Float>.self)
                                bottom = UnsafeRawPointer(row1 + 2 * ox).loadUnaligned(as: SIMD16<Float>.self)
                            } else {
                                scratch.update(from: row0 + 2 * ox, count: 2 * count)
                                (scratch + 16).update(from: row1 + 2 * ox, count: 2 * count)
                                top = UnsafeRawPointer(scratch).loadUnaligned(as: SIMD16<Float>.self)
                                bottom = UnsafeRawPointer(scratch + 16).loadUnaligned(as: SIMD16<Float>.self)
                            }
                            var best = top.evenHalf
                            var bi: I = lane &+ I(repeating: base + Int32(2 * ox))
                            func take(_ v: V, _ offset: Int32) {
                                let bigger: SIMDMask<SIMD8<Int32>> = v .> best
                                let nan: SIMDMask<SIMD8<Int32>> = v .!= v
                                let bestIsNumber: SIMDMask<SIMD8<Int32>> = best .== best
                                let m = bigger .| (nan .& bestIsNumber)
                                best.replace(with: v, where: m)
                                let at: I = lane &+ I(repeating: base + Int32(2 * ox) + offset)
                                bi.replace(with: at, where: m)
                            }
                            take(top.oddHalf, 1)
                            take(bottom.evenHalf, Int32(w))
                            take(bottom.oddHalf, Int32(w) + 1)
                            if count == 8 {
                                UnsafeMutableRawPointer(dst + oy * ow + ox).storeBytes(of: best, as: V.self)
                                UnsafeMutableRawPointer(arg + oy * ow + ox).storeBytes(of: bi, as: I.self)
                            } else {
                                for j in 0..<count { dst[oy * ow + ox + j] = best[j]; arg[oy * ow + ox + j] = bi[j] }
                            }
                            ox += count
                        }
                    }
                }
            }
        }
        let fast2x2 = geo.kh == 2 && geo.kw == 2 && geo.sh == 2 && geo.sw == 2 && geo.ph == 0 && geo.pw == 0 && geo.dh == 1 && geo.dw == 1
        switch x.dtype {
        case .float32 where fast2x2: run2x2()
        case .float32: run(Float.self) { $0.isNaN }
        case .float64: run(Double.self) { $0.isNaN }
        case .int64: run(Int64.self) { _ in false }
        case .bool: usageError("maxPool2d of a bool tensor")
        }
        let inShape = x.shape
        return out.recorded("MaxPool2DWithIndicesBackward0", [x]) { g in
            let gc = g.contiguous()
            let gx = Tensor.zeros(inShape, dtype: g.dtype, device: g.device)
            let arg = ab.pointer
            func back<T: Numeric>(_: T.Type) {
                let gp = SendablePointer(gc.pointer(T.self)), xp = SendablePointer(gx.pointer(T.self)), ap = SendablePointer(arg)
                Threading.parallelFor(planes, grain: Swift.max(1, 16_384 / Swift.max(inPlane, 1))) { r in
                    for p in r {
                        let src = gp.p + p * outPlane, dst = xp.p + p * inPlane, a = ap.p + p * outPlane
                        for i in 0..<outPlane where a[i] >= 0 { dst[Int(a[i])] += src[i] }
                    }
                }
            }
            if g.dtype == .float32 { back(Float.self) } else { back(Double.self) }
            return [gx]
        }
    }

    /// Average pooling over [N, C, H, W]; padded zeros count toward the average (PyTorch's default).
    public static func avgPool2d(_ x: Tensor, kernelSize: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
        if !x.dtype.isFloatingPoint { usageError("avgPool2d: expected a floating point input, got \(x.dtype)") }
        if padding * 2 > kernelSize { shapeError("avgPool2d: padding \(padding) should be at most half of the kernel size \(kernelSize)") }
        let geo = poolGeometry("avgPool2d", x, kernelSize, stride ?? kernelSize, padding, 1)
        if x.isCUDA { return Tensor.cudaPool2d(x, geo, max: false) }
        let planes = x.shape[0] * x.shape[1]
        let xc = noGrad { x.contiguous() }.detach()
        let out = Tensor.zeros([x.shape[0], x.shape[1], geo.outH, geo.outW], dtype: x.dtype)
        let inPlane = geo.height * geo.width, outPlane = geo.outH * geo.outW
        let scale = 1.0 / Double(geo.kh * geo.kw)
        func forward<T: BinaryFloatingPoint>(_: T.Type) {
            let xp = xc.pointer(T.self), op = out.pointer(T.self)
            for p in 0..<planes {
                let src = xp + p * inPlane, dst = op + p * outPlane
                for oy in 0..<geo.outH { for ox in 0..<geo.outW {
                    var s: T = 0
                    for ki in 0..<geo.kh {
                        let iy = oy * geo.sh - geo.ph + ki
                        if iy < 0 || iy >= geo.height { continue }
                        for kj in 0..<geo.kw {
                            let ix = ox * geo.sw - geo.pw + kj
                            if ix >= 0 && ix < geo.width { s += src[iy * geo.width + ix] }
                        }
                    }
                    dst[oy * geo.outW + ox] = s * T(scale)
                } }
            }
        }
        if x.dtype == .float32 { forward(Float.self) } else { forward(Double.self) }
        let inShape = x.shape
        return out.recorded("AvgPool2DBackward0", [x]) { g in
            let gc = g.contiguous()
            let gx = Tensor.zeros(inShape, dtype: g.dtype, device: g.device)
            func back<T: BinaryFloatingPoint>(_: T.Type) {
                let gp = gc.pointer(T.self), xp = gx.pointer(T.self)
                for p in 0..<planes {
                    let src = gp + p * outPlane, dst = xp + p * inPlane
                    for oy in 0..<geo.outH { for ox in 0..<geo.outW {
                        let v = src[oy * geo.outW + ox] * T(scale)
                        for ki in 0..<geo.kh {
                            let iy = oy * geo.sh - geo.ph + ki
                            if iy < 0 || iy >= geo.height { continue }
                            for kj in 0..<geo.kw {
                                let ix = ox * geo.sw - geo.pw + kj
                                if ix >= 0 && ix < geo.width { dst[iy * geo.width + ix] += v }
                            }
                        }
                    } }
                }
            }
            if g.dtype == .float32 { back(Float.self) } else { back(Double.self) }
            return [gx]
        }
    }

    static func poolGeometry(_ name: String, _ x: Tensor, _ k: Int, _ s: Int, _ p: Int, _ d: Int) -> ConvGeometry {
        if x.ndim != 4 { shapeError("\(name): expected a 4-d input [N, C, H, W], got shape \(x.shape)") }
        if k < 1 || s < 1 || p < 0 || d < 1 { usageError("\(name): kernel size, stride and dilation must be >= 1 and padding >= 0") }
        let geo = ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3], kh: k, kw: k, sh: s, sw: s, ph: p, pw: p, dh: d, dw: d)
        if geo.outH <= 0 || geo.outW <= 0 { shapeError("\(name): kernel \(k) is larger than the input \(x.shape[2])x\(x.shape[3]) (shape \(x.shape))") }
        return geo
    }
}

/// Owns the argmax positions a max-pool saves for its backward; freed with the graph. Sendable:
/// immutable, and only read inside the backward's synchronous parallel region.
final class ArgmaxBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int32>
    init(_ p: UnsafeMutablePointer<Int32>) { pointer = p }
    deinit { pointer.deallocate() }
}
