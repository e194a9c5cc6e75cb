import FerryTestSupport
import Foundation
import Testing
import Jobs
import System

// Shared by JobsTests and ferryTests (the jobs commands end to end): a sandbox per test, the built
// ferry, and polling helpers.

/// A private FERRY_HOME (the client's, which is also `--host local`'s) and a project folder per
/// test: tests run in parallel in one process and never share state or the process environment.
public struct Sandbox {
    public let root: String
    public var home: String { root + "/home/.ferry" }
    public var project: String { root + "/project" }
    /// A remote FERRY_HOME for SSH tests (the test sshd runs as this user on this machine).
    public var remoteHome: String { root + "/remote/.ferry" }

    public init(_ name: String = #function) throws {
        let clean = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-jobs-\(clean)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: project, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    public func context() -> JobsContext {
        var env = ProcessInfo.processInfo.environment
        env["FERRY_HOME"] = home
        env["HOME"] = root + "/home"
        var context = JobsContext(home: home, version: TestFerry.version, agentBinary: TestFerry.binary, localEnvironment: env)
        context.connectTimeout = 20
        return context
    }

    /// Writes `text` to `name` in the project.
    public func write(_ name: String, _ text: String, executable: Bool = false) throws {
        let path = project + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        if executable { chmod(path, 0o755) }
    }

    public func writeRandom(_ name: String, bytes: Int) throws {
        var g = SystemRandomNumberGenerator()
        var data = Data(count: bytes)
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count { words[i] = g.next() }
        }
        let path = project + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }

    public func remove() {
        // A test that failed midway may leave a job running: stop its supervisor and its group.
        for jobs in [home + "/jobs", remoteHome + "/jobs"] {
            for id in (try? FileManager.default.contentsOfDirectory(atPath: jobs)) ?? [] {
                guard let data = FileManager.default.contents(atPath: jobs + "/" + id + "/status.json"),
                      let status = try? JSONCoding.decoder().decode(JobStatus.self, from: data), !status.state.isFinal else { continue }
                if let supervisor = status.supervisorPid { kill(supervisor, SIGKILL) }
                if let pid = status.pid, pid > 1 { kill(-pid, SIGKILL) }
            }
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// The folder of job `id` on the local host.
    public func localJob(_ id: String) -> JobPaths { HostLayout(home: home).job(id) }

    /// The folder of job `id` on the test sshd's host (its ferry home is `remoteHome`).
    public func remoteJob(_ id: String) -> JobPaths { HostLayout(home: remoteHome).job(id) }
}

/// The ferry binary built beside the tests, and its version.
public enum TestFerry {
    public static let binary = TestPaths.ferryBinary.path
    public static let version: String = {
        let result = try? runProcess(binary, ["--version"])
        return result?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }()

    /// Runs the ferry CLI with a FERRY_HOME and HOME of the sandbox.
    @discardableResult
    public static func run(_ arguments: [String], sandbox: Sandbox, directory: String? = nil,
                           extraEnvironment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        var env = environment(sandbox)
        for (k, v) in extraEnvironment { env[k] = v }
        return try runProcess(binary, arguments, environment: env, currentDirectory: URL(fileURLWithPath: directory ?? sandbox.project))
    }

    /// This process's environment with the sandbox's FERRY_HOME and HOME, for a ferry started otherwise.
    public static func environment(_ sandbox: Sandbox) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["FERRY_HOME"] = sandbox.home
        env["HOME"] = sandbox.root + "/home"
        return env
    }

    /// The job id `ferry launch --json` printed.
    public static func jobID(launched: (status: Int32, stdout: String, stderr: String)) throws -> String {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(launched.stdout.utf8)) as? [String: Any], "\(launched.stderr)")
        return try #require(object["id"] as? String)
    }
}

/// Polls `condition` every 20 ms for up to `seconds`, suspending between polls (a blocking sleep
/// would hold one of the few cooperative threads that the other tests' followers need).
public func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return try condition()
}

public func fileText(_ path: String) -> String {
    (FileManager.default.contents(atPath: path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

/// A long-lived child started without Foundation's Process: Foundation reaps its children from one
/// monitor thread that blocks in wait4 on a child that does not end, and every other Process wait
/// in this test process (tests run in parallel) would hang behind it.
public struct BackgroundProcess {
    public let pid: pid_t

    public init(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment, directory: String? = nil,
                stderrFile: String? = nil) throws {
        pid = try Spawn.start(arguments, environment: environment, stdin: .null, stdout: .null,
                              stderr: stderrFile.map { .file($0, append: true) } ?? .null, newGroup: true, directory: directory)
    }

    /// SIGKILL to it (and its group), then reaps it.
    public func kill() {
        Glibc.kill(-pid, SIGKILL)
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}

/// A `ferry train` config of a small MLP on a Fashion-MNIST subset, for jobs that train.
public enum TrainJobConfig {
    public static func text(limit: Int, epochs: Int, hidden: Int = 32) -> String {
        """
        {
          "name": "tiny", "n_gpu": 0, "seed": 0,
          "arch": {"type": "MLP", "args": {"hidden": [\(hidden)], "num_classes": 10}},
          "data_loader": {"type": "FashionMnistDataLoader",
            "args": {"data_dir": "/usr/share/datasets/fashion-mnist", "batch_size": 64, "shuffle": true,
                     "validation_split": 0.25, "num_workers": 1, "limit": \(limit)}},
          "optimizer": {"type": "Adam", "args": {"lr": 0.001}},
          "loss": "cross_entropy", "metrics": ["accuracy"],
          "trainer": {"epochs": \(epochs), "save_dir": "saved/", "save_period": 1, "verbosity": 1, "monitor": "max val_accuracy",
                      "early_stop": 0, "tensorboard": false, "save_last": true, "log_every_n_steps": 1}
        }
        """
    }
}
