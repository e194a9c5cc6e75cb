import Foundation
import NN
import TensorCore
import Testing

/// `WindowGeometry.outputSize` is the one output-size rule: the layers' outputs follow it, and a
/// config check that predicts shapes with it predicts what the layers give.
@Suite struct WindowGeometryTests {
    @Test func theFormulaAndItsEdges() {
        #expect(WindowGeometry.outputSize(28, kernel: 3, stride: 1, padding: 0, dilation: 1) == 26)
        #expect(WindowGeometry.outputSize(28, kernel: 2, stride: 2, padding: 0, dilation: 1) == 14)
        #expect(WindowGeometry.outputSize(7, kernel: 3, stride: 2, padding: 1, dilation: 1) == 4)
        #expect(WindowGeometry.outputSize(10, kernel: 3, stride: 1, padding: 2, dilation: 2) == 10)
        #expect(WindowGeometry.outputSize(3, kernel: 3, stride: 1, padding: 0, dilation: 1) == 1)
        // A window larger than the padded input fits 0 times, also where truncating division (-1 / 2 == 0) would say 1.
        #expect(WindowGeometry.outputSize(2, kernel: 4, stride: 2, padding: 0, dilation: 1) == 0)
        #expect(WindowGeometry.outputSize(2, kernel: 3, stride: 2, padding: 0, dilation: 1) == 0)
        #expect(WindowGeometry.outputSize(4, kernel: 2, stride: 1, padding: Int.max / 2 + 1, dilation: 1) == nil)
        #expect(WindowGeometry.outputSize(4, kernel: 3, stride: 1, padding: 0, dilation: Int.max) == nil)
    }

    @Test func layersGiveTheShapesTheFormulaPredicts() {
        let x = Tensor.zeros([2, 3, 11, 9])
        for (k, s, p, d) in [(3, 1, 0, 1), (3, 2, 1, 1), (5, 3, 2, 1), (2, 1, 0, 3), (4, 4, 0, 1)] {
            let h = WindowGeometry.outputSize(11, kernel: k, stride: s, padding: p, dilation: d)
            let w = WindowGeometry.outputSize(9, kernel: k, stride: s, padding: p, dilation: d)
            let conv = Conv2d(3, 4, kernelSize: k, stride: s, padding: p, dilation: d)
            #expect(conv(x).shape == [2, 4, h ?? -1, w ?? -1], "conv k\(k) s\(s) p\(p) d\(d)")
            if p <= k / 2 {
                #expect(MaxPool2d(k, stride: s, padding: p, dilation: d)(x).shape == [2, 3, h ?? -1, w ?? -1], "max pool k\(k) s\(s) p\(p) d\(d)")
                if d == 1 {
                    #expect(AvgPool2d(k, stride: s, padding: p)(x).shape == [2, 3, h ?? -1, w ?? -1], "avg pool k\(k) s\(s) p\(p)")
                }
            }
        }
    }
}
