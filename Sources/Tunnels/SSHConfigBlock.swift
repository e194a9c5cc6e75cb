import Foundation
import SSH

/// The `~/.ssh/config` block that lets OpenSSH (and so VS Code Remote-SSH) reach a host the way
/// ferry does, with the host key pinned: `HostKeyAlias NAME` makes ssh look the key up under NAME,
/// wherever the connection really goes (a relay's loopback port is the same for every host behind
/// it). A relay gets a block of its own (`NAME-relay`), which `ProxyJump` names.
public struct SSHConfigBlock: Sendable {
    /// Where ssh finds the pinned keys.
    public enum Keys: Sendable {
        /// In a known_hosts file (ferry's), under the alias names — `ferry ssh-config` writes them there.
        case knownHostsFile(String)
        /// In the block itself, through `KnownHostsCommand /bin/echo ...` (OpenSSH 8.5+): one paste, nothing else to copy.
        case inline(host: PublicHostKey, relay: PublicHostKey?)
    }

    public var name: String
    public var connection: ConnectionString
    public var identityFile: String?
    /// The relay's own keys, when the ssh config gives its name some (`IdentityFile` in its Host block).
    public var relayIdentityFiles: [String]
    public var keys: Keys
    public var serverAliveInterval: Int

    public init(name: String, connection: ConnectionString, identityFile: String? = nil, relayIdentityFiles: [String] = [], keys: Keys,
                serverAliveInterval: Int = 15) {
        self.name = name; self.connection = connection; self.identityFile = identityFile; self.relayIdentityFiles = relayIdentityFiles
        self.keys = keys; self.serverAliveInterval = serverAliveInterval
    }

    public var relayName: String { "\(name)-relay" }

    /// Whether `name` can be a Host alias (and a HostKeyAlias): letters, digits, `.`, `_`, `-`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && !name.hasPrefix("-")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
    }

    public func render() -> String {
        var blocks: [String] = []
        var main = ["Host \(name)", "    HostName \(connection.host)", "    Port \(connection.port)", "    User \(connection.user)"]
        main += identityLines
        if connection.jump != nil { main.append("    ProxyJump \(relayName)") }
        if let proxy = connection.proxyCommand { main.append("    ProxyCommand \(proxy)") }
        main += keyLines(alias: name, key: hostKey)
        main.append("    ServerAliveInterval \(serverAliveInterval)")
        main.append("    ServerAliveCountMax 3")
        blocks.append(main.joined(separator: "\n"))
        if let jump = connection.jump {
            var relay = ["Host \(relayName)", "    HostName \(jump.host)", "    Port \(jump.port ?? 22)"]
            if let user = jump.user { relay.append("    User \(user)") }
            relay += relayIdentityFiles.map { "    IdentityFile \(SSHConfigBlock.quote($0))" }
            relay += identityLines
            if connection.jumpHostKey != nil { relay += keyLines(alias: relayName, key: relayKey) }
            relay.append("    ServerAliveInterval \(serverAliveInterval)")
            blocks.append(relay.joined(separator: "\n"))
        }
        return "# ferry: \(connection)\n" + blocks.joined(separator: "\n") + "\n"
    }

    private var hostKey: PublicHostKey? { if case .inline(let host, _) = keys { return host }; return nil }
    private var relayKey: PublicHostKey? { if case .inline(_, let relay) = keys { return relay }; return nil }

    private var identityLines: [String] {
        guard let identityFile else { return [] }
        return ["    IdentityFile \(SSHConfigBlock.quote(identityFile))", "    IdentitiesOnly yes"]
    }

    private func keyLines(alias: String, key: PublicHostKey?) -> [String] {
        var lines = ["    HostKeyAlias \(alias)"]
        switch keys {
        case .knownHostsFile(let file):
            lines.append("    UserKnownHostsFile \(SSHConfigBlock.quote(file))")
        case .inline:
            if let key { lines.append("    KnownHostsCommand /bin/echo \(alias) \(key.type) \(key.base64)") }
        }
        lines.append("    StrictHostKeyChecking yes")
        return lines
    }

    static func quote(_ value: String) -> String { value.contains(" ") ? "\"\(value)\"" : value }
}

