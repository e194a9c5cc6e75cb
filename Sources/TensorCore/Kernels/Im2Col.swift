/// Geometry of a 2-d convolution or pooling window over one [C, H, W] plane stack.
struct ConvGeometry {
    let channels, height, width: Int
    let kh, kw: Int
    let sh, sw: Int
    let ph, pw: Int
    let dh, dw: Int
    // 0 when the (dilated) window is larger than the padded input: Swift's division truncates
    // toward zero, so a small negative span divided by a stride > 1 would otherwise give 1.
    var outH: Int { let span = height + 2 * ph - dh * (kh - 1) - 1; return span < 0 ? 0 : span / sh + 1 }
    var outW: Int { let span = width + 2 * pw - dw * (kw - 1) - 1; return span < 0 ? 0 : span / sw + 1 }
    var colRows: Int { channels * kh * kw }
    var colCols: Int { outH * outW }
}

enum Im2Col {
    /// Unfolds one sample [C, H, W] into columns [C*kh*kw, outH*outW].
    @inline(__always)
    static func unfold<T: Numeric>(_ x: UnsafePointer<T>, _ g: ConvGeometry, _ col: UnsafeMutablePointer<T>) {
        let oh = g.outH, ow = g.outW
        for c in 0..<g.channels {
            let plane = x + c * g.height * g.width
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = col + ((c * g.kh + ki) * g.kw + kj) * oh * ow
                    for y in 0..<oh {
                        let ih = y * g.sh - g.ph + ki * g.dh
                        let dst = row + y * ow
                        if ih < 0 || ih >= g.height {
                            for x in 0..<ow { dst[x] = 0 }
                            continue
                        }
                        let src = plane + ih * g.width
                        let iw0 = -g.pw + kj * g.dw
                        if g.sw == 1 && iw0 >= 0 && iw0 + ow <= g.width {
                            // Rows are short (tens of elements): an inline loop beats a memmove call.
                            let s0 = src + iw0
                            for x in 0..<ow { dst[x] = s0[x] }
                        } else {
                            for x in 0..<ow {
                                let iw = x * g.sw + iw0
                                dst[x] = (iw >= 0 && iw < g.width) ? src[iw] : 0
                            }
                        }
                    }
                }
            }
        }
    }

    /// Folds columns back, accumulating into one sample's gradient [C, H, W] (which the caller zeroed).
    @inline(__always)
    static func fold<T: Numeric>(_ col: UnsafePointer<T>, _ g: ConvGeometry, _ x: UnsafeMutablePointer<T>) {
        let oh = g.outH, ow = g.outW
        for c in 0..<g.channels {
            let plane = x + c * g.height * g.width
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = col + ((c * g.kh + ki) * g.kw + kj) * oh * ow
                    for y in 0..<oh {
                        let ih = y * g.sh - g.ph + ki * g.dh
                        if ih < 0 || ih >= g.height { continue }
                        let src = row + y * ow
                        let dst = plane + ih * g.width
                        let iw0 = -g.pw + kj * g.dw
                        if g.sw == 1 && iw0 >= 0 && iw0 + ow <= g.width {
                            let d = dst + iw0
                            for x in 0..<ow { d[x] += src[x] }
                        } else {
                            for x in 0..<ow {
                                let iw = x * g.sw + iw0
                                if iw >= 0 && iw < g.width { dst[iw] += src[x] }
                            }
                        }
                    }
                }
            }
        }
    }
}
