import FerryTestSupport
import Foundation
import NN
import TensorCore
import Testing
import TrainingTestSupport
@testable import Training

/// The typed plan: what the checker resolves once (constructors, sizes, checkpoint policy) and the
/// public check entry a runner calls in process.
@Suite struct PlanTests {
    @Test func thePlanHoldsConstructorsAndTheSizesComputedOnce() throws {
        let plan = try TrainingPlan.make(try fashionShapedConfig(), file: "config.json", registry: TestRegistry.registry())
        #expect(plan.model.name == "Sequential" && plan.data.name == "TinyData" && plan.optimizer.name == "Adam")
        #expect(plan.loss.name == "cross_entropy" && plan.metrics.map(\.name) == ["accuracy", "top_k_acc"])
        #expect(plan.scheduler?.name == "StepLR" && plan.dataSplit == .train)
        #expect(plan.trainCount == 900 && plan.validationCount == 100 && plan.sampleCount == 1000)
        #expect(plan.inputShape == [-1, 1, 28, 28])
        #expect(plan.checkpoints == CheckpointPolicy(savePeriod: 1, saveTopK: 0, saveLast: true, monitor: .min("val_loss")))
        #expect(plan.summary == "config.json: ok — Sequential on TinyData (900 training / 100 validation samples), Adam, 5 epochs")

        let limited = try TrainingPlan.make(try fashionShapedConfig { $0.set("data_loader.args.limit", .int(200)) },
                                            file: "c.json", registry: TestRegistry.registry())
        #expect(limited.trainCount == 180 && limited.validationCount == 20 && limited.sampleCount == 200)
        let noValidation = try TrainingPlan.make(try fashionShapedConfig {
            $0.set("data_loader.args.validation_split", .double(0)); $0.set("trainer.monitor", .string("min loss"))
        }, file: "c.json", registry: TestRegistry.registry())
        #expect(noValidation.summary == "c.json: ok — Sequential on TinyData (1000 training samples), Adam, 5 epochs")
        let testSplit = try TrainingPlan.make(try fashionShapedConfig(), file: "c.json", registry: TestRegistry.registry(), split: .test)
        #expect(testSplit.dataSplit == .test && testSplit.trainCount == 250 && testSplit.validationCount == 0)
    }

    @Test func thePlanBuildsWhatItNames() throws {
        let plan = try TrainingPlan.make(try fashionShapedConfig(), file: "config.json", registry: TestRegistry.registry())
        let model = plan.buildModel()
        let optimizer = plan.buildOptimizer(for: model)
        let scheduler = try #require(plan.buildScheduler(for: optimizer))
        #expect(optimizer.paramGroups.count == 1 && Swift.abs(optimizer.lr - 0.001) < 1e-12)
        scheduler.step(metrics: nil); scheduler.step(metrics: nil)
        #expect(Swift.abs(optimizer.lr - 0.0001) < 1e-12)   // StepLR(step_size 2, gamma 0.1) after two epochs
        #expect(plan.buildScorer().metrics.count == 2)
        // 4 bytes a float32 parameter; building for the count leaves the caller's generator alone.
        #expect(plan.parameterBytes() == model.parameterCount * 4)
        #expect(plan.parameterBytes() == plan.parameterBytes())
    }

    /// The check counts the model's bytes without building it; the count equals what building
    /// allocates (parameters, plus BatchNorm's running mean and variance) for every built-in model.
    @Test func theCheckCountsWhatBuildingAllocates() throws {
        let bn = """
        [{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": [3, 5], "bias": false}},
         {"type": "BatchNorm2d", "args": {"num_features": 4}}, "ReLU", {"type": "MaxPool2d", "args": {"kernel_size": 2}},
         "Flatten", {"type": "LayerNorm", "args": {"normalized_shape": 624}},
         {"type": "Linear", "args": {"in_features": 624, "out_features": 10}}]
        """
        let archs = [
            #"{"type": "Sequential", "args": {"layers": \#(ComponentRegistry.cnnLayers().serialized(pretty: false))}}"#,
            #"{"type": "Sequential", "args": {"layers": \#(bn)}}"#,
            #"{"type": "MLP", "args": {"hidden": [64, 32]}}"#,
            #"{"type": "CNN", "args": {}}"#,
            #"{"type": "MnistModel", "args": {"num_classes": 12}}"#,
        ]
        for arch in archs {
            let value = try #require(try json(arch))
            let plan = try TrainingPlan.make(try fashionShapedConfig { $0.set("arch", value) }, file: "config.json", registry: TestRegistry.registry())
            let model = plan.buildModel()
            let buffers = model.namedBuffers().filter { $0.1.dtype == .float32 }.reduce(0) { $0 + $1.1.numel * 4 }
            #expect(plan.modelBytes == model.parameterCount * 4 + buffers, "\(arch)")
        }
    }

