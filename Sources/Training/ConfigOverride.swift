/// A `--set PATH=VALUE` (or `--lr`, `--bs`, `--epochs`), applied to the config before it is
/// checked. The value is typed by the schema: where a string is expected the text is kept as
/// written (`--set trainer.monitor=max val_accuracy`); elsewhere it is read as JSON (`0.01`, `true`,
/// `[0.9, 0.99]`), falling back to a string so the check can say what was expected.
public struct ConfigOverride: Sendable, Equatable {
    public let path: ConfigPath
    public let text: String
    /// What the user typed, for messages.
    public let source: String

    public init(path: ConfigPath, text: String, source: String? = nil) {
        self.path = path
        self.text = text
        self.source = source ?? "\(path)=\(text)"
    }

    /// Parses `optimizer.args.lr=0.01`.
    public init(parsing assignment: String) throws {
        guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else {
            throw TrainingError.invalidOverride(assignment, reason: "expected PATH=VALUE, like optimizer.args.lr=0.01")
        }
        let path = ConfigPath(parsing: String(assignment[..<eq]))
        guard !path.components.isEmpty, case .key = path.components[0] else {
            throw TrainingError.invalidOverride(assignment, reason: "expected PATH=VALUE, like optimizer.args.lr=0.01")
        }
        self.init(path: path, text: String(assignment[assignment.index(after: eq)...]), source: assignment)
    }

    /// `--lr`: `optimizer.args.lr`.
    public static func learningRate(_ v: Double) -> ConfigOverride { ConfigOverride(path: "optimizer.args.lr", text: "\(v)", source: "--lr \(v)") }
    /// `--bs`: `data_loader.args.batch_size`.
    public static func batchSize(_ v: Int) -> ConfigOverride { ConfigOverride(path: "data_loader.args.batch_size", text: "\(v)", source: "--bs \(v)") }
    /// `--epochs`: `trainer.epochs`.
    public static func epochs(_ v: Int) -> ConfigOverride { ConfigOverride(path: "trainer.epochs", text: "\(v)", source: "--epochs \(v)") }

    /// The value this override writes, typed by what the schema expects at its path.
    public func value(in config: JSONValue, registry: ComponentRegistry) -> JSONValue {
        switch ConfigSchema.kind(at: path, in: config, registry: registry) {
        case .string?, .choice?:
            return .string(text)
        default:
            if let parsed = try? JSONParser.parse(text) { return parsed }
            return .string(text)
        }
    }

    /// Writes the value into `config`, creating objects on the way.
    public func apply(to config: inout JSONValue, registry: ComponentRegistry) throws {
        try ConfigOverride.set(value(in: config, registry: registry), at: path, in: &config, source: source)
    }

    /// Writes `value` at `path` in `root`, creating objects on the way; `source` names the request in errors.
    static func set(_ value: JSONValue, at path: ConfigPath, in root: inout JSONValue, source: String) throws {
        try set(&root, components: path.components[...], value: value, walked: ConfigPath(), source: source)
    }

    private static func set(_ node: inout JSONValue, components: ArraySlice<ConfigPath.Component>, value: JSONValue, walked: ConfigPath,
                            source: String) throws {
        guard let first = components.first else { node = value; return }
        let rest = components.dropFirst()
        switch first {
        case .key(let key):
            var object: JSONObject
            switch node {
            case .object(let o): object = o
            case .null: object = JSONObject()
            default:
                throw TrainingError.invalidOverride(source, reason: "\(walked) is \(ConfigReader.show(node)), not an object")
            }
            var child = object[key] ?? .null
            try set(&child, components: rest, value: value, walked: walked + key, source: source)
            object[key] = child
            node = .object(object)
        case .index(let i):
            guard case .array(var items) = node else {
                throw TrainingError.invalidOverride(source, reason: "\(walked) is \(ConfigReader.show(node)), not a list")
            }
            guard i >= 0 && i < items.count else {
                throw TrainingError.invalidOverride(source, reason: "\(walked) has \(items.count) items; there is no [\(i)]")
            }
            try set(&items[i], components: rest, value: value, walked: walked[i], source: source)
            node = .array(items)
        }
    }
}

/// What the config schema expects at a path, so overrides can be typed.
enum ConfigSchema {
    static func kind(at path: ConfigPath, in config: JSONValue, registry: ComponentRegistry) -> ValueKind? {
        let c = path.components
        func key(_ i: Int) -> String? { if i < c.count, case .key(let k) = c[i] { return k } else { return nil } }
        guard let top = key(0) else { return nil }
        func args(_ specs: [ArgSpec]?, _ name: String?) -> ValueKind? {
            guard let name else { return nil }
            return specs?.first { $0.name == name }?.kind
        }
        let typeName = config[top]?["type"]?.stringValue ?? ""
        switch (top, c.count) {
        case ("name", 1), ("loss", 1): return .string
        case ("n_gpu", 1), ("seed", 1): return .integer()
        case ("trainer", 2): return ConfigChecker.trainerKinds.first { $0.0 == key(1) }?.1
        case ("metrics", 2): return .string
        case (_, 2) where key(1) == "type": return .string
        case ("lr_scheduler", 2) where key(1) == "interval" || key(1) == "monitor": return .string
        case ("data_loader", 3) where key(1) == "args": return args(registry.dataLoaders[typeName]?.args, key(2))
        case ("optimizer", 3) where key(1) == "args": return args(registry.optimizers[typeName]?.args, key(2))
        case ("lr_scheduler", 3) where key(1) == "args": return args(registry.schedulers[typeName]?.args, key(2))
        case ("loss", 3) where key(1) == "args": return args(registry.losses[typeName]?.args, key(2))
        case ("arch", 3) where key(1) == "args": return args(registry.models[typeName]?.args, key(2))
        case ("arch", 6) where key(1) == "args" && key(2) == "layers" && key(4) == "args":
            guard case .index(let i) = c[3], let layers = config["arch"]?["args"]?["layers"]?.arrayValue, i < layers.count else { return nil }
            let layerType = layers[i].stringValue ?? layers[i]["type"]?.stringValue ?? ""
            return args(registry.layers[layerType]?.args, key(5))
        case ("arch", 5) where key(1) == "args" && key(2) == "layers" && key(4) == "type": return .string
        default: return nil
        }
    }
}
