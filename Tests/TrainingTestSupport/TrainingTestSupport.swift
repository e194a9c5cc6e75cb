import Data
import FerryTestSupport
import Foundation
import TensorCore
import Testing

// Shared by TrainingTests and ferryTests (the `ferry train` end-to-end tests).

/// A fresh directory under the system's temporary directory.
public struct TemporaryDirectory {
    public let url: URL
    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-training-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public func path(_ relative: String) -> URL { url.appendingPathComponent(relative) }
    public func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

public var isCI: Bool { TestPaths.isCI }

/// Whether Debian's Fashion-MNIST files are here (CI installs them; elsewhere tests that need them skip).
public var fashionAvailable: Bool { FashionMNISTFiles.missingFiles().isEmpty }
public var fashionOrCI: Bool { fashionAvailable || isCI }

/// `python3` on PATH, and whether it has numpy.
public enum Python {
    public static let path: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        return dirs.map { ($0 as NSString).appendingPathComponent("python3") }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
    public static let hasNumpy: Bool = {
        guard let path, let r = try? runProcess(path, ["-c", "import numpy"]) else { return false }
        return r.status == 0
    }()

    /// Runs a script of scripts/fixtures and parses its JSON output.
    public static func runFixture(_ script: String, _ arguments: [String]) throws -> [String: Any] {
        let python = try #require(path)
        let file = TestPaths.repoRoot.appendingPathComponent("scripts/fixtures/\(script)").path
        let r = try runProcess(python, [file] + arguments)
        #expect(r.status == 0, "\(script) failed: \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    }
}

/// The lines of a JSONL file as objects.
public func jsonLines(_ url: URL) throws -> [[String: Any]] {
    let text = try String(contentsOf: url, encoding: .utf8)
    return try text.split(separator: "\n").map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
}

/// The tensors and metadata of a checkpoint's train state.
public func trainState(_ checkpoint: URL) throws -> [String: Tensor] {
    try SafeTensors.read(checkpoint.appendingPathComponent("train_state.safetensors"))
}

public func intValue(_ t: Tensor?) -> Int? { t.map { Int($0.scalars(as: Int64.self)[0]) } }

/// Runs `ferry` with a clean environment plus `environment`.
@discardableResult
public func ferry(_ arguments: [String], environment: [String: String] = [:], in directory: URL? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
    for (k, v) in environment { env[k] = v }
    return try runProcess(TestPaths.ferryBinary.path, arguments, environment: env, currentDirectory: directory)
}
