import Data
import NN
import Optim
import TensorCore

/// From a config's type names to constructors — the Swift face of pytorch-template's
/// `config.init_obj`. `ComponentRegistry.standard` holds the built-ins; add your own with `register`.
/// Every entry declares its arguments (PyTorch's names, kinds, defaults) so a config is checked
/// completely before anything is built.
public struct ComponentRegistry: Sendable {
    public var layers: [String: LayerType] = [:]
    public var models: [String: ModelType] = [:]
    public var dataLoaders: [String: DataLoaderType] = [:]
    public var optimizers: [String: OptimizerType] = [:]
    public var schedulers: [String: SchedulerType] = [:]
    public var losses: [String: LossType] = [:]
    public var metrics: [String: MetricType] = [:]

    public init() {}

    /// The built-ins: pytorch-template's names (`MnistModel`, `MnistDataLoader`, `nll_loss`,
    /// `accuracy`, `top_k_acc`), ferry's (`MLP`, `CNN`, `Sequential`, `FashionMnistDataLoader`)
    /// and PyTorch's layers, optimizers and schedulers.
    public static let standard: ComponentRegistry = {
        var r = ComponentRegistry()
        for l in ComponentRegistry.builtinLayers { r.register(l) }
        for m in ComponentRegistry.builtinModels { r.register(m) }
        for d in ComponentRegistry.builtinDataLoaders { r.register(d) }
        for o in ComponentRegistry.builtinOptimizers { r.register(o) }
        for s in ComponentRegistry.builtinSchedulers { r.register(s) }
        for l in ComponentRegistry.builtinLosses { r.register(l) }
        for m in ComponentRegistry.builtinMetrics { r.register(m) }
        return r
    }()

    public mutating func register(_ t: LayerType) { layers[t.name] = t }
    public mutating func register(_ t: ModelType) { models[t.name] = t }
    public mutating func register(_ t: DataLoaderType) { dataLoaders[t.name] = t }
    public mutating func register(_ t: OptimizerType) { optimizers[t.name] = t }
    public mutating func register(_ t: SchedulerType) { schedulers[t.name] = t }
    public mutating func register(_ t: LossType) { losses[t.name] = t }
    public mutating func register(_ t: MetricType) { metrics[t.name] = t }
}

/// Why an input shape does not fit a layer.
public typealias ShapeProblem = LayerShapeError

/// A layer usable in a declared layer list (`{"type": "Conv2d", "args": {...}}`).
public struct LayerType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    /// The output shape for an input shape (both batch first, the batch as -1), or why the input
    /// does not fit; `source` names where the input comes from (`layers[6]`, `the input`).
    public let outputShape: @Sendable (_ args: Args, _ input: [Int], _ source: String) -> Result<[Int], ShapeProblem>
    /// The values the layer holds (parameters and running statistics; nil when the count overflows)
    /// and the argument to blame when they are too many; nil for layers that hold none.
    public let parameters: (@Sendable (_ args: Args) -> (count: Int?, blame: String))?
    public let build: @Sendable (Args) -> any Module

    public init(name: String, args: [ArgSpec],
                outputShape: @escaping @Sendable (Args, [Int], String) -> Result<[Int], ShapeProblem>,
                parameters: (@Sendable (Args) -> (count: Int?, blame: String))? = nil,
                build: @escaping @Sendable (Args) -> any Module) {
        self.name = name; self.args = args; self.outputShape = outputShape; self.parameters = parameters; self.build = build
    }
}

/// What a model check needs: where to report, the registry (for nested layers) and the data.
public struct ModelContext {
    public let reader: ConfigReader
    /// The path of the `arch` section.
    public let path: ConfigPath
    public let registry: ComponentRegistry
    /// The shape of one batch from the data loader, batch first as -1 (`[-1, 1, 28, 28]`).
    public let input: [Int]
    let tally = ModelTally()

    /// Says how many bytes the model's values take (parameters and running statistics, float32),
    /// counted without building it: what `ferry launch` asks the host's preflight to fit.
    public func noteModelBytes(_ bytes: Int) { tally.bytes = bytes }
}

/// What a model's check counted (set once, read after the check).
final class ModelTally {
    var bytes: Int?
}

/// A model architecture (`arch.type`).
public struct ModelType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    /// Checks the arguments against the input and returns the output shape (batch first), or nil
    /// after recording issues on the context's reader.
    public let check: @Sendable (Args, ModelContext) -> [Int]?
    /// Builds the model; called only after `check` passed.
    public let build: @Sendable (Args, _ input: [Int], ComponentRegistry) -> any Module

    public init(name: String, args: [ArgSpec], check: @escaping @Sendable (Args, ModelContext) -> [Int]?,
                build: @escaping @Sendable (Args, [Int], ComponentRegistry) -> any Module) {
        self.name = name; self.args = args; self.check = check; self.build = build
    }
}

/// Which part of a dataset a loader serves.
public enum DataSplit: String, Sendable {
    case train, test
}

