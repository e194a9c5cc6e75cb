/// Geometry of a 2-d convolution or pooling window over one [C, H, W] plane stack.
/// The sliding-window arithmetic of convolution and pooling, PyTorch's output-size formula, in
/// one place: the kernels size their outputs with it and a config check predicts shapes with it.
public enum WindowGeometry {
    /// The window positions along an axis of `size`, padded by `padding` on both sides:
    /// ⌊(size + 2·padding − dilation·(kernel − 1) − 1) / stride⌋ + 1, or 0 when the (dilated)
    /// window is larger than the padded input; nil when the arithmetic overflows an Int.
    public static func outputSize(_ size: Int, kernel: Int, stride: Int, padding: Int, dilation: Int) -> Int? {
        let (twoP, o1) = padding.multipliedReportingOverflow(by: 2)
        let (reach, o2) = dilation.multipliedReportingOverflow(by: kernel - 1)
        let (padded, o3) = size.addingReportingOverflow(twoP)
        let (span, o4) = padded.subtractingReportingOverflow(reach)
        let (last, o5) = span.subtractingReportingOverflow(1)
        guard !(o1 || o2 || o3 || o4 || o5) else { return nil }
        // Swift's division truncates toward zero: a small negative span over a stride > 1 would give 1.
        return last < 0 ? 0 : last / stride + 1
    }
}

struct ConvGeometry {
    let channels, height, width: Int
    let kh, kw: Int
    let sh, sw: Int
    let ph, pw: Int
    let dh, dw: Int
    /// Output rows and columns; 0 when the window does not fit (or its arithmetic overflows).
    let outH, outW: Int

    init(channels: Int, height: Int, width: Int, kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int, dh: Int, dw: Int) {
        self.channels = channels; self.height = height; self.width = width
        self.kh = kh; self.kw = kw; self.sh = sh; self.sw = sw; self.ph = ph; self.pw = pw; self.dh = dh; self.dw = dw
        outH = WindowGeometry.outputSize(height, kernel: kh, stride: sh, padding: ph, dilation: dh) ?? 0
        outW = WindowGeometry.outputSize(width, kernel: kw, stride: sw, padding: pw, dilation: dw) ?? 0
    }
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
