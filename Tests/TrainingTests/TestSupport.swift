import Data
import FerryTestSupport
import Foundation
import NN
import TensorCore
import Testing
@testable import Training

/// A fresh directory under the system's temporary directory.
struct TemporaryDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-training-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ relative: String) -> URL { url.appendingPathComponent(relative) }
    func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

var isCI: Bool { TestPaths.isCI }

/// Whether Debian's Fashion-MNIST files are here (CI installs them; elsewhere tests that need them skip).
var fashionAvailable: Bool { FashionMNISTFiles.missingFiles().isEmpty }
var fashionOrCI: Bool { fashionAvailable || isCI }

/// `python3` on PATH, and whether it has numpy.
enum Python {
    static let path: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        return dirs.map { ($0 as NSString).appendingPathComponent("python3") }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
    static let hasNumpy: Bool = {
        guard let path, let r = try? runProcess(path, ["-c", "import numpy"]) else { return false }
        return r.status == 0
    }()

    /// Runs a script of scripts/fixtures and parses its JSON output.
    static func runFixture(_ script: String, _ arguments: [String]) throws -> [String: Any] {
        let python = try #require(path)
        let file = TestPaths.repoRoot.appendingPathComponent("scripts/fixtures/\(script)").path
        let r = try runProcess(python, [file] + arguments)
        #expect(r.status == 0, "\(script) failed: \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    }
}

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

/// The lines of a JSONL file as objects.
func jsonLines(_ url: URL) throws -> [[String: Any]] {
    let text = try String(contentsOf: url, encoding: .utf8)
    return try text.split(separator: "\n").map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
}

/// The tensors and metadata of a checkpoint's train state.
func trainState(_ checkpoint: URL) throws -> [String: Tensor] {
    try SafeTensors.read(checkpoint.appendingPathComponent("train_state.safetensors"))
}

func intValue(_ t: Tensor?) -> Int? { t.map { Int($0.scalars(as: Int64.self)[0]) } }

/// Runs `ferry` with a clean environment plus `environment`.
@discardableResult
func ferry(_ arguments: [String], environment: [String: String] = [:], in directory: URL? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
    for (k, v) in environment { env[k] = v }
    return try runProcess(TestPaths.ferryBinary.path, arguments, environment: env, currentDirectory: directory)
}
