import Foundation
import NN
import TensorCore
import Testing

/// Every layer through a central-difference gradient check on its input and parameters. Layers
/// hold float32 parameters, so the check runs in float32 with a matching tolerance: the loss is a
/// fixed random weighting of the output, summed in Double.
@Suite struct LayerGradcheckTests {
    func gradcheck(_ name: String, _ layer: any Module, input: Tensor, checkInput: Bool = true, eps: Float = 1e-2, tol: Double = 2e-2) {
        let x = input.detach().requiresGrad(checkInput)
        let weights = GlobalRandom.withSeed(99) { Tensor.randn(layer(x.detach()).shape) }
        func loss() -> Double { (noGrad { layer(x) } * weights).sum().item() }
        let out = layer(x)
        (out * weights).sum().backward()
        var targets: [(String, Tensor)] = layer.namedParameters()
        if checkInput { targets.append(("input", x)) }
        for (pname, t) in targets {
            guard let grad = t.grad else { Issue.record("\(name): \(pname) got no gradient"); continue }
            let analytic = grad.scalars(as: Double.self)
            let n = t.numel
            let indices = n <= 24 ? Array(0..<n) : GlobalRandom.withSeed(UInt64(n)) { (0..<24).map { _ in Int.random(in: 0..<n) } }
            t.withUnsafeMutableBufferPointer(as: Float.self) { buf in
                for i in indices {
                    let old = buf[i]
                    buf[i] = old + eps; let up = loss()
                    buf[i] = old - eps; let down = loss()
                    buf[i] = old
                    let numeric = (up - down) / (2 * Double(eps))
                    #expect(Swift.abs(numeric - analytic[i]) <= tol * Swift.max(1, Swift.abs(numeric)),
                            "\(name) d/d\(pname)[\(i)]: analytic \(analytic[i]) vs numeric \(numeric)")
                }
            }
        }
    }

    /// Distinct values away from 0 (no ReLU kinks, no max-pool ties).
    func spread(_ shape: [Int], seed: Int = 1) -> Tensor {
        let n = shape.reduce(1, *)
        var values = (0..<n).map { i -> Float in Float((i * 7919 + seed * 104_729) % (n * 3) + 1) / Float(n * 3) * 2 - 1.0 }
        for i in values.indices where Swift.abs(values[i]) < 0.02 { values[i] += 0.05 }
        return Tensor(shape: shape, scalars: values)
    }

    @Test func linear() { GlobalRandom.withSeed(1) { gradcheck("Linear", Linear(5, 3), input: spread([4, 5])) } }
    @Test func linearNoBias() { GlobalRandom.withSeed(1) { gradcheck("Linear(bias: false)", Linear(5, 3, bias: false), input: spread([2, 3, 5])) } }
    @Test func conv2d() {
        GlobalRandom.withSeed(2) {
            gradcheck("Conv2d", Conv2d(2, 3, kernelSize: 3, stride: 2, padding: 1), input: spread([2, 2, 6, 5]))
            gradcheck("Conv2d dilation", Conv2d(1, 2, kernelSize: 2, dilation: 2), input: spread([1, 1, 6, 6]))
        }
    }
    @Test func pools() {
        gradcheck("MaxPool2d", MaxPool2d(2), input: spread([2, 2, 4, 6]))
        gradcheck("MaxPool2d stride 1 pad 1", MaxPool2d(3, stride: 1, padding: 1), input: spread([1, 2, 4, 4]))
        gradcheck("AvgPool2d", AvgPool2d(2, padding: 1), input: spread([1, 2, 5, 5]))
    }
    @Test func batchNorm() {
        gradcheck("BatchNorm1d", BatchNorm1d(3), input: spread([5, 3]), eps: 5e-3)
        gradcheck("BatchNorm2d", BatchNorm2d(2), input: spread([3, 2, 3, 3]), eps: 5e-3)
        let bn = BatchNorm2d(2); bn.eval()
        gradcheck("BatchNorm2d eval", bn, input: spread([3, 2, 3, 3]))
    }
    @Test func layerNormAndEmbedding() {
        gradcheck("LayerNorm", LayerNorm([4]), input: spread([3, 4]), eps: 5e-3)
        let e = GlobalRandom.withSeed(4) { Embedding(6, 3) }
        gradcheck("Embedding", e, input: Tensor([[1, 4], [4, 0]]), checkInput: false)
    }
    @Test func activationsAndShapes() {
        for (name, layer) in [("ReLU", ReLU()), ("GELU", GELU()), ("Tanh", Tanh()), ("Sigmoid", Sigmoid()),
                              ("Softmax", Softmax(dim: 1)), ("LogSoftmax", LogSoftmax(dim: -1)), ("Flatten", Flatten()),
                              ("Identity", Identity())] as [(String, any Module)] {
            gradcheck(name, layer, input: spread([3, 2, 2]))
        }
    }
    @Test func dropout() {
        let d = Dropout(0.3); d.eval()
        gradcheck("Dropout eval", d, input: spread([4, 4]))
        let d2 = Dropout2d(0.5); d2.eval()
        gradcheck("Dropout2d eval", d2, input: spread([2, 3, 2, 2]))
        // In training the mask is drawn per call; with a fixed seed per call it is a fixed linear map.
        final class Seeded: Module {
            let inner: any Module
            init(_ m: any Module) { inner = m }
            func forward(_ x: Tensor) -> Tensor { GlobalRandom.withSeed(7) { inner(x) } }
        }
        gradcheck("Dropout train", Seeded(Dropout(0.3)), input: spread([4, 4]))
        gradcheck("Dropout2d train", Seeded(Dropout2d(0.5)), input: spread([2, 3, 2, 2]))
    }
    @Test func sequential() {
        GlobalRandom.withSeed(5) {
            gradcheck("Sequential", Sequential(Conv2d(1, 2, kernelSize: 3), ReLU(), MaxPool2d(2), Flatten(), Linear(8, 3), Tanh()),
                      input: spread([2, 1, 6, 6]))
        }
    }
    @Test func losses() {
        final class LossAdapter: Module {
            let loss: any Loss; let target: Tensor
            init(_ loss: any Loss, _ target: Tensor) { self.loss = loss; self.target = target }
            func forward(_ x: Tensor) -> Tensor { loss(x, target) }
        }
        gradcheck("CrossEntropyLoss", LossAdapter(CrossEntropyLoss(), Tensor([2, 0, 1])), input: spread([3, 4]))
        gradcheck("CrossEntropyLoss smoothing", LossAdapter(CrossEntropyLoss(ignoreIndex: 0, labelSmoothing: 0.1), Tensor([2, 0, 1])), input: spread([3, 4]))
        gradcheck("NLLLoss", LossAdapter(NLLLoss(reduction: .sum), Tensor([2, 0, 1])), input: spread([3, 4]))
        gradcheck("MSELoss", LossAdapter(MSELoss(), spread([3, 4], seed: 9)), input: spread([3, 4]))
        gradcheck("BCEWithLogitsLoss", LossAdapter(BCEWithLogitsLoss(posWeight: Tensor([2.0, 1.0, 0.5, 1.0])),
                                                    Tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])),
                  input: spread([3, 4]))
    }
}
