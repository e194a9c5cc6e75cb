import System
/// Reductions over the middle axis of a contiguous [outer, count, inner] layout: row sums
/// (inner == 1), column sums (outer == 1, e.g. a bias gradient) and everything between, without
/// copying when the reduced dims are adjacent.
struct ReduceLayout {
    let source: Tensor      // contiguous
    let outer: Int
    let count: Int
    let inner: Int
    /// Kept dims in order (the output shape without keepDim).
    let keptShape: [Int]

    init(_ x: Tensor, dims: [Int]) {
        let set = Set(dims)
        keptShape = (0..<x.ndim).filter { !set.contains($0) }.map { x.shape[$0] }
        let sorted = dims.sorted()
        let adjacent = sorted.isEmpty || sorted.last! - sorted.first! + 1 == sorted.count
        if x.isContiguous && adjacent {
            source = x
            let lo = sorted.first ?? x.ndim, hi = sorted.last ?? (x.ndim - 1)
            outer = x.shape[..<lo].reduce(1, *)
            count = sorted.isEmpty ? 1 : x.shape[lo...hi].reduce(1, *)
            inner = hi + 1 <= x.ndim ? x.shape[(hi + 1)...].reduce(1, *) : 1
        } else {
            let kept = (0..<x.ndim).filter { !set.contains($0) }
            source = noGrad { x.permute(kept + sorted).contiguous() }
            outer = kept.map { x.shape[$0] }.reduce(1, *)
            count = sorted.map { x.shape[$0] }.reduce(1, *)
            inner = 1
        }
    }
}

enum Reduce {
    /// Sum of `n` contiguous floats: eight-lane accumulators, blocks folded into a Double.
    @inline(__always)
    static func sumContiguous(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
        var total = 0.0
        var i = 0
        while i < n {
            let end = Swift.min(n, i + 4096)
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            while i + 32 <= end {
                let r = UnsafeRawPointer(p + i)
                a0 += r.loadUnaligned(as: SIMD8<Float>.self)
                a1 += r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                a2 += r.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
                a3 += r.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
                i += 32
            }
            var s = Double(((a0 + a1) + (a2 + a3)).sum())
            while i < end { s += Double(p[i]); i += 1 }
            total += s
        }
        return total
    }

    /// Sums a float32 layout into `out` (outer * inner elements).
    static func sumFloat(_ l: ReduceLayout, into out: UnsafeMutablePointer<Float>) {
        let src = SendablePointer(l.source.pointer(Float.self)), dst = SendablePointer(out)
        let outer = l.outer, count = l.count, inner = l.inner
        if inner == 1 {
            if outer == 1 {
                // One long sum: partial sums per thread.
                let threads = Swift.max(1, Swift.min(Threading.threadCount, count / 65_536))
                var partial = [Double](repeating: 0, count: threads)
                partial.withUnsafeMutableBufferPointer { pb in
                    let pp = SendablePointer(pb.baseAddress!)
                    Threading.run(threads: threads) { t, nt in
                        let chunk = (count + nt - 1) / nt
                        let lo = t * chunk, hi = Swift.min(count, lo + chunk)
                        if lo < hi { pp.p[t] = sumContiguous(src.p + lo, hi - lo) }
                    }
                }
                out[0] = Float(partial.reduce(0, +))
            } else {
                Threading.parallelFor(outer, grain: Swift.max(1, 32_768 / Swift.max(count, 1))) { r in
                    for o in r { dst.p[o] = Float(sumContiguous(src.p + o * count, count)) }
                }
            }
            return
        }
        // Column-style: out[o, :] = sum over r of src[o, r, :], vectorised along inner.
        let work = outer * count * inner
        if outer >= Threading.threadCount || work < 65_536 {
            Threading.parallelFor(outer, grain: Swift.max(1, 65_536 / Swift.max(count * inner, 1))) { r in
                for o in r { columnSum(src.p + o * count * inner, dst.p + o * inner, count, inner) }
            }
        } else {
            Threading.parallelFor(inner, grain: Swift.max(64, 65_536 / Swift.max(count * outer, 1))) { r in
                for o in 0..<outer {
                    columnSum(src.p + o * count * inner + r.lowerBound, dst.p + o * inner + r.lowerBound, count, r.count, stride: inner)
                }
            }
        }
    }

    /// out[0..<width] = sum over r of src[r * stride ..< r * stride + width].
    @inline(__always)
    static func columnSum(_ src: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ rows: Int, _ width: Int, stride: Int? = nil) {
        let st = stride ?? width
        for j in 0..<width { out[j] = 0 }
        for r in 0..<rows {
            let row = src + r * st
            for j in 0..<width { out[j] += row[j] }
        }
    }

    /// Generic scalar fold for the other dtypes and reductions.
    @inline(__always)
    static func fold<T, A>(_ l: ReduceLayout, _: T.Type, initial: A, _ step: (A, T) -> A, _ finish: (A) -> Void) {
        // Writes through `finish` in output order (outer-major, then inner).
        let p = l.source.pointer(T.self)
        for o in 0..<l.outer {
            for j in 0..<l.inner {
                var acc = initial
                var q = p + o * l.count * l.inner + j
                for _ in 0..<l.count { acc = step(acc, q.pointee); q += l.inner }
                finish(acc)
            }
        }
    }
}
