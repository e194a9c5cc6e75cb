import Data
import RunContract
import Foundation

/// A registered type named in a config, with its checked arguments.
public struct Component: Sendable, Equatable {
    public let type: String
    public let args: Args
}

/// What `trainer.monitor` watches: `"min val_loss"`, `"max val_accuracy"` or `"off"`.
public enum Monitor: Sendable, Equatable, CustomStringConvertible {
    case off
    case min(String)
    case max(String)

    public var metric: String? {
        switch self {
        case .off: return nil
        case .min(let m), .max(let m): return m
        }
    }

    /// The watched metric and its direction, as the events write it; nil when off.
    public var monitored: RunEvent.Monitored? {
        switch self {
        case .off: return nil
        case .min(let m): return RunEvent.Monitored(lowerIsBetter: true, metric: m)
        case .max(let m): return RunEvent.Monitored(lowerIsBetter: false, metric: m)
        }
    }

    /// Whether `value` is at least as good as `best` (pytorch-template counts ties as improvements).
    public func improves(_ value: Double, on best: Double) -> Bool { monitored?.improves(value, on: best) ?? false }

    /// The starting "best": +∞ for min, −∞ for max.
    public var worst: Double {
        switch self {
        case .max: return -.infinity
        default: return .infinity
        }
    }

    public var description: String { monitored?.description ?? "off" }
}

/// `trainer.grad_clip`: a number is a maximum gradient norm.
public enum GradClipSetting: Sendable, Equatable {
    case norm(maxNorm: Double, normType: Double)
    case value(Double)
}

/// When the scheduler steps: after every epoch (pytorch-template) or after every optimizer step.
public enum SchedulerInterval: String, Sendable {
    case epoch, step
}

/// The `trainer` section.
public struct TrainerSettings: Sendable, Equatable {
    public var epochs: Int
    public var saveDir: String
    /// Write `epoch-N/` every this many epochs (0: never).
    public var savePeriod: Int
    public var verbosity: Int
    public var monitor: Monitor
    /// Stop after this many epochs without improvement (0: off).
    public var earlyStop: Int
    public var tensorboard: Bool
    /// Keep the `epoch-N/` checkpoints of the k best epochs by the monitored metric (0: off).
    public var saveTopK: Int
    public var saveLast: Bool
    public var gradClip: GradClipSetting?
    public var logEveryNSteps: Int
}

/// A checked training config: pytorch-template's schema plus ferry's additions. Made by
/// `TrainConfig.load`, which reports every problem with its JSON path before anything runs.
public struct TrainConfig: Sendable {
    /// The config file as the user named it (messages start with it).
    public let file: String
    /// The config after overrides; what the run directory's `config.json` holds.
    public var json: JSONObject
    public let name: String
    public let nGPU: Int
    public let seed: UInt64?
    public let arch: Component
    public let dataLoader: Component
    public let optimizer: Component
    public let loss: Component
    public let metrics: [Component]
    public let lrScheduler: Component?
    public let schedulerInterval: SchedulerInterval
    /// The metric a ReduceLROnPlateau steps on.
    public let schedulerMetric: String?
    public let trainer: TrainerSettings
    /// What the data loader serves (before `limit` and the validation split).
    public let facts: DatasetFacts
    /// Samples used for training and for validation after `limit` and `validation_split`.
    public let trainCount: Int
    public let validationCount: Int
    /// The model's output shape, batch first (`[-1, 10]`).
    public let modelOutput: [Int]
    /// Things worth saying that do not stop the run (unknown sections, settings without effect).
    public let warnings: [ConfigIssue]

    public var batchSize: Int { dataLoader.args.int("batch_size") }
    public var classes: Int { modelOutput.last ?? facts.classes }
    /// Metric names as logged (`accuracy`, `top_k_acc`).
    public var metricNames: [String] { metrics.map(\.type) }
    /// Every key an epoch logs: `loss`, the metrics, and their `val_` forms when there is validation.
    public var logKeys: [String] {
        let base = ["loss"] + metricNames
        return base + (validationCount > 0 ? base.map { "val_" + $0 } : [])
    }
}

extension TrainConfig {
    /// Reads, overrides and checks a config file. With `requireData` false, data files missing
    /// on this machine are warnings, not errors (`ferry train --check` runs on the laptop, the data
    /// lives on the host).
    public static func load(file: String, overrides: [ConfigOverride] = [], registry: ComponentRegistry = .standard,
                            split: DataSplit = .train, requireData: Bool = true) throws -> TrainConfig {
        try check(try readJSON(file: file), file: file, overrides: overrides, registry: registry, split: split, requireData: requireData)
    }

