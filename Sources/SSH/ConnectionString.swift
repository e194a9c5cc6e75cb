import Foundation

/// The one line `ferry host up` prints and `ferry hosts add` takes: where a host is, how to get
/// there, and the host key it must present.
///
///     ferry://root@gpu.example.com:2222#SHA256:<43 base64 characters>
///     ferry://root@127.0.0.1:40022?jump=relay@relay.example.com:22&jump-key=SHA256:...#SHA256:...
///     ferry://me@gpu.internal:22?proxy=cloudflared%20access%20ssh%20--hostname%20%25h#SHA256:...
///
/// The fragment pins the host's key (`SHA256:` as `ssh-keygen -l` prints it); `jump` names a relay to
/// go through (ProxyJump) and `jump-key` pins the relay's key; `proxy` is a ProxyCommand
/// (percent-encoded). Unknown parameters are refused rather than ignored: each one changes how a
/// connection is made.
public struct ConnectionString: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var host: String
    public var port: Int
    /// `SHA256:...` without base64 padding.
    public var hostKey: String
    /// The relay to go through, when the host is reachable only from it.
    public var jump: SSHTarget?
    /// The relay's `SHA256:...`, pinned like the host's.
    public var jumpHostKey: String?
    /// A command carrying the connection instead of TCP (`%h %p %r` expanded as ssh does).
    public var proxyCommand: String?

    public static let scheme = "ferry://"

    public init(user: String, host: String, port: Int = 22, hostKey: String, jump: SSHTarget? = nil,
                jumpHostKey: String? = nil, proxyCommand: String? = nil) {
        self.user = user; self.host = host; self.port = port
        self.hostKey = ConnectionString.normalizedFingerprint(hostKey)
        self.jump = jump
        self.jumpHostKey = jumpHostKey.map(ConnectionString.normalizedFingerprint)
        self.proxyCommand = proxyCommand
    }

    /// Parses `ferry://user@host[:port][?jump=...&jump-key=...&proxy=...]#SHA256:...`.
    public init(parsing input: String) throws {
        let text = input.trimmingCharacters(in: .whitespacesAndNewlines)
        func invalid(_ reason: String) -> SSHError { .invalidConnectionString(text, reason: reason) }
        guard text.hasPrefix(ConnectionString.scheme) else { throw invalid("it must start with ferry://") }
        var rest = Substring(text.dropFirst(ConnectionString.scheme.count))
        guard let hash = rest.firstIndex(of: "#") else {
            throw invalid("the host key is missing (the #SHA256:... at the end pins it; ferry never connects without one)")
        }
        let fragment = String(rest[rest.index(after: hash)...])
        rest = rest[..<hash]
        guard ConnectionString.isFingerprint(fragment) else {
            throw invalid("#\(fragment) is not a host key fingerprint (SHA256: and 43 base64 characters)")
        }
        var query: Substring = ""
        if let question = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard rest.contains("@") else { throw invalid("the user is missing: write user@host") }
        let target: SSHTarget
        do { target = try SSHTarget(parsing: String(rest)) } catch { throw invalid("\(String(rest).debugDescription) is not user@host[:port]") }
        guard let user = target.user else { throw invalid("the user is missing: write user@host") }
        var jump: SSHTarget?, jumpKey: String?, proxy: String?
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            guard parts.count == 2, let value = String(parts[1]).removingPercentEncoding, !value.isEmpty else {
                throw invalid("the parameter \(key.debugDescription) has no value")
            }
            switch key {
            case "jump":
                guard jump == nil else { throw invalid("jump is given twice") }
                do { jump = try SSHTarget(parsing: value) } catch { throw invalid("jump=\(value) is not [user@]host[:port]") }
            case "jump-key":
                guard jumpKey == nil else { throw invalid("jump-key is given twice") }
                guard ConnectionString.isFingerprint(value) else { throw invalid("jump-key=\(value) is not a SHA256:... fingerprint") }
                jumpKey = value
            case "proxy":
                guard proxy == nil else { throw invalid("proxy is given twice") }
                proxy = value
            default:
                throw invalid("unknown parameter \(key.debugDescription) (known: jump, jump-key, proxy) — is this ferry older than the one that printed it?")
            }
        }
        if jumpKey != nil && jump == nil { throw invalid("jump-key without jump") }
        if jump != nil && proxy != nil { throw invalid("give either jump or proxy, not both") }
        self.init(user: user, host: target.host, port: target.port ?? 22, hostKey: fragment, jump: jump,
                  jumpHostKey: jumpKey, proxyCommand: proxy)
    }

    /// The canonical form; parsing it gives back an equal value.
    public var description: String {
        var s = ConnectionString.scheme + SSHTarget(user: user, host: host, port: port).description
        var query: [String] = []
        if let jump { query.append("jump=" + ConnectionString.percentEncode(jump.description)) }
        if let jumpHostKey { query.append("jump-key=" + ConnectionString.percentEncode(jumpHostKey)) }
        if let proxyCommand { query.append("proxy=" + ConnectionString.percentEncode(proxyCommand)) }
        if !query.isEmpty { s += "?" + query.joined(separator: "&") }
        return s + "#" + hostKey
    }

    /// `user@host:port`.
    public var target: SSHTarget { SSHTarget(user: user, host: host, port: port) }

    /// The host as known_hosts names it: `name`, or `[name]:port` off port 22.
    public var knownHostsName: String { port == 22 ? host : "[\(host)]:\(port)" }

    /// Settings to connect with: `alias` names it in messages; a jump becomes ProxyJump, a proxy
    /// ProxyCommand. Pair it with `hostKeyPolicy` in the options.
    public func hostConfig(alias: String, identityFiles: [String] = []) -> SSHHostConfig {
        SSHHostConfig(alias: alias, hostName: host, port: port, user: user, identityFiles: identityFiles,
                      proxyJump: jump.map { [$0] } ?? [], proxyCommand: proxyCommand)
    }

    /// The same string with a target or jump that is a Host alias of the ssh config replaced by where
    /// that block says (HostName, Port, User; the target's single ProxyJump when this names none), as
    /// OpenSSH would take them. A port of 22 counts as unsaid (the string always carries one).
    /// Whoever probes or pins the relay should connect with `SSHSession.resolve(jump)` for its IdentityFiles.
    public func resolvingConfigAliases(environment: SSHEnvironment) throws -> ConnectionString {
        let options = SSHConnectOptions(environment: environment)
        let target = try SSHSession.resolve(SSHTarget(user: user, host: host, port: port == 22 ? nil : port).description, options: options)
        var relay = jump
        if relay == nil, proxyCommand == nil, target.proxyJump.count == 1 { relay = target.proxyJump[0] }
        if let hop = relay {
            let resolved = try SSHSession.resolve(hop.description, options: options)
            relay = SSHTarget(user: resolved.user, host: resolved.hostName, port: resolved.port)
        }
        return ConnectionString(user: user, host: target.hostName, port: target.port, hostKey: hostKey, jump: relay,
                                jumpHostKey: jumpHostKey, proxyCommand: proxyCommand)
    }

    /// The policy that checks the pinned key.
    public var hostKeyPolicy: HostKeyPolicy { .pinned(hostKey) }

    /// Whether `text` is `SHA256:` followed by the unpadded base64 of 32 bytes.
    public static func isFingerprint(_ text: String) -> Bool {
        guard text.hasPrefix("SHA256:") else { return false }
        var b64 = String(text.dropFirst(7))
        while b64.hasSuffix("=") { b64.removeLast() }
        guard b64.count == 43, b64.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") }) else { return false }
        return Data(base64Encoded: b64 + "=")?.count == 32
    }

    /// `SHA256:...` with the padding OpenSSH leaves off removed.
    public static func normalizedFingerprint(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespaces)
        while t.hasSuffix("=") { t.removeLast() }
        return t
    }

    /// Everything but unreserved characters and `@:/,` percent-encoded (so `&`, `#`, `%`, `+` and
    /// spaces survive the trip).
    static func percentEncode(_ value: String) -> String {
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~@:/,")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}
