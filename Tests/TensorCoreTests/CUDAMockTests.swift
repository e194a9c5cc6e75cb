import Foundation
import Testing
@testable import TensorCore

/// The CUDA backend through the mock driver (kernels.cu compiled for the CPU): every op on
/// `.cuda(0)` against the CPU, values and gradients, and proof that each op launched a kernel or
/// a cuBLAS call (a "GPU" op that computed on the host fails).
@Suite struct CUDAMockTests {
    /// The embedded text is kernels.cu / emulation.h byte for byte (run scripts/gen-cuda-kernels.sh).
    @Test func embeddedKernelSourceMatchesTheCommittedFiles() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/TensorCore/CUDA")
        let cu = try Data(contentsOf: dir.appendingPathComponent("kernels.cu"))
        let header = try Data(contentsOf: dir.appendingPathComponent("emulation.h"))
        #expect(Data(CUDAKernelSource.kernels.utf8) == cu, "run scripts/gen-cuda-kernels.sh")
        #expect(Data(CUDAKernelSource.emulationHeader.utf8) == header, "run scripts/gen-cuda-kernels.sh")
    }

    @Test func devicePropertiesAndCopies() {
        let mock = MockCUDADriver(devices: 2, memoryBytes: 64 << 20)
        withCUDADriver(mock) {
            #expect(Device.isCUDAAvailable)
            #expect(Device.cudaDeviceCount == 2)
            let x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
            let g = x.cuda()
            #expect(g.device == .cuda(0))
            #expect(g.isCUDA && !x.isCUDA)
            #expect(g.cpu().scalars(as: Float.self) == x.scalars(as: Float.self))
            #expect(g.to(.cuda(1)).device == .cuda(1))
            #expect(g.to(.cuda(1)).cpu().scalars(as: Float.self) == [1, 2, 3, 4, 5, 6])
            #expect(g.sum().item() == 21)
            #expect("\(g)" == "tensor([[1., 2., 3.],\n        [4., 5., 6.]], device='cuda:0')")
            #expect(Tensor.zeros(like: g).device == .cuda(0))
            #expect(Tensor.ones([2], dtype: .int64, device: .cuda(0)).scalars(as: Int64.self) == [1, 1])
            #expect(Tensor.full([3], value: 7, device: .cuda(0)).scalars(as: Int64.self) == [7, 7, 7])
            let r = Tensor.randn([5], device: .cuda(0))
            #expect(r.device == .cuda(0) && r.shape == [5])
            #expect(mock.operationCount > 0)
        }
    }

    /// Runs `body` on CPU inputs and on their `.cuda(0)` copies; compares the outputs and the
    /// gradients of every floating input, and that the CUDA run issued device work.
    static func check(_ name: String, _ inputs: [Tensor], tolerance: Double = 1e-5,
                      _ body: ([Tensor]) -> Tensor, sourceLocation: SourceLocation = #_sourceLocation) {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 256 << 20)
        withCUDADriver(mock) {
            let cpuIn = inputs.map { t in t.dtype.isFloatingPoint ? t.detach().requiresGrad(true) : t }
            let gpuIn = inputs.map { t in t.dtype.isFloatingPoint ? t.detach().cuda().requiresGrad(true) : t.cuda() }
            let cpuOut = body(cpuIn)
            let before = mock.operationCount
            let gpuOut = body(gpuIn)
            #expect(mock.operationCount > before, "\(name): no kernel launch or cuBLAS call", sourceLocation: sourceLocation)
            #expect(gpuOut.device == .cuda(0), "\(name): result on \(gpuOut.device)", sourceLocation: sourceLocation)
            #expect(gpuOut.shape == cpuOut.shape && gpuOut.dtype == cpuOut.dtype, "\(name): \(gpuOut.shape) \(gpuOut.dtype) vs \(cpuOut.shape) \(cpuOut.dtype)", sourceLocation: sourceLocation)
            let a = cpuOut.scalars(as: Double.self), b = gpuOut.scalars(as: Double.self)
            #expect(close(a, b, tolerance), "\(name): values \(b.prefix(8)) vs CPU \(a.prefix(8))", sourceLocation: sourceLocation)
            if cpuOut.requiresGrad {
                let seed = Tensor.rand(cpuOut.shape, dtype: cpuOut.dtype)
                cpuOut.backward(gradient: seed)
                gpuOut.backward(gradient: seed.cuda())
                for (i, (c, g)) in zip(cpuIn, gpuIn).enumerated() where c.requiresGrad {
                    guard let cg = c.grad else { continue }
                    guard let gg = g.grad else { Issue.record("\(name): no gradient for input \(i) on CUDA", sourceLocation: sourceLocation); continue }
                    #expect(gg.device == .cuda(0), "\(name): gradient \(i) on \(gg.device)", sourceLocation: sourceLocation)
                    let ca = cg.scalars(as: Double.self), ga = gg.scalars(as: Double.self)
                    #expect(close(ca, ga, tolerance), "\(name): gradient \(i) \(ga.prefix(8)) vs CPU \(ca.prefix(8))", sourceLocation: sourceLocation)
                }
            }
        }
    }

    static func close(_ a: [Double], _ b: [Double], _ tol: Double) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { x, y in (x.isNaN && y.isNaN) || x == y || Swift.abs(x - y) <= tol * Swift.max(1, Swift.abs(x)) }
    }

    static var x34: Tensor { Tensor.manualSeed(11); return Tensor.randn([3, 4]) }
    static var y34: Tensor { Tensor.manualSeed(12); return Tensor.randn([3, 4]) }
    static var row4: Tensor { Tensor.manualSeed(13); return Tensor.randn([4]) }
    static var pos34: Tensor { Tensor.manualSeed(14); return Tensor.rand([3, 4]) + 0.5 }
    static var x43d: Tensor { Tensor.manualSeed(15); return Tensor.randn([4, 3], dtype: .float64) }

    @Test func elementwiseArithmetic() {
        let x = Self.x34, y = Self.y34, r = Self.row4
        Self.check("add", [x, y]) { $0[0] + $0[1] }
        Self.check("sub broadcast row", [x, r]) { $0[0] - $0[1] }
        Self.check("mul transposed view", [x, Self.x43d.to(.float32)]) { $0[0] * $0[1].T }
        Self.check("div", [x, Self.pos34]) { $0[0] / $0[1] }
        Self.check("scalar ops", [x]) { 2 * $0[0] + 1 - $0[0] / 4 }
        Self.check("maximum", [x, y]) { Tensor.maximum($0[0], $0[1]) }
        Self.check("minimum", [x, y]) { Tensor.minimum($0[0], $0[1]) }
        Self.check("neg", [x]) { -$0[0] }
        Self.check("pow 2", [x]) { $0[0].pow(2) }
        Self.check("pow 3", [Self.pos34]) { $0[0] ** 3 }
        Self.check("pow tensor", [Self.pos34, y]) { $0[0].pow($0[1]) }
        Self.check("float64 add", [Self.x43d, Self.x43d]) { $0[0] * $0[1] + $0[0] }
        Self.check("int64 add", [Tensor([[1, 2], [3, 4]]), Tensor([10, 20])]) { $0[0] + $0[1] * 3 }
        Self.check("int64 neg abs", [Tensor([-3, 0, 5])]) { (-$0[0]).abs() }
        Self.check("int / int -> float", [Tensor([1, 2, 3]), Tensor([2, 2, 2])]) { $0[0] / $0[1] }
        Self.check("int64 pow", [Tensor([-3, 0, 5, 7])]) { $0[0].pow(3) }
        Self.check("int64 pow tensor", [Tensor([2, 3, -2]), Tensor([10, 0, 3])]) { $0[0].pow($0[1]) }
        Self.check("bool abs sign", [Tensor([1, 0, 2])]) { ($0[0] .> 0.5).abs().sign() }
    }

    @Test func unaryFunctions() {
        let x = Self.x34, p = Self.pos34
        Self.check("exp", [x]) { $0[0].exp() }
        Self.check("log", [p]) { $0[0].log() }
        Self.check("sqrt", [p]) { $0[0].sqrt() }
        Self.check("abs", [x]) { $0[0].abs() }
        Self.check("relu", [x]) { $0[0].relu() }
        Self.check("sigmoid", [x]) { $0[0].sigmoid() }
        Self.check("tanh", [x]) { $0[0].tanh() }
        Self.check("gelu", [x], tolerance: 1e-4) { $0[0].gelu() }
        Self.check("clamp", [x]) { $0[0].clamp(min: -0.5, max: 0.5) }
        Self.check("sign", [x]) { $0[0].sign() }
        Self.check("float64 exp tanh", [Self.x43d]) { $0[0].exp().tanh() }
        Self.check("relu of a transposed view", [x]) { $0[0].T.relu() }
    }

    @Test func comparisonsAndWhere() {
        let x = Self.x34, y = Self.y34
        Self.check("gt", [x, y]) { $0[0] .> $0[1] }
        Self.check("eq scalar", [Tensor([1, 2, 3])]) { $0[0].eq(2) }
        Self.check("le broadcast", [x, Self.row4]) { $0[0] .<= $0[1] }
        Self.check("where", [x, y]) { Tensor.where($0[0] .> 0.0, $0[0], $0[1]) }
        Self.check("logical", [x]) { ($0[0] .> 0.0).logicalAnd($0[0] .< 1.0).logicalNot() }
        Self.check("to float64 and back", [x]) { $0[0].to(.float64).exp().to(.float32) }
        Self.check("bool to float", [x]) { ($0[0] .> 0.0).to(.float32) * $0[0] }
    }

    @Test func reductions() {
        let x = Self.x34
        Self.check("sum", [x]) { $0[0].sum() }
        Self.check("sum dim", [x]) { $0[0].sum(dim: 1, keepDim: true) }
        Self.check("sum dim 0 of a transpose", [x]) { $0[0].T.sum(dim: 1) }
        Self.check("mean", [x]) { $0[0].mean(dim: 0) }
        Self.check("var", [x]) { $0[0].var(dim: 1) }
        Self.check("max dim", [x]) { $0[0].max(dim: 1).values }
        Self.check("argmax", [x]) { $0[0].argmax(dim: 1) }
        Self.check("min", [x]) { $0[0].min() }
        Self.check("int64 sum", [Tensor([[1, 2], [3, 4]])]) { $0[0].sum(dim: 0) }
        Self.check("softmax", [x]) { $0[0].softmax(dim: 1) }
        Self.check("logSoftmax dim 0", [x]) { $0[0].logSoftmax(dim: 0) }
        Self.check("long float32 sum", [Tensor.ones([70_000])]) { $0[0].sum() }
    }

    @Test func matrixProducts() {
        Tensor.manualSeed(21)
        let a = Tensor.randn([5, 3]), b = Tensor.randn([3, 4]), v = Tensor.randn([3])
        Self.check("mm", [a, b]) { $0[0].mm($0[1]) }
        Self.check("mm transposed operands", [b, a]) { $0[0].T.mm($0[1].T) }
        Self.check("matmul vector", [a, v]) { $0[0].matmul($0[1]) }
        Self.check("dot", [v, v]) { $0[0].dot($0[1]) }
        let ba = Tensor.randn([2, 5, 3]), bb = Tensor.randn([2, 3, 4])
        Self.check("bmm", [ba, bb]) { $0[0].bmm($0[1]) }
        Self.check("matmul broadcast batch", [ba, b]) { $0[0].matmul($0[1]) }
        Self.check("float64 mm (cublasDgemm)", [Self.x43d, Self.x43d]) { $0[0].T.mm($0[1]) }
        Self.check("int64 mm (kernel)", [Tensor([[1, 2], [3, 4]]), Tensor([[5, 6], [7, 8]])]) { $0[0].mm($0[1]) }
        let w = Tensor.randn([4, 3]), bias = Tensor.randn([4])
        Self.check("linear", [a, w, bias]) { F.linear($0[0], $0[1], $0[2]) }
    }

    @Test func viewsIndexingAndLosses() {
        let x = Self.x34
        Self.check("contiguous of a permute", [x]) { $0[0].T.contiguous() * 1 }
        Self.check("reshape of a transpose", [x]) { $0[0].T.reshape([-1]) + 0 }
        Self.check("slice", [x]) { $0[0][1...] * 2 }
        Self.check("view", [x]) { $0[0].view(4, 3) * 2 }
        Self.check("expand", [Self.row4]) { $0[0].expand(3, 4) * Tensor.arange(12).to(.float32).reshape([3, 4]).to($0[0].device) }
        Self.check("cat", [x, Self.y34]) { Tensor.cat([$0[0], $0[1]], dim: 1) }
        Self.check("stack", [x, Self.y34]) { Tensor.stack([$0[0], $0[1]], dim: 0) }
        Self.check("gather", [x, Tensor([[0, 3], [1, 1], [2, 0]])]) { $0[0].gather(dim: 1, index: $0[1]) }
        Self.check("indexSelect", [x, Tensor([2, 0])]) { $0[0].indexSelect(dim: 0, index: $0[1]) }
        Self.check("mseLoss", [x, Self.y34]) { F.mseLoss($0[0], $0[1]) }
        Self.check("crossEntropy", [x, Tensor([3, 0, 1])]) { F.crossEntropy($0[0], $0[1]) }
        Self.check("nllLoss", [x, Tensor([1, 2, 0])]) { F.nllLoss($0[0].logSoftmax(dim: 1), $0[1], reduction: .sum) }
        Self.check("bce with logits", [x, Self.pos34]) { F.binaryCrossEntropyWithLogits($0[0], ($0[1] - 0.5).clamp(min: 0, max: 1)) }
    }

    @Test func convolutionAndPooling() {
        Tensor.manualSeed(31)
        let x = Tensor.randn([2, 3, 7, 6]), w = Tensor.randn([4, 3, 3, 3]), b = Tensor.randn([4])
        Self.check("conv2d", [x, w, b], tolerance: 1e-4) { F.conv2d($0[0], $0[1], $0[2]) }
        Self.check("conv2d stride padding dilation", [x, w], tolerance: 1e-4) {
            F.conv2d($0[0], $0[1], nil, stride: (2, 1), padding: (1, 2), dilation: (1, 2))
        }
        Self.check("maxPool2d", [x]) { F.maxPool2d($0[0], kernelSize: 2) }
        Self.check("maxPool2d padded strided", [x]) { F.maxPool2d($0[0], kernelSize: 3, stride: 2, padding: 1) }
        Self.check("avgPool2d", [x]) { F.avgPool2d($0[0], kernelSize: 2, stride: 1, padding: 1) }
        Self.check("float64 conv2d", [x.to(.float64), w.to(.float64)], tolerance: 1e-9) { F.conv2d($0[0], $0[1]) }
    }

    /// A two-layer MLP trained a few SGD steps on the mock matches the same run on the CPU.
    @Test func mlpTrainsLikeTheCPU() {
        // Drawn once: other tests share the global generator.
        Tensor.manualSeed(5)
        let x = Tensor.randn([16, 8]), y = Tensor.randint(3, shape: [16])
        let w10 = Tensor.randn([12, 8]) * 0.3, w20 = Tensor.randn([3, 12]) * 0.3
        func run(_ device: Device) -> (losses: [Double], w: [Float]) {
            let w1 = w10.clone().to(device).detach().requiresGrad(true), b1 = Tensor.zeros([12], device: device).requiresGrad(true)
            let w2 = w20.clone().to(device).detach().requiresGrad(true), b2 = Tensor.zeros([3], device: device).requiresGrad(true)
            let xd = x.to(device), yd = y.to(device)
            var losses: [Double] = []
            for _ in 0..<5 {
                let loss = F.crossEntropy(F.linear(F.linear(xd, w1, b1).relu(), w2, b2), yd)
                loss.backward()
                losses.append(loss.item())
                noGrad {
                    for p in [w1, b1, w2, b2] { p.addInPlace(p.grad!, alpha: -0.5); p.zeroGrad() }
                }
            }
            return (losses, w2.scalars(as: Float.self))
        }
        let cpu = run(.cpu)
        let mock = MockCUDADriver(devices: 1, memoryBytes: 64 << 20)
        let gpu = withCUDADriver(mock) { run(.cuda(0)) }
        #expect(Self.close(cpu.losses, gpu.losses, 1e-4), "\(gpu.losses) vs \(cpu.losses)")
        #expect(Self.close(cpu.w.map(Double.init), gpu.w.map(Double.init), 1e-4))
        #expect(mock.gemmCount > 0)
    }

    @Test func allocatorReusesFreedBuffers() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 16 << 20)
        withCUDADriver(mock) {
            do { _ = Tensor.zeros([1000], device: .cuda(0)) }
            let s1 = CUDAMemory.stats()
            do { _ = Tensor.zeros([1000], device: .cuda(0)) }
            let s2 = CUDAMemory.stats()
            #expect(s2.cacheHits > s1.cacheHits)
            #expect(s2.driverAllocations == s1.driverAllocations)
            #expect(s2.peakAllocatedBytes >= 4096)
            CUDAMemory.emptyCache()
            #expect(CUDAMemory.stats().cachedBytes == 0)
        }
    }

    @Test func outOfMemoryFreesTheCacheRetriesThenSaysHowMuch() throws {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 8 << 20)
        try withCUDADriver(mock) {
            var held: [CUDADeviceBuffer] = []
            held.append(try CUDAMemory.allocateBuffer(byteCount: 6 << 20))
            held.removeAll()              // cached, not returned to the driver
            #expect(CUDAMemory.stats().cachedBytes == 6 << 20)
            // 4 MiB does not fit beside the cached 6 MiB: the cache is freed and the call retried.
            let b = try CUDAMemory.allocateBuffer(byteCount: 4 << 20)
            #expect(CUDAMemory.stats().oomRetries == 1)
            #expect(CUDAMemory.stats().cachedBytes == 0)
            do {
                _ = try CUDAMemory.allocateBuffer(byteCount: 6 << 20)
                Issue.record("expected out of memory")
            } catch {
                let text = "\(error)"
                #expect(text.contains("CUDA out of memory on cuda:0"), "\(text)")
                #expect(text.contains("tried to allocate 6291456 bytes"), "\(text)")
                #expect(text.contains("4194304 bytes free"), "\(text)")
            }
            withExtendedLifetime(b) {}
        }
    }

    /// Mixing devices stops with PyTorch's message; host access to device memory stops with one too.
    @Test func misuseOnDeviceStops() async throws {
        let mixed = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            withCUDADriver(.mock) { _ = Tensor([1.0, 2.0]).cuda() + Tensor([1.0, 2.0]) }
        }
        let m = String(decoding: mixed.standardErrorContent, as: UTF8.self)
        #expect(m.contains("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"), "\(m.prefix(600))")
        let host = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            withCUDADriver(.mock) { _ = Tensor([1.0, 2.0]).cuda().pointer(Float.self) }
        }
        let h = String(decoding: host.standardErrorContent, as: UTF8.self)
        #expect(h.contains("host access (pointer()) to a tensor on cuda:0"), "\(h.prefix(600))")
    }
}