    /// A config file's JSON, or why it cannot be read.
    static func readJSON(file: String) throws -> JSONValue {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
            throw TrainingError.configUnreadable(file: file, reason: (error as NSError).localizedDescription)
        }
        do { return try JSONParser.parse(data) } catch {
            throw TrainingError.configSyntax(file: file, line: error.line, column: error.column, reason: error.reason)
        }
    }

    /// Overrides and checks a parsed config; every issue is reported at once.
    public static func check(_ original: JSONValue, file: String, overrides: [ConfigOverride] = [], registry: ComponentRegistry = .standard,
                             split: DataSplit = .train, requireData: Bool = true) throws -> TrainConfig {
        var json = original
        for o in overrides { try o.apply(to: &json, registry: registry) }
        return try TrainingPlan.make(json, file: file, registry: registry, split: split, requireData: requireData).config
    }
}

/// Walks the sections in dependency order: data (shapes, counts), model (output), loss and
/// metrics (classes), optimizer, scheduler and trainer (which keys exist to monitor).
struct ConfigChecker {
    let root: JSONObject
    let reader: ConfigReader
    let registry: ComponentRegistry
    let split: DataSplit
    var requireData = true

    static let topLevelKeys = ["name", "n_gpu", "seed", "arch", "data_loader", "optimizer", "loss", "metrics", "lr_scheduler", "trainer"]
    static let trainerKinds: [(String, ValueKind)] = [
        ("epochs", .integer(min: 1)), ("save_dir", .string), ("save_period", .integer(min: 0)), ("verbosity", .integer(min: 0, max: 2)),
        ("monitor", .custom("\"off\", or \"min\"/\"max\" and a logged metric, like \"min val_loss\"")), ("early_stop", .integer(min: 0)),
        ("tensorboard", .boolean), ("save_top_k", .integer(min: 0)), ("save_last", .boolean),
        ("grad_clip", .custom("a maximum gradient norm > 0, {\"max_norm\": …, \"norm_type\": …} or {\"clip_value\": …}")),
        ("log_every_n_steps", .integer(min: 1)),
    ]

    func value(_ v: JSONValue?, _ kind: ValueKind, at path: ConfigPath, default d: JSONValue? = nil) -> JSONValue? {
        guard let v, v != .null else {
            if d == nil { reader.fail(path, "missing: expected \(kind.phrase)") }
            return d
        }
        return reader.check(v, kind, at: path)
    }

    /// A `{"type": …, "args": {…}}` section.
    func section(_ key: String, what: String, known: [String], example: String) -> (String, JSONValue?)? {
        let path = ConfigPath([.key(key)])
        guard let v = root[key], v != .null else { reader.fail(path, "missing: expected {\"type\": \(example), \"args\": {...}}"); return nil }
        guard let o = v.objectValue else { reader.fail(path, "expected {\"type\": \(example), \"args\": {...}}, got \(ConfigReader.show(v))"); return nil }
        for k in o.keys where k != "type" && k != "args" && !(key == "lr_scheduler" && (k == "interval" || k == "monitor")) {
            reader.warn(path + k, "not a ferry setting; ignored")
        }
        guard let t = o["type"] else { reader.fail(path + "type", "missing: expected a \(what) name such as \(example)"); return nil }
        guard let name = t.stringValue else { reader.expected(path + "type", .string, got: t); return nil }
        guard known.contains(name) else {
            reader.unknownType(path + "type", what: what, name: name, known: known.sorted())
            return nil
        }
        return (name, o["args"])
    }