/// What a data loader type knows about its data before loading it.
public struct DatasetFacts: Sendable, Equatable {
    /// One sample's shape, e.g. `[1, 28, 28]`.
    public var sampleShape: [Int]
    public var classes: Int
    public var trainCount: Int
    public var testCount: Int
    public init(sampleShape: [Int], classes: Int, trainCount: Int, testCount: Int) {
        self.sampleShape = sampleShape; self.classes = classes; self.trainCount = trainCount; self.testCount = testCount
    }
}

/// A data loader (`data_loader.type`): a dataset plus pytorch-template's loader arguments
/// (`batch_size`, `shuffle`, `validation_split`, `num_workers`, ...). The trainer does the
/// splitting and batching; the type says what data it serves and loads it.
public struct DataLoaderType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    public let facts: @Sendable (Args) -> DatasetFacts
    /// Cheap checks before any work (files present); issues are recorded on the reader.
    public let check: @Sendable (Args, DataSplit, ConfigReader, ConfigPath) -> Void
    public let load: @Sendable (Args, DataSplit) throws -> AnyDataset
    /// The files or folders `load` reads on the machine that trains (a runner sends or checks
    /// them); by default the `data_dir` argument, when there is one.
    public let dataPaths: @Sendable (Args, DataSplit) -> [String]

    public init(name: String, args: [ArgSpec], facts: @escaping @Sendable (Args) -> DatasetFacts,
                check: @escaping @Sendable (Args, DataSplit, ConfigReader, ConfigPath) -> Void,
                load: @escaping @Sendable (Args, DataSplit) throws -> AnyDataset,
                dataPaths: @escaping @Sendable (Args, DataSplit) -> [String] = DataLoaderType.dataDirectory) {
        self.name = name; self.args = args; self.facts = facts; self.check = check; self.load = load; self.dataPaths = dataPaths
    }

    /// `[data_dir]` when the arguments name a non-empty one, else nothing.
    public static let dataDirectory: @Sendable (Args, DataSplit) -> [String] = { args, _ in
        args["data_dir"]?.stringValue.flatMap { $0.isEmpty ? nil : [$0] } ?? []
    }
}

/// An optimizer (`optimizer.type`).
public struct OptimizerType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    /// Checks between arguments (e.g. Nesterov needs momentum), after each was checked alone.
    public let check: @Sendable (Args, ConfigReader, ConfigPath) -> Void
    public let build: @Sendable (Args, [Tensor]) -> any Optimizer

    public init(name: String, args: [ArgSpec], check: @escaping @Sendable (Args, ConfigReader, ConfigPath) -> Void = { _, _, _ in },
                build: @escaping @Sendable (Args, [Tensor]) -> any Optimizer) {
        self.name = name; self.args = args; self.check = check; self.build = build
    }
}

/// A learning-rate scheduler (`lr_scheduler.type`).
public struct SchedulerType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    /// Whether it steps on a monitored metric (`ReduceLROnPlateau`) rather than on its own.
    public let needsMetric: Bool
    public let check: @Sendable (Args, ConfigReader, ConfigPath, ComponentRegistry) -> Void
    public let build: @Sendable (Args, any Optimizer, ComponentRegistry) -> any LRScheduler

    public init(name: String, args: [ArgSpec], needsMetric: Bool = false,
                check: @escaping @Sendable (Args, ConfigReader, ConfigPath, ComponentRegistry) -> Void = { _, _, _, _ in },
                build: @escaping @Sendable (Args, any Optimizer, ComponentRegistry) -> any LRScheduler) {
        self.name = name; self.args = args; self.needsMetric = needsMetric; self.check = check; self.build = build
    }
}

/// A loss (`loss`, by name or `{type, args}`): model output and int64 class targets to a scalar.
public struct LossType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    /// Checks against the number of classes the model gives.
    public let check: @Sendable (Args, _ classes: Int, ConfigReader, ConfigPath) -> Void
    public let build: @Sendable (Args) -> any Loss

    public init(name: String, args: [ArgSpec], check: @escaping @Sendable (Args, Int, ConfigReader, ConfigPath) -> Void = { _, _, _, _ in },
                build: @escaping @Sendable (Args) -> any Loss) {
        self.name = name; self.args = args; self.check = check; self.build = build
    }
}

/// A metric (`metrics`, by name or `{type, args}`).
public struct MetricType: Sendable {
    public let name: String
    public let args: [ArgSpec]
    public let check: @Sendable (Args, _ classes: Int, ConfigReader, ConfigPath) -> Void
    public let build: @Sendable (Args) -> any Metric

    public init(name: String, args: [ArgSpec], check: @escaping @Sendable (Args, Int, ConfigReader, ConfigPath) -> Void = { _, _, _, _ in },
                build: @escaping @Sendable (Args) -> any Metric) {
        self.name = name; self.args = args; self.check = check; self.build = build
    }
}

/// Shapes as people read them: without the batch dimension.
func showShape(_ shape: [Int]) -> String { LayerShapes.describe(shape) }
