import Testing
import NN
import Optim
@testable import TensorCore

/// `Module.to(.cuda(0))` and the optimizers on the mock CUDA driver, against the same run on the CPU.
@Suite struct CUDADeviceTrainingTests {
    static func close(_ a: [Double], _ b: [Double], _ tol: Double) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { Swift.abs($0 - $1) <= tol * Swift.max(1, Swift.abs($0)) }
    }

    /// Trains a copy of `reference` for a few steps on `device` with an optimizer built *before*
    /// `model.to(device)`; returns the losses and the final first-layer weight.
    static func train(_ reference: Sequential, on device: Device, data: (Tensor, Tensor),
                      fresh: () -> Sequential = { Sequential(Linear(8, 12), ReLU(), Linear(12, 3)) },
                      optimizer make: ([Tensor]) -> any Optimizer) throws -> (losses: [Double], weight: [Float], sameIdentity: Bool) {
        let model = fresh()
        try model.loadStateDict(reference.stateDict())
        let before = model.parameters().map(ObjectIdentifier.init)
        let opt = make(model.parameters())
        model.to(device)
        let same = model.parameters().map(ObjectIdentifier.init) == before && model.parameters().allSatisfy { $0.device == device }
        let x = data.0.to(device), y = data.1.to(device)
        var losses: [Double] = []
        for _ in 0..<5 {
            model.zeroGrad()
            let loss = F.crossEntropy(model(x), y)
            loss.backward()
            GradClip.clipGradNorm(model.parameters(), maxNorm: 1.0)
            opt.step()
            losses.append(loss.item())
        }
        model.cpu()
        let back = model.parameters().allSatisfy { $0.device == .cpu } && model.parameters().map(ObjectIdentifier.init) == before
        return (losses, model.parameters()[0].scalars(as: Float.self), same && back)
    }

    @Test(arguments: ["sgd", "adam", "adamw"])
    func optimizerBuiltBeforeModelToKeepsWorking(_ kind: String) throws {
        Tensor.manualSeed(7)
        let reference = Sequential(Linear(8, 12), ReLU(), Linear(12, 3))
        let data = (Tensor.randn([16, 8]), Tensor.randint(3, shape: [16]))
        let make: ([Tensor]) -> any Optimizer = { ps in
            switch kind {
            case "sgd": return SGD(ps, lr: 0.1, momentum: 0.9, weightDecay: 1e-3)
            case "adam": return Adam(ps, lr: 1e-2)
            default: return AdamW(ps, lr: 1e-2)
            }
        }
        let cpu = try Self.train(reference, on: .cpu, data: data, optimizer: make)
        let mock = MockCUDADriver(devices: 1, memoryBytes: 64 << 20)
        let gpu = try withCUDADriver(mock) { try Self.train(reference, on: .cuda(0), data: data, optimizer: make) }
        #expect(gpu.sameIdentity, "parameters changed identity or device in Module.to")
        #expect(Self.close(cpu.losses, gpu.losses, 1e-4), "\(gpu.losses) vs CPU \(cpu.losses)")
        #expect(Self.close(cpu.weight.map(Double.init), gpu.weight.map(Double.init), 1e-4))
        #expect(mock.launchCounts.keys.contains(kind == "sgd" ? "sgd_step_f32" : "adam_step_f32"), "\(mock.launchCounts)")
    }

    /// A small CNN (conv, ReLU, max pool, linear) a few Adam steps on the mock equals the CPU run.
    @Test func cnnTrainsLikeTheCPU() throws {
        Tensor.manualSeed(9)
        let fresh = { Sequential(Conv2d(1, 4, kernelSize: 3), ReLU(), MaxPool2d(2), Flatten(), Linear(36, 3)) }
        let reference = fresh()
        let data = (Tensor.randn([8, 1, 8, 8]), Tensor.randint(3, shape: [8]))
        let make: ([Tensor]) -> any Optimizer = { Adam($0, lr: 1e-2) }
        let cpu = try Self.train(reference, on: .cpu, data: data, fresh: fresh, optimizer: make)
        let mock = MockCUDADriver(devices: 1, memoryBytes: 64 << 20)
        let gpu = try withCUDADriver(mock) { try Self.train(reference, on: .cuda(0), data: data, fresh: fresh, optimizer: make) }
        #expect(gpu.sameIdentity)
        #expect(Self.close(cpu.losses, gpu.losses, 1e-4), "\(gpu.losses) vs CPU \(cpu.losses)")
        #expect(Self.close(cpu.weight.map(Double.init), gpu.weight.map(Double.init), 1e-4))
        #expect(mock.launchCounts["im2col", default: 0] > 0 && mock.gemmCount > 0)
    }

    /// The NN layers with state (BatchNorm, LayerNorm, Embedding) on the mock: outputs, gradients
    /// and running statistics as on the CPU. Dropout draws its masks from the device generator there
    /// (other values than the CPU's, as in PyTorch): CUDARandomTests checks it against the Philox stream.
    @Test func layersOnTheDeviceMatchTheCPU() throws {
        func build() -> (Sequential, Embedding) {
            GlobalRandom.withSeed(3) {
                (Sequential(Linear(6, 8), BatchNorm1d(8), GELU(), LayerNorm(8), Linear(8, 4), Tanh()), Embedding(5, 6))
            }
        }
        let ids = Tensor([[0, 4, 2], [1, 1, 3]])
        func run(_ device: Device) -> [[Double]] {
            let (net, emb) = build()
            net.to(device); emb.to(device)
            let x = emb(ids.to(device)).reshape([-1, 6])
            let y = GlobalRandom.withSeed(9) { net(x) }
            (y * y).sum().backward()
            let bn = net.namedStates().filter { $0.0.hasPrefix("1.running") }.map { $0.1.scalars(as: Double.self) }
            return [y.scalars(as: Double.self), emb.weight.grad!.scalars(as: Double.self), net.parameters()[0].grad!.scalars(as: Double.self)] + bn
        }
        let cpu = run(.cpu)
        let gpu = withCUDADriver(MockCUDADriver(devices: 1, memoryBytes: 64 << 20)) { run(.cuda(0)) }
        #expect(cpu.count == 5 && gpu.count == 5)
        for (i, (a, b)) in zip(cpu, gpu).enumerated() { #expect(Self.close(a, b, 1e-4), "part \(i): \(b.prefix(6)) vs CPU \(a.prefix(6))") }
    }
}
