import Foundation
import System
import NN
import Optim
import TensorCore

/// Everything besides the weights that a run needs to continue exactly where it stopped. Saved as
/// `train_state.safetensors` beside `model.safetensors` (plain tensors, so any safetensors reader
/// can inspect it): `optimizer.*` (the optimizer's state dict), `scheduler.*`, `rng.state`,
/// `progress.*`, `monitor.best`, `early_stop.counter`, `partial.*` (sums of the epoch in progress).
public struct TrainState: Sendable, Equatable {
    /// Epochs completed.
    public var epoch = 0
    /// Optimizer steps taken.
    public var globalStep = 0
    /// Batches of epoch `epoch + 1` already trained (0 at an epoch boundary; a stop mid-epoch saves more).
    public var batchInEpoch = 0
    public var monitorBest: Double
    /// Epochs since the monitored metric last improved (early stopping counts these).
    public var notImproved = 0
    /// The epoch whose checkpoint is `best/` (0 when none).
    public var bestEpoch = 0
    /// The seed of the data order and of the global generator at the start.
    public var seed: UInt64
    /// The global generator's state; nil when the run drew from a scoped generator.
    public var rng: [UInt64]?
    /// The training sums of the epoch in progress.
    public var partial = MetricTotals()
    /// The `epoch-N/` checkpoints kept for `save_top_k`, best first.
    public var topK: [TopKEntry] = []

    public struct TopKEntry: Sendable, Equatable, Codable {
        public var epoch: Int
        public var score: Double
    }

    public init(seed: UInt64, monitorBest: Double) {
        self.seed = seed
        self.monitorBest = monitorBest
    }
}

/// Reads and writes checkpoint folders: `model.safetensors` (PyTorch key names,
/// `{"format": "pt"}`) and `train_state.safetensors`. A folder is written under a temporary name
/// and swapped in whole, so a crash leaves either the old checkpoint or the new one, never a mix.
public enum Checkpoint {
    public static let modelFile = "model.safetensors"
    public static let stateFile = "train_state.safetensors"