    func run(file: String) -> TrainingPlan? {
        for key in root.keys where !ConfigChecker.topLevelKeys.contains(key) {
            reader.warn(ConfigPath([.key(key)]), "not a ferry setting; ignored")
        }
        let nameValue = value(root["name"], .string, at: "name")
        let name = nameValue?.stringValue ?? ""
        if nameValue != nil && (name.isEmpty || name.contains("/") || name == "." || name == "..") {
            reader.fail("name", "expected a name usable as a folder (no \"/\"), got \(ConfigReader.show(.string(name)))")
        }
        let nGPU = value(root["n_gpu"], .integer(min: 0), at: "n_gpu", default: .int(0))?.intValue ?? 0
        let seedValue = value(root["seed"], .integer(min: 0), at: "seed", default: .null)
        let seed = seedValue?.intValue.map { UInt64($0) }

        // Data: what one batch looks like and how many samples each part gets.
        var facts: DatasetFacts?
        var dataComponent: Component?
        var dataEntry: DataLoaderType?
        var dataSplit = DataSplit.train
        var trainCount = 0, validationCount = 0
        if let (type, argsValue) = section("data_loader", what: "data_loader", known: Array(registry.dataLoaders.keys), example: "\"FashionMnistDataLoader\""),
           let entry = registry.dataLoaders[type] {
            // What the data looks like rarely depends on a bad batch size: check the model against it anyway.
            let (args, ok) = reader.argsAllowingIssues(of: type, entry.args, from: argsValue, at: "data_loader.args")
            let f = entry.facts(args)
            facts = f
            if let std = args["normalize"]?.arrayValue?.last?.number, std <= 0 {
                reader.fail("data_loader.args.normalize", "the standard deviation (the second number) must be > 0, got \(ConfigReader.show(args["normalize"] ?? .null))")
            }
            if ok && !reader.issues.contains(where: { $0.path.description.hasPrefix("data_loader") }) {
                dataComponent = Component(type: type, args: args)
                dataEntry = entry
                dataSplit = split == .test ? .test : (args["training"]?.boolValue == false ? .test : .train)
                if requireData {
                    entry.check(args, dataSplit, reader, "data_loader")
                } else {
                    let files = ConfigReader()
                    entry.check(args, dataSplit, files, "data_loader")
                    for issue in files.issues { reader.warn(issue.path, issue.message + " (here; the machine that trains needs it)") }
                }
                var available = dataSplit == .train ? f.trainCount : f.testCount
                if let limit = args.optionalInt("limit") { available = min(available, limit) }
                if split == .train {
                    (trainCount, validationCount) = checkValidationSplit(args["validation_split"] ?? .double(0), available: available)
                } else {
                    trainCount = available
                }
            }
        }

        // Model: its output must be one score per class.
        var modelOutput: [Int]?
        var arch: Component?
        var archEntry: ModelType?
        var modelBytes: Int?
        if let (type, argsValue) = section("arch", what: "arch", known: Array(registry.models.keys), example: "\"CNN\""),
           let entry = registry.models[type],
           let args = reader.args(of: type, entry.args, from: argsValue, at: "arch.args") {
            arch = Component(type: type, args: args)
            archEntry = entry
            if let facts {
                let context = ModelContext(reader: reader, path: "arch", registry: registry, input: [-1] + facts.sampleShape)
                let output = entry.check(args, context)
                modelBytes = context.tally.bytes
                if let out = output {
                    let where_: ConfigPath = type == "Sequential" ? "arch.args.layers" : "arch"
                    if out.count != 2 {
                        reader.fail(where_, "the model gives \(showShape(out)) per sample; the loss needs one score per class — end with Flatten and a Linear to \(facts.classes) outputs")
                    } else if out[1] < facts.classes {
                        reader.fail(where_, "the model gives \(out[1]) scores per sample; the data has \(facts.classes) classes")
                    } else {
                        modelOutput = out
                    }
                }
            }
        }
        let classes = modelOutput?.last ?? facts?.classes ?? 0

        let loss = checkLoss(classes: classes, known: modelOutput != nil)
        let metrics = checkMetrics(classes: classes, known: modelOutput != nil)

        var optimizer: Component?
        var optimizerEntry: OptimizerType?
        if let (type, argsValue) = section("optimizer", what: "optimizer", known: Array(registry.optimizers.keys), example: "\"Adam\""),
           let entry = registry.optimizers[type],
           let args = reader.args(of: type, entry.args, from: argsValue, at: "optimizer.args") {
            entry.check(args, reader, "optimizer")
            optimizer = Component(type: type, args: args)
            optimizerEntry = entry
        }

        let metricNames = metrics?.map(\.0.type) ?? []
        let base = ["loss"] + metricNames
        // Evaluating a checkpoint (`ferry test`) does not split off validation data, but the config
        // it trained with did: its monitor may name val_ keys.
        let hasValidation = validationCount > 0 || split == .test
        let logKeys = base + (hasValidation ? base.map { "val_" + $0 } : [])
        // Which keys exist depends on the metrics and the validation split; when those are wrong, the
        // monitor cannot be judged, and saying so would only repeat the first mistake.
        let logKeysKnown = metrics != nil && dataComponent != nil && !reader.issues.contains { $0.path.description.hasPrefix("data_loader") }
        let trainer = checkTrainer(logKeys: logKeys, logKeysKnown: logKeysKnown, batchSize: dataComponent?.args.int("batch_size") ?? 1,
                                   hasValidation: hasValidation)
        let (schedulerChecked, interval, schedulerMetric) = checkScheduler(logKeys: logKeys, monitor: trainer?.monitor ?? .off,
                                                                    hasValidation: hasValidation)

        guard reader.issues.isEmpty, let arch, let archEntry, let dataComponent, let dataEntry, let facts, let modelOutput,
              let optimizer, let optimizerEntry, let loss, let metrics, let trainer, let interval else { return nil }
        let config = TrainConfig(file: file, json: root, name: name, nGPU: nGPU, seed: seed, arch: arch, dataLoader: dataComponent,
                                 optimizer: optimizer, loss: loss.0, metrics: metrics.map(\.0), lrScheduler: schedulerChecked?.0,
                                 schedulerInterval: interval, schedulerMetric: schedulerMetric, trainer: trainer, facts: facts,
                                 trainCount: trainCount, validationCount: validationCount, modelOutput: modelOutput,
                                 warnings: reader.warnings)
        return TrainingPlan(config: config, registry: registry, model: archEntry, data: dataEntry, dataSplit: dataSplit,
                            optimizer: optimizerEntry, loss: loss.1, metrics: metrics.map(\.1), scheduler: schedulerChecked?.1,
                            checkpoints: CheckpointPolicy(trainer), modelBytes: modelBytes)
    }

