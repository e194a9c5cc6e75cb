import Foundation
import System
import NN
import Optim
import TensorCore

/// Everything besides the weights that a run needs to continue exactly where it stopped. Saved as
/// `train_state.safetensors` beside `model.safetensors` (plain tensors, so any safetensors reader
/// can inspect it): `optimizer.*` (the optimizer's state dict), `scheduler.*`, `rng.state`, `rng.cuda_state`,
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
    /// The device generator's seed and offset (`GlobalRandom.deviceState`): dropout on a CUDA device
    /// draws from it. nil in checkpoints written before it was saved.
    public var deviceRNG: PhiloxState?
    /// The training sums of the epoch in progress.
    public var partial = MetricTotals()
    /// The `epoch-N/` checkpoints kept for `save_top_k`, best first.
    public var topK: [TopKEntry] = []

    public struct TopKEntry: Sendable, Equatable, Codable {
        public var epoch: Int
        public var score: Double
        public init(epoch: Int, score: Double) { self.epoch = epoch; self.score = score }
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
        if let d = s.deviceRNG { t["rng.cuda_state"] = Tensor(shape: [2], scalars: [Int64(bitPattern: d.seed), Int64(bitPattern: d.offset)]) }
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

    /// The largest count a train state may hold: far beyond any run, small enough that adding to it
    /// never overflows and that JSON and Double carry it exactly.
    static let maxCount = 1 << 53

    /// Scheduler state entries that are counts (the rest are rates and metric values).
    static let schedulerCounters: Set<String> = ["last_epoch", "warmup_step", "num_bad_epochs", "cooldown_counter"]

    /// Reads and checks a train state: every value the trainer uses as a scalar must be one, counts
    /// must be whole numbers in 0...maxCount, so a damaged file is an error naming its field, not a trap.
    static func decodeState(_ url: URL) throws -> LoadedState {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw TrainingError.checkpoint(path: url.path, reason: "cannot read the train state: \(error.localizedDescription)")
        }
        return try decodeState(data, path: url.path)
    }

    /// `decodeState` of a file's bytes; `path` names the file in errors.
    static func decodeState(_ data: Data, path: String) throws -> LoadedState {
        let (tensors, metadata): ([String: Tensor], [String: String])
        do { (tensors, metadata) = try SafeTensors.decode(data, name: path) } catch {
            throw TrainingError.checkpoint(path: path, reason: "cannot read the train state: \(error)")
        }
        guard metadata["ferry_train_state"] != nil, tensors["progress.seed"] != nil, tensors["progress.epoch"] != nil else {
            throw TrainingError.checkpoint(path: path, reason: "not a ferry train state (no progress.epoch / progress.seed) — pass a checkpoint folder written by `ferry train`")
        }
        func damaged(_ key: String, _ problem: String) -> TrainingError {
            .checkpoint(path: path, reason: "\(key) \(problem) — the checkpoint is damaged; resume from another checkpoint or start afresh")
        }
        func scalar(_ t: Tensor, _ key: String) throws -> Double {
            guard t.numel == 1 else { throw damaged(key, "has shape \(t.shape), expected a scalar") }
            return t.item()
        }
        func count(_ t: Tensor, _ key: String, max: Int = maxCount) throws -> Int {
            guard t.numel == 1 else { throw damaged(key, "has shape \(t.shape), expected a scalar") }
            // int64 exactly (a Double would round big values); floats only when whole.
            let value: Int64
            if t.dtype == .int64 {
                value = t.scalars(as: Int64.self)[0]
            } else {
                let d = t.item()
                guard d.rounded() == d, abs(d) <= Double(maxCount) else { throw damaged(key, "is \(d), expected a whole number 0...\(max)") }
                value = Int64(d)
            }
            guard value >= 0, value <= Int64(max) else { throw damaged(key, "is \(value), expected 0...\(max)") }
            return Int(value)
        }
        func count(_ key: String, max: Int = maxCount) throws -> Int { try tensors[key].map { try count($0, key, max: max) } ?? 0 }
        func number(_ key: String) throws -> Double? { try tensors[key].map { try scalar($0, key) } }

        // The seed is a UInt64 stored as int64's bit pattern: every value is one (the trainer checks its own range).
        guard let seedT = tensors["progress.seed"], seedT.numel == 1 else {
            throw damaged("progress.seed", "has shape \(tensors["progress.seed"]?.shape ?? []), expected a scalar")
        }
        var s = TrainState(seed: UInt64(bitPattern: seedT.scalars(as: Int64.self)[0]), monitorBest: try number("monitor.best") ?? .infinity)
        if s.monitorBest.isNaN { throw damaged("monitor.best", "is nan, expected a metric value") }
        s.epoch = try count("progress.epoch")
        s.globalStep = try count("progress.global_step")
        s.batchInEpoch = try count("progress.batch_in_epoch")
        s.bestEpoch = try count("monitor.best_epoch")
        s.notImproved = try count("early_stop.counter")
        if let r = tensors["rng.state"] { s.rng = r.scalars(as: Int64.self).map { UInt64(bitPattern: $0) } }
        if let r = tensors["rng.cuda_state"] {
            guard r.dtype == .int64, r.numel == 2 else { throw damaged("rng.cuda_state", "has shape \(r.shape) and dtype \(r.dtype), expected two int64 words (seed, offset)") }
            let w = r.scalars(as: Int64.self).map { UInt64(bitPattern: $0) }
            s.deviceRNG = PhiloxState(seed: w[0], offset: w[1])
        }
        s.partial.samples = try count("partial.samples")
        s.partial.lossSum = try number("partial.loss_sum") ?? 0
        var optimizer: [String: Tensor] = [:]
        var scheduler: [String: Double] = [:]
        for (k, v) in tensors.sorted(by: { $0.key < $1.key }) {
            let last = k.split(separator: ".").last.map(String.init) ?? k
            if k.hasPrefix("optimizer.") {
                // The optimizer checks its own state; step counts and rates are checked here too, to name the file's field.
                if last == "step" { _ = try count(v, k) }
                if last == "lr" || last == "initial_lr" {
                    let lr = try scalar(v, k)
                    guard lr >= 0, lr.isFinite else { throw damaged(k, "is \(lr), expected a learning rate >= 0") }
                }
                optimizer[String(k.dropFirst(10))] = v
            }
            if k.hasPrefix("scheduler.") {
                if schedulerCounters.contains(last) {
                    scheduler[String(k.dropFirst(10))] = Double(try count(v, k))
                } else {
                    let value = try scalar(v, k)
                    if value.isNaN { throw damaged(k, "is nan") }
                    scheduler[String(k.dropFirst(10))] = value
                }
            }
            if k.hasPrefix("partial.metric.") { s.partial.sums[String(k.dropFirst(15))] = try scalar(v, k) }
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
