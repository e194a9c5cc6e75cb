import Data
import FerryTestSupport
import Foundation
import NN
import TensorCore
import Testing
@testable import Training
import TrainingTestSupport

/// `ferry train`, `ferry test` and `ferry new` as subprocesses: the real binary, its own process
/// (so the global generator is its own and resume can be compared bit for bit), real signals.
/// Serialized: each run uses both cores.
@Suite(.serialized) struct TrainCLITests {
    /// A Fashion-MNIST config for quick runs: `limit` samples, a tenth for validation.
    func fashionConfig(_ dir: TemporaryDirectory, name: String = "quick", arch: String, limit: Int, batch: Int, epochs: Int,
                       extra: String = "", scheduler: String = "") throws -> URL {
        let text = """
        {
            "name": "\(name)",
            "n_gpu": 0,
            "seed": 11,
            "arch": \(arch),
            "data_loader": {"type": "FashionMnistDataLoader", "args": {"data_dir": "\(FashionMNISTFiles.defaultRoot)", "batch_size": \(batch),
                            "shuffle": true, "validation_split": 0.1, "num_workers": 1, "limit": \(limit)}},
            "optimizer": {"type": "Adam", "args": {"lr": 0.002}},
            "loss": "nll_loss",
            "metrics": ["accuracy", "top_k_acc"],
            \(scheduler)
            "trainer": {"epochs": \(epochs), "save_dir": "saved/", "save_period": 1, "verbosity": 2, "monitor": "min val_loss",
                        "tensorboard": true\(extra)}
        }
        """
        let url = dir.path("\(name).json")
        try Data(text.utf8).write(to: url)
        return url
    }

    static let lenet = #"{"type": "MnistModel", "args": {}}"#
    /// MnistModel's convolutions and pooling without its dropout: the CUDA device draws dropout masks
    /// from its own Philox generator (as PyTorch's CUDA generator), so only a model without random
    /// layers can train to the CPU's numbers.
    static let lenetWithoutDropout = #"{"type": "Sequential", "args": {"layers": [{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 10, "kernel_size": 5}}, {"type": "MaxPool2d", "args": {"kernel_size": 2}}, "ReLU", {"type": "Conv2d", "args": {"in_channels": 10, "out_channels": 20, "kernel_size": 5}}, {"type": "MaxPool2d", "args": {"kernel_size": 2}}, "ReLU", "Flatten", {"type": "Linear", "args": {"in_features": 320, "out_features": 50}}, "ReLU", {"type": "Linear", "args": {"in_features": 50, "out_features": 10}}, {"type": "LogSoftmax", "args": {"dim": 1}}]}}"#
    static let smallMLP = #"{"type": "Sequential", "args": {"layers": ["Flatten", {"type": "Linear", "args": {"in_features": 784, "out_features": 32}}, "ReLU", {"type": "Linear", "args": {"in_features": 32, "out_features": 10}}, {"type": "LogSoftmax", "args": {"dim": 1}}]}}"#