    /// The train state and the optimizer's and scheduler's as safetensors bytes.
    static func encodeState(_ s: TrainState, optimizer: any Optimizer, optimizerType: String,
                            scheduler: (any LRScheduler)?, schedulerType: String?, monitor: Monitor) -> Data {
        var t: [String: Tensor] = [:]
        for (k, v) in optimizer.stateDict() { t["optimizer." + k] = v }
        if let scheduler {
            for (k, v) in scheduler.stateDict() { t["scheduler." + k] = Tensor.full([], value: v, dtype: .float64) }
        }
        func int(_ v: Int64) -> Tensor { Tensor(shape: [], scalars: [v]) }
        func double(_ v: Double) -> Tensor { Tensor.full([], value: v, dtype: .float64) }
        if let rng = s.rng { t["rng.state"] = Tensor(shape: [rng.count], scalars: rng.map { Int64(bitPattern: $0) }) }
        t["progress.epoch"] = int(Int64(s.epoch))
        t["progress.global_step"] = int(Int64(s.globalStep))
        t["progress.batch_in_epoch"] = int(Int64(s.batchInEpoch))
        t["progress.seed"] = int(Int64(bitPattern: s.seed))
        t["monitor.best"] = double(s.monitorBest)
        t["monitor.best_epoch"] = int(Int64(s.bestEpoch))
        t["early_stop.counter"] = int(Int64(s.notImproved))
        t["partial.samples"] = int(Int64(s.partial.samples))
        t["partial.loss_sum"] = double(s.partial.lossSum)
        for (k, v) in s.partial.sums { t["partial.metric." + k] = double(v) }
        let topK = (try? JSONEncoder().encode(s.topK)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        let metadata = ["format": "pt", "ferry_train_state": "1", "optimizer": optimizerType,
                        "lr_scheduler": schedulerType ?? "", "monitor": monitor.description, "top_k": topK]
        return SafeTensors.encode(t, metadata: metadata)
    }

    /// A saved train state, split into its parts.
    struct LoadedState {
        var state: TrainState
        var optimizer: [String: Tensor]
        var scheduler: [String: Double]
        var optimizerType: String
        var schedulerType: String
    }

    static func decodeState(_ url: URL) throws -> LoadedState {
        let (tensors, metadata): ([String: Tensor], [String: String])
        do { (tensors, metadata) = try SafeTensors.readWithMetadata(url) } catch {
            throw TrainingError.checkpoint(path: url.path, reason: "cannot read the train state: \(error)")
        }
        guard metadata["ferry_train_state"] != nil, let seedT = tensors["progress.seed"], let epochT = tensors["progress.epoch"] else {
            throw TrainingError.checkpoint(path: url.path, reason: "not a ferry train state (no progress.epoch / progress.seed) — pass a checkpoint folder written by `ferry train`")
        }
        func int(_ key: String) -> Int { tensors[key].map { Int($0.scalars(as: Int64.self).first ?? 0) } ?? 0 }
        var s = TrainState(seed: UInt64(bitPattern: seedT.scalars(as: Int64.self).first ?? 0), monitorBest: tensors["monitor.best"]?.item() ?? .infinity)
        s.epoch = Int(epochT.scalars(as: Int64.self).first ?? 0)
        s.globalStep = int("progress.global_step")
        s.batchInEpoch = int("progress.batch_in_epoch")
        s.bestEpoch = int("monitor.best_epoch")
        s.notImproved = int("early_stop.counter")
        if let r = tensors["rng.state"] { s.rng = r.scalars(as: Int64.self).map { UInt64(bitPattern: $0) } }
        s.partial.samples = int("partial.samples")
        s.partial.lossSum = tensors["partial.loss_sum"]?.item() ?? 0
        var optimizer: [String: Tensor] = [:]
        var scheduler: [String: Double] = [:]
        for (k, v) in tensors {
            if k.hasPrefix("optimizer.") { optimizer[String(k.dropFirst(10))] = v }
            if k.hasPrefix("scheduler.") { scheduler[String(k.dropFirst(10))] = v.item() }
            if k.hasPrefix("partial.metric.") { s.partial.sums[String(k.dropFirst(15))] = v.item() }
        }
        if let data = metadata["top_k"]?.data(using: .utf8), let topK = try? JSONDecoder().decode([TrainState.TopKEntry].self, from: data) {
            s.topK = topK
        }
        return LoadedState(state: s, optimizer: optimizer, scheduler: scheduler, optimizerType: metadata["optimizer"] ?? "",
                           schedulerType: metadata["lr_scheduler"] ?? "")
    }

    /// Writes `files` into `directory`, replacing what was there in one step (System's
    /// `AtomicFile.replaceDirectory`; `resolve` recovers a `.NAME.old-PID` left by a crash in between).
    static func write(_ files: [(String, Data)], to directory: URL) throws {
        do throws(SystemError) {
            try AtomicFile.replaceDirectory(directory.path, with: files.map { (name: $0.0, data: $0.1) })
        } catch {
            throw TrainingError.io(path: error.path ?? directory.path, reason: error.detail)
        }
    }

    /// The checkpoint folder at `url`; if a crash interrupted a swap (`.NAME.old-PID` left and
    /// `NAME` gone), the previous checkpoint is put back first.
    public static func resolve(_ url: URL) -> URL {
        let fm = FileManager.default
        if fm.fileExists(atPath: url.appendingPathComponent(stateFile).path) { return url }
        let parent = url.deletingLastPathComponent()
        let prefix = ".\(url.lastPathComponent).old-"
        if let leftovers = try? fm.contentsOfDirectory(atPath: parent.path),
           let old = leftovers.filter({ $0.hasPrefix(prefix) }).sorted().last {
            let oldURL = parent.appendingPathComponent(old)
            if fm.fileExists(atPath: oldURL.appendingPathComponent(stateFile).path), rename(oldURL.path, url.path) == 0 { return url }
        }
        return url
    }

    /// Whether `url` holds a complete checkpoint.
    public static func isComplete(_ url: URL) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: url.appendingPathComponent(modelFile).path) && fm.fileExists(atPath: url.appendingPathComponent(stateFile).path)
    }

    /// The model weights of a checkpoint folder (or a `model.safetensors` file).
    public static func readModel(_ url: URL) throws -> [String: Tensor] {
        var file = url
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue { file = url.appendingPathComponent(modelFile) }
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw TrainingError.checkpoint(path: url.path, reason: "no \(modelFile) there — pass a checkpoint folder such as saved/NAME/RUNID/checkpoints/best")
        }
        do { return try SafeTensors.read(file) } catch {
            throw TrainingError.checkpoint(path: file.path, reason: "cannot read the weights: \(error)")
        }
    }
}
