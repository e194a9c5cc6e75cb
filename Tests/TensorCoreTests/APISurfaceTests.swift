import Foundation
import Testing
import TensorCore   // not @testable: only the public surface

/// Every line of API.md's TensorCore block, spelled as API.md spells it (renaming one breaks this
/// file's build), with the results PyTorch gives for the same calls.
@Suite struct APISurfaceTests {
    @Test func creation() {
        let a = Tensor([[3, 5], [10, 5]])
        #expect(a.dtype == .int64 && a.shape == [2, 2])
        let f = Tensor([0.5, 0.7, 0.1])
        #expect(f.dtype == .float32)
        let d = Tensor([1.0, 2.0], dtype: .float64)
        #expect(d.dtype == .float64)
        let s = Tensor(2.0, requiresGrad: true)
        #expect(s.shape == [] && s.requiresGrad)
        let r = Tensor(shape: [2, 5], scalars: [Float](repeating: 0, count: 10))
        #expect(r.shape == [2, 5] && r.dtype == .float32)
        #expect(Tensor.arange(10).dtype == .int64 && Tensor.arange(10).numel == 10)
        let steps = Tensor.arange(0, 1, step: 0.1)
        #expect(steps.dtype == .float32 && steps.numel == 10)
        #expect(Tensor.zeros([2, 3]).scalars(as: Float.self) == [Float](repeating: 0, count: 6))
        #expect(Tensor.ones([2, 3]).scalars(as: Float.self) == [Float](repeating: 1, count: 6))
        #expect(Tensor.full([2, 3], value: 7).dtype == .int64)
        #expect(GlobalRandom.withSeed(1) { Tensor.rand([2, 3, 2]) }.shape == [2, 3, 2])
        #expect(GlobalRandom.withSeed(1) { Tensor.randn([4, 4]) }.shape == [4, 4])
        #expect(GlobalRandom.withSeed(1) { Tensor.randint(5, shape: [10, 5]) }.scalars(as: Int64.self).allSatisfy { (0..<5).contains($0) })
        #expect(Tensor.zeros(like: a).dtype == .int64 && Tensor.ones(like: a).shape == [2, 2])
    }

