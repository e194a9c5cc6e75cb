import Foundation
import RunContract

/// A place in a config: `optimizer.args.lr`, `arch.args.layers[7]`.
public struct ConfigPath: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public enum Component: Hashable, Sendable {
        case key(String)
        case index(Int)
    }
    public var components: [Component]

    public init(_ components: [Component] = []) { self.components = components }

    /// Parses `a.b[2].c` (and `a.b.2.c`, for `--set`).
    public init(parsing text: String) {
        var parts: [Component] = []
        for piece in text.split(separator: ".", omittingEmptySubsequences: false) {
            var name = Substring(piece)
            var indices: [Int] = []
            while name.hasSuffix("]"), let open = name.lastIndex(of: "["), let n = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) {
                indices.insert(n, at: 0)
                name = name[..<open]
            }
            if !name.isEmpty {
                if let n = Int(name), !parts.isEmpty { parts.append(.index(n)) } else { parts.append(.key(String(name))) }
            }
            parts.append(contentsOf: indices.map { .index($0) })
        }
        components = parts
    }

    public init(stringLiteral value: String) { self.init(parsing: value) }

    public func appending(_ key: String) -> ConfigPath { ConfigPath(components + [.key(key)]) }
    public func appending(index: Int) -> ConfigPath { ConfigPath(components + [.index(index)]) }
    public static func + (lhs: ConfigPath, rhs: String) -> ConfigPath { lhs.appending(rhs) }
    public subscript(index: Int) -> ConfigPath { appending(index: index) }

    public var description: String {
        var out = ""
        for c in components {
            switch c {
            case .key(let k): out += out.isEmpty ? k : "." + k
            case .index(let i): out += "[\(i)]"
            }
        }
        return out.isEmpty ? "(top level)" : out
    }
}

/// One thing wrong (or worth a warning) in a config, at a JSON path.
public struct ConfigIssue: Equatable, Sendable, CustomStringConvertible {
    public let path: ConfigPath
    public let message: String
    public init(path: ConfigPath, message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// Everything in Training that a config, a checkpoint or the file system can get wrong. Each case
/// says what was wrong and what to do.
public enum TrainingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The config file could not be read.
    case configUnreadable(file: String, reason: String)
    /// The config is not JSON.
    case configSyntax(file: String, line: Int, column: Int, reason: String)
    /// The config is JSON but not a valid training config; every issue names its JSON path.
    case invalidConfig(file: String, issues: [ConfigIssue])
    /// A `--set PATH=VALUE` that cannot be applied.
    case invalidOverride(String, reason: String)
    /// A checkpoint that is missing, incomplete or does not fit the model.
    case checkpoint(path: String, reason: String)
    /// `--resume` found nothing to resume.
    case nothingToResume(String)
    /// The run directory exists already and this is not a resume.
    case runDirectoryExists(path: String)
    /// The data could not be loaded (the Data module's message).
    case data(String)
    /// A file of the run directory could not be written.
    case io(path: String, reason: String)
    /// `ferry new` would overwrite something.
    case scaffoldExists(path: String)
    /// A run id (`--run-id`, `$FERRY_JOB_ID`) that is not one folder name.
    case invalidRunID(source: String, id: String)
    /// The requested device cannot be used here (`--device cuda` without a CUDA device).
    case device(String)

    public var description: String {
        switch self {
        case .configUnreadable(let file, let reason):
            return "\(file): cannot read the config (\(reason)) — check the path"
        case .configSyntax(let file, let line, let column, let reason):
            return "\(file): not valid JSON at line \(line), column \(column): \(reason)"
        case .invalidConfig(let file, let issues):
            return issues.map { "\(file): \($0)" }.joined(separator: "\n")
        case .invalidOverride(let text, let reason):
            return "--set \(text): \(reason)"
        case .checkpoint(let path, let reason):
            return "\(path): \(reason)"
        case .nothingToResume(let message):
            return message
        case .runDirectoryExists(let path):
            return "\(path) exists already — pass --resume auto to continue that run, or another --run-id"
        case .data(let message):
            return message
        case .io(let path, let reason):
            return "\(path): cannot write (\(reason)) — check that the directory is writable and the disk has room"
        case .scaffoldExists(let path):
            return "\(path) exists already and is not empty — choose another name or remove it"
        case .invalidRunID(let source, let id):
            return "\(source) \(id.debugDescription): a run id is one folder name (no `/`, not `.` or `..`); the run goes to save_dir/NAME/RUN_ID"
        case .device(let message):
            return message
        }
    }

    /// The exit status a command should end with: 2 for usage, config and checkpoint errors (found before
    /// anything runs), 1 for failures while running.
    public var exitCode: Int32 { exitStatus.rawValue }
}

extension TrainingError: ExitStatusError {
    public var exitStatus: ExitStatus {
        switch self {
        case .configUnreadable, .configSyntax, .invalidConfig, .invalidOverride, .nothingToResume, .runDirectoryExists, .scaffoldExists,
             .checkpoint, .invalidRunID, .device:
            return .usage
        case .data, .io:
            return .failed
        }
    }
}
