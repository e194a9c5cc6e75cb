import Foundation

/// The one-node test cluster of scripts/test-slurm.sh, as the tests see it. scripts/test.sh starts
/// it before the test sshd (whose sessions then get SLURM_CONF: the sshd is its login node) and
/// exports FERRY_TEST_SLURM_CONF. Without it the Slurm tests skip, saying why; under CI=true that
/// is an error.
public struct TestSlurm: Sendable {
    public let conf: String
    public let directory: String

    public enum Unavailable: Error, CustomStringConvertible {
        case notRunning
        public var description: String {
            "no test Slurm cluster: run scripts/test.sh, or `scripts/test-slurm.sh start; eval \"$(scripts/test-slurm.sh env)\"` before starting the test sshd (scripts/test-sshd.sh start)"
        }
    }

    /// The cluster, or nil (skip) when there is none outside CI.
    public static func shared() throws -> TestSlurm? {
        let env = ProcessInfo.processInfo.environment
        if let conf = env["FERRY_TEST_SLURM_CONF"], FileManager.default.fileExists(atPath: conf) {
            return TestSlurm(conf: conf, directory: env["FERRY_TEST_SLURM_DIR"] ?? (conf as NSString).deletingLastPathComponent)
        }
        if TestPaths.isCI { throw Unavailable.notRunning }
        FileHandle.standardError.write(Data("skipping the Slurm tests: \(Unavailable.notRunning)\n".utf8))
        return nil
    }

    /// Runs a Slurm client command (scontrol, squeue, scancel) against the cluster.
    @discardableResult
    public func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        var env = ProcessInfo.processInfo.environment
        env["SLURM_CONF"] = conf
        return try runProcess("/usr/bin/env", arguments, environment: env)
    }

    /// `scontrol show job -o ID` as key/value pairs.
    public func job(_ id: String) throws -> [String: String] {
        let out = try run(["scontrol", "show", "job", "-o", id]).stdout
        var fields: [String: String] = [:]
        for word in out.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let kv = word.split(separator: "=", maxSplits: 1)
            if kv.count == 2, fields[String(kv[0])] == nil { fields[String(kv[0])] = String(kv[1]) }
        }
        return fields
    }
}
