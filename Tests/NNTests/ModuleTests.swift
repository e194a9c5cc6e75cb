import Foundation
import NN
import TensorCore
import Testing

final class Net: Module {   // API.md's example, verbatim
    let fc1 = Linear(784, 256); let fc2 = Linear(256, 10)
    func forward(_ x: Tensor) -> Tensor { fc2(fc1(x.flatten(startDim: 1)).relu()) }
}

final class Conv: Module {
    let features = Sequential(Conv2d(1, 4, kernelSize: 3), BatchNorm2d(4), ReLU(), MaxPool2d(2))
    let classifier: Linear? = Linear(4 * 3 * 3, 10)
    let blocks: [any Module] = [Linear(2, 2), Dropout(0.1)]
    func forward(_ x: Tensor) -> Tensor { classifier!(features(x).flatten(startDim: 1)) }
}

@Suite struct ModuleTests {
    @Test func parameterNamesArePyTorchs() {
        let net = Net()
        #expect(net.namedParameters().map(\.0) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        #expect(net.parameters().count == 4)
        #expect(net.parameterCount == 784 * 256 + 256 + 256 * 10 + 10)
        let conv = Conv()
        #expect(Set(conv.stateDict().keys) == [
            "features.0.weight", "features.0.bias",
            "features.1.weight", "features.1.bias", "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked",
            "classifier.weight", "classifier.bias", "blocks.0.weight", "blocks.0.bias",
        ])
        #expect(conv.namedBuffers().map(\.0) == ["features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"])
        let seq = Sequential(Flatten(), Linear(4, 3), ReLU(), Linear(3, 2))
        #expect(seq.namedParameters().map(\.0) == ["1.weight", "1.bias", "3.weight", "3.bias"])
    }

    @Test func forwardShapes() {
        let net = Net()
        #expect(net(Tensor.randn([5, 1, 28, 28])).shape == [5, 10])
        #expect(Conv()(Tensor.randn([2, 1, 8, 8])).shape == [2, 10])
    }

    @Test func defaultInitialisationIsKaimingUniform() {
        let l = Linear(400, 30)
        let bound = 1 / Foundation.sqrt(400.0)
        let w = l.weight.scalars(as: Float.self)
        #expect(w.allSatisfy { Swift.abs(Double($0)) <= bound })
        // Uniform(-b, b) has variance b²/3.
        let variance = w.map { Double($0) * Double($0) }.reduce(0, +) / Double(w.count)
        #expect(Swift.abs(variance - bound * bound / 3) < 0.1 * bound * bound / 3)
        #expect(l.bias!.scalars(as: Float.self).allSatisfy { Swift.abs(Double($0)) <= bound })
        let c = Conv2d(3, 8, kernelSize: 5)
        #expect(c.weight.scalars(as: Float.self).allSatisfy { Swift.abs(Double($0)) <= 1 / Foundation.sqrt(75.0) })
    }

    @Test func stateDictRoundTripThroughSafetensors() throws {
        let a = Conv(), b = Conv()
        a.train(); _ = a(Tensor.randn([3, 1, 8, 8]))   // moves BatchNorm's running statistics
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nn-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(a.stateDict(), to: url, metadata: ["format": "pt"])
        try b.loadStateDict(try SafeTensors.read(url))
        for (k, v) in a.stateDict() {
            #expect(b.stateDict()[k]!.scalars(as: Double.self) == v.scalars(as: Double.self), "\(k) differs after the round trip")
        }
        #expect(b.stateDict()["features.1.num_batches_tracked"]!.item() == 1)
        let x = Tensor.randn([2, 1, 8, 8])
        a.eval(); b.eval()
        #expect(a(x).scalars(as: Float.self) == b(x).scalars(as: Float.self))
    }

    @Test func loadStateDictErrorsNameTheKeys() {
        let net = Net()
        var dict = net.stateDict()
        dict["fc3.weight"] = Tensor.zeros([1])
        dict.removeValue(forKey: "fc2.bias")
        dict["fc1.bias"] = Tensor.zeros([7])
        #expect {
            try net.loadStateDict(dict)
        } throws: { error in
            guard let e = error as? NNError, case .stateDictMismatch(let missing, let unexpected, let shapes) = e else { return false }
            let text = e.description
            return missing == ["fc2.bias"] && unexpected == ["fc3.weight"] && shapes.map(\.key) == ["fc1.bias"]
                && text.contains("size mismatch for fc1.bias: the checkpoint has [7], the model has [256]")
        }
        // Nothing was changed by the failed load.
        #expect(net.fc1.bias!.scalars(as: Float.self).contains { $0 != 0 })
        // Non-strict loads the matching part but still refuses shape mismatches.
        var partial = net.stateDict(); partial.removeValue(forKey: "fc2.bias")
        partial["fc1.weight"] = Tensor.zeros([256, 784])
        #expect(throws: Never.self) { try net.loadStateDict(partial, strict: false) }
        #expect(net.fc1.weight.scalars(as: Float.self).allSatisfy { $0 == 0 })
    }

    @Test func trainAndEvalModes() {
        let m = Sequential(Linear(8, 8), Dropout(0.5))
        #expect(m.training && m[1].training)
        m.eval()
        #expect(!m.training && !m[1].training)
        let x = Tensor.ones([4, 8])
        #expect(m(x).scalars(as: Float.self) == m(x).scalars(as: Float.self))   // no dropout in eval
        m.train()
        let y = GlobalRandom.withSeed(3) { Dropout(0.5)(Tensor.ones([1000])) }
        let kept = y.scalars(as: Float.self).filter { $0 != 0 }
        #expect(kept.allSatisfy { $0 == 2 })
        #expect(kept.count > 400 && kept.count < 600)
    }

    @Test func batchNormTracksRunningStatistics() {
        let bn = BatchNorm1d(3)
        let x = Tensor([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]])
        let y = bn(x)
        // Normalised per feature with the batch (biased) variance.
        #expect(y.allClose(Tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), rtol: 1e-4, atol: 1e-4))
        // running_mean = 0.9*0 + 0.1*mean; running_var = 0.9*1 + 0.1*unbiased var
        #expect(bn.runningMean.allClose(Tensor([0.2, 0.4, 0.6]), rtol: 1e-5, atol: 1e-6))
        #expect(bn.runningVar.allClose(Tensor([1.1, 1.7, 2.7]), rtol: 1e-5, atol: 1e-6))
        bn.eval()
        let z = bn(x)
        #expect(z.allClose((x - bn.runningMean) / (bn.runningVar + 1e-5).sqrt(), rtol: 1e-5, atol: 1e-5))
    }

    @Test func lossModulesMatchTheFunctions() {
        let logits = Tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]), target = Tensor([0, 1])
        #expect(CrossEntropyLoss()(logits, target).item() == F.crossEntropy(logits, target).item())
        let sum = CrossEntropyLoss(reduction: .sum)(logits, target).item()
        #expect(Swift.abs(sum - 2 * CrossEntropyLoss()(logits, target).item()) < 1e-5)
        #expect(NLLLoss()(logits.logSoftmax(dim: 1), target).allClose(CrossEntropyLoss()(logits, target), rtol: 1e-5))
        #expect(MSELoss()(Tensor([1.0, 2.0]), Tensor([0.0, 0.0])).item() == 2.5)
        #expect(MSELoss(reduction: .sum)(Tensor([1.0, 2.0]), Tensor([0.0, 0.0])).item() == 5)
        let bce = BCEWithLogitsLoss()(Tensor([0.0]), Tensor([1.0])).item()
        #expect(Swift.abs(bce - Foundation.log(2.0)) < 1e-6)
    }
}