    /// pytorch-template's rule: an integer is a number of samples, anything else a fraction.
    func checkValidationSplit(_ v: JSONValue, available: Int) -> (train: Int, validation: Int) {
        let path: ConfigPath = "data_loader.args.validation_split"
        var validation = 0
        switch v {
        case .int(let n):
            guard n >= 0, n < available else {
                reader.fail(path, "expected a number of samples below the \(available) available for training, got \(n)")
                return (available, 0)
            }
            validation = n
        case .double(let f):
            guard f >= 0, f < 1 else {
                reader.fail(path, "expected a fraction in [0, 1) or a number of samples, got \(ConfigReader.show(v))")
                return (available, 0)
            }
            validation = Int(Double(available) * f)
        default:
            reader.fail(path, "expected a fraction in [0, 1) or a number of samples, got \(ConfigReader.show(v))")
            return (available, 0)
        }
        if available - validation < 1 {
            reader.fail(path, "leaves no samples for training (\(available) available)")
        }
        return (available - validation, validation)
    }

    /// `"nll_loss"` or `{"type": "cross_entropy", "args": {...}}`.
    func checkLoss(classes: Int, known: Bool) -> (Component, LossType)? {
        let path: ConfigPath = "loss"
        guard let v = root["loss"], v != .null else { reader.fail(path, "missing: expected a loss name such as \"cross_entropy\""); return nil }
        var name: String?
        var argsValue: JSONValue?
        var namePath = path
        if let s = v.stringValue {
            name = s
        } else if let o = v.objectValue {
            namePath = path + "type"
            for k in o.keys where k != "type" && k != "args" { reader.warn(path + k, "not a ferry setting; ignored") }
            if let t = o["type"]?.stringValue { name = t } else { reader.fail(namePath, "missing: expected a loss name such as \"cross_entropy\"") }
            argsValue = o["args"]
        } else {
            reader.fail(path, "expected a loss name such as \"cross_entropy\" or {\"type\": …, \"args\": {…}}, got \(ConfigReader.show(v))")
        }
        guard let name else { return nil }
        guard let entry = registry.losses[name] else {
            reader.unknownType(namePath, what: "loss", name: name, known: registry.losses.keys.sorted())
            return nil
        }
        guard let args = reader.args(of: name, entry.args, from: argsValue, at: path + "args") else { return nil }
        if known { entry.check(args, classes, reader, path) }
        return (Component(type: name, args: args), entry)
    }

