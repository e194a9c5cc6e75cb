import Foundation

/// The throwaway OpenSSH sshd of scripts/test-sshd.sh, as the tests see it. scripts/test.sh starts
/// it and exports its variables; a plain `swift test` starts it here on first use.
public struct TestSSHD: Sendable {
    public let host: String
    public let port: Int
    public let user: String
    public let clientKey: String
    public let knownHosts: String
    public let hostKeyFingerprint: String
    public let directory: String
    /// The script that started it (and stops it): test-sshd.sh, or test-dropbear.sh.
    public var script = "scripts/test-sshd.sh"

    public enum Unavailable: Error, CustomStringConvertible {
        case notInstalled(String)
        public var description: String {
            switch self { case .notInstalled(let why): return "test sshd unavailable: \(why)" }
        }
    }

    /// The running test sshd, started once per test process when the environment names none.
    /// Under CI=true every failure to get one is an error; elsewhere tests may skip on `nil`.
    public static func shared() throws -> TestSSHD? {
        switch cached {
        case .success(let sshd): return sshd
        case .failure(let error):
            if TestPaths.isCI { throw error }
            return nil
        }
    }

    private static let cached: Result<TestSSHD, Error> = Result { try locate() }

    private static func locate() throws -> TestSSHD {
        let env = ProcessInfo.processInfo.environment
        if let fromEnv = parse(env) { return fromEnv }
        return try start(directory: nil)
    }

    /// Starts (or reuses) a throwaway sshd in `directory` (the shared one when nil) with its own host
    /// key, client key and port. Tests that need a second server (a jump host) start one in a
    /// directory of their own and `stop()` it when done.
    /// `extraConfig` lines go first in its sshd_config (e.g. `LogLevel DEBUG1`, `PermitOpen none`);
    /// `noSFTP` leaves out the sftp Subsystem (a host where only exec channels work).
    public static func start(directory: String?, extraConfig: [String] = [], noSFTP: Bool = false) throws -> TestSSHD {
        let script = TestPaths.repoRoot.appendingPathComponent("scripts/test-sshd.sh").path
        var environment = ProcessInfo.processInfo.environment
        if let directory { environment["FERRY_TEST_SSHD_DIR"] = directory }
        environment["FERRY_TEST_SSHD_EXTRA_CONFIG"] = extraConfig.joined(separator: "\n")
        environment["FERRY_TEST_SSHD_NO_SFTP"] = noSFTP ? "1" : nil
        return try launch(script: "scripts/test-sshd.sh", environment: environment)
    }

    /// A dropbear without sftp-server in `directory` (scripts/test-dropbear.sh); nil where it cannot
    /// run (not root, no dropbear) outside CI.
    /// `sftpServer`: a program that stands in for its sftp-server (nil: none, /dev/null there).
    public static func startDropbear(directory: String, sftpServer: String? = nil) throws -> TestSSHD? {
        var environment = ProcessInfo.processInfo.environment
        environment["FERRY_TEST_DROPBEAR_DIR"] = directory
        environment["FERRY_TEST_DROPBEAR_SFTP_SERVER"] = sftpServer
        do {
            var server = try launch(script: "scripts/test-dropbear.sh", environment: environment)
            server.script = "scripts/test-dropbear.sh"
            return server
        } catch {
            if TestPaths.isCI && getuid() == 0 { throw error }
            print("test dropbear unavailable: \(error)")
            return nil
        }
    }

    private static func launch(script relative: String, environment: [String: String]) throws -> TestSSHD {
        let script = TestPaths.repoRoot.appendingPathComponent(relative).path
        let start = try runProcess("/bin/bash", [script, "start"], environment: environment)
        guard start.status == 0 else { throw Unavailable.notInstalled(start.stderr + start.stdout) }
        let printed = try runProcess("/bin/bash", [script, "env"], environment: environment)
        var vars: [String: String] = [:]
        for line in printed.stdout.split(separator: "\n") {
            var text = String(line)
            if text.hasPrefix("export ") { text.removeFirst(7) }
            guard let eq = text.firstIndex(of: "=") else { continue }
            var value = String(text[text.index(after: eq)...])
            if value.hasPrefix("'") && value.hasSuffix("'") && value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            vars[String(text[..<eq])] = value
        }
        guard let sshd = parse(vars) else { throw Unavailable.notInstalled("test-sshd.sh env printed no usable variables: \(printed.stdout)") }
        return sshd
    }

    /// Stops a server started with `start(directory:)` and removes its directory. Never call it on
    /// `shared()`: other test processes use that one.
    public func stop() {
        let script = TestPaths.repoRoot.appendingPathComponent(self.script).path
        var environment = ProcessInfo.processInfo.environment
        environment["FERRY_TEST_SSHD_DIR"] = directory
        environment["FERRY_TEST_DROPBEAR_DIR"] = directory
        _ = try? runProcess("/bin/bash", [script, "stop"], environment: environment)
    }

    static func parse(_ env: [String: String]) -> TestSSHD? {
        guard let host = env["FERRY_TEST_SSH_HOST"], let portText = env["FERRY_TEST_SSH_PORT"], let port = Int(portText),
              let user = env["FERRY_TEST_SSH_USER"], let key = env["FERRY_TEST_SSH_KEY"],
              let known = env["FERRY_TEST_SSH_KNOWN_HOSTS"], let fp = env["FERRY_TEST_SSH_HOST_FINGERPRINT"],
              let dir = env["FERRY_TEST_SSHD_DIR"] else { return nil }
        return TestSSHD(host: host, port: port, user: user, clientKey: key, knownHosts: known, hostKeyFingerprint: fp, directory: dir)
    }
}
