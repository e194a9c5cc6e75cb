/// Everything that can go wrong between ferry and an SSH server, each with what to do about it.
public enum SSHError: Error, CustomStringConvertible, Equatable {
    case connectionFailed(host: String, port: Int, reason: String)
    case hostKeyUnknown(host: String, port: Int, fingerprint: String, acceptCommand: String)
    case hostKeyMismatch(host: String, expected: String, presented: String)
    case hostKeyCheckFailed(host: String, reason: String)
    case authenticationFailed(user: String, host: String, triedMethods: [String])
    case keyUnreadable(path: String, reason: String)
    case channelFailed(host: String, operation: String, reason: String)
    case sftpFailed(path: String, operation: String, reason: String)
    case invalidTarget(String)
    case disconnected(host: String)

    public var description: String {
        switch self {
        case .connectionFailed(let host, let port, let reason):
            return "cannot connect to \(host):\(port): \(reason) — check the host name and port, and that sshd is running there"
        case .hostKeyUnknown(let host, let port, let fingerprint, let acceptCommand):
            return "the host key of \(host):\(port) is not known (\(fingerprint)); verify it out of band, then run `\(acceptCommand)`"
        case .hostKeyMismatch(let host, let expected, let presented):
            return "host key for \(host) changed: expected \(expected), got \(presented) — someone may be intercepting the connection; if you rebuilt the host, run `ferry hosts forget \(host)` and connect again"
        case .hostKeyCheckFailed(let host, let reason):
            return "cannot check the host key of \(host): \(reason)"
        case .authenticationFailed(let user, let host, let tried):
            let methods = tried.isEmpty ? "none" : tried.joined(separator: ", ")
            return "authentication as \(user)@\(host) failed (tried: \(methods)) — add your public key to the host's authorized_keys, load it into ssh-agent, or name it with IdentityFile"
        case .keyUnreadable(let path, let reason):
            return "cannot read the private key \(path): \(reason)"
        case .channelFailed(let host, let operation, let reason):
            return "\(operation) on \(host) failed: \(reason)"
        case .sftpFailed(let path, let operation, let reason):
            return "SFTP \(operation) \(path) failed: \(reason)"
        case .invalidTarget(let target):
            return "\(target) is not a host: use an alias from ~/.ssh/config or user@host[:port]"
        case .disconnected(let host):
            return "the connection to \(host) was closed"
        }
    }
}