/// The laptop side of a connection string: learn and pin the host's (and relay's) full keys in
/// ferry's known_hosts, checked against the fingerprints it carries. Pinned under the alias names
/// (for OpenSSH's HostKeyAlias) and under the real `[host]:port` names (for ferry's own client).
public enum HostPinning {
    public struct Result: Sendable {
        public var hostKey: PublicHostKey
        public var relayKey: PublicHostKey?
        /// The connection as OpenSSH takes it: a target or relay that is a Host alias of the ssh
        /// config replaced by where its block says.
        public var connection: ConnectionString
        /// The config block, with keys in ferry's known_hosts.
        public var block: SSHConfigBlock
    }

    /// Learns and pins the host's (and relay's) keys against the string's fingerprints. A target or
    /// relay named by an ssh-config alias is reached as OpenSSH would: its block's HostName, Port,
    /// User and IdentityFile (the relay is offered `identityFile` first, then its own keys).
    public static func pin(name: String, connection given: ConnectionString, identityFile: String?, environment: SSHEnvironment,
                           connectTimeout: Int = 15) async throws -> Result {
        let knownHosts = environment.ferryKnownHosts
        let identities = identityFile.map { [environment.expandTilde($0)] } ?? []
        let connection = try given.resolvingConfigAliases(environment: environment)
        var relayKey: PublicHostKey?
        var relayOwnKeys: [String] = []
        var hop: SSHSession?
        if let jump = given.jump ?? connection.jump {
            var relayConfig = try SSHSession.resolve(jump.description, options: SSHConnectOptions(environment: environment))
            let defaults = SSHHostConfig.defaultIdentityFiles(environment)
            relayOwnKeys = relayConfig.identityFiles.filter { !defaults.contains($0) && !identities.contains($0) }
            relayConfig.identityFiles = identities + relayConfig.identityFiles.filter { !identities.contains($0) }
            relayConfig.alias = "\(name)-relay"
            let (relayHost, relayPort) = (relayConfig.hostName, relayConfig.port)
            if let relayFingerprint = connection.jumpHostKey {
                let key = try await HostKeyProbe.fetch(hostName: relayHost, port: relayPort, fingerprint: relayFingerprint,
                                                       environment: environment, connectTimeout: connectTimeout)
                try KnownHostsEditor.pin(key, names: ["\(name)-relay", relayPort == 22 ? relayHost : "[\(relayHost)]:\(relayPort)"], in: knownHosts)
                relayKey = key
            }
            let options = SSHConnectOptions(environment: environment,
                                            hostKeyPolicy: connection.jumpHostKey.map { .pinned($0) } ?? .strict,
                                            identityFiles: relayConfig.identityFiles, connectTimeout: connectTimeout)
            hop = try await SSHSession.connect(config: relayConfig, options: options)
        }
        do {
            let key = try await HostKeyProbe.fetch(hostName: connection.host, port: connection.port, fingerprint: connection.hostKey,
                                                   via: hop, proxyCommand: connection.proxyCommand, environment: environment,
                                                   connectTimeout: connectTimeout)
            try KnownHostsEditor.pin(key, names: [name, connection.knownHostsName], in: knownHosts)
            await hop?.close()
            let block = SSHConfigBlock(name: name, connection: connection, identityFile: identityFile.map { environment.expandTilde($0) },
                                       relayIdentityFiles: relayOwnKeys, keys: .knownHostsFile(knownHosts))
            return Result(hostKey: key, relayKey: relayKey, connection: connection, block: block)
        } catch {
            await hop?.close()
            throw error
        }
    }
}

extension SSHHostConfig {
    /// OpenSSH's default identity files in `$HOME/.ssh`.
    static func defaultIdentityFiles(_ environment: SSHEnvironment) -> [String] {
        ["id_ed25519", "id_ecdsa", "id_rsa"].map { (environment.sshDirectory as NSString).appendingPathComponent($0) }
    }
}