/// The gradcheck cases with their inputs moved to `.cuda(0)` (and the output back): the backward
/// of a CUDA graph, and gradients across `to`/`cpu()`, against finite differences.
@Suite(.serialized) struct CUDAGradcheckTests {
    /// Cases whose function captures a host tensor constant (a target, an index, a weight): mixing
    /// it with device tensors stops by design, as PyTorch's "same device" error.
    static let hostConstants: Set<String> = [
        "where with broadcast condition",
        "view",
        "view of a transposed tensor via reshape (copies)",
        "expand",
        "contiguous of a transposed view",
        "gather",
        "gather on a transposed view",
        "scatterAdd (self and source)",
        "crossEntropy class targets",
        "crossEntropy ignoreIndex",
        "crossEntropy weight",
        "crossEntropy labelSmoothing",
        "crossEntropy weight + ignoreIndex + labelSmoothing",
        "crossEntropy reductions sum and none",
        "crossEntropy [N, C, d] input",
        "crossEntropy probability targets + labelSmoothing + weight",
        "nllLoss",
        "nllLoss weight + ignoreIndex",
        "binaryCrossEntropyWithLogits weight + posWeight",
    ]

    static var deviceCases: [GradCase] { GradcheckCases.all.filter { !hostConstants.contains($0.name) } }