    /// `["accuracy", "top_k_acc"]`, items also `{"type": "top_k_acc", "args": {"k": 5}}`.
    func checkMetrics(classes: Int, known: Bool) -> [(Component, MetricType)]? {
        let path: ConfigPath = "metrics"
        guard let v = root["metrics"], v != .null else { return [] }
        guard let list = v.arrayValue else { reader.fail(path, "expected a list of metric names such as [\"accuracy\"], got \(ConfigReader.show(v))"); return nil }
        var out: [(Component, MetricType)] = []
        var seen: Set<String> = []
        var ok = true
        for (i, item) in list.enumerated() {
            var name: String?
            var argsValue: JSONValue?
            var namePath = path[i]
            if let s = item.stringValue {
                name = s
            } else if let o = item.objectValue {
                namePath = path[i] + "type"
                if let t = o["type"]?.stringValue { name = t } else { reader.fail(namePath, "missing: expected a metric name such as \"accuracy\"") }
                argsValue = o["args"]
            } else {
                reader.fail(path[i], "expected a metric name such as \"accuracy\", got \(ConfigReader.show(item))")
            }
            guard let name else { ok = false; continue }
            guard let entry = registry.metrics[name] else {
                reader.unknownType(namePath, what: "metric", name: name, known: registry.metrics.keys.sorted())
                ok = false; continue
            }
            guard let args = reader.args(of: name, entry.args, from: argsValue, at: path[i] + "args") else { ok = false; continue }
            if known { entry.check(args, classes, reader, path[i]) }
            if !seen.insert(name).inserted { reader.fail(path[i], "\"\(name)\" is listed twice"); ok = false; continue }
            out.append((Component(type: name, args: args), entry))
        }
        return ok ? out : nil
    }

    func checkTrainer(logKeys: [String], logKeysKnown: Bool, batchSize: Int, hasValidation: Bool) -> TrainerSettings? {
        let path: ConfigPath = "trainer"
        guard let v = root["trainer"], v != .null else { reader.fail(path, "missing: expected {\"epochs\": …, \"save_dir\": …, …}"); return nil }
        guard let t = v.objectValue else { reader.fail(path, "expected {\"epochs\": …, \"save_dir\": …, …}, got \(ConfigReader.show(v))"); return nil }
        let known = ConfigChecker.trainerKinds.map(\.0)
        for k in t.keys where !known.contains(k) { reader.warn(path + k, "not a ferry setting; ignored") }
        let before = reader.issues.count
        let epochs = value(t["epochs"], .integer(min: 1), at: path + "epochs")?.intValue ?? 1
        let saveDir = value(t["save_dir"], .string, at: path + "save_dir", default: .string("saved/"))?.stringValue ?? "saved/"
        let savePeriod = value(t["save_period"], .integer(min: 0), at: path + "save_period", default: .int(1))?.intValue ?? 1
        let verbosity = value(t["verbosity"], .integer(min: 0, max: 2), at: path + "verbosity", default: .int(2))?.intValue ?? 2
        let earlyStop = value(t["early_stop"], .integer(min: 0), at: path + "early_stop", default: .int(0))?.intValue ?? 0
        let tensorboard = value(t["tensorboard"], .boolean, at: path + "tensorboard", default: .bool(true))?.boolValue ?? true
        let saveTopK = value(t["save_top_k"], .integer(min: 0), at: path + "save_top_k", default: .int(0))?.intValue ?? 0
        let saveLast = value(t["save_last"], .boolean, at: path + "save_last", default: .bool(true))?.boolValue ?? true
        let defaultLogEvery = max(1, Int(Double(batchSize).squareRoot()))
        let logEvery = value(t["log_every_n_steps"], .integer(min: 1), at: path + "log_every_n_steps", default: .int(defaultLogEvery))?.intValue ?? defaultLogEvery

        var monitor = Monitor.off
        var monitorJudged = true
        if let m = t["monitor"], m != .null {
            let monitorPath = path + "monitor"
            if let s = m.stringValue {
                let parts = s.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                if parts == ["off"] {
                    monitor = .off
                } else if parts.count == 2, parts[0] == "min" || parts[0] == "max" {
                    if logKeys.contains(parts[1]) || !logKeysKnown {
                        monitorJudged = logKeysKnown
                        monitor = parts[0] == "min" ? .min(parts[1]) : .max(parts[1])
                    } else if parts[1].hasPrefix("val_") && !hasValidation && logKeys.contains(String(parts[1].dropFirst(4))) {
                        reader.fail(monitorPath, "\"\(s)\" needs validation data — set data_loader.args.validation_split, or monitor \"\(parts[0]) \(parts[1].dropFirst(4))\"")
                    } else {
                        reader.fail(monitorPath, "\"\(parts[1])\" is not logged; the epochs log \(logKeys.joined(separator: ", "))")
                        monitorJudged = false
                    }
                } else {
                    reader.fail(monitorPath, "expected \"off\", or \"min\"/\"max\" and a logged metric, like \"min val_loss\", got \(ConfigReader.show(m))")
                    monitorJudged = false
                }
            } else {
                reader.expected(monitorPath, .custom("\"off\", or \"min\"/\"max\" and a logged metric, like \"min val_loss\""), got: m)
                monitorJudged = false
            }
        }
        if monitor == .off && earlyStop > 0 && monitorJudged { reader.warn(path + "early_stop", "needs trainer.monitor to watch a metric; ignored") }
        if monitor == .off && saveTopK > 0 && monitorJudged {
            reader.fail(path + "save_top_k", "needs trainer.monitor to rank epochs, like \"min val_loss\"")
        }

        var gradClip: GradClipSetting?
        if let g = t["grad_clip"], g != .null {
            let gp = path + "grad_clip"
            if let n = g.number {
                if n > 0 && n.isFinite { gradClip = .norm(maxNorm: n, normType: 2) } else { reader.expected(gp, .number(.positive), got: g) }
            } else if let o = g.objectValue, o["clip_value"] != nil {
                if let a = reader.args(of: "grad_clip", [ArgSpec("clip_value", .number(.positive))], from: g, at: gp) {
                    gradClip = .value(a.double("clip_value"))
                }
            } else if g.objectValue != nil {
                if let a = reader.args(of: "grad_clip", [ArgSpec("max_norm", .number(.positive)),
                                                         ArgSpec("norm_type", .custom("a number > 0 or \"inf\""), default: .double(2))],
                                       from: g, at: gp) {
                    var normType = 2.0
                    switch a["norm_type"] {
                    case .string("inf")?: normType = .infinity
                    case let v? where (v.number ?? 0) > 0: normType = v.number ?? 2
                    case let v?: reader.expected(gp + "norm_type", .custom("a number > 0 or \"inf\""), got: v)
                    case nil: break
                    }
                    gradClip = .norm(maxNorm: a.double("max_norm"), normType: normType)
                }
            } else {
                reader.expected(gp, .custom("a maximum gradient norm > 0, {\"max_norm\": …, \"norm_type\": …} or {\"clip_value\": …}"), got: g)
            }
        }
        guard reader.issues.count == before else { return nil }
        return TrainerSettings(epochs: epochs, saveDir: saveDir, savePeriod: savePeriod, verbosity: verbosity, monitor: monitor,
                               earlyStop: earlyStop, tensorboard: tensorboard, saveTopK: saveTopK, saveLast: saveLast,
                               gradClip: gradClip, logEveryNSteps: logEvery)
    }

