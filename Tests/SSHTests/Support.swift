import FerryTestSupport
import Foundation
import SSH

/// A private HOME (and FERRY_HOME inside it) per test, so parallel tests never share state.
struct Sandbox {
    let root: URL
    var home: String { root.appendingPathComponent("home").path }
    var ferryHome: String { root.appendingPathComponent("home/.ferry").path }

    init(_ name: String = #function) throws {
        let clean = name.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-ssh-\(clean)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: root.appendingPathComponent("home/.ssh").path, withIntermediateDirectories: true)
    }

    func environment(agent: String? = nil) -> SSHEnvironment {
        SSHEnvironment(home: home, ferryHome: ferryHome, agentSocket: agent, password: nil, localUser: "nobody-local")
    }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: root) }
}

extension TestSSHD {
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
func elapsed(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}
