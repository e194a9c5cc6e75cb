import Data
import Foundation
import NN
import Optim
import TensorCore

/// The reference workloads of issue 4 (MLP and CNN on Fashion-MNIST-shaped data, batch 128,
/// Adam 1e-3), timed per epoch against shared/reference/torch_fashion.py in the same run.
enum TrainingBenchmark {
    static func mlp() -> Sequential {
        Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10))
    }

    static func cnn() -> Sequential {
        Sequential(Conv2d(1, 32, kernelSize: 3), ReLU(), MaxPool2d(2), Conv2d(32, 64, kernelSize: 3), ReLU(), MaxPool2d(2),
                   Flatten(), Linear(1600, 128), ReLU(), Linear(128, 10))
    }

    /// Seconds for one epoch over `images` [N, 1, 28, 28] / `labels` [N].
    static func epoch(_ model: Sequential, _ opt: Adam, images: Tensor, labels: Tensor, batch: Int = 128) -> Double {
        let n = images.shape[0]
        let perm = Tensor.randperm(n)
        let start = DispatchTime.now().uptimeNanoseconds
        var i = 0
        while i < n {
            let idx = perm[i..<Swift.min(n, i + batch)]
            let x = images.indexSelect(dim: 0, index: idx), y = labels.indexSelect(dim: 0, index: idx)
            let loss = F.crossEntropy(model(x), y)
            opt.zeroGrad()
            loss.backward()
            opt.step()
            i += batch
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// The normalised Fashion-MNIST training set, or nil when the files are missing.
    static func fashionMNIST() -> (images: Tensor, labels: Tensor)? {
        guard let ds = try? FashionMNIST(root: FashionMNISTFiles.defaultRoot, train: true, normalize: .fashionMNIST) else { return nil }
        let (x, y) = ds.data.tensors()
        return (x.reshape([-1, 1, 28, 28]), y)
    }

    static func run(kind: String, epochs: Int, threads: Int, data: (images: Tensor, labels: Tensor)?, reference: Bool = true) {
        let (images, labels) = data ?? (Tensor.randn([60_000, 1, 28, 28]), Tensor.randint(10, shape: [60_000]))
        print("\(kind) epoch, \(threads) threads, \(images.shape[0]) samples\(data == nil ? " (synthetic data)" : "") — ratio = ferry time / PyTorch time, lower is better")
        Tensor.manualSeed(0)
        let model = kind == "mlp" ? mlp() : cnn()
        let opt = Adam(model.parameters(), lr: 1e-3)
        var times: [Double] = []
        for _ in 0..<epochs { times.append(epoch(model, opt, images: images, labels: labels)) }
        let best = times.min() ?? 0
        var accuracy = ""
        if let test = try? FashionMNIST(root: FashionMNISTFiles.defaultRoot, train: false, normalize: .fashionMNIST) {
            model.eval()
            let (x, y) = test.data.tensors()
            let predicted = noGrad { model(x.reshape([-1, 1, 28, 28])).argmax(dim: 1) }
            accuracy = ", test accuracy \(fmt(predicted.eq(y).sum().item() / Double(y.numel), 4)) after \(epochs) epochs"
        }
        print("  ferry: best epoch \(fmt(best, 3)) s (all: \(times.map { fmt($0, 3) }.joined(separator: ", ")))\(accuracy)")
        guard reference else { return }
        if let ref = Reference.run("../../../shared/reference/torch_fashion.py", [kind, String(epochs), String(threads)]),
           let t = ref["epoch_s"] as? Double {
            print("  torch \(ref["torch"] ?? "?"): best epoch \(fmt(t, 3)) s, test acc \(ref["test_acc"] ?? "?") → ratio \(fmt(best / t))x")
        } else {
            print("  (PyTorch reference unavailable: set FERRY_BENCH_PYTHON to a python with torch)")
        }
    }
}
