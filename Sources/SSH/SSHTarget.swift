/// What the user typed to name a host: an alias from ~/.ssh/config, `user@host`, `host:port`,
/// `user@[::1]:2222` or `ssh://user@host:port`.
public struct SSHTarget: Sendable, Equatable, CustomStringConvertible {
    public var user: String?
    public var host: String
    public var port: Int?

    public init(user: String? = nil, host: String, port: Int? = nil) {
        self.user = user; self.host = host; self.port = port
    }

    /// Parses `[ssh://][user@]host[:port]`; IPv6 addresses go in brackets when a port follows.
    public init(parsing text: String) throws {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        if rest.hasPrefix("ssh://") { rest = rest.dropFirst(6); if rest.hasSuffix("/") { rest = rest.dropLast() } }
        guard !rest.isEmpty, !rest.contains(where: { $0 == " " || $0 == "/" || $0 == "\n" }) else { throw SSHError.invalidTarget(text) }
        if let at = rest.lastIndex(of: "@") {
            let u = rest[..<at]
            guard !u.isEmpty else { throw SSHError.invalidTarget(text) }
            user = String(u)
            rest = rest[rest.index(after: at)...]
        }
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw SSHError.invalidTarget(text) }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let tail = rest[rest.index(after: close)...]
            if tail.isEmpty { port = nil }
            else if tail.hasPrefix(":"), let p = Int(tail.dropFirst()), (1...65535).contains(p) { port = p }
            else { throw SSHError.invalidTarget(text) }
        } else if rest.filter({ $0 == ":" }).count == 1, let colon = rest.firstIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { throw SSHError.invalidTarget(text) }
            port = p
        } else {
            host = String(rest)   // a bare IPv6 address has several colons and no port
            port = nil
        }
        guard !host.isEmpty, !host.hasPrefix("-") else { throw SSHError.invalidTarget(text) }
    }

    public var description: String {
        var s = user.map { "\($0)@" } ?? ""
        s += host.contains(":") ? "[\(host)]" : host
        if let port { s += ":\(port)" }
        return s
    }
}

import Foundation
