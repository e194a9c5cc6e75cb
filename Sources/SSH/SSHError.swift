/// Everything that can go wrong between ferry and an SSH server, each with what to do about it.
public enum SSHError: Error, CustomStringConvertible, Equatable, Sendable {
    case connectionFailed(host: String, port: Int, reason: String)
    case connectTimedOut(host: String, port: Int, seconds: Int)
    case hostKeyUnknown(host: String, port: Int, fingerprint: String, acceptCommand: String)
    /// `host` is `name` or `[name]:port` as known_hosts spells it; `expected` is every fingerprint on record.
    case hostKeyMismatch(host: String, expected: String, presented: String)
    case hostKeyCheckFailed(host: String, reason: String)
    case knownHostsUnwritable(path: String, reason: String)
    case authenticationFailed(user: String, host: String, triedMethods: [String])
    /// The server hung up after too many keys were offered (sshd's MaxAuthTries).
    case tooManyAuthenticationFailures(user: String, host: String, triedMethods: [String])
    case keyUnreadable(path: String, reason: String)
    case channelFailed(host: String, operation: String, reason: String)
    case sftpFailed(path: String, operation: String, reason: String)
    case checksumMismatch(path: String, expected: String, actual: String)
    case unsafeRemoteName(name: String, directory: String)
    case invalidTarget(String)
    case invalidConnectionString(String, reason: String)
    case configInvalid(file: String, line: Int, reason: String)
    case proxyFailed(via: String, reason: String)
    case forwardingFailed(address: String, port: Int, reason: String)
    case terminalUnavailable(reason: String)
    case disconnected(host: String, reason: String)

    public var description: String {
        switch self {
        case .connectionFailed(let host, let port, let reason):
            return "cannot connect to \(host):\(port): \(reason) — check the host name and port, and that sshd is running there"
        case .connectTimedOut(let host, let port, let seconds):
            return "no SSH answer from \(host):\(port) within \(seconds) s — check that the host is up and reachable (VPN, firewall), or raise ConnectTimeout"
        case .hostKeyUnknown(let host, let port, let fingerprint, let acceptCommand):
            return "the host key of \(host):\(port) is not known (\(fingerprint)); compare it with the host's `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, then run `\(acceptCommand)`"
        case .hostKeyMismatch(let host, let expected, let presented):
            return "host key for \(host) changed: expected \(expected), got \(presented) — someone may be intercepting the connection; if you rebuilt the host, remove its line from known_hosts (`ssh-keygen -R '\(host)'`, and from $FERRY_HOME/known_hosts) and connect again"
        case .hostKeyCheckFailed(let host, let reason):
            return "cannot check the host key of \(host): \(reason)"
        case .knownHostsUnwritable(let path, let reason):
            return "cannot record the host key in \(path): \(reason) — check that the directory is writable, or set FERRY_HOME"
        case .authenticationFailed(let user, let host, let tried):
            let methods = tried.isEmpty ? "none" : tried.joined(separator: ", ")
            return "authentication as \(user)@\(host) failed (tried: \(methods)) — add your public key to the host's authorized_keys, load it into ssh-agent, or name it with IdentityFile / -i"
        case .tooManyAuthenticationFailures(let user, let host, let tried):
            let methods = tried.isEmpty ? "none" : tried.joined(separator: ", ")
            return "too many authentication failures: tried \(methods) as \(user)@\(host), and the server hung up (its MaxAuthTries) before the right key — add `IdentitiesOnly yes` and the key's `IdentityFile` to this host's block in ~/.ssh/config, or remove keys from ssh-agent (`ssh-add -d`)"
        case .keyUnreadable(let path, let reason):
            return "cannot read the private key \(path): \(reason)"
        case .channelFailed(let host, let operation, let reason):
            return "\(operation) on \(host) failed: \(reason)"
        case .sftpFailed(let path, let operation, let reason):
            return "SFTP \(operation) \(path) failed: \(reason)"
        case .checksumMismatch(let path, let expected, let actual):
            return "\(path) arrived damaged: sha256 \(actual), expected \(expected) — transfer it again without resuming"
        case .unsafeRemoteName(let name, let directory):
            return "refusing remote name \(name.debugDescription) in \(directory): a file name must not be empty, `.`, `..`, absolute, or contain `/`"
        case .invalidTarget(let target):
            return "\(target.debugDescription) is not a host: use an alias from ~/.ssh/config or user@host[:port]"
        case .invalidConnectionString(let text, let reason):
            return "\(text.debugDescription) is not a ferry connection string: \(reason) — paste the whole line `ferry host up` printed, like ferry://user@host:port#SHA256:..."
        case .configInvalid(let file, let line, let reason):
            return "\(file):\(line): \(reason)"
        case .proxyFailed(let via, let reason):
            return "cannot reach the host through \(via): \(reason)"
        case .forwardingFailed(let address, let port, let reason):
            return "port forwarding \(address):\(port) failed: \(reason) — check AllowTcpForwarding/PermitListen in the server's sshd_config and that the port is free"
        case .terminalUnavailable(let reason):
            return "no terminal: \(reason)"
        case .disconnected(let host, let reason):
            return "the connection to \(host) was closed: \(reason)"
        }
    }
}