    @Test("finite-difference gradcheck on cuda:0 (mock)", arguments: deviceCases)
    func gradcheckOnDevice(_ c: GradCase) {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 64 << 20)
        withCUDADriver(mock) {
            gradcheck({ xs in c.f(xs.map { $0.cuda() }).cpu() }, inputs: c.inputs(), eps: c.eps, atol: c.atol, rtol: c.rtol)
            // A view needs no kernel on a GPU either; everything else must have run on the device.
            let views: Set<String> = ["view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "T", "permute", "expand",
                                      "subscript", "split", "chunk"]
            #expect(mock.operationCount > 0 || Set(c.ops).isSubset(of: views), "\(c.name): no kernel launch or cuBLAS call")
        }
    }
}

/// Every op name of API.md's TensorCore block (read by the gradcheck coverage test's parser) runs
/// on CUDA somewhere in these suites, or is classified as no device op.
@Suite struct CUDACoverageTests {
    /// Checked against the CPU by CUDAMockTests' value tests (beyond the device gradcheck cases).
    static let checkedByValue: Set<String> = [
        "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "gelu", "clamp",
        "eq", "gt", "where", "sum", "mean", "max", "min", "argmax", "argmin", "var", "std", "mm", "dot", "matmul", "bmm",
        "softmax", "logSoftmax", "contiguous", "reshape", "view", "expand", "cat", "stack", "gather", "indexSelect", "to",
        "F.mseLoss", "F.crossEntropy", "F.nllLoss", "F.binaryCrossEntropyWithLogits", "F.conv2d", "F.maxPool2d", "F.linear",
        "zeros", "ones", "full", "rand", "randn", "F.oneHot", "F.dropout", "F.softmax", "F.relu", "randint", "arange",
    ]
    /// Properties, host-side controls and I/O: nothing to run on a device.
    static let noDeviceOp: Set<String> = [
        "ndim", "shape", "dtype", "device", "numel", "scalars", "item", "isCUDAAvailable", "float32", "float64", "int64", "bool",
        "cpu", "cuda", "all", "manualSeed", "writeNPY", "backward", "grad", "zeroGrad", "isLeaf", "gradFn", "detach",
        "requiresGrad", "self",
    ]

