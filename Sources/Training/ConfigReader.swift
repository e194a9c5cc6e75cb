/// What a value in a config must be; each kind can describe itself for error messages.
public indirect enum ValueKind: Sendable, Equatable {
    case integer(min: Int? = nil, max: Int? = nil)
    case number(NumberRange = .any)
    case boolean
    case string
    case choice([String])
    /// An integer or a pair of them (`kernel_size: 3` or `[3, 5]`).
    case integerOrPair(min: Int)
    /// An integer or a list of them (`normalized_shape`).
    case integerOrList(min: Int)
    case integerList(min: Int?)
    case numberList(NumberRange)
    /// Exactly `count` numbers (`betas`).
    case numbers(count: Int, NumberRange)
    /// Checked by the entry itself (nested layer lists, nested schedulers); the text describes it.
    case custom(String)

    /// "a number >= 0", "true or false", …
    public var phrase: String {
        switch self {
        case .integer(let lo, let hi):
            switch (lo, hi) {
            case (nil, nil): return "an integer"
            case (let lo?, nil): return "an integer >= \(lo)"
            case (nil, let hi?): return "an integer <= \(hi)"
            case (let lo?, let hi?): return "an integer from \(lo) to \(hi)"
            }
        case .number(let r): return "a number" + r.suffix
        case .boolean: return "true or false"
        case .string: return "a string"
        case .choice(let options): return "one of " + options.map { "\"\($0)\"" }.joined(separator: ", ")
        case .integerOrPair(let lo): return "an integer >= \(lo) or a pair of them"
        case .integerOrList(let lo): return "an integer >= \(lo) or a list of them"
        case .integerList(let lo): return lo.map { "a list of integers >= \($0)" } ?? "a list of integers"
        case .numberList(let r): return "a list of numbers" + r.suffix
        case .numbers(let count, let r): return "a list of \(count) numbers" + r.suffix
        case .custom(let text): return text
        }
    }
}

/// Bounds on a number; `suffix` reads " >= 0", " > 0", " in [0, 1)".
public struct NumberRange: Sendable, Equatable {
    public var min: Double?
    public var minInclusive = true
    public var max: Double?
    public var maxInclusive = true

    public static let any = NumberRange()
    public static let nonNegative = NumberRange(min: 0)
    public static let positive = NumberRange(min: 0, minInclusive: false)
    public static let unit = NumberRange(min: 0, max: 1)
    public static let unitOpen = NumberRange(min: 0, max: 1, maxInclusive: false)

    public init(min: Double? = nil, minInclusive: Bool = true, max: Double? = nil, maxInclusive: Bool = true) {
        self.min = min; self.minInclusive = minInclusive; self.max = max; self.maxInclusive = maxInclusive
    }

    func contains(_ v: Double) -> Bool {
        guard v.isFinite else { return false }
        if let min, minInclusive ? v < min : v <= min { return false }
        if let max, maxInclusive ? v > max : v >= max { return false }
        return true
    }

    var suffix: String {
        func f(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)" }
        switch (min, max) {
        case (nil, nil): return ""
        case (let lo?, nil): return (minInclusive ? " >= " : " > ") + f(lo)
        case (nil, let hi?): return (maxInclusive ? " <= " : " < ") + f(hi)
        case (let lo?, let hi?): return " in " + (minInclusive ? "[" : "(") + f(lo) + ", " + f(hi) + (maxInclusive ? "]" : ")")
        }
    }
}

/// One argument of a registered type: its PyTorch name, what it must be, and its default
/// (nil when the argument is required).
public struct ArgSpec: Sendable {
    public let name: String
    public let kind: ValueKind
    public let defaultValue: JSONValue?

    public init(_ name: String, _ kind: ValueKind, default defaultValue: JSONValue? = nil) {
        self.name = name; self.kind = kind; self.defaultValue = defaultValue
    }
}

/// Validated arguments with defaults filled in. Getters never fail: values were checked against
/// their `ArgSpec` before an `Args` is made.
public struct Args: Sendable, Equatable {
    public var values: JSONObject

    public init(_ values: JSONObject = JSONObject()) { self.values = values }

    public subscript(name: String) -> JSONValue? { values[name] }
    public func int(_ name: String) -> Int { values[name]?.intValue ?? 0 }
    public func optionalInt(_ name: String) -> Int? { values[name]?.intValue }
    public func double(_ name: String) -> Double { values[name]?.number ?? 0 }
    public func optionalDouble(_ name: String) -> Double? { values[name]?.number }
    public func bool(_ name: String) -> Bool { values[name]?.boolValue ?? false }
    public func string(_ name: String) -> String { values[name]?.stringValue ?? "" }
    /// `3` → (3, 3); `[3, 5]` → (3, 5).
    public func pair(_ name: String) -> (Int, Int) {
        if let i = values[name]?.intValue { return (i, i) }
        let list = (values[name]?.arrayValue ?? []).compactMap(\.intValue)
        return list.count == 2 ? (list[0], list[1]) : (0, 0)
    }
    public func intList(_ name: String) -> [Int] {
        if let i = values[name]?.intValue { return [i] }
        return (values[name]?.arrayValue ?? []).compactMap(\.intValue)
    }
    public func doubleList(_ name: String) -> [Double] { (values[name]?.arrayValue ?? []).compactMap(\.number) }
}