    @Test func checkAFileInProcess() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let dataDir = dir.path("absent-data").path
        let text = """
        {"name": "m", "arch": {"type": "MnistModel", "args": {}},
         "data_loader": {"type": "FashionMnistDataLoader", "args": {"data_dir": "\(dataDir)", "batch_size": 10, "validation_split": 0.1, "limit": 100}},
         "optimizer": {"type": "Adam", "args": {"lr": 0.001}}, "loss": "nll_loss", "metrics": ["accuracy"],
         "trainer": {"epochs": 2, "save_dir": "saved/", "monitor": "min val_loss"}, "extra": 1}
        """
        let file = dir.path("config.json").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))

        let result = TrainingPlan.check(configFile: file, overrides: [try ConfigOverride(parsing: "trainer.epochs=3")])
        let plan = try #require(result.plan)
        #expect(result.error == nil)
        #expect(plan.summary == "\(file): ok — MnistModel on FashionMnistDataLoader (90 training / 10 validation samples), Adam, 3 epochs")
        #expect(plan.dataPaths == [dataDir])
        // MnistModel (pytorch-template's): conv 1→10 k5, conv 10→20 k5, fc 320→50, fc 50→10.
        let parameters = (10 * 25 + 10) + (20 * 10 * 25 + 20) + (320 * 50 + 50) + (50 * 10 + 10)
        #expect(plan.parameterBytes() == parameters * 4)
        // The data is on the host: its absence here is a warning, as `ferry train --check` prints it.
        #expect(result.messages.first == "warning: \(file): extra: not a ferry setting; ignored")
        #expect(result.messages.contains { $0.hasPrefix("warning: \(file): data_loader.args.data_dir: no directory \(dataDir) — ") && $0.hasSuffix(" (here; the machine that trains needs it)") })
        #expect(result.warnings.count == result.messages.count)

        let override = try ConfigOverride(parsing: "optimizer.args.lr=\"fast\"")
        let bad = TrainingPlan.check(configFile: file, overrides: [override])
        #expect(bad.plan == nil && bad.messages.count == 1)
        #expect(bad.messages.first?.hasPrefix("\(file): optimizer.args.lr: expected a number") == true)
        do {
            _ = try TrainConfig.load(file: file, overrides: [override], requireData: false)
            Issue.record("the bad override was accepted")
        } catch {
            #expect(bad.messages == "\(error)".split(separator: "\n").map(String.init))
        }
        let missing = TrainingPlan.check(configFile: dir.path("nope.json").path)
        #expect(missing.plan == nil && missing.messages.count == 1 && missing.messages[0].hasPrefix("\(dir.path("nope.json").path): cannot read the config ("))
    }

    @Test func customLoadersSayWhichPathsTheyRead() throws {
        var registry = TestRegistry.registry()
        let t = TestRegistry.tinyData
        registry.register(DataLoaderType(name: "TinyData", args: t.args, facts: t.facts, check: t.check, load: t.load,
                                         dataPaths: { a, split in ["/data/tiny-\(split.rawValue)-\(a.int("count"))"] }))
        let plan = try TrainingPlan.make(try fashionShapedConfig(), file: "c.json", registry: registry)
        #expect(plan.dataPaths == ["/data/tiny-train-1000"])
        // TinyData's data_dir defaults to "": nothing to read.
        let plain = try TrainingPlan.make(try fashionShapedConfig(), file: "c.json", registry: TestRegistry.registry())
        #expect(plain.dataPaths == [])
    }
}