    func checkScheduler(logKeys: [String], monitor: Monitor, hasValidation: Bool) -> ((Component, SchedulerType)?, SchedulerInterval?, String?) {
        let path: ConfigPath = "lr_scheduler"
        guard let v = root["lr_scheduler"], v != .null else { return (nil, .epoch, nil) }
        let before = reader.issues.count
        let checked = ComponentRegistry.checkScheduler(v, at: path, reader: reader, registry: registry, nested: false)
        var interval = SchedulerInterval.epoch
        if let i = v["interval"], i != .null {
            if let s = i.stringValue, let parsed = SchedulerInterval(rawValue: s) { interval = parsed } else {
                reader.expected(path + "interval", .choice(["epoch", "step"]), got: i)
            }
        }
        var metric: String?
        if let (type, _) = checked, type.needsMetric {
            if interval == .step {
                reader.fail(path + "interval", "\(type.name) steps once per epoch on the monitored metric; use \"epoch\"")
            }
            if let m = v["monitor"], m != .null {
                if let s = m.stringValue, logKeys.contains(s) { metric = s } else {
                    reader.fail(path + "monitor", "expected a logged metric (\(logKeys.joined(separator: ", "))), got \(ConfigReader.show(m))")
                }
            } else {
                metric = monitor.metric ?? (hasValidation ? "val_loss" : "loss")
            }
        } else if let m = v["monitor"], m != .null {
            reader.warn(path + "monitor", "only ReduceLROnPlateau steps on a metric; ignored")
        }
        guard reader.issues.count == before, let (type, args) = checked else { return (nil, reader.issues.count == before ? interval : nil, nil) }
        return ((Component(type: type.name, args: args), type), interval, metric)
    }
}
