import Foundation
import System
import SSH

/// `ssh -R` through any OpenSSH relay, spoken by libssh: the host logs in to the relay and asks it to
/// listen on its loopback (`localhost:remotePort`); each connection there is carried back and joined
/// to the host's sshd. Clients reach the host by jumping through the relay (direct-tcpip to
/// `127.0.0.1:remotePort`), so nothing listens on a public port.
///
/// The relay's `authorized_keys` line for the host's key should allow exactly that and nothing else:
///
///     restrict,port-forwarding,permitlisten="localhost:40022",command="/bin/false" ssh-ed25519 AAAA... ferry-host
///
/// (`restrict` turns everything off, `port-forwarding` turns forwarding back on, `permitlisten`
/// allows this one listener, `command` keeps the key from getting a shell.)
/// After the network drops, the relay keeps the old forward bound until its own keepalive
/// (`ClientAliveInterval` × `ClientAliveCountMax`) gives up on the dead connection; until then it
/// refuses the new bind, and the supervisor retries with backoff.
public struct ReverseSSHTunnel: Tunnel {
    public struct Configuration: Sendable {
        /// `user@relay[:port]` or an alias from the ssh config.
        public var relay: SSHTarget
        /// The relay's `SHA256:...`; without it, the relay must already be in a known_hosts file.
        public var relayHostKey: String?
        /// Keys to log in to the relay with (before the agent's and the config's).
        public var identityFiles: [String]
        public var environment: SSHEnvironment
        /// The port the relay listens on (its loopback).
        public var remotePort: Int
        /// The sshd the forwarded connections go to.
        public var localPort: Int
        public var localHost: String
        public var keepaliveInterval: Int
        public var keepaliveCountMax: Int
        public var connectTimeout: Int

        public init(relay: SSHTarget, relayHostKey: String? = nil, identityFiles: [String] = [], environment: SSHEnvironment,
                    remotePort: Int, localPort: Int, localHost: String = "127.0.0.1", keepaliveInterval: Int = 15,
                    keepaliveCountMax: Int = 3, connectTimeout: Int = 15) {
            self.relay = relay; self.relayHostKey = relayHostKey; self.identityFiles = identityFiles
            self.environment = environment; self.remotePort = remotePort; self.localPort = localPort
            self.localHost = localHost; self.keepaliveInterval = keepaliveInterval
            self.keepaliveCountMax = keepaliveCountMax; self.connectTimeout = connectTimeout
        }
    }

    public let configuration: Configuration
    /// The address OpenSSH's `ssh -R PORT:...` sends, which `permitlisten="localhost:PORT"` matches.
    public static let bindAddress = "localhost"
    /// Where clients ask the relay to connect (its loopback, where the forward listens).
    public static let clientAddress = "127.0.0.1"

    public init(_ configuration: Configuration) { self.configuration = configuration }

    public var summary: String { "reverse SSH via \(configuration.relay), relay port \(configuration.remotePort)" }

    /// The relay's port for a host: stable for one host key (so connection strings survive
    /// restarts), spread over 20000-59999 so hosts sharing a relay rarely collide.
    public static func defaultRemotePort(forHostKey fingerprint: String) -> Int {
        var hash: UInt32 = 2166136261
        for byte in fingerprint.utf8 { hash = (hash ^ UInt32(byte)) &* 16777619 }
        return 20000 + Int(hash % 40000)
    }

    /// The `authorized_keys` line to put on the relay for the host's public key.
    public static func relayAuthorizedKeysLine(publicKey: String, remotePort: Int) -> String {
        "restrict,port-forwarding,permitlisten=\"\(bindAddress):\(remotePort)\",command=\"/bin/false\" \(publicKey.trimmingCharacters(in: .whitespacesAndNewlines))"
    }

    /// The line for a client's key: it may only open connections to the host's forward.
    public static func clientAuthorizedKeysLine(publicKey: String, remotePort: Int) -> String {
        "restrict,port-forwarding,permitopen=\"\(clientAddress):\(remotePort)\",permitopen=\"localhost:\(remotePort)\",command=\"/bin/false\" \(publicKey.trimmingCharacters(in: .whitespacesAndNewlines))"
    }

    var options: SSHConnectOptions {
        let c = configuration
        var options = SSHConnectOptions(environment: c.environment,
                                        hostKeyPolicy: c.relayHostKey.map { .pinned($0) } ?? .strict,
                                        identityFiles: c.identityFiles, connectTimeout: c.connectTimeout,
                                        keepaliveInterval: c.keepaliveInterval)
        options.keepaliveCountMax = c.keepaliveCountMax
        return options
    }

    public func open() async throws -> any TunnelConnection {
        let c = configuration
        let session: SSHSession
        do {
            session = try await SSHSession.connect(c.relay.description, options: options)
        } catch let error as SSHError {
            switch error {
            case .connectionFailed, .connectTimedOut, .disconnected, .proxyFailed:
                throw TunnelError.relayUnreachable(relay: c.relay.description, reason: "\(error)")
            case .hostKeyUnknown(_, _, let fingerprint, _):
                throw TunnelError.relayHostKeyUnknown(relay: c.relay.description, fingerprint: fingerprint)
            default:
                throw error
            }
        }
        do {
            let forward = try await session.forwardRemotePort(bindAddress: ReverseSSHTunnel.bindAddress, port: c.remotePort,
                                                              toLocalHost: c.localHost, localPort: c.localPort)
            let relayTarget = SSHTarget(user: session.hostConfig.user, host: session.hostConfig.hostName, port: session.hostConfig.port)
            let endpoint = TunnelEndpoint(host: ReverseSSHTunnel.clientAddress, port: forward.port, jump: relayTarget,
                                          jumpHostKey: session.hostKeyFingerprint)
            return ReverseSSHConnection(session: session, forward: forward, endpoint: endpoint)
        } catch {
            await session.close()
            if case SSHError.forwardingFailed(_, let port, let reason) = error {
                throw TunnelError.relayPortRefused(relay: c.relay.description, port: port, reason: reason)
            }
            throw error
        }
    }
}

final class ReverseSSHConnection: TunnelConnection {
    let session: SSHSession
    let forward: SSHReverseForward
    let endpoint: TunnelEndpoint

    init(session: SSHSession, forward: SSHReverseForward, endpoint: TunnelEndpoint) {
        self.session = session; self.forward = forward; self.endpoint = endpoint
    }

    func waitUntilClosed() async -> String {
        let session = self.session
        guard await poll(every: 0.25, until: { !session.isConnected }) else { return "stopped" }
        // Any request on a dead session answers with why it died (keepalives unanswered, closed by the relay...).
        do {
            _ = try await session.execute("true")
            return "the relay connection closed"
        } catch {
            return "\(error)"
        }
    }

    /// Bounded: a relay that stopped answering (a frozen network) cannot hold the shutdown.
    func close() async {
        let (session, forward) = (self.session, self.forward)
        if session.isConnected { _ = try? await withDeadline(seconds: 2) { try await forward.cancel() } }
        _ = try? await withDeadline(seconds: 2) { await session.close() }
    }
}
