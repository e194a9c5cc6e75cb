import Foundation
import NN
import TensorCore
import Testing
@testable import Training
import TrainingTestSupport

/// The trainer in this process, on TinyData and a generator of its own (`.scoped`), so these
/// tests neither disturb nor depend on other users of the global generator.
@Suite struct TrainerTests {
    @Test func runFolderHoldsEverything() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let outcome = try trainInProcess(tinyConfig(saveDir: dir.url.path, epochs: 2, extraTrainer: #", "monitor": "max val_accuracy""#),
                                         registry: TestRegistry.registry())
        #expect(outcome.status == .succeeded && outcome.exitCode == 0 && outcome.epochsCompleted == 2)
        let run = dir.path("tiny/run")
        #expect(outcome.runDirectory?.standardizedFileURL.path == run.standardizedFileURL.path)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: run.path))
        #expect(files.isSuperset(of: ["config.json", "run.json", "train.log", "metrics.jsonl", "events.jsonl", "curves.svg", "checkpoints"]))
        #expect(files.contains { $0.hasPrefix("events.out.tfevents.") })
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)).isSuperset(of: ["epoch-1", "epoch-2", "last"]))

        // Metrics per epoch, train and validation; the validation batch is one of 32 samples.
        let metrics = try jsonLines(run.appendingPathComponent("metrics.jsonl"))
        #expect(metrics.count == 2)
        #expect(Set(metrics[0].keys) == ["epoch", "loss", "accuracy", "top_k_acc", "val_loss", "val_accuracy", "val_top_k_acc", "lr", "epoch_s", "samples_per_s"])
        let valAccuracy = try #require(metrics[1]["val_accuracy"] as? Double)
        #expect((valAccuracy * 32).rounded() == valAccuracy * 32, "a per-sample fraction of 32")
        #expect(valAccuracy > 0.5, "TinyData is easy: \(valAccuracy)")

        // The resolved config holds the seed the run used.
        let resolved = try JSONParser.parse(try Data(contentsOf: run.appendingPathComponent("config.json")))
        #expect(resolved["seed"] == .int(3) && resolved["name"] == .string("tiny"))

        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("run.json"))) as? [String: Any])
        #expect(record["status"] as? String == "succeeded" && record["exit_code"] as? Int == 0 && record["epochs_completed"] as? Int == 2)
        #expect((record["best"] as? [String: Any])?["metric"] as? String == "val_accuracy")

        let events = try jsonLines(run.appendingPathComponent("events.jsonl"))
        #expect(events.first?["event"] as? String == "start" && events.first?["total_epochs"] as? Int == 2)
        #expect(events.last?["event"] as? String == "end" && events.last?["status"] as? String == "succeeded")
        #expect(events.filter { $0["event"] as? String == "epoch" }.count == 2)
        #expect(events.contains { $0["event"] as? String == "checkpoint" && $0["kind"] as? String == "last" && $0["path"] as? String == "tiny/run/checkpoints/last" })
        // 4 steps an epoch, logged every int(sqrt(64)) = 8 steps or at an epoch's end.
        #expect(events.filter { $0["event"] as? String == "step" }.map { $0["step"] as? Int ?? 0 } == [4, 8])

        let svg = try String(contentsOf: run.appendingPathComponent("curves.svg"), encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains(">accuracy<") && svg.contains(">loss<") && svg.contains("validation"))

        // last/ loads into a fresh model of the same config.
        let weights = try SafeTensors.read(run.appendingPathComponent("checkpoints/last/model.safetensors"))
        #expect(Set(weights.keys) == ["1.weight", "1.bias", "3.weight", "3.bias"])
    }

    @Test func sameSeedSameWeights() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = tinyConfig(saveDir: dir.url.path, epochs: 1, extraTrainer: #", "tensorboard": false"#)
            .replacingOccurrences(of: #""type": "ReLU"}"#, with: #""type": "ReLU"}, {"type": "Dropout", "args": {"p": 0.3}}"#)
            .replacingOccurrences(of: #""in_features": 16, "out_features": 4"#, with: #""in_features": 16, "out_features": 4"#)
        let a = try trainInProcess(config, registry: TestRegistry.registry(), runID: "a")
        let b = try trainInProcess(config, registry: TestRegistry.registry(), runID: "b")
        #expect(a.status == .succeeded && b.status == .succeeded)
        let wa = try SafeTensors.read(dir.path("tiny/a/checkpoints/last/model.safetensors"))
        let wb = try SafeTensors.read(dir.path("tiny/b/checkpoints/last/model.safetensors"))
        #expect(!wa.isEmpty)
        for (k, v) in wa { #expect(wb[k]?.scalars(as: Float.self) == v.scalars(as: Float.self), "\(k)") }
    }

    /// A run on its own generator (in-process, scoped) resumes bit-identically too, with dropout
    /// and shuffling, however much the rest of the process draws from the global generator.
    @Test func scopedRunResumesBitIdenticallyWithDropout() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        func config(_ epochs: Int) -> String {
            tinyConfig(saveDir: dir.url.path, epochs: epochs, extraTrainer: #", "tensorboard": false"#)
                .replacingOccurrences(of: #""type": "ReLU"}"#, with: #""type": "ReLU"}, {"type": "Dropout", "args": {"p": 0.3}}"#)
        }
        let whole = try trainInProcess(config(3), registry: TestRegistry.registry(), runID: "whole")
        _ = Tensor.rand([1000])
        let first = try trainInProcess(config(1), registry: TestRegistry.registry(), runID: "parts")
        _ = Tensor.randn([777])
        var request = TrainRequest()
        request.config = try json(config(3))
        request.registry = TestRegistry.registry()
        request.randomness = .scoped
        request.console = .silent
        request.environment = [:]
        request.resume = .path(dir.path("tiny/parts/checkpoints/last").path)
        let second = TrainingSession.run(request)
        #expect(whole.status == .succeeded && first.status == .succeeded && second.status == .succeeded)
        let a = try SafeTensors.read(dir.path("tiny/whole/checkpoints/last/model.safetensors"))
        let b = try SafeTensors.read(dir.path("tiny/parts/checkpoints/last/model.safetensors"))
        #expect(!a.isEmpty && Set(a.keys) == Set(b.keys))
        for (k, v) in a { #expect(b[k]?.scalars(as: Float.self) == v.scalars(as: Float.self), "\(k) differs after an in-process resume") }
        let untrained = try SafeTensors.read(dir.path("tiny/parts/checkpoints/epoch-1/model.safetensors"))
        #expect(untrained["1.weight"]?.scalars(as: Float.self) != a["1.weight"]?.scalars(as: Float.self), "epochs 2 and 3 ran")
    }

    @Test func earlyStopCountsEpochsWithoutImprovement() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let outcome = try trainInProcess(
            tinyConfig(saveDir: dir.url.path, epochs: 10, extraTrainer: #", "monitor": "min val_loss", "early_stop": 2"#, loss: "\"scripted\""),
            registry: TestRegistry.registry(loss: TestRegistry.scriptedLoss([1, 2, 3, 4, 5, 6])))
        #expect(outcome.status == .succeeded && outcome.epochsCompleted == 3)
        let run = dir.path("tiny/run")
        #expect(try jsonLines(run.appendingPathComponent("metrics.jsonl")).map { $0["val_loss"] as? Double } == [1, 2, 3])
        #expect(intValue(try trainState(run.appendingPathComponent("checkpoints/best"))["progress.epoch"]) == 1)
        let last = try trainState(run.appendingPathComponent("checkpoints/last"))
        #expect(intValue(last["early_stop.counter"]) == 2 && last["monitor.best"]?.item() == 1)
    }

    @Test func bestIsSavedIndependentlyOfSavePeriodAndTopKKeepsTheBest() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let outcome = try trainInProcess(
            tinyConfig(saveDir: dir.url.path, epochs: 5, extraTrainer: #", "monitor": "min val_loss", "save_period": 3, "save_top_k": 2"#, loss: "\"scripted\""),
            registry: TestRegistry.registry(loss: TestRegistry.scriptedLoss([5, 3, 4, 2, 6])))
        #expect(outcome.status == .succeeded && outcome.epochsCompleted == 5)
        let run = dir.path("tiny/run")
        let checkpoints = Set(try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path))
        // epoch-3 by save_period; epoch-4 (2) and epoch-2 (3) as the two best; epoch-1 was evicted.
        #expect(checkpoints == ["best", "last", "epoch-2", "epoch-3", "epoch-4"])
        #expect(intValue(try trainState(run.appendingPathComponent("checkpoints/best"))["progress.epoch"]) == 4)
        #expect(intValue(try trainState(run.appendingPathComponent("checkpoints/epoch-2"))["progress.epoch"]) == 2)
        #expect(intValue(try trainState(run.appendingPathComponent("checkpoints/last"))["progress.epoch"]) == 5)
        let events = try jsonLines(run.appendingPathComponent("events.jsonl")).filter { $0["event"] as? String == "checkpoint" }
        #expect(events.filter { $0["kind"] as? String == "best" }.map { $0["epoch"] as? Int ?? 0 } == [1, 2, 4])
        #expect(events.filter { $0["kind"] as? String == "epoch" }.map { $0["path"] as? String ?? "" }
                == ["tiny/run/checkpoints/epoch-1", "tiny/run/checkpoints/epoch-2", "tiny/run/checkpoints/epoch-3", "tiny/run/checkpoints/epoch-4"])
        let topK = try SafeTensors.readWithMetadata(run.appendingPathComponent("checkpoints/last/train_state.safetensors")).metadata["top_k"]
        #expect(topK == #"[{"epoch":4,"score":2},{"epoch":2,"score":3}]"# || topK == #"[{"score":2,"epoch":4},{"score":3,"epoch":2}]"#)
    }

    @Test func reduceLROnPlateauStepsOnItsMetric() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let outcome = try trainInProcess(
            tinyConfig(saveDir: dir.url.path, epochs: 5, extraTrainer: #", "monitor": "min val_loss""#, loss: "\"scripted\"",
                       scheduler: #"{"type": "ReduceLROnPlateau", "args": {"patience": 1, "factor": 0.5}}"#),
            registry: TestRegistry.registry(loss: TestRegistry.scriptedLoss([1, 1, 1, 0.5, 0.5])))
        #expect(outcome.status == .succeeded)
        let lrs = try jsonLines(dir.path("tiny/run/metrics.jsonl")).map { $0["lr"] as? Double ?? 0 }
        // Bad epochs 2 and 3 exceed patience 1 after epoch 3: epoch 4 trains at half the rate.
        #expect(lrs == [0.01, 0.01, 0.01, 0.005, 0.005])
    }

    @Test func schedulerMayStepPerBatch() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let outcome = try trainInProcess(
            tinyConfig(saveDir: dir.url.path, epochs: 2, scheduler: #"{"type": "StepLR", "args": {"step_size": 2, "gamma": 0.5}, "interval": "step"}"#),
            registry: TestRegistry.registry())
        #expect(outcome.status == .succeeded)
        let lrs = try jsonLines(dir.path("tiny/run/metrics.jsonl")).map { $0["lr"] as? Double ?? 0 }
        #expect(lrs == [0.01 * 0.25, 0.01 * 0.0625])   // 4 steps an epoch, halved every 2
    }

    @Test func stopRequestSavesLastMidEpoch() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let flag = StopFlag()
        let outcome = try trainInProcess(
            tinyConfig(saveDir: dir.url.path, epochs: 3, loss: "\"scripted\""),
            registry: TestRegistry.registry(loss: TestRegistry.scriptedLoss([1], stopAfterTrainingSteps: 6, flag: flag)), stop: flag)
        #expect(outcome.status == .stopped && outcome.exitCode == 75)
        let run = dir.path("tiny/run")
        let state = try trainState(run.appendingPathComponent("checkpoints/last"))
        #expect(intValue(state["progress.epoch"]) == 1 && intValue(state["progress.batch_in_epoch"]) == 2 && intValue(state["progress.global_step"]) == 6)
        #expect(intValue(state["partial.samples"]) == 128)
        #expect(state["rng.state"] != nil, "a scoped run saves its own generator's state")
        let events = try jsonLines(run.appendingPathComponent("events.jsonl"))
        #expect(events.last?["event"] as? String == "end" && events.last?["status"] as? String == "stopped")
        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("run.json"))) as? [String: Any])
        #expect(record["status"] as? String == "stopped" && record["exit_code"] as? Int == 75)
    }

    @Test func invalidConfigRunsNothing() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let outcome = try trainInProcess(tinyConfig(saveDir: dir.url.path).replacingOccurrences(of: #""lr": 0.01"#, with: #""lr": "fast""#),
                                         registry: TestRegistry.registry())
        #expect(outcome.status == .invalid && outcome.exitCode == 2)
        #expect(outcome.error?.description == "config.json: optimizer.args.lr: expected a number >= 0, got \"fast\"")
        #expect(!FileManager.default.fileExists(atPath: dir.path("tiny").path))
    }

    @Test func anExistingRunFolderIsNotReused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = tinyConfig(saveDir: dir.url.path, epochs: 1, extraTrainer: #", "tensorboard": false"#)
        #expect(try trainInProcess(config, registry: TestRegistry.registry()).status == .succeeded)
        let again = try trainInProcess(config, registry: TestRegistry.registry())
        #expect(again.exitCode == 2)
        #expect(again.error == .runDirectoryExists(path: dir.path("tiny/run").standardizedFileURL.path))
    }
}
