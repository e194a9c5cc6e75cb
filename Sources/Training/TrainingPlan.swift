import Foundation
import NN
import Optim
import TensorCore

/// A checked config resolved once: the registry's constructors for every part (not type names),
/// the data sizes after `limit` and `validation_split`, and the checkpoint policy. The checker
/// makes it; the trainer builds from it without looking anything up or computing a size again.
public struct TrainingPlan: Sendable {
    /// The checked settings (what the run folder's `config.json` and messages are made of).
    public let config: TrainConfig
    /// For parts that hold others (layers in a `Sequential`, the scheduler after a warm-up).
    public let registry: ComponentRegistry
    public let model: ModelType
    public let data: DataLoaderType
    /// The part of the dataset the loader serves (`data_loader.args.training`, or `ferry test`'s).
    public let dataSplit: DataSplit
    public let optimizer: OptimizerType
    public let loss: LossType
    public let metrics: [MetricType]
    public let scheduler: SchedulerType?
    public let checkpoints: CheckpointPolicy
    /// The bytes of the model's values at float32 (parameters and BatchNorm's running statistics),
    /// counted by the check without building anything; nil for a registered model that does not
    /// say (`ModelContext.noteModelBytes`). `ferry launch` sends it to the host's preflight.
    public let modelBytes: Int?

    /// Samples trained on and validated on (after `limit` and `validation_split`).
    public var trainCount: Int { config.trainCount }
    public var validationCount: Int { config.validationCount }
    /// At most this many samples are read: `limit`, or all the split has.
    public var sampleCount: Int { trainCount + validationCount }
    /// One batch's shape, batch first as -1 (`[-1, 1, 28, 28]`).
    public var inputShape: [Int] { [-1] + config.facts.sampleShape }

    /// What `ferry train --check` says of a good config:
    /// `config.json: ok — CNN on FashionMnistDataLoader (90 training / 10 validation samples), Adam, 2 epochs`.
    public var summary: String {
        let c = config
        let parts = c.validationCount > 0 ? "\(c.trainCount) training / \(c.validationCount) validation samples" : "\(c.trainCount) training samples"
        return "\(c.file): ok — \(c.arch.type) on \(c.dataLoader.type) (\(parts)), \(c.optimizer.type), \(c.trainer.epochs) epochs"
    }

    /// The files or folders the data loader reads on the machine that trains.
    public var dataPaths: [String] { data.dataPaths(config.dataLoader.args, dataSplit) }

    // MARK: - Building

    /// A fresh model (its weights drawn from the current generator).
    public func buildModel() -> any Module { model.build(config.arch.args, inputShape, registry) }

    /// The bytes of the built model's parameters (what `model.safetensors` holds, less its header and
    /// buffers). Builds the model on a generator of its own, so the caller's random numbers are not
    /// disturbed; `modelBytes` counts without building.
    public func parameterBytes() -> Int {
        GlobalRandom.withSeed(0) {
            buildModel().parameters().reduce(0) { $0 + $1.numel * $1.dtype.byteSize }
        }
    }

    public func buildOptimizer(for model: any Module) -> any Optimizer { optimizer.build(config.optimizer.args, model.parameters()) }

    public func buildScheduler(for optimizer: any Optimizer) -> (any LRScheduler)? {
        guard let scheduler, let args = config.lrScheduler?.args else { return nil }
        return scheduler.build(args, optimizer, registry)
    }

    func buildScorer() -> Scorer {
        Scorer(loss: loss.build(config.loss.args), metrics: zip(metrics, config.metrics).map { type, m in type.build(m.args) })
    }

    // MARK: - Checking

    /// Checks a parsed config (overrides already applied); every issue is reported at once.
    static func make(_ json: JSONValue, file: String, registry: ComponentRegistry = .standard,
                     split: DataSplit = .train, requireData: Bool = true) throws -> TrainingPlan {
        let reader = ConfigReader()
        guard let root = json.objectValue else {
            throw TrainingError.invalidConfig(file: file, issues: [ConfigIssue(path: ConfigPath(), message: "expected a JSON object like {\"name\": ..., \"arch\": ...}, got \(ConfigReader.show(json))")])
        }
        let checker = ConfigChecker(root: root, reader: reader, registry: registry, split: split, requireData: requireData)
        if let plan = checker.run(file: file), reader.issues.isEmpty { return plan }
        throw TrainingError.invalidConfig(file: file, issues: reader.issues)
    }

    /// Applies overrides to a parsed config and checks it.
    static func make(_ original: JSONValue, file: String, overrides: [ConfigOverride], registry: ComponentRegistry = .standard,
                     split: DataSplit = .train, requireData: Bool = true) throws -> TrainingPlan {
        var json = original
        for o in overrides { try o.apply(to: &json, registry: registry) }
        return try make(json, file: file, registry: registry, split: split, requireData: requireData)
    }

    /// Reads, overrides and checks a config file.
    static func load(file: String, overrides: [ConfigOverride] = [], registry: ComponentRegistry = .standard,
                     split: DataSplit = .train, requireData: Bool = true) throws -> TrainingPlan {
        try make(try TrainConfig.readJSON(file: file), file: file, overrides: overrides, registry: registry, split: split,
                 requireData: requireData)
    }

    /// What `check(configFile:)` found.
    public struct CheckResult: Sendable {
        /// The plan, when the config is good.
        public var plan: TrainingPlan?
        /// Why the config cannot run (unreadable, not JSON, a bad override, issues by JSON path).
        public var error: TrainingError?
        /// Worth saying, not stopping the run (data files missing here are warnings).
        public var warnings: [ConfigIssue]

        /// The lines `ferry train --check` writes to stderr, each without its newline: the warnings
        /// (`warning: config.json: …`), then the error's lines.
        public var messages: [String] {
            var lines = plan.map { p in warnings.map { "warning: \(p.config.file): \($0)" } } ?? []
            if let error { lines += error.description.split(separator: "\n").map(String.init) }
            return lines
        }
    }

    /// `ferry train --check` in process: reads the file, applies the overrides and checks
    /// everything without loading or building; data files missing on this machine are warnings
    /// (the data lives on the host). The plan gives the summary line, the data paths the job reads
    /// and the model's parameter bytes.
    public static func check(configFile: String, overrides: [ConfigOverride] = [],
                             registry: ComponentRegistry = .standard) -> CheckResult {
        do {
            let plan = try load(file: configFile, overrides: overrides, registry: registry, requireData: false)
            return CheckResult(plan: plan, error: nil, warnings: plan.config.warnings)
        } catch let error as TrainingError {
            return CheckResult(plan: nil, error: error, warnings: [])
        } catch {
            return CheckResult(plan: nil, error: .configUnreadable(file: configFile, reason: "\(error)"), warnings: [])
        }
    }
}