    @Test func everyAPIOpRunsOnCUDA() {
        let (names, source) = GradcheckCoverageTests.loadAPINames()
        let gradchecked = Set(CUDAGradcheckTests.deviceCases.flatMap(\.ops))
        let missing = names.subtracting(gradchecked).subtracting(Self.checkedByValue).subtracting(Self.noDeviceOp)
        #expect(missing.isEmpty, "API.md (\(source)) names with no CUDA check: \(missing.sorted())")
    }

    /// The creation and functional names above that need a device argument or input, on the mock.
    @Test func creationAndFunctionalNamesOnTheDevice() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 64 << 20)
        withCUDADriver(mock) {
            let labels = Tensor([2, 0, 1]).cuda()
            let hot = F.oneHot(labels, numClasses: 3)
            #expect(hot.device == .cuda(0) && hot.scalars(as: Int64.self) == [0, 0, 1, 1, 0, 0, 0, 1, 0])
            let x = Tensor.rand([4, 5], device: .cuda(0))
            let before = mock.operationCount
            let d = F.dropout(x, p: 0.5)
            #expect(d.device == .cuda(0) && mock.operationCount > before)
            let kept = zip(d.scalars(as: Float.self), x.scalars(as: Float.self)).filter { $0.0 != 0 }
            #expect(kept.allSatisfy { Swift.abs($0.0 - 2 * $0.1) < 1e-6 })
            #expect(F.softmax(x, dim: 1).sum(dim: 1).scalars(as: Float.self).allSatisfy { Swift.abs($0 - 1) < 1e-5 })
            #expect(F.relu(x - 0.5).min().item() == 0)
            #expect(x.argmin().device == .cuda(0))
            #expect(Tensor.arange(5).cuda().sum().item() == 10)
            #expect(Tensor.arange(5, device: .cuda(0)).device == .cuda(0))
            #expect(Tensor.eye(3, device: .cuda(0)).sum().item() == 3)
            #expect(Tensor.randint(4, shape: [6], device: .cuda(0)).device == .cuda(0))
            #expect(Tensor.randint(3, shape: [4]).cuda().max().item() < 3)
        }
    }
}

