import Foundation
import Testing
@testable import TensorCore

/// The float32 fast paths (oneDNN GEMM, fused linear, SIMD activations and their fused backward
/// rules, the im2col convolution, the fused cross-entropy) against the generic float64 paths that
/// the gradcheck suite proves: same input values, losses and gradients compared at float32 tolerance.
@Suite struct Float32PathTests {
    struct Comparison: CustomStringConvertible {
        var worstOutput = 0.0
        var worstGrad = 0.0
        var description: String { "worst output error \(worstOutput), worst gradient error \(worstGrad) (in units of tolerance)" }
    }

    /// Runs `f` on float32 and float64 copies of `inputs` and compares outputs and the gradients of
    /// `(f(x) * w).sum()`. Errors are measured as |a - b| / (atol + rtol |b|).
    @discardableResult
    static func compare(_ f: ([Tensor]) -> Tensor, _ inputs: [Tensor], atol: Double = 2e-5, rtol: Double = 2e-4,
                        sourceLocation: SourceLocation = #_sourceLocation) -> Comparison {
        let x32 = inputs.map { Tensor(shape: $0.shape, scalars: $0.scalars(as: Float.self), requiresGrad: true) }
        // The float64 copies hold the float32 values exactly, so only the arithmetic differs.
        let x64 = x32.map { Tensor(shape: $0.shape, scalars: $0.scalars(as: Double.self), requiresGrad: true) }
        let y32 = f(x32), y64 = f(x64)
        #expect(y32.dtype == .float32, "float32 inputs gave \(y32.dtype)", sourceLocation: sourceLocation)
        #expect(y32.shape == y64.shape, sourceLocation: sourceLocation)
        let w = GlobalRandom.withSeed(5) { Tensor.rand(y64.shape, dtype: .float64) * 2 - 1 }
        (y32 * w.to(.float32)).sum().backward()
        (y64 * w).sum().backward()
        var result = Comparison()
        func worst(_ a: [Double], _ b: [Double], _ what: String) -> Double {
            var m = 0.0
            for i in 0..<Swift.min(a.count, b.count) {
                let e = Swift.abs(a[i] - b[i]) / (atol + rtol * Swift.abs(b[i]))
                if !(e <= 1) { Issue.record("\(what)[\(i)]: float32 \(a[i]) vs float64 \(b[i])", sourceLocation: sourceLocation); return .infinity }
                m = Swift.max(m, e)
            }
            return m
        }
        result.worstOutput = worst(y32.scalars(as: Double.self), y64.scalars(as: Double.self), "output")
        for i in 0..<inputs.count {
            guard let g32 = x32[i].grad, let g64 = x64[i].grad else {
                Issue.record("input \(i) got no gradient (float32: \(x32[i].grad != nil), float64: \(x64[i].grad != nil))", sourceLocation: sourceLocation)
                continue
            }
            #expect(g32.dtype == .float32 && g32.shape == x32[i].shape, sourceLocation: sourceLocation)
            result.worstGrad = Swift.max(result.worstGrad, worst(g32.scalars(as: Double.self), g64.scalars(as: Double.self), "grad of input \(i)"))
        }
        return result
    }

    static func u(_ shape: [Int], _ seed: UInt64, _ lo: Double = -1, _ hi: Double = 1) -> Tensor { Inputs.uniform(shape, seed: seed, lo: lo, hi: hi) }
    static func long(_ v: [Int]) -> Tensor { Tensor(shape: [v.count], scalars: v) }

    @Test func simdActivationsAndTheirFusedBackward() {
        // 37 elements: the eight-lane loops and their padded tails both run.
        let x = Self.u([37], 1, -5, 5)
        Self.compare({ $0[0].sigmoid() }, [x])
        Self.compare({ $0[0].tanh() }, [x])
        Self.compare({ $0[0].gelu() }, [x])
        Self.compare({ $0[0].relu() }, [x])
        Self.compare({ $0[0].exp() }, [x])
        Self.compare({ $0[0].erf() }, [x])
        Self.compare({ $0[0].abs().log() }, [x])
        Self.compare({ $0[0].abs().sqrt() }, [x])
        // A non-contiguous input to the SIMD map.
        Self.compare({ $0[0].T.sigmoid() * $0[0].T.gelu() }, [Self.u([5, 7], 2, -3, 3)])
    }

