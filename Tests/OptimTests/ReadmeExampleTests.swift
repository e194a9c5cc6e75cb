import NN
import Optim
import TensorCore
import Testing

/// The README's engine example, as written there: it compiles against the public names and one
/// Adam step lowers the loss on the batch it saw.
@Suite struct ReadmeExampleTests {
    @Test func theReadmeSnippetRunsAndLearns() {
        GlobalRandom.withSeed(0) {
            let x = Tensor.randn([64, 784])
            let model = Sequential(Linear(784, 256), ReLU(), Linear(256, 10))
            let optimizer = Adam(model.parameters(), lr: 1e-3)
            let target = Tensor.randint(10, shape: [64])
            let loss = F.crossEntropy(model(x), target)
            optimizer.zeroGrad(); loss.backward(); optimizer.step()
            #expect(model.stateDict().keys.sorted() == ["0.bias", "0.weight", "2.bias", "2.weight"])
            let after = noGrad { F.crossEntropy(model(x), target) }
            #expect(after.item() < loss.item(), "one Adam step on the same batch lowers its loss")
            #expect(loss.item() > 1.5 && loss.item() < 3.5, "about ln 10 at initialisation, got \(loss.item())")
        }
    }
}