/// Walks a config, collecting every issue (with its JSON path) instead of stopping at the first.
public final class ConfigReader {
    public private(set) var issues: [ConfigIssue] = []
    public private(set) var warnings: [ConfigIssue] = []

    public init() {}

    public func fail(_ path: ConfigPath, _ message: String) { issues.append(ConfigIssue(path: path, message: message)) }
    public func warn(_ path: ConfigPath, _ message: String) { warnings.append(ConfigIssue(path: path, message: message)) }

    /// A value as the config shows it: JSON, cut short when long.
    public static func show(_ value: JSONValue) -> String {
        let text = value.serialized(pretty: false)
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }

    /// `expected a number >= 0, got "fast"`.
    public func expected(_ path: ConfigPath, _ kind: ValueKind, got value: JSONValue) {
        fail(path, "expected \(kind.phrase), got \(ConfigReader.show(value))")
    }

    /// Checks `value` against `kind`; returns it normalised (`2.0` → `2` where an integer is
    /// wanted), or nil after recording an issue.
    public func check(_ value: JSONValue, _ kind: ValueKind, at path: ConfigPath) -> JSONValue? {
        func integer(_ v: JSONValue, min: Int?, max: Int?) -> Int? {
            guard let i = v.intValue else { return nil }
            if let min, i < min { return nil }
            if let max, i > max { return nil }
            return i
        }
        var result: JSONValue?
        switch kind {
        case .integer(let lo, let hi):
            result = integer(value, min: lo, max: hi).map(JSONValue.int)
        case .number(let range):
            if let d = value.number, range.contains(d) { result = value }
        case .boolean:
            if case .bool = value { result = value }
        case .string:
            if case .string = value { result = value }
        case .choice(let options):
            if let s = value.stringValue, options.contains(s) { result = value }
        case .integerOrPair(let lo):
            if let i = integer(value, min: lo, max: nil) { result = .int(i) } else if let list = value.arrayValue, list.count == 2 {
                let ints = list.compactMap { integer($0, min: lo, max: nil) }
                if ints.count == 2 { result = .array(ints.map(JSONValue.int)) }
            }
        case .integerOrList(let lo):
            if let i = integer(value, min: lo, max: nil) { result = .int(i) } else if let list = value.arrayValue, !list.isEmpty {
                let ints = list.compactMap { integer($0, min: lo, max: nil) }
                if ints.count == list.count { result = .array(ints.map(JSONValue.int)) }
            }
        case .integerList(let lo):
            if let list = value.arrayValue {
                let ints = list.compactMap { integer($0, min: lo, max: nil) }
                if ints.count == list.count { result = .array(ints.map(JSONValue.int)) }
            }
        case .numberList(let range):
            if let list = value.arrayValue, list.allSatisfy({ $0.number.map(range.contains) ?? false }) { result = value }
        case .numbers(let count, let range):
            if let list = value.arrayValue, list.count == count, list.allSatisfy({ $0.number.map(range.contains) ?? false }) { result = value }
        case .custom:
            result = value
        }
        if result == nil { expected(path, kind, got: value) }
        return result
    }

    /// Reads the arguments of `typeName` from `value` (an object, or absent for none): unknown
    /// names and bad values are issues, missing optional ones take their defaults. Nil when
    /// anything was wrong (the issues say what).
    public func args(of typeName: String, _ specs: [ArgSpec], from value: JSONValue?, at path: ConfigPath) -> Args? {
        let (args, ok) = argsAllowingIssues(of: typeName, specs, from: value, at: path)
        return ok ? args : nil
    }

    /// Like `args(of:…)`, but also returns what could be read when something was wrong (bad values
    /// left out), so checks that do not depend on the bad values can still run.
    public func argsAllowingIssues(of typeName: String, _ specs: [ArgSpec], from value: JSONValue?, at path: ConfigPath) -> (Args, ok: Bool) {
        let before = issues.count
        var object = JSONObject()
        switch value {
        case nil, .null?:
            break
        case .object(let o)?:
            object = o
        case let other?:
            fail(path, "expected an object of arguments for \(typeName), got \(ConfigReader.show(other))")
            return (Args(), false)
        }
        for key in object.keys where !specs.contains(where: { $0.name == key }) {
            let known = specs.map(\.name)
            fail(path + key, known.isEmpty ? "\(typeName) takes no arguments"
                 : "\(typeName) takes no argument \"\(key)\"; it takes \(known.joined(separator: ", "))")
        }
        var out = JSONObject()
        for spec in specs {
            if let v = object[spec.name] {
                if case .null = v, spec.defaultValue == .null {
                    out[spec.name] = .null
                } else if let checked = check(v, spec.kind, at: path + spec.name) {
                    out[spec.name] = checked
                }
            } else if let d = spec.defaultValue {
                out[spec.name] = d
            } else {
                fail(path + spec.name, "missing: \(typeName) needs \(spec.kind.phrase)")
            }
        }
        return (Args(out), issues.count == before)
    }

    /// `unknown optimizer "Adamm"; known: Adam, AdamW, SGD`.
    public func unknownType(_ path: ConfigPath, what: String, name: String, known: [String]) {
        fail(path, "unknown \(what) \"\(name)\"; known: \(known.joined(separator: ", "))")
    }
}