    @Test func manualSeedMakesDrawsRepeat() async {
        // The global generator is shared by tests running in parallel: check in a child process.
        await #expect(processExitsWith: .success) {
            Tensor.manualSeed(0)
            let first = Tensor.rand([5]).scalars(as: Float.self) + Tensor.randn([3]).scalars(as: Float.self)
            Tensor.manualSeed(0)
            let second = Tensor.rand([5]).scalars(as: Float.self) + Tensor.randn([3]).scalars(as: Float.self)
            exit(first == second ? 0 : 1)
        }
    }

    /// Inside `withSeed`, `manualSeed` and `GlobalRandom.state` act on the scope's generator (like
    /// `torch.manual_seed` inside `fork_rng`), so a scoped run can seed, save and restore its own.
    @Test func seedAndStateActOnTheScope() {
        let a = GlobalRandom.withSeed(1) { () -> [Float] in Tensor.manualSeed(7); return Tensor.rand([4]).scalars(as: Float.self) }
        let b = GlobalRandom.withSeed(2) { () -> [Float] in Tensor.manualSeed(7); return Tensor.rand([4]).scalars(as: Float.self) }
        #expect(a == b)
        GlobalRandom.withSeed(3) {
            let saved = GlobalRandom.state
            let x = Tensor.randn([5]).scalars(as: Float.self)
            GlobalRandom.state = saved
            #expect(Tensor.randn([5]).scalars(as: Float.self) == x)
            #expect(GlobalRandom.state != saved)
        }
    }

    @Test func npyInterop() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("api-\(UUID().uuidString).npy")
        defer { try? FileManager.default.removeItem(at: url) }
        let t = Tensor([[1, 2], [3, 4]])
        try t.writeNPY(to: url)
        #expect(try Tensor(npyFile: url).scalars(as: Int64.self) == [1, 2, 3, 4])
    }

    @Test func propertiesAndConversion() {
        let t = Tensor([[3, 5], [10, 5]])
        #expect(t.ndim == 2 && t.shape == [2, 2] && t.dtype == .int64 && t.device == .cpu && t.numel == 4)
        #expect(t.scalars(as: Float.self) == [3, 5, 10, 5])
        #expect(t[1, 0].item() == 10)
        #expect(t.to(.float32).dtype == .float32)
        #expect(t.to(.cpu) === t)
        _ = Device.isCUDAAvailable
        #expect(t.description == "tensor([[ 3,  5],\n        [10,  5]])")
    }

    @Test func viewsAndShape() {
        let t = Tensor.arange(12)
        #expect(t.view(-1, 6).shape == [2, 6] && t.reshape(-1, 6).shape == [2, 6])
        let m = t.view(2, 6)
        #expect(m.flatten().shape == [12] && Tensor.zeros([2, 3, 4]).flatten(startDim: 1).shape == [2, 12])
        #expect(Tensor.zeros([1, 3, 1]).squeeze().shape == [3] && Tensor.zeros([1, 3]).squeeze(dim: 0).shape == [3])
        #expect(m.unsqueeze(1).shape == [2, 1, 6])
        #expect(m.transpose(0, 1).shape == [6, 2] && m.T.shape == [6, 2])
        #expect(Tensor.zeros([2, 3, 4]).permute(2, 0, 1).shape == [4, 2, 3])
        #expect(Tensor.zeros([1, 3]).expand(4, 3).shape == [4, 3])
        #expect(m.T.contiguous().scalars(as: Int64.self) == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11])
        #expect(m[1...].shape == [1, 6] && m[..<2, 1...].shape == [2, 5] && m[0].shape == [6] && m[0, 1].item() == 1)
        #expect(m[.all, 0].scalars(as: Int64.self) == [0, 6])
        #expect(t[0..<4, stride: 2].scalars(as: Int64.self) == [0, 2])
        let idx = Tensor([1, 0])
        #expect(m.indexSelect(dim: 0, index: idx).scalars(as: Int64.self) == Array(6..<12).map(Int64.init) + Array(0..<6).map(Int64.init))
        #expect(m.gather(dim: 1, index: Tensor([[5], [0]])).scalars(as: Int64.self) == [5, 6])
        let a = Tensor([[1, 2]]), b = Tensor([[3, 4]])
        #expect(Tensor.cat([a, b], dim: 0).shape == [2, 2] && Tensor.stack([a, b], dim: 0).shape == [2, 1, 2])
        #expect(t.split(5, dim: 0).map(\.numel) == [5, 5, 2])
        #expect(m.chunk(3, dim: 1).map { $0.shape } == [[2, 2], [2, 2], [2, 2]])
    }

    @Test func arithmetic() {
        let a = Tensor([1.0, 4.0]), b = Tensor([2.0, 0.5])
        #expect((a + b).scalars(as: Float.self) == [3, 4.5])
        #expect((a - b).scalars(as: Float.self) == [-1, 3.5])
        #expect((a * b).scalars(as: Float.self) == [2, 2])
        #expect((a / b).scalars(as: Float.self) == [0.5, 8])
        #expect((-a).scalars(as: Float.self) == [-1, -4])
        #expect((a + 1).scalars(as: Float.self) == [2, 5] && (10 * a).scalars(as: Float.self) == [10, 40])
        #expect(a.pow(2).scalars(as: Float.self) == [1, 16] && (a ** 3).scalars(as: Float.self) == [1, 64])
        #expect(a.sqrt().scalars(as: Float.self) == [1, 2] && a.log().exp().allClose(a))
        #expect((-a).abs().scalars(as: Float.self) == [1, 4] && (-a).relu().scalars(as: Float.self) == [0, 0])
        #expect(Tensor([0.0]).sigmoid().item() == 0.5 && Tensor([0.0]).tanh().item() == 0 && Tensor([0.0]).gelu().item() == 0)
        #expect(a.clamp(min: 0, max: 1).scalars(as: Float.self) == [1, 1])
        #expect(a.eq(b).scalars(as: Bool.self) == [false, false] && (a .> b).scalars(as: Bool.self) == [false, true])
        #expect(Tensor.where(a .> b, a, b).scalars(as: Float.self) == [2, 4])
        let m = Tensor([[1.0, 2.0], [3.0, 6.0]])
        #expect(m.sum().item() == 12 && m.sum(dim: 1, keepDim: true).shape == [2, 1] && m.mean(dim: 0).scalars(as: Float.self) == [2, 4])
        #expect(m.max().item() == 6 && m.max(dim: 1).indices.scalars(as: Int64.self) == [1, 1] && m.min().item() == 1)
        #expect(m.argmax(dim: 1).scalars(as: Int64.self) == [1, 1] && m.argmin().item() == 0)
        #expect(m.var(dim: 0).scalars(as: Float.self) == [2, 8] && Swift.abs(Tensor([1.0, 3.0]).std().item() - 2.0.squareRoot()) < 1e-6)
        #expect(m.mm(m).scalars(as: Float.self) == [7, 14, 21, 42] && a.dot(b).item() == 4)
        #expect(m.matmul(a).scalars(as: Float.self) == [9, 27] && m.unsqueeze(0).bmm(m.unsqueeze(0)).shape == [1, 2, 2])
        #expect(Swift.abs(m.softmax(dim: 0).sum().item() - 2) < 1e-6 && m.logSoftmax(dim: 1).shape == [2, 2])
    }

    @Test func functional() {
        let t = Tensor([0.5, 0.7, 0.1])
        #expect(F.softmax(t, dim: 0).description == "tensor([0.3458, 0.4224, 0.2318])")
        #expect(F.oneHot(Tensor([1, 3]), numClasses: 4).scalars(as: Int64.self) == [0, 1, 0, 0, 0, 0, 0, 1])
        let logits = Tensor([[2.0, 0.5], [0.1, 1.0]]), target = Tensor([0, 1])
        #expect(F.crossEntropy(logits, target).item() > 0)
        #expect(F.nllLoss(logits.logSoftmax(dim: 1), target).allClose(F.crossEntropy(logits, target)))
        #expect(F.mseLoss(Tensor([1.0, 2.0]), Tensor([1.0, 4.0])).item() == 2)
        #expect(F.binaryCrossEntropyWithLogits(Tensor([0.0]), Tensor([1.0])).allClose(Tensor(0.6931472)))
        #expect(F.relu(Tensor([-1.0, 1.0])).scalars(as: Float.self) == [0, 1])
        #expect(F.dropout(t, p: 0.5, training: false) === t)
        let x = Tensor.ones([1, 1, 4, 4]), weight = Tensor.ones([2, 1, 3, 3]), bias = Tensor([0.0, 1.0])
        #expect(F.conv2d(x, weight, bias, stride: 1, padding: 0).scalars(as: Float.self) == [9, 9, 9, 9, 10, 10, 10, 10])
        #expect(F.maxPool2d(Tensor.arange(16).float().reshape(1, 1, 4, 4), kernelSize: 2).scalars(as: Float.self) == [5, 7, 13, 15])
        #expect(F.linear(Tensor([[1.0, 2.0]]), Tensor([[1.0, 1.0], [0.0, 2.0]]), Tensor([0.5, 0.0])).scalars(as: Float.self) == [3.5, 4])
    }

    @Test func autograd() {
        let w = Tensor(2.0, requiresGrad: true)
        let z = 10 * w.pow(2) + 2
        z.backward()
        #expect(w.grad?.description == "tensor(40.)")
        let a = Tensor([2.0, 3.0], requiresGrad: true)
        let q = 3 * a ** 3
        q.backward(gradient: Tensor([1.0, 1.0]), retainGraph: true)
        q.backward(gradient: Tensor([1.0, 1.0]))
        #expect(a.grad?.scalars(as: Float.self) == [72, 162])
        w.zeroGrad()
        #expect(w.grad == nil && w.isLeaf && z.gradFn != nil && !z.detach().requiresGrad)
        let t = Tensor([1.0]).requiresGrad(true)
        #expect(t.requiresGrad)
        noGrad { #expect(!(t * 2).requiresGrad) }
    }

    @Test func safetensorsDictionary() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("api-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(["fc1.weight": Tensor([[1.0, 2.0]]), "fc1.bias": Tensor([0.5])], to: url, metadata: ["format": "pt"])
        let dict = try SafeTensors.read(url)
        #expect(dict["fc1.weight"]?.scalars(as: Float.self) == [1, 2] && dict["fc1.bias"]?.shape == [1])
    }
}
