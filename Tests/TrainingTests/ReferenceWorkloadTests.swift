import Data
import FerryTestSupport
import Foundation
import NN
import Optim
import TensorCore
import Testing
import TrainingTestSupport

/// Issue 4's check in small: the reference MLP (Flatten, 784→256→128→10, Adam 1e-3, batch 128,
/// inputs normalised 0.2860/0.3530), written directly against NN/Optim/Data, trained on the first
/// 1,000 images of the real Fashion-MNIST, must generalise to the test set.
@Suite struct ReferenceWorkloadTests {
    @Test func mlpOnAThousandImagesGeneralises() throws {
        guard let train = try? FashionMNIST(train: true, normalize: .fashionMNIST),
              let test = try? FashionMNIST(train: false, normalize: .fashionMNIST) else {
            if TestPaths.isCI { Issue.record("Fashion-MNIST files missing: run scripts/install-deps.sh") }
            return
        }
        let accuracy = GlobalRandom.withSeed(0) { () -> Double in
            let model = Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10))
            let opt = Adam(model.parameters(), lr: 1e-3)
            let loader = DataLoader(Subset(train, indices: Array(0..<1000)), batchSize: 128, shuffle: true, seed: 0)
            for _ in 0..<8 {
                for (x, y) in loader {
                    let loss = F.crossEntropy(model(x), y)
                    opt.zeroGrad()
                    loss.backward()
                    opt.step()
                }
            }
            model.eval()
            var correct = 0, seen = 0
            for (x, y) in DataLoader(Subset(test, indices: Array(0..<2000)), batchSize: 500) {
                let predicted = noGrad { model(x).argmax(dim: 1) }
                correct += Int(predicted.eq(y).sum().item())
                seen += y.numel
            }
            #expect(seen == 2000)
            return Double(correct) / Double(seen)
        }
        print("reference MLP, 1,000 images, 8 epochs: test accuracy \(accuracy)")
        #expect(accuracy >= 0.72, "MLP on 1,000 Fashion-MNIST images reached \(accuracy) test accuracy")
    }
}
