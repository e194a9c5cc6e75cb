import FerryTestSupport
import Foundation
import SSH
import Testing

// Shared by SSHTests and ferryTests (`ferry ssh` and `ferry ssh-config` end to end).

/// A private HOME (and FERRY_HOME inside it) per test, so parallel tests never share state.
public struct Sandbox {
    public let root: URL
    public var home: String { root.appendingPathComponent("home").path }
    public var ferryHome: String { root.appendingPathComponent("home/.ferry").path }

    public init(_ name: String = #function) throws {
        let clean = name.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-ssh-\(clean)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: root.appendingPathComponent("home/.ssh").path, withIntermediateDirectories: true)
    }

    public func environment(agent: String? = nil) -> SSHEnvironment {
        SSHEnvironment(home: home, ferryHome: ferryHome, agentSocket: agent, password: nil, localUser: "nobody-local")
    }

    public func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    public func remove() { try? FileManager.default.removeItem(at: root) }
}

public extension TestSSHD {
    var target: String { "\(user)@\(host):\(port)" }

    /// Options that trust the test sshd's key and offer its client key, in a private HOME.
    func options(_ sandbox: Sandbox, knownHosts: String? = nil, policy: HostKeyPolicy = .strict,
                 keys: [String]? = nil, agent: String? = nil) -> SSHConnectOptions {
        SSHConnectOptions(environment: sandbox.environment(agent: agent), hostKeyPolicy: policy,
                          identityFiles: keys ?? [clientKey], knownHostsFile: knownHosts ?? self.knownHosts)
    }

    func connect(_ sandbox: Sandbox) async throws -> SSHSession {
        try await SSHSession.connect(target, options: options(sandbox))
    }
}

/// Seconds since `start`.
public func elapsed(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// A second throwaway sshd (the jump host) for one test, stopped when the test ends.
public func withJumpHost<T>(extraConfig: [String] = ["LogLevel DEBUG1"], _ body: (TestSSHD) async throws -> T) async throws -> T {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-jump-sshd-\(UUID().uuidString.prefix(8))").path
    let jump = try TestSSHD.start(directory: dir, extraConfig: extraConfig)
    defer { jump.stop() }
    return try await body(jump)
}

/// A config with `jumpbox` (the second sshd) and `inner` (the shared one, reached through jumpbox),
/// and a known_hosts file trusting both.
public func writeJumpConfig(_ box: Sandbox, inner: TestSSHD, jump: TestSSHD) throws -> (config: String, knownHosts: String) {
    let config = """
    Host jumpbox
        HostName \(jump.host)
        Port \(jump.port)
        User \(jump.user)
        IdentityFile \(jump.clientKey)
    Host inner
        HostName \(inner.host)
        Port \(inner.port)
        User \(inner.user)
        IdentityFile \(inner.clientKey)
        ProxyJump jumpbox
    """
    let configPath = box.home + "/.ssh/config"
    try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    let known = box.path("known_hosts")
    let both = try String(contentsOfFile: inner.knownHosts, encoding: .utf8) + String(contentsOfFile: jump.knownHosts, encoding: .utf8)
    try both.write(toFile: known, atomically: true, encoding: .utf8)
    return (configPath, known)
}

/// Drives a private tmux server (its own socket), so tests never touch anyone's tmux.
public struct Tmux {
    public let socket = "ferry-test-\(UUID().uuidString.prefix(8))"

    public init() {}

    @discardableResult
    public func run(_ args: [String]) throws -> String {
        let outPath = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tmux-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outPath) }
        waitProgram(try spawnProgram("/usr/bin/tmux", ["-L", socket] + args, outputFile: outPath))
        return (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    }

    public func screen() throws -> String { try run(["capture-pane", "-p", "-t", "t", "-S", "-200"]) }

    /// Waits until the pane shows `text` (as a whole line when `line`).
    public func waitFor(_ text: String, timeout: Double = 15) async throws -> Bool {
        let start = ContinuousClock.now
        while elapsed(since: start) < timeout {
            if try screen().contains(text) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    public func kill() { _ = try? run(["kill-server"]) }
}

/// The built `ferry` executable; nil when it is not built (a recorded issue under CI, where it must be).
public func builtFerry() -> String? {
    let ferry = TestPaths.ferryBinary.path
    guard FileManager.default.isExecutableFile(atPath: ferry) else {
        if TestPaths.isCI { Issue.record("the ferry binary is not built at \(ferry)") }
        return nil
    }
    return ferry
}

/// A PATH holding only fake `ssh` and `scp` that leave a marker if anything ever runs them.
public func fakeSSHBin(_ box: Sandbox) throws -> (path: String, marker: String) {
    let bin = box.path("fakebin")
    let marker = box.path("ssh-was-spawned")
    try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
    for name in ["ssh", "scp", "sftp"] {
        let script = "#!/bin/sh\necho \"$0 $*\" >> '\(marker)'\nexit 99\n"
        try script.write(toFile: bin + "/" + name, atomically: true, encoding: .utf8)
        chmod(bin + "/" + name, 0o755)
    }
    return (bin, marker)
}

/// A private sshd that also accepts an encrypted key (the shared one's authorized_keys stays untouched).
public func withEncryptedKeyHost(_ box: Sandbox, _ body: (TestSSHD, String) async throws -> Void) async throws {
    let key = box.path("encrypted_ed25519")
    try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "sesame-42", "-f", key])
    try await withJumpHost(extraConfig: []) { host in
        let pub = try String(contentsOfFile: key + ".pub", encoding: .utf8)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: host.directory + "/authorized_keys"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(pub.utf8))
        try handle.close()
        try await body(host, key)
    }
}