/// The emulated kernels under ThreadSanitizer: the block reduction of kernels.cu runs clean, and
/// the same text with one `__syncthreads()` removed is reported as a data race.
@Suite struct CUDAKernelRaceTests {
    static let driver = """
    #include <vector>
    extern "C" void emu_sum_partials_f32(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void**);
    int main() {
        std::vector<float> x(4096, 1.0f); std::vector<double> partials(2, 0);
        long long n = 4096; const float* src = x.data(); double* out = partials.data();
        void* params[] = {&n, &src, &out};
        emu_sum_partials_f32(2, 1, 1, 32, 1, 1, params);
        return partials[0] + partials[1] == 4096 ? 0 : 3;
    }
    """

    /// Compiles `kernels` with TSan and runs it: (exit status, stderr).
    static func runUnderTSan(_ kernels: String, in dir: URL) throws -> (Int32, String) {
        try Data(kernels.utf8).write(to: dir.appendingPathComponent("kernels.cu"))
        try Data(CUDAKernelSource.emulationHeader.utf8).write(to: dir.appendingPathComponent("emulation.h"))
        try Data(driver.utf8).write(to: dir.appendingPathComponent("main.cpp"))
        let exe = dir.appendingPathComponent("race").path
        let cc = try run(["g++", "-std=c++20", "-O1", "-g", "-fsanitize=thread", "-pthread", "-include", dir.appendingPathComponent("emulation.h").path,
                          "-x", "c++", dir.appendingPathComponent("kernels.cu").path, "-x", "c++", dir.appendingPathComponent("main.cpp").path, "-o", exe], env: [:])
        #expect(cc.0 == 0, "g++ -fsanitize=thread failed: \(cc.1.prefix(2000))")
        return try run([exe], env: ["TSAN_OPTIONS": "halt_on_error=1 exitcode=66"])
    }