/// Which checkpoints an epoch writes and which it retires.
@Suite struct CheckpointPolicyTests {
    typealias Entry = TrainState.TopKEntry
    func names(_ d: CheckpointPolicy.Decision) -> [String] { d.save.map(\.name) }

    @Test func bestPeriodAndLast() {
        let p = CheckpointPolicy(savePeriod: 2, saveTopK: 0, saveLast: true, monitor: .min("val_loss"))
        #expect(names(p.decide(epoch: 1, improved: true, score: 0.5, topK: [])) == ["best", "last"])
        let second = p.decide(epoch: 2, improved: false, score: 0.6, topK: [])
        #expect(second.save == [.init(kind: "epoch", name: "epoch-2"), .init(kind: "last", name: "last")])
        #expect(second.topK == [] && second.remove == [])
        let quiet = CheckpointPolicy(savePeriod: 0, saveTopK: 0, saveLast: false, monitor: .off)
        #expect(names(quiet.decide(epoch: 4, improved: false, score: nil, topK: [])) == [])
        #expect(quiet.onStop == [.init(kind: "last", name: "last")])
    }

    @Test func topKKeepsTheBestAndRetiresTheRest() {
        let p = CheckpointPolicy(savePeriod: 0, saveTopK: 2, saveLast: true, monitor: .min("val_loss"))
        var topK: [Entry] = []
        var removed: [Int] = []
        var saved: [[String]] = []
        for (epoch, score) in [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.8), (5, 0.4)] {
            let d = p.decide(epoch: epoch, improved: false, score: score, topK: topK)
            topK = d.topK
            removed += d.remove
            saved.append(names(d))
        }
        #expect(topK == [Entry(epoch: 5, score: 0.4), Entry(epoch: 2, score: 0.5)])
        #expect(removed == [1, 3])   // epoch 4 never made the list, so never had a folder to remove
        #expect(saved == [["epoch-1", "last"], ["epoch-2", "last"], ["epoch-3", "last"], ["last"], ["epoch-5", "last"]])

        // max mode, ties go to the earlier epoch, a periodic epoch keeps its folder, non-finite scores are not ranked.
        let q = CheckpointPolicy(savePeriod: 3, saveTopK: 1, saveLast: false, monitor: .max("val_accuracy"))
        let first = q.decide(epoch: 3, improved: true, score: 0.8, topK: [])
        #expect(names(first) == ["best", "epoch-3"])
        let tie = q.decide(epoch: 4, improved: true, score: 0.8, topK: first.topK)
        #expect(names(tie) == ["best"] && tie.topK == [Entry(epoch: 3, score: 0.8)])
        let better = q.decide(epoch: 5, improved: true, score: 0.9, topK: first.topK)
        #expect(names(better) == ["best", "epoch-5"] && better.remove == [])   // epoch 3 is periodic: kept
        let nan = q.decide(epoch: 6, improved: false, score: .nan, topK: better.topK)
        #expect(names(nan) == ["epoch-6"] && nan.topK == better.topK)
    }
}

/// The CNN's flat feature count comes from the layers' own output-size rule.
@Suite struct CNNGeometryTests {
    @Test func flatFeaturesMatchWhatTheLayersGive() {
        let blocks = Sequential(layers: [Conv2d(1, 32, kernelSize: 3), MaxPool2d(2), Conv2d(32, 64, kernelSize: 3), MaxPool2d(2)])
        for n in 10...17 {
            let out = blocks(Tensor.zeros([1, 1, n, n + 1]))
            #expect(ComponentRegistry.cnnFlatFeatures([-1, 1, n, n + 1]) == out.shape.dropFirst().reduce(1, *), "\(n)×\(n + 1)")
        }
        #expect(ComponentRegistry.cnnFlatFeatures([-1, 1, 28, 28]) == 1600)
        for n in 0...9 { #expect(ComponentRegistry.cnnFlatFeatures([-1, 1, n, 28]) == nil, "\(n)") }
    }
}