    @Test func checkValidatesOnly() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.smallMLP, limit: 100, batch: 10, epochs: 1)
        let ok = try ferry(["train", "--check", config.path], in: dir.url)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout == "\(config.path): ok — Sequential on FashionMnistDataLoader (90 training / 10 validation samples), Adam, 1 epochs\n")
        let bad = try ferry(["train", "--check", config.path, "--set", "optimizer.args.lr=fast", "--set", "arch.args.layers[1].args.in_features=700",
                             "--bs", "0"], in: dir.url)
        #expect(bad.status == 2)
        #expect(bad.stderr == """
            \(config.path): data_loader.args.batch_size: expected an integer >= 1, got 0
            \(config.path): arch.args.layers[1]: Linear expects 700 input features, layers[0] gives 784
            \(config.path): optimizer.args.lr: expected a number >= 0, got "fast"

            """)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["quick.json"], "nothing written")
        // Data files are the host's business: --check (run on the laptop) warns, a real run refuses to start.
        let elsewhere = try ferry(["train", "--check", config.path, "--set", "data_loader.args.data_dir=/nonexistent/fm"], in: dir.url)
        #expect(elsewhere.status == 0)
        #expect(elsewhere.stderr.hasPrefix("warning: \(config.path): data_loader.args.data_dir: no directory /nonexistent/fm — install Debian's dataset-fashion-mnist"))
        #expect(elsewhere.stderr.hasSuffix(" (here; the machine that trains needs it)\n"))
        let refused = try ferry(["train", config.path, "--set", "data_loader.args.data_dir=/nonexistent/fm"], in: dir.url)
        #expect(refused.status == 2 && refused.stderr.contains("\(config.path): data_loader.args.data_dir: no directory /nonexistent/fm"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["quick.json"], "nothing written")
        let malformed = try ferry(["train", config.path, "--set", "lr0.1"], in: dir.url)
        #expect(malformed.status == 2 && malformed.stderr == "--set lr0.1: expected PATH=VALUE, like optimizer.args.lr=0.01\n")
        let none = try ferry(["train"], in: dir.url)
        #expect(none.status == 2 && none.stderr == "ferry train: give a config: `ferry train config/config.json` (or --resume a checkpoint in a run folder)\n")
        let missing = try ferry(["train", "--resume", "nowhere"], in: dir.url)
        #expect(missing.status == 2 && missing.stderr == "--resume nowhere: no such file or folder\n")
    }

    @Test(.enabled(if: fashionOrCI)) func trainOneEpochEndToEnd() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.smallMLP, limit: 2000, batch: 50, epochs: 1)
        let output = dir.path("output"), events = dir.path("job/events.jsonl")
        let r = try ferry(["train", config.path, "--set", "trainer.log_every_n_steps=6"], environment: [
            "FERRY_OUTPUT": output.path, "FERRY_EVENTS": events.path, "FERRY_JOB_ID": "job-42",
        ], in: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        let run = output.appendingPathComponent("quick/job-42")
        // verbosity 2 without a terminal: pytorch-template's per-step lines and epoch summary.
        #expect(r.stdout.contains("Train Epoch: 1 [300/1800 (17%)] Loss: "))
        #expect(r.stdout.contains("    val_accuracy   : "))
        #expect(!FileManager.default.fileExists(atPath: dir.path("saved").path), "FERRY_OUTPUT replaces save_dir")

        let lines = try jsonLines(events)
        #expect(lines.map { $0["event"] as? String ?? "" } == ["start"] + Array(repeating: "step", count: 6) + ["epoch", "checkpoint", "checkpoint", "checkpoint", "end"])
        #expect(lines[0]["total_epochs"] as? Int == 1 && lines[0]["steps_per_epoch"] as? Int == 36 && lines[0]["run_dir"] as? String == "quick/job-42")
        #expect(lines[1]["step"] as? Int == 6 && lines[1]["epoch"] as? Int == 1 && lines[1]["loss"] is Double)
        #expect(lines.filter { $0["event"] as? String == "checkpoint" }.map { "\($0["kind"] ?? "") \($0["path"] ?? "")" }
                == ["best quick/job-42/checkpoints/best", "epoch quick/job-42/checkpoints/epoch-1", "last quick/job-42/checkpoints/last"])
        #expect(lines.last?["status"] as? String == "succeeded")
        let metrics = try #require(lines.first { $0["event"] as? String == "epoch" }?["metrics"] as? [String: Double])
        #expect((metrics["val_accuracy"] ?? 0) > 0.5, "\(metrics)")

        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("run.json"))) as? [String: Any])
        #expect(record["status"] as? String == "succeeded" && record["job_id"] as? String == "job-42")
        #expect((record["versions"] as? [String: String])?["ferry"] != nil)
        #expect((record["command"] as? [String])?.suffix(3) == [config.path, "--set", "trainer.log_every_n_steps=6"])
        let log = try String(contentsOf: run.appendingPathComponent("train.log"), encoding: .utf8)
        #expect(log.contains(" - INFO - ") && log.contains(" - DEBUG - Train Epoch: 1"))

        // TensorBoard scalars, decoded and CRC-checked by the independent reader.
        if Python.path != nil || isCI {
            let tb = try #require(try FileManager.default.contentsOfDirectory(atPath: run.path).first { $0.hasPrefix("events.out.tfevents.") })
            let decoded = try Python.runFixture("read_tfevents.py", [run.appendingPathComponent(tb).path])
            let scalars = try #require(decoded["scalars"] as? [[String: Any]])
            // Epoch scalars stand at the global step of the epoch's last batch (36 here), on the
            // step/ scalars' x-axis: steps in the file never go back (tensorboard --inspect's check).
            let epochScalars = scalars.filter { $0["step"] as? Int == 36 && !(($0["tag"] as? String) ?? "").hasPrefix("step/") }
            let steps = scalars.compactMap { $0["step"] as? Int }
            #expect(steps == steps.sorted(), "out-of-order steps: \(steps)")
            #expect(Set(epochScalars.compactMap { $0["tag"] as? String })
                    == ["loss/train", "accuracy/train", "top_k_acc/train", "loss/valid", "accuracy/valid", "top_k_acc/valid", "lr"])
            let valAcc = try #require(epochScalars.first { $0["tag"] as? String == "accuracy/valid" }?["value"] as? Double)
            #expect(valAcc == Double(Float(metrics["val_accuracy"] ?? 0)))
        }
        // The weights numpy reads are the weights ferry wrote.
        if Python.hasNumpy || isCI {
            let file = run.appendingPathComponent("checkpoints/best/model.safetensors")
            let read = try #require(try Python.runFixture("read_safetensors.py", [file.path])["tensors"] as? [String: [String: Any]])
            let swift = try SafeTensors.read(file)
            #expect(Set(read.keys) == ["1.weight", "1.bias", "3.weight", "3.bias"])
            #expect(read["1.weight"]?["shape"] as? [Int] == [32, 784] && read["3.bias"]?["shape"] as? [Int] == [10])
            #expect((read["3.weight"]?["first"] as? [Double])?.map { Float($0) } == swift["3.weight"].map { Array($0.scalars(as: Float.self).prefix(4)) })
        }

        // ferry test: the checkpoint on the first 500 test images.
        let test = try ferry(["test", "--resume", run.path, "--json", "--set", "data_loader.args.limit=500"], in: dir.url)
        #expect(test.status == 0, "\(test.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(test.stdout.utf8)) as? [String: Any])
        #expect(report["samples"] as? Int == 500 && (report["checkpoint"] as? String)?.hasSuffix("checkpoints/best") == true)
        let testMetrics = try #require(report["metrics"] as? [String: Double])
        #expect(Set(testMetrics.keys) == ["loss", "accuracy", "top_k_acc"] && (testMetrics["accuracy"] ?? 0) > 0.5)
        #expect(((testMetrics["accuracy"] ?? 0) * 500).rounded() == (testMetrics["accuracy"] ?? 0) * 500)
    }

    /// n_gpu: 1 under the mock CUDA driver trains a LeNet without dropout (conv, pooling) on cuda:0
    /// with the CPU run's numbers; the log and run.json name the device; the checkpoint is plain CPU
    /// tensors. (With dropout the device draws its own masks: see resumeOnTheMockGPUIsBitIdentical.)
    @Test(.enabled(if: fashionOrCI)) func trainsOnTheMockGPUAsOnTheCPU() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.lenetWithoutDropout, limit: 300, batch: 50, epochs: 1)
        func train(_ gpus: Int, _ id: String) throws -> (metrics: [String: Double], run: URL, stdout: String) {
            let output = dir.path("output-\(id)")
            let r = try ferry(["train", config.path, "--set", "n_gpu=\(gpus)"], environment: [
                "FERRY_OUTPUT": output.path, "FERRY_JOB_ID": id, "FERRY_CUDA_DRIVER": "mock",
            ], in: dir.url)
            #expect(r.status == 0, "\(r.stderr)")
            let run = output.appendingPathComponent("quick/\(id)")
            let lines = try jsonLines(run.appendingPathComponent("metrics.jsonl"))
            let last = try #require(lines.last)
            return (last.compactMapValues { $0 as? Double }, run, r.stdout + r.stderr)
        }
        let cpu = try train(0, "cpu"), gpu = try train(1, "gpu")
        for key in ["loss", "val_loss", "accuracy", "val_accuracy"] {
            let a = cpu.metrics[key] ?? .nan, b = gpu.metrics[key] ?? .nan
            #expect(Swift.abs(a - b) <= 1e-4 * Swift.max(1, Swift.abs(a)), "\(key): cuda \(b) vs cpu \(a)")
        }
        let log = try String(contentsOf: gpu.run.appendingPathComponent("train.log"), encoding: .utf8)
        #expect(log.contains("training on cuda:0 (1 CUDA device(s) under the mock driver)"), "\(log.prefix(800))")
        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: gpu.run.appendingPathComponent("run.json"))) as? [String: Any])
        #expect(record["device"] as? String == "cuda:0")
        let weights = try SafeTensors.read(gpu.run.appendingPathComponent("checkpoints/last/model.safetensors"))
        #expect(!weights.isEmpty && weights.values.allSatisfy { $0.device == .cpu })
        // Without a driver, n_gpu: 1 says so and trains on the CPU; --device cuda refuses.
        let none = try ferry(["train", config.path, "--set", "n_gpu=1", "--device", "cuda"], environment: [
            "FERRY_OUTPUT": dir.path("output-none").path, "FERRY_CUDA_DRIVER": "none",
        ], in: dir.url)
        #expect(!FileManager.default.fileExists(atPath: dir.path("output-none").path), "nothing ran")
        #expect(none.status == 2 && none.stderr.contains("--device cuda: no CUDA device is available (device cuda is not available — FERRY_CUDA_DRIVER=none turns CUDA off)"), "\(none.status) \(none.stderr)")
    }

    /// On the (mock) GPU too, a run stopped after epoch 1 and resumed ends on the same weights, bit
    /// for bit (the optimizer's device state is saved as CPU tensors and moved back on resume; the
    /// device generator's seed and offset, which MnistModel's dropout draws from, as rng.cuda_state).
    @Test(.enabled(if: fashionOrCI)) func resumeOnTheMockGPUIsBitIdentical() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.lenet, limit: 200, batch: 32, epochs: 2).path
        let args = ["--set", "trainer.verbosity=0", "--set", "n_gpu=1"]
        let env = ["FERRY_CUDA_DRIVER": "mock"]
        let whole = try ferry(["train", config, "--run-id", "whole"] + args, environment: env, in: dir.url)
        #expect(whole.status == 0, "\(whole.stderr)")
        let first = try ferry(["train", config, "--run-id", "parts", "--epochs", "1"] + args, environment: env, in: dir.url)
        #expect(first.status == 0, "\(first.stderr)")
        let parts = dir.path("saved/quick/parts")
        let saved = try SafeTensors.read(parts.appendingPathComponent("checkpoints/last/train_state.safetensors"))
        let deviceRNG = try #require(saved["rng.cuda_state"]).scalars(as: Int64.self)
        #expect(deviceRNG.count == 2 && deviceRNG[1] > 0, "the device generator advanced through dropout: \(deviceRNG)")
        let second = try ferry(["train", "--resume", parts.appendingPathComponent("checkpoints/last").path, "--epochs", "2"] + args,
                               environment: env, in: dir.url)
        #expect(second.status == 0, "\(second.stderr)")
        let a = try SafeTensors.read(dir.path("saved/quick/whole/checkpoints/last/model.safetensors"))
        let b = try SafeTensors.read(parts.appendingPathComponent("checkpoints/last/model.safetensors"))
        #expect(!a.isEmpty)
        for (k, v) in a { #expect(b[k]?.scalars(as: Float.self) == v.scalars(as: Float.self), "\(k) differs after resume") }
        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: parts.appendingPathComponent("run.json"))) as? [String: Any])
        #expect(record["device"] as? String == "cuda:0")
    }

    /// pytorch-template's LeNet has Dropout2d and dropout, the loader shuffles, StepLR halves the rate:
    /// stopping after epoch 2 of 4 and resuming must end on the same weights, bit for bit.
    @Test(.enabled(if: fashionOrCI)) func resumeIsBitIdentical() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.lenet, limit: 400, batch: 32, epochs: 4,
                                       scheduler: #""lr_scheduler": {"type": "StepLR", "args": {"step_size": 1, "gamma": 0.5}},"#).path
        let quiet = ["--set", "trainer.verbosity=0"]
        let whole = try ferry(["train", config, "--run-id", "whole"] + quiet, in: dir.url)
        #expect(whole.status == 0, "\(whole.stderr)")
        let first = try ferry(["train", config, "--run-id", "parts", "--epochs", "2"] + quiet, in: dir.url)
        #expect(first.status == 0, "\(first.stderr)")
        let parts = dir.path("saved/quick/parts")
        let second = try ferry(["train", "--resume", parts.appendingPathComponent("checkpoints/last").path, "--epochs", "4"] + quiet, in: dir.url)
        #expect(second.status == 0, "\(second.stderr)")

        let a = try SafeTensors.read(dir.path("saved/quick/whole/checkpoints/last/model.safetensors"))
        let b = try SafeTensors.read(parts.appendingPathComponent("checkpoints/last/model.safetensors"))
        #expect(a.keys.sorted() == ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight", "fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"])
        for (k, v) in a { #expect(b[k]?.scalars(as: Float.self) == v.scalars(as: Float.self), "\(k) differs after resume") }
        // The resumed run continued its own folder: one metrics line per epoch, equal to the uninterrupted run's.
        let ma = try jsonLines(dir.path("saved/quick/whole/metrics.jsonl")), mb = try jsonLines(parts.appendingPathComponent("metrics.jsonl"))
        #expect(mb.map { $0["epoch"] as? Int ?? 0 } == [1, 2, 3, 4])
        #expect(ma.map { $0["val_loss"] as? Double ?? 0 } == mb.map { $0["val_loss"] as? Double ?? 0 })
        #expect(ma.map { $0["lr"] as? Double ?? 0 } == [0.002, 0.001, 0.0005, 0.00025])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path("saved/quick").path).sorted() == ["parts", "whole"])
        // TensorBoard: the two parts' events files hold the whole run's points, each once.
        if Python.path != nil || isCI {
            func points(_ run: URL) throws -> [String] {
                try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
                    .flatMap { name -> [String] in
                        let scalars = try Python.runFixture("read_tfevents.py", [run.appendingPathComponent(name).path])["scalars"] as? [[String: Any]] ?? []
                        return scalars.map { "\($0["tag"] as? String ?? "?")@\($0["step"] as? Int ?? -1)=\($0["value"] as? Double ?? .nan)" }
                    }.sorted()
            }
            let whole = try points(dir.path("saved/quick/whole")), split = try points(parts)
            #expect(!whole.isEmpty && split == whole)
        }
        // Resuming again from epoch 2's checkpoint repeats epochs 3 and 4 and draws them once.
        if Python.path != nil || isCI {
            let again = try ferry(["train", "--resume", parts.appendingPathComponent("checkpoints/epoch-2").path, "--epochs", "4"] + quiet, in: dir.url)
            #expect(again.status == 0, "\(again.stderr)")
            let names = try FileManager.default.contentsOfDirectory(atPath: parts.path).filter { $0.hasPrefix("events.out.tfevents.") }
            var seen: [String: Int] = [:]
            for name in names {
                let scalars = try Python.runFixture("read_tfevents.py", [parts.appendingPathComponent(name).path])["scalars"] as? [[String: Any]] ?? []
                for s in scalars { seen["\(s["tag"] as? String ?? "?")@\(s["step"] as? Int ?? -1)", default: 0] += 1 }
            }
            // One loss/valid point per epoch (at its last global step), each once.
            #expect(seen.filter { $0.key.hasPrefix("loss/valid@") }.count == 4, "\(seen.filter { $0.key.hasPrefix("loss/valid") })")
            #expect(seen.values.allSatisfy { $0 == 1 }, "points drawn twice: \(seen.filter { $0.value > 1 }.keys.sorted())")
        }
    }

    /// SIGTERM mid-epoch: the step finishes, last/ is written, exit 75; resuming from there ends
    /// where an uninterrupted run ends.
    @Test(.enabled(if: fashionOrCI)) func sigtermSavesLastAndResumes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.lenet, limit: 1500, batch: 16, epochs: 1, extra: #", "log_every_n_steps": 2"#).path
        let quiet = ["--set", "trainer.verbosity=0"]
        let whole = try ferry(["train", config, "--run-id", "whole"] + quiet, in: dir.url)
        #expect(whole.status == 0, "\(whole.stderr)")

        let process = Process()
        process.executableURL = TestPaths.ferryBinary
        process.arguments = ["train", config, "--run-id", "stopped"] + quiet
        process.currentDirectoryURL = dir.url
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let events = dir.path("saved/quick/stopped/events.jsonl")
        // Wait for a few steps, then ask it to stop.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let lines = try? jsonLines(events), lines.contains(where: { ($0["step"] as? Int ?? 0) >= 6 }) { break }
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 75)

        let run = dir.path("saved/quick/stopped")
        let lines = try jsonLines(events)
        #expect(lines.last?["event"] as? String == "end" && lines.last?["status"] as? String == "stopped")
        #expect(lines.contains { $0["event"] as? String == "checkpoint" && $0["kind"] as? String == "last" })
        let last = run.appendingPathComponent("checkpoints/last")
        let state = try trainState(last)
        let position = try #require(intValue(state["progress.batch_in_epoch"]))
        #expect(position > 0 && position < 85 && intValue(state["progress.epoch"]) == 0, "stopped mid-epoch at \(position)")
        #expect(state["rng.state"]?.shape == [4])
        let model = GlobalRandom.withSeed(0) { MnistModel() }
        try model.loadStateDict(try SafeTensors.read(last.appendingPathComponent("model.safetensors")))
        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("run.json"))) as? [String: Any])
        #expect(record["status"] as? String == "stopped" && record["exit_code"] as? Int == 75)

        // --resume auto with the run id finds last/ and finishes the epoch.
        let resumed = try ferry(["train", config, "--resume", "auto", "--run-id", "stopped"] + quiet, in: dir.url)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = try SafeTensors.read(dir.path("saved/quick/whole/checkpoints/last/model.safetensors"))
        let b = try SafeTensors.read(last.appendingPathComponent("model.safetensors"))
        for (k, v) in a { #expect(b[k]?.scalars(as: Float.self) == v.scalars(as: Float.self), "\(k) differs after a mid-epoch resume") }
        let ma = try jsonLines(dir.path("saved/quick/whole/metrics.jsonl")), mb = try jsonLines(run.appendingPathComponent("metrics.jsonl"))
        #expect(ma.map { $0["loss"] as? Double ?? 0 } == mb.map { $0["loss"] as? Double ?? 0 }, "per-sample sums of the interrupted epoch carried over")
    }

    /// A run id is one folder under save_dir/NAME: `../x`, `/abs`, `..` are refused before anything
    /// is written (`../x` trained into a sibling of save_dir before).
    @Test func runIDsStayInsideTheSaveDir() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = try fashionConfig(dir, arch: Self.smallMLP, limit: 100, batch: 10, epochs: 1)
        for bad in ["../escaped", dir.path("abs").path, ".."] {
            let r = try ferry(["train", config.path, "--run-id", bad], in: dir.url)
            #expect(r.status == 2, "\(bad): \(r.stderr)")
            #expect(r.stderr.contains("a run id is one folder name"), "\(bad): \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["quick.json"], "nothing written")
    }

    /// The hint `ferry new` prints can be pasted into a shell whatever the folder's name.
    @Test func newQuotesItsHint() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let r = try ferry(["new", "my job"], in: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Next: cd 'my job' && ferry train"), "\(r.stdout)")
    }

    @Test func newScaffoldsAJobFolder() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let r = try ferry(["new", "myjob"], in: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        let job = dir.path("myjob")
        for file in ["config/config.json", "config/mnist_lenet.json", "data/README.md", "README.md", ".ferryignore"] {
            #expect(FileManager.default.fileExists(atPath: job.appendingPathComponent(file).path), "\(file)")
        }
        #expect(try String(contentsOf: job.appendingPathComponent(".ferryignore"), encoding: .utf8).contains("saved/"))
        let config = try JSONParser.parse(try Data(contentsOf: job.appendingPathComponent("config/config.json")))
        #expect(config["name"] == .string("myjob") && config["arch"]?["type"] == .string("Sequential"))
        if fashionOrCI {
            for file in ["config/config.json", "config/mnist_lenet.json"] {
                let check = try ferry(["train", "--check", file], in: job)
                #expect(check.status == 0, "\(file): \(check.stderr)")
            }
        }
        let again = try ferry(["new", "myjob"], in: dir.url)
        #expect(again.status == 2 && again.stderr == "myjob exists already and is not empty — choose another name or remove it\n")
    }
}