    @Test func softmaxRows() {
        Self.compare({ $0[0].softmax(dim: 1) }, [Self.u([4, 19], 3, -4, 4)])
        Self.compare({ $0[0].logSoftmax(dim: 0) }, [Self.u([9, 3], 4, -4, 4)])
    }

    @Test func gemmThroughOneDNN() {
        Self.compare({ $0[0].mm($0[1]) }, [Self.u([5, 7], 5), Self.u([7, 3], 6)])
        // Transposed operands are passed to sgemm as flags.
        Self.compare({ $0[0].T.mm($0[1].T) }, [Self.u([7, 5], 7), Self.u([3, 7], 8)])
        Self.compare({ $0[0].bmm($0[1]) }, [Self.u([3, 4, 5], 9), Self.u([3, 5, 2], 10)])
        Self.compare({ $0[0].matmul($0[1]) }, [Self.u([2, 1, 4, 5], 11), Self.u([3, 5, 2], 12)])
        Self.compare({ $0[0].matmul($0[1]) }, [Self.u([5], 13), Self.u([5, 3], 14)])
        // A column slice with a row stride larger than its width.
        Self.compare({ $0[0][.all, 1..<4].mm($0[1]) }, [Self.u([4, 6], 15), Self.u([3, 2], 16)])
    }

    @Test func fusedLinear() {
        Self.compare({ F.linear($0[0], $0[1], $0[2]) }, [Self.u([6, 5], 17), Self.u([4, 5], 18), Self.u([4], 19)])
        Self.compare({ F.linear($0[0], $0[1]) }, [Self.u([6, 5], 20), Self.u([4, 5], 21)])
        Self.compare({ F.linear($0[0], $0[1], $0[2]) }, [Self.u([2, 3, 5], 22), Self.u([4, 5], 23), Self.u([4], 24)])
        Self.compare({ F.linear($0[0].T, $0[1], $0[2]) }, [Self.u([5, 6], 25), Self.u([4, 5], 26), Self.u([4], 27)])
    }

    @Test func convolutionAndPooling() {
        Self.compare({ F.conv2d($0[0], $0[1], $0[2], stride: 2, padding: 1) }, [Self.u([3, 2, 7, 6], 28), Self.u([4, 2, 3, 3], 29), Self.u([4], 30)])
        Self.compare({ F.conv2d($0[0], $0[1], $0[2], stride: 1, padding: 2, dilation: 2) }, [Self.u([2, 3, 6, 6], 31), Self.u([2, 3, 3, 3], 32), Self.u([2], 33)])
        Self.compare({ F.conv2d($0[0], $0[1]) }, [Self.u([2, 3, 4, 4], 34), Self.u([5, 3, 1, 1], 35)])
        Self.compare({ F.maxPool2d($0[0], kernelSize: 3, stride: 2, padding: 1) }, [Inputs.distinct([2, 3, 7, 7], seed: 36)])
        Self.compare({ F.avgPool2d($0[0], kernelSize: 3, stride: 2, padding: 1) }, [Self.u([2, 3, 7, 7], 37)])
    }

    @Test func lossesAndActivationsOfF() {
        Self.compare({ F.mseLoss($0[0], $0[1]) }, [Self.u([4, 5], 38), Self.u([4, 5], 39)])
        Self.compare({ F.binaryCrossEntropyWithLogits($0[0], $0[1], posWeight: Tensor([1.0, 2.0, 0.5, 3.0, 1.0])) },
                     [Self.u([4, 5], 40, -4, 4), Self.u([4, 5], 41, 0, 1)])
        Self.compare({ F.crossEntropy($0[0], Self.long([0, 3, 2, 1])) * 1 }, [Self.u([4, 4], 42, -3, 3)])
        Self.compare({ F.crossEntropy($0[0], Self.long([0, 3, 2, 1]), labelSmoothing: 0.1) }, [Self.u([4, 4], 43, -3, 3)])
    }

