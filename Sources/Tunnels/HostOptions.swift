import Foundation
import System
import SSH

/// How clients will reach the host.
public enum TunnelSpec: Sendable, Equatable, CustomStringConvertible {
    /// No tunnel: the sshd's own address (LAN, VPN, a VM with a public IP).
    case none
    /// The ngrok agent's TCP tunnel.
    case ngrok
    /// A reverse SSH forward on an OpenSSH relay.
    case relay(SSHTarget)
    /// A command of the user's (`--tunnel-command`), e.g. cloudflared.
    case command

    /// `none`, `ngrok`, `ssh://user@relay[:port]` or `command`.
    public init(parsing text: String) throws {
        switch text.lowercased() {
        case "none", "": self = .none
        case "ngrok": self = .ngrok
        case "command": self = .command
        default:
            guard text.hasPrefix("ssh://") else { throw TunnelError.invalidTunnel(text) }
            guard let target = try? SSHTarget(parsing: text) else { throw TunnelError.invalidTunnel(text) }
            self = .relay(target)
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .ngrok: return "ngrok"
        case .relay(let target): return "ssh://\(target)"
        case .command: return "command"
        }
    }
}

/// Everything `ferry host up` was asked to do.
public struct HostUpOptions: Sendable {
    public var ferryHome: String
    /// The account clients log in as (whoever runs host up).
    public var user: String
    /// `--authorize` values: key lines or files.
    public var authorize: [String]
    public var allowPassword: Bool
    /// From the prompt or FERRY_HOST_PASSWORD, never argv.
    public var password: String?
    public var sshdPort: Int
    /// Where sshd listens; nil chooses: loopback behind a tunnel, every address without one.
    public var listenAddresses: [String]?
    public var tunnel: TunnelSpec
    public var tunnelCommand: String?
    /// The address clients use without a tunnel (or with a command tunnel).
    public var publicHost: String?
    public var publicPort: Int?
    /// A ProxyCommand for clients, put into the connection string.
    public var proxyCommand: String?
    /// The host's name in the printed lines (`ferry hosts add NAME ...`, `Host NAME`).
    public var name: String
    public var relayHostKey: String?
    public var relayIdentity: String?
    public var relayPort: Int?
    public var keepaliveInterval: Int
    public var keepaliveCountMax: Int
    public var connectTimeout: Int
    public var maxBackoff: Double
    public var ngrokBinary: String?
    public var ngrokAPI: String
    /// Extra variable names to pass into SSH sessions.
    public var extraEnvironment: [String]
    /// The setup shell's environment (what sessions inherit a part of, and ngrok reads).
    public var processEnvironment: [String: String]
    /// Install openssh-server when missing (root only).
    public var installSSHD: Bool

    public init(ferryHome: String, user: String = HostSetup.currentUser, authorize: [String] = [], allowPassword: Bool = false,
                password: String? = nil, sshdPort: Int = 2222, listenAddresses: [String]? = nil, tunnel: TunnelSpec = .none,
                tunnelCommand: String? = nil, publicHost: String? = nil, publicPort: Int? = nil, proxyCommand: String? = nil,
                name: String? = nil, relayHostKey: String? = nil, relayIdentity: String? = nil, relayPort: Int? = nil,
                keepaliveInterval: Int = 15, keepaliveCountMax: Int = 3, connectTimeout: Int = 15, maxBackoff: Double = 60,
                ngrokBinary: String? = nil, ngrokAPI: String = NgrokAgentAPI.defaultURL, extraEnvironment: [String] = [],
                processEnvironment: [String: String] = ProcessInfo.processInfo.environment, installSSHD: Bool = true) {
        self.ferryHome = ferryHome; self.user = user; self.authorize = authorize; self.allowPassword = allowPassword
        self.password = password; self.sshdPort = sshdPort; self.listenAddresses = listenAddresses; self.tunnel = tunnel
        self.tunnelCommand = tunnelCommand; self.publicHost = publicHost; self.publicPort = publicPort
        self.proxyCommand = proxyCommand
        self.name = name ?? HostUpOptions.defaultName
        self.relayHostKey = relayHostKey; self.relayIdentity = relayIdentity; self.relayPort = relayPort
        self.keepaliveInterval = keepaliveInterval; self.keepaliveCountMax = keepaliveCountMax
        self.connectTimeout = connectTimeout; self.maxBackoff = maxBackoff; self.ngrokBinary = ngrokBinary
        self.ngrokAPI = ngrokAPI; self.extraEnvironment = extraEnvironment; self.processEnvironment = processEnvironment
        self.installSSHD = installSSHD
    }

    /// This machine's short host name, made into a usable alias.
    public static var defaultName: String {
        let short = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "gpu"
        let cleaned = String(short.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "-" })
        return SSHConfigBlock.isValidName(cleaned) ? cleaned : "gpu"
    }

    /// The addresses sshd listens on.
    public var effectiveListenAddresses: [String] {
        if let listenAddresses, !listenAddresses.isEmpty { return listenAddresses }
        switch tunnel {
        case .none: return ["0.0.0.0"]
        case .ngrok, .relay, .command: return ["127.0.0.1"]
        }
    }

    /// Checks what can be checked before anything starts.
    public func validate() throws {
        if case .command = tunnel, (tunnelCommand ?? "").isEmpty {
            throw TunnelError.invalidTunnel("command (without --tunnel-command)")
        }
        if tunnelCommand != nil, tunnel != .command { throw TunnelError.invalidTunnel("--tunnel-command needs --tunnel command") }
        guard (1...65535).contains(sshdPort) else { throw TunnelError.invalidTunnel("--sshd-port \(sshdPort)") }
        guard SSHConfigBlock.isValidName(name) else { throw TunnelError.invalidTunnel("--name \(name)") }
        for variable in extraEnvironment where SessionEnvironment.looksSecret(variable) {
            throw TunnelError.secretEnvironment(name: variable)
        }
        try HostSetup.checkPassword(allow: allowPassword, password: password, source: "FERRY_HOST_PASSWORD or the prompt")
    }
}

/// What clients need once the host is reachable: printed by `host up`, kept in state.json.
public struct HostReadiness: Sendable, Codable, Equatable {
    public var name: String
    public var connectionString: String
    /// Without the tunnel, when sshd listens beyond loopback.
    public var directConnectionString: String?
    public var sshConfig: String
    public var hostKey: String
    public var user: String
    public var sshdPort: Int
    public var tunnel: String
    /// What the relay's authorized_keys must say for this host (reverse SSH only).
    public var relayAuthorizedKeysLine: String?


    /// The line to paste on the laptop.
    public var addCommand: String { "ferry hosts add \(name) '\(connectionString)'" }
}

/// `$FERRY_HOME/host/state.json`: who is supervising, and (once up) how to reach the host.
public struct HostState: Sendable, Codable, Equatable {
    public var pid: Int32
    public var sshdPid: Int32?
    public var tunnelPid: Int32?
    public var startedAt: Date
    public var ready: HostReadiness?


    public static func read(_ files: HostFiles) -> HostState? {
        guard let data = FileManager.default.contents(atPath: files.stateFile) else { return nil }
        return try? JSONCoding.decoder(isoDates: true).decode(HostState.self, from: data)
    }

    func write(_ files: HostFiles) throws {
        try HostSetup.writeFile(files.stateFile, try JSONCoding.string(self, isoDates: true) + "\n", mode: 0o600)
    }
}
