import Data
import FerryTestSupport
import Foundation
import NN
import TensorCore
import Testing
@testable import Training
import TrainingTestSupport

/// Test-only registry entries: a small synthetic image set (no files), and a loss whose
/// validation values follow a script (so monitor, best, top-k and early stopping are exact).
enum TestRegistry {
    /// `TinyData`: `count` images of 1×size×size in `classes` classes; class c lights a band of rows.
    static let tinyData = DataLoaderType(
        name: "TinyData",
        args: ComponentRegistry.loaderArgs.filter { $0.name != "data_dir" } + [
            ArgSpec("data_dir", .string, default: .string("")), ArgSpec("count", .integer(min: 1), default: .int(256)),
            ArgSpec("size", .integer(min: 2), default: .int(8)), ArgSpec("classes", .integer(min: 2), default: .int(4)),
        ],
        facts: { a in
            DatasetFacts(sampleShape: [1, a.int("size"), a.int("size")], classes: a.int("classes"), trainCount: a.int("count"), testCount: a.int("count") / 4)
        },
        check: { _, _, _, _ in },
        load: { a, split in
            let n = split == .train ? a.int("count") : a.int("count") / 4
            return AnyDataset(try tinyDataset(count: n, size: a.int("size"), classes: a.int("classes"), seed: split == .train ? 1 : 2))
        })

    static func tinyDataset(count: Int, size: Int, classes: Int, seed: UInt64) throws -> TensorDataset {
        var g = Xoshiro256(seed: seed)
        var features = [Float](repeating: 0, count: count * size * size)
        var labels = [Int64](repeating: 0, count: count)
        for i in 0..<count {
            let c = Int(g.next() % UInt64(classes))
            labels[i] = Int64(c)
            for p in 0..<(size * size) {
                let row = p / size
                let lit = row * classes / size == c
                features[i * size * size + p] = (lit ? 1 : 0) + 0.3 * (g.nextFloat() - 0.5)
            }
        }
        return try TensorDataset(features: features, sampleShape: [1, size, size], labels: labels)
    }

    /// `scripted`: cross entropy while training; while validating (no grad), the next value of `values`.
    static func scriptedLoss(_ values: [Double], stopAfterTrainingSteps: Int? = nil, flag: StopFlag? = nil) -> LossType {
        LossType(name: "scripted", args: [], build: { _ in ScriptedLoss(values: values, stopAfter: stopAfterTrainingSteps, flag: flag) })
    }

    static func registry(loss: LossType? = nil) -> ComponentRegistry {
        var r = ComponentRegistry.standard
        r.register(tinyData)
        if let loss { r.register(loss) }
        return r
    }
}

final class ScriptedLoss: Loss {
    let values: [Double]
    let stopAfter: Int?
    let flag: StopFlag?
    var validationCalls = 0
    var trainingCalls = 0

    init(values: [Double], stopAfter: Int?, flag: StopFlag?) {
        self.values = values; self.stopAfter = stopAfter; self.flag = flag
    }

    func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor {
        let ce = F.crossEntropy(input, target)
        guard !GradMode.isEnabled else {
            trainingCalls += 1
            if let stopAfter, trainingCalls == stopAfter { flag?.request() }
            return ce
        }
        defer { validationCalls += 1 }
        return Tensor.full([], value: values[min(validationCalls, values.count - 1)])
    }
}

/// Config JSON for tests, from a Swift dictionary literal-ish builder.
func json(_ text: String) throws -> JSONValue { try JSONParser.parse(text) }

/// A small config on TinyData: a two-layer MLP, 4 classes, 224 training + 32 validation samples
/// (one validation batch of 64), saving into `saveDir`.
func tinyConfig(saveDir: String, epochs: Int = 2, extraTrainer: String = "", loss: String = "\"cross_entropy\"",
                scheduler: String? = nil, validation: String = "32") -> String {
    """
    {
        "name": "tiny",
        "n_gpu": 0,
        "seed": 3,
        "arch": {"type": "Sequential", "args": {"layers": [
            {"type": "Flatten"},
            {"type": "Linear", "args": {"in_features": 64, "out_features": 16}},
            {"type": "ReLU"},
            {"type": "Linear", "args": {"in_features": 16, "out_features": 4}}
        ]}},
        "data_loader": {"type": "TinyData", "args": {"batch_size": 64, "shuffle": true, "validation_split": \(validation), "num_workers": 1}},
        "optimizer": {"type": "Adam", "args": {"lr": 0.01}},
        "loss": \(loss),
        "metrics": ["accuracy", "top_k_acc"],
        \(scheduler.map { "\"lr_scheduler\": \($0)," } ?? "")
        "trainer": {"epochs": \(epochs), "save_dir": "\(saveDir)", "save_period": 1, "verbosity": 0, "tensorboard": true\(extraTrainer)}
    }
    """
}

/// Runs the trainer in this process on its own random generator, quietly.
func trainInProcess(_ configText: String, registry: ComponentRegistry, stop: StopFlag = StopFlag(), runID: String = "run") throws -> TrainOutcome {
    var request = TrainRequest()
    request.config = try json(configText)
    request.registry = registry
    request.randomness = .scoped
    request.console = .silent
    request.environment = [:]
    request.runID = runID
    request.stop = stop
    return TrainingSession.run(request)
}