    static func run(_ args: [String], env: [String: String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static var hasCompiler: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/g++") }

    @Test(.enabled(if: hasCompiler)) func removedSyncthreadsIsCaught() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tsan-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let clean = try Self.runUnderTSan(CUDAKernelSource.kernels, in: dir)
        #expect(clean.0 == 0, "the committed kernels race under TSan:\n\(clean.1.prefix(2000))")
        let barrier = "        if (threadIdx.x < w) acc[threadIdx.x] += acc[threadIdx.x + w];\n        __syncthreads();"
        #expect(CUDAKernelSource.kernels.contains(barrier), "sum_partials_f32's tree step changed; update this test")
        let broken = CUDAKernelSource.kernels.replacingOccurrences(of: barrier, with: "        if (threadIdx.x < w) acc[threadIdx.x] += acc[threadIdx.x + w];")
        let racy = try Self.runUnderTSan(broken, in: dir)
        #expect(racy.0 == 66 && racy.1.contains("ThreadSanitizer: data race"), "status \(racy.0):\n\(racy.1.prefix(2000))")
    }
}

/// The real driver's NVRTC path (SystemCUDADriver's `NVRTC`), which needs no GPU: with a libnvrtc
/// from the wheels scripts/cuda-compile-check.sh caches, kernels.cu compiles to an ELF CUBIN.
@Suite struct CUDANVRTCTests {
    static var libraries: [String] {
        let root = (ProcessInfo.processInfo.environment["FERRY_WHEEL_CACHE"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/ferry/wheels").path) + "/unpacked"
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix("/libnvrtc.so.12") || $0.hasSuffix("/libnvrtc.so.13") }.map { root + "/" + $0 }.sorted()
    }

    @Test(.enabled(if: !libraries.isEmpty, "run scripts/cuda-compile-check.sh once to cache the NVRTC wheels"))
    func kernelsCompileToCUBINThroughTheDriversBindings() throws {
        for path in Self.libraries {
            let handle = try #require(dlopen(path, RTLD_NOW | RTLD_LOCAL), "\(path)")
            let nvrtc = NVRTC(library: handle)
            let bin = nvrtc.cubin(source: CUDAKernelSource.kernels, arch: 80)
            #expect(bin.count > 100_000 && bin.prefix(4) == [0x7f, 0x45, 0x4c, 0x46], "\(path): \(bin.count) bytes")
            #expect(nvrtc.cubin(source: CUDAKernelSource.kernels, arch: 80) == bin, "the on-disk cache gives the same CUBIN")
        }
    }
}
