import Testing
@testable import TensorCore

/// Tensors large enough that the kernels split work over threads (elementwise maps, reductions,
/// softmax rows, pooling planes, the fused cross-entropy): the float32 results against float64
/// computations of the same values, so a wrong chunk boundary or a lost partial sum shows up.
@Suite struct ParallelKernelTests {
    static func u(_ shape: [Int], _ seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
        GlobalRandom.withSeed(seed) { Tensor.rand(shape) * Double(hi - lo) + Double(lo) }
    }

    static func expectClose(_ got: Tensor, _ want: Tensor, rtol: Double = 1e-5, atol: Double = 1e-5, _ what: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(got.shape == want.shape, "\(what): shape \(got.shape) vs \(want.shape)", sourceLocation: sourceLocation)
        guard got.shape == want.shape else { return }
        let g = got.scalars(as: Double.self), w = want.scalars(as: Double.self)
        var bad = 0, first = -1
        for i in 0..<g.count where !(Swift.abs(g[i] - w[i]) <= atol + rtol * Swift.abs(w[i])) {
            bad += 1
            if first < 0 { first = i }
        }
        #expect(bad == 0, "\(what): \(bad) of \(g.count) elements differ; first at \(first): \(first >= 0 ? g[first] : 0) vs \(first >= 0 ? w[first] : 0)",
                sourceLocation: sourceLocation)
    }

    @Test func threadsAreInUse() {
        // With one thread every kernel takes its serial path and this suite would prove little.
        #expect(Threading.threadCount >= 1)
        if Threading.threadCount == 1 { print("ParallelKernelTests: only one thread; the parallel paths are not exercised") }
    }

    @Test func elementwiseMaps() {
        let a = Self.u([301, 1000], 1), b = Self.u([1000], 2), c = Self.u([301, 1], 3)
        let a64 = a.double(), b64 = b.double(), c64 = c.double()
        Self.expectClose(a + b, a64 + b64, "broadcast row")
        Self.expectClose(a * c, a64 * c64, "broadcast column")
        Self.expectClose(a.T * 2, (a64 * 2).T, "transposed")
        Self.expectClose(a.reshape(-1) - 1, a64.reshape(-1) - 1, "one long run")
        Self.expectClose(a.T.contiguous(), a64.T.contiguous(), "strided copy")
        Self.expectClose(a.exp(), a64.exp(), rtol: 2e-7 * 4, "simd exp")
        Self.expectClose(a.sigmoid() * a.tanh(), a64.sigmoid() * a64.tanh(), rtol: 1e-6, atol: 1e-7, "simd sigmoid, tanh")
        Self.expectClose(Tensor.where(a .> 0, a, c), Tensor.where(a64 .> 0, a64, c64), "where")
        let g = a.clone().requiresGrad(true)
        g.relu().sum().backward()
        Self.expectClose(g.grad!, (a64 .> 0).double(), "fused relu backward")
    }

    @Test func reductions() {
        let x = Self.u([64, 1200, 3], 4)
        let x64 = x.double()
        Self.expectClose(x.sum(), x64.sum(), rtol: 1e-5, atol: 1e-3, "one long sum")
        Self.expectClose(x.sum(dim: 1), x64.sum(dim: 1), atol: 1e-3, "column sums")
        Self.expectClose(x.sum(dim: 2), x64.sum(dim: 2), "row sums")
        Self.expectClose(x.sum(dims: [0, 1]), x64.sum(dims: [0, 1]), atol: 1e-2, "bias-gradient-like sums")
        Self.expectClose(x.reshape(1, 64 * 1200, 3).sum(dim: 1), x64.reshape(1, 64 * 1200, 3).sum(dim: 1), atol: 1e-2, "one outer row")
        Self.expectClose(x.mean(dim: 0), x64.mean(dim: 0), "mean")
        Self.expectClose(x.max(dim: 1).values, x64.max(dim: 1).values, rtol: 0, atol: 0, "max")
    }

    @Test func softmaxRowsAndFusedCrossEntropy() {
        let logits = Self.u([4096, 33], 5, -6, 6)
        let l64 = logits.double()
        Self.expectClose(logits.softmax(dim: 1), l64.softmax(dim: 1), rtol: 1e-5, atol: 1e-7, "softmax rows")
        Self.expectClose(logits.logSoftmax(dim: 1), l64.logSoftmax(dim: 1), rtol: 1e-5, atol: 1e-5, "log-softmax rows")
        let target = GlobalRandom.withSeed(6) { Tensor.randint(33, shape: [4096]) }
        let x = logits.clone().requiresGrad(true), x64 = l64.clone().requiresGrad(true)
        let loss = F.crossEntropy(x, target), loss64 = F.crossEntropy(x64, target)
        Self.expectClose(loss, loss64, rtol: 1e-5, "fused cross-entropy")
        loss.backward(); loss64.backward()
        Self.expectClose(x.grad!, x64.grad!, rtol: 1e-4, atol: 1e-9, "fused cross-entropy gradient")
    }

    @Test func poolingAndConvolutionOverManyPlanes() {
        let x = Inputs.distinct([16, 12, 9, 9], seed: 7).float()
        let x64 = x.double()
        Self.expectClose(F.maxPool2d(x, kernelSize: 3, stride: 2, padding: 1), F.maxPool2d(x64, kernelSize: 3, stride: 2, padding: 1), rtol: 0, atol: 0, "maxPool2d")
        let xg = x.clone().requiresGrad(true), xg64 = x64.clone().requiresGrad(true)
        F.maxPool2d(xg, kernelSize: 2).sum().backward()
        F.maxPool2d(xg64, kernelSize: 2).sum().backward()
        Self.expectClose(xg.grad!, xg64.grad!, rtol: 0, atol: 0, "maxPool2d gradient")
        let w = Self.u([8, 12, 3, 3], 8), w64 = w.double()
        let wg = w.clone().requiresGrad(true), wg64 = w64.clone().requiresGrad(true)
        let y = F.conv2d(x * 0.01, wg, nil, stride: 1, padding: 1), y64 = F.conv2d(x64 * 0.01, wg64, nil, stride: 1, padding: 1)
        Self.expectClose(y, y64, rtol: 1e-4, atol: 1e-5, "conv2d over 16 samples")
        y.sum().backward(); y64.sum().backward()
        Self.expectClose(wg.grad!, wg64.grad!, rtol: 1e-4, atol: 1e-3, "conv2d weight gradient (per-thread partials)")
    }
}