    // MARK: the fused float32 cross-entropy

    @Test("fused float32 crossEntropy equals the generic float64 path", arguments: Reduction.allCases)
    func fusedCrossEntropy(_ reduction: Reduction) {
        let logits = Self.u([6, 5], 50, -4, 4)
        let targets = Self.long([4, 0, -100, 2, 2, 1])
        Self.compare({ F.crossEntropy($0[0], targets, reduction: reduction) }, [logits])
        // The fused path is the one taken for float32 [N, C] (its node says so).
        let x = Tensor(shape: [6, 5], scalars: logits.scalars(as: Float.self), requiresGrad: true)
        #expect(F.crossEntropy(x, targets, reduction: reduction).gradFn?.name == "CrossEntropyBackward0")
        // ignoreIndex other than -100.
        Self.compare({ F.crossEntropy($0[0], Self.long([4, 0, 3, 2, 3, 1]), ignoreIndex: 3, reduction: reduction) }, [logits])
    }

    @Test func fusedCrossEntropyWithLargeLogitsStaysFinite() {
        let x = Tensor([[1000.0, -1000.0, 0.0], [-500.0, 500.0, 499.0]], requiresGrad: true)
        let loss = F.crossEntropy(x, Self.long([0, 2]))
        #expect(Swift.abs(loss.item() - 0.6566) < 1e-3)   // (0 + 1.3133) / 2
        loss.backward()
        #expect(x.grad!.scalars(as: Float.self).allSatisfy { $0.isFinite })
    }

    /// The fused backward runs after the forward's temporaries are gone: it must not read a target,
    /// a contiguous copy of the logits or its saved log-sum-exp through pointers to freed memory.
    /// Run in a child process: reading freed memory tends to crash rather than fail.
    @Test func fusedCrossEntropyBackwardOutlivesItsTemporaries() async {
        await #expect(processExitsWith: .success) {
            let err = Self.fusedBackwardErrorAfterChurn()
            if !(err < 1e-5) {
                FileHandle.standardError.write(Data("fused backward differs from the float64 path by \(err)\n".utf8))
                exit(1)
            }
        }
    }

    static func fusedBackwardErrorAfterChurn() -> Double {
        let values = Self.u([5, 8], 60, -3, 3)
        let targetValues = [3, 1, 4, 0, 2, 2, 1, 0]
        func lossOfTemporaries(_ xt: Tensor) -> Tensor {
            // xt.T is not contiguous (the fused path copies it); the target lives only in this call.
            F.crossEntropy(xt.T, Tensor(shape: [8], scalars: targetValues))
        }
        let x = Tensor(shape: [5, 8], scalars: values.scalars(as: Float.self), requiresGrad: true)
        let loss = lossOfTemporaries(x)
        // Churn the allocator with zeros of the freed sizes (zeros are in-range class indices).
        var junk: [Tensor] = []
        for _ in 0..<256 {
            junk.append(Tensor.zeros([8], dtype: .int64))
            junk.append(Tensor.zeros([40], dtype: .int64))
            junk.append(Tensor.zeros([8], dtype: .float32))
            junk.append(Tensor.zeros([5, 8], dtype: .float32))
        }
        loss.backward()
        let x64 = Tensor(shape: [5, 8], scalars: values.scalars(as: Float.self).map(Double.init), requiresGrad: true)
        F.crossEntropy(x64.T, Tensor(shape: [8], scalars: targetValues)).backward()
        let got = x.grad!.scalars(as: Double.self), want = x64.grad!.scalars(as: Double.self)
        withExtendedLifetime(junk) {}
        return zip(got, want).map { Swift.abs($0 - $1) }.max() ?? .nan
    }
}
