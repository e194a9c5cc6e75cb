/// Vectorised float32 transcendental functions (Cephes-style range reduction + polynomials),
/// eight lanes at a time: libm's scalar `expf` is several times slower than numpy's SIMD loops.
/// Accuracy: within a few float32 ulps over the normal range.
public enum VectorMath {
    typealias V = SIMD8<Float>

    /// √x in eight lanes: an inverse-square-root estimate refined by three Newton steps (≤ 2 ulp).
    /// The standard library's SIMD `squareRoot()` goes lane by lane through libm's `sqrtf`.
    @inline(__always)
    public static func sqrt(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var y = unsafeBitCast(0x5f37_59df &- (unsafeBitCast(x, to: SIMD8<Int32>.self) &>> 1), to: V.self)
        let h = x * 0.5
        y = y * (1.5 - h * y * y)
        y = y * (1.5 - h * y * y)
        y = y * (1.5 - h * y * y)
        var r = x * y
        r.replace(with: x, where: x .== .infinity)
        r.replace(with: .nan, where: x .< 0)
        return r
    }

    @inline(__always)
    static func abs(_ x: V) -> V { unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7fff_ffff, to: V.self) }

    @inline(__always)
    static func exp(_ x: V) -> V {
        let hi = V(repeating: 88.7228391)     // ln(FLT_MAX): above, the result overflows
        let lo = V(repeating: -103.972077)    // ln(2^-150): below, the result rounds to 0
        // Comparisons + blends (the generic pointwiseMin/Max behind `clamped` are not inlined).
        var xc = x.replacing(with: hi, where: x .> hi).replacing(with: lo, where: x .< lo)
        // Round to nearest through the 1.5·2²³ trick: the float's low bits then hold the integer
        // (no generic, lane-by-lane float→int conversion).
        let magic = V(repeating: 12_582_912)
        let shifted = xc * 1.44269504088896341 + magic
        let n = shifted - magic
        xc = xc - n * 0.693359375
        xc = xc + n * 2.12194440e-4
        let z = xc * xc
        var p = V(repeating: 1.9875691500e-4)
        p = p * xc + 1.3981999507e-3
        p = p * xc + 8.3334519073e-3
        p = p * xc + 4.1665795894e-2
        p = p * xc + 1.6666665459e-1
        p = p * xc + 5.0000001201e-1
        p = p * z + xc + 1
        // 2^n as two factors that are normal floats for every n in [-150, 128]: one factor would
        // overflow to inf for n = 128 (x > 88.376) and flush subnormal results to 0.
        let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let n1 = ni &>> 1, n2 = ni &- n1
        let s1 = unsafeBitCast((n1 &+ 127) &<< 23, to: V.self)
        let s2 = unsafeBitCast((n2 &+ 127) &<< 23, to: V.self)
        var r = p * s1 * s2
        r.replace(with: 0, where: x .< lo)
        r.replace(with: .infinity, where: x .> hi)
        r.replace(with: x, where: x .!= x)   // NaN stays NaN
        return r
    }

    @inline(__always)
    static func log(_ x: V) -> V {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        // Exponent as a float without a generic int→float conversion: build 2²³+e and subtract 2²³.
        let eBits = ((bits &>> 23) & 0xff) | 0x4B00_0000
        var e = unsafeBitCast(eBits, to: V.self) - 8_388_608 - 126
        // Mantissa in [0.5, 1).
        var m = unsafeBitCast((bits & 0x007f_ffff) | 0x3f00_0000, to: V.self)
        let small = m .< 0.707106781186547524
        e.replace(with: e - 1, where: small)
        m = m.replacing(with: m + m - 1, where: small).replacing(with: m - 1, where: .!small)
        let z = m * m
        var y = V(repeating: 7.0376836292e-2)
        y = y * m - 1.1514610310e-1
        y = y * m + 1.1676998740e-1
        y = y * m - 1.2420140846e-1
        y = y * m + 1.4249322787e-1
        y = y * m - 1.6668057665e-1
        y = y * m + 2.0000714765e-1
        y = y * m - 2.4999993993e-1
        y = y * m + 3.3333331174e-1
        y = y * m * z
        y = y + e * -2.12194440e-4
        y = y - 0.5 * z
        var r = m + y + e * 0.693359375
        r.replace(with: -.infinity, where: x .== 0)
        r.replace(with: .nan, where: x .< 0)
        r.replace(with: .infinity, where: x .== .infinity)
        r.replace(with: x, where: x .!= x)
        // Subnormal inputs: rare enough to take the scalar path.
        let subnormal = (x .> 0) .& (x .< Float.leastNormalMagnitude)
        if any(subnormal) {
            for i in 0..<8 where subnormal[i] { r[i] = Float(_log(Double(x[i]))) }
        }
        return r
    }

    @inline(__always)
    static func tanh(_ x: V) -> V {
        let ax = abs(x)
        // Small |x|: odd polynomial (no cancellation); large: 1 - 2/(e^{2|x|}+1).
        let z = x * x
        var p = V(repeating: -5.70498872745e-3)
        p = p * z + 2.06390887954e-2
        p = p * z - 5.37397155531e-2
        p = p * z + 1.33314422036e-1
        p = p * z - 3.33332819422e-1
        let small = p * z * x + x
        let e = exp(2 * ax)
        var large = 1 - 2 / (e + 1)
        large.replace(with: -large, where: x .< 0)
        return small.replacing(with: large, where: ax .>= 0.625)
    }

    @inline(__always)
    static func sigmoid(_ x: V) -> V {
        1 / (1 + exp(-x))
    }

    /// erf within a few ulps: an odd polynomial for |x| < 1 (Cephes erff), where the
    /// 1 - (...) form below cancels (erf(1e-10) came out 0); Abramowitz & Stegun 7.1.26 above
    /// (|error| < 1.5e-7).
    @inline(__always)
    static func erf(_ x: V) -> V {
        let z = x * x
        var s = V(repeating: 7.853861353153693e-5)
        s = s * z - 8.010193625184903e-4
        s = s * z + 5.188327685732524e-3
        s = s * z - 2.685381193529856e-2
        s = s * z + 1.128358514861418e-1
        s = s * z - 3.761262582423300e-1
        s = s * z + 1.128379165726710
        let small = x * s
        let ax = abs(x)
        let t = 1 / (1 + 0.3275911 * ax)
        var y = V(repeating: 1.061405429)
        y = y * t - 1.453152027
        y = y * t + 1.421413741
        y = y * t - 0.284496736
        y = y * t + 0.254829592
        let e: V = exp(-(ax * ax))
        y = 1 - y * t * e
        return y.replacing(with: -y, where: x .< 0).replacing(with: small, where: ax .< 1)
    }

    /// Exact (erf-based) GELU, PyTorch's default.
    @inline(__always)
    static func gelu(_ x: V) -> V {
        0.5 * x * (1 + erf(x * 0.70710678118654752))
    }

    /// d/dx GELU(x) = Φ(x) + x φ(x).
    @inline(__always)
    static func geluGrad(_ x: V) -> V {
        let cdf = 0.5 * (1 + erf(x * 0.70710678118654752))
        let h: V = x * x * -0.5
        let pdf = exp(h) * 0.3989422804014327
        return cdf + x * pdf
    }

    /// Applies `f` to `n` contiguous floats, eight at a time, with a padded tail.
    @inline(__always)
    static func map<K: SIMDKernel>(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, _ f: K) {
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: V.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: f(v), as: V.self)
            i += 8
        }
        if i < n {
            var v = V(repeating: 0)
            for j in 0..<(n - i) { v[j] = src[i + j] }
            let r = f(v)
            for j in 0..<(n - i) { dst[i + j] = r[j] }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func _log(_ x: Double) -> Double { log(x) }
