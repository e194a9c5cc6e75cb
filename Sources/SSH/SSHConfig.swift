import Foundation

/// What ~/.ssh/config says about one host, resolved with OpenSSH's rules: blocks are read top to
/// bottom, the first value found for a keyword wins, IdentityFile accumulates.
public struct SSHHostConfig: Sendable, Equatable {
    /// The name as typed (what `Host` patterns matched).
    public var alias: String
    public var hostName: String
    public var port: Int
    public var user: String
    /// Key files to offer, `~` and `%` tokens expanded; the defaults when the config names none.
    public var identityFiles: [String]
    /// Hops to jump through, first to last (`ProxyJump a,b`).
    public var proxyJump: [SSHTarget]
    /// A command whose stdin/stdout carry the connection (`%h %p %r %n %%` not yet expanded).
    public var proxyCommand: String?
    /// Seconds of silence from the server before ferry sends a keepalive; 0 is off.
    public var serverAliveInterval: Int
    /// Unanswered keepalives before the connection is declared dead.
    public var serverAliveCountMax: Int
    public var connectTimeout: Int?
    /// `StrictHostKeyChecking` as written (`accept-new`, `yes`, ...), when set.
    public var strictHostKeyChecking: String?
    /// `UserKnownHostsFile`, expanded, when set.
    public var userKnownHostsFiles: [String]?

    public init(alias: String, hostName: String, port: Int = 22, user: String, identityFiles: [String] = [],
                proxyJump: [SSHTarget] = [], proxyCommand: String? = nil, serverAliveInterval: Int = 0,
                serverAliveCountMax: Int = 3, connectTimeout: Int? = nil, strictHostKeyChecking: String? = nil,
                userKnownHostsFiles: [String]? = nil) {
        self.alias = alias; self.hostName = hostName; self.port = port; self.user = user
        self.identityFiles = identityFiles; self.proxyJump = proxyJump; self.proxyCommand = proxyCommand
        self.serverAliveInterval = serverAliveInterval; self.serverAliveCountMax = serverAliveCountMax
        self.connectTimeout = connectTimeout; self.strictHostKeyChecking = strictHostKeyChecking
        self.userKnownHostsFiles = userKnownHostsFiles
    }

    /// The host as known_hosts names it: `name`, or `[name]:port` off port 22.
    public var knownHostsName: String { port == 22 ? hostName : "[\(hostName)]:\(port)" }
}

/// A parsed ssh config file (with its `Include`s). ferry reads it itself so `~` is `$HOME` and no
/// `Match exec` ever runs; libssh's own config processing stays off.
public struct SSHConfigFile: Sendable {
    struct Setting: Sendable { var key: String; var args: [String]; var line: Int; var file: String }
    enum Condition: Sendable { case hosts([String]); case match([String]) }
    struct Block: Sendable { var condition: Condition; var settings: [Setting] }

    var blocks: [Block]

    /// An empty config (no file).
    public init() { blocks = [Block(condition: .hosts(["*"]), settings: [])] }

    /// Reads `path` (a missing file is an empty config).
    public init(path: String, environment: SSHEnvironment) throws {
        self.init()
        guard FileManager.default.fileExists(atPath: path) else { return }
        try read(path, environment: environment, depth: 0)
    }

    /// Parses config text (for tests and for `-F -`-like uses).
    public init(text: String, file: String = "config", environment: SSHEnvironment) throws {
        self.init()
        try parse(text, file: file, environment: environment, depth: 0)
    }

    private mutating func read(_ path: String, environment: SSHEnvironment, depth: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SSHError.configInvalid(file: path, line: 0, reason: "cannot read the file")
        }
        try parse(String(decoding: data, as: UTF8.self), file: path, environment: environment, depth: depth)
    }

    private mutating func parse(_ text: String, file: String, environment: SSHEnvironment, depth: Int) throws {
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let words = try SSHConfigFile.tokenize(String(rawLine), file: file, line: lineNumber)
            guard let keyword = words.first else { continue }
            let key = keyword.lowercased()
            let args = Array(words.dropFirst())
            switch key {
            case "host":
                guard !args.isEmpty else { throw SSHError.configInvalid(file: file, line: lineNumber, reason: "Host needs at least one pattern") }
                blocks.append(Block(condition: .hosts(args), settings: []))
            case "match":
                guard !args.isEmpty else { throw SSHError.configInvalid(file: file, line: lineNumber, reason: "Match needs a criterion") }
                blocks.append(Block(condition: .match(args), settings: []))
            case "include":
                guard depth < 8 else { throw SSHError.configInvalid(file: file, line: lineNumber, reason: "Include nested too deeply") }
                for pattern in args {
                    var path = environment.expandTilde(pattern)
                    if !path.hasPrefix("/") { path = (environment.sshDirectory as NSString).appendingPathComponent(path) }
                    for match in SSHConfigFile.glob(path) { try read(match, environment: environment, depth: depth + 1) }
                }
            default:
                guard !args.isEmpty else { throw SSHError.configInvalid(file: file, line: lineNumber, reason: "\(keyword) needs a value") }
                blocks[blocks.count - 1].settings.append(Setting(key: key, args: args, line: lineNumber, file: file))
            }
        }
    }

    /// Splits a line into words: `Key value`, `Key=value`, double quotes group, `#` starts a comment.
    static func tokenize(_ line: String, file: String, line number: Int) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inQuotes = false, hasWord = false
        var chars = Array(line.trimmingCharacters(in: .whitespacesAndNewlines))
        // `Key=value` and `Key = value`: the first `=` after the keyword separates like a space.
        if let eq = chars.firstIndex(of: "="), !chars[..<eq].contains(where: { $0 == "\"" }) {
            let before = chars[..<eq].contains { !$0.isWhitespace }
            if before, chars[..<eq].split(whereSeparator: { $0.isWhitespace }).count == 1 { chars[eq] = " " }
        }
        for c in chars {
            if inQuotes {
                if c == "\"" { inQuotes = false } else { current.append(c) }
            } else if c == "\"" {
                inQuotes = true; hasWord = true
            } else if c == " " || c == "\t" {
                if hasWord { words.append(current); current = ""; hasWord = false }
            } else if c == "#" && !hasWord {
                break
            } else {
                current.append(c); hasWord = true
            }
        }
        if inQuotes { throw SSHError.configInvalid(file: file, line: number, reason: "unterminated quote") }
        if hasWord { words.append(current) }
        return words
    }

    static func glob(_ pattern: String) -> [String] {
        guard pattern.contains(where: { "*?[".contains($0) }) else {
            return FileManager.default.fileExists(atPath: pattern) ? [pattern] : []
        }
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }

    /// OpenSSH pattern matching: `*` and `?` wildcards, case-insensitive.
    static func wildcardMatch(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.lowercased().unicodeScalars), t = Array(text.lowercased().unicodeScalars)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) { pi += 1; ti += 1 }
            else if pi < p.count && p[pi] == "*" { star = pi; mark = ti; pi += 1 }
            else if star >= 0 { pi = star + 1; mark += 1; ti = mark }
            else { return false }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// A pattern list (`a*,!ab`, or words): some positive pattern matches and no negated one does.
    static func patternListMatches(_ patterns: [String], _ name: String) -> Bool {
        var matched = false
        for item in patterns.flatMap({ $0.split(separator: ",").map(String.init) }) {
            if item.hasPrefix("!") {
                if wildcardMatch(String(item.dropFirst()), name) { return false }
            } else if wildcardMatch(item, name) {
                matched = true
            }
        }
        return matched
    }

    /// The settings for `target`, with the target's own user and port taking precedence.
    public func resolve(_ target: SSHTarget, environment: SSHEnvironment) throws -> SSHHostConfig {
        var first: [String: Setting] = [:]
        var identities: [Setting] = []
        func collect(_ settings: [Setting]) {
            for s in settings {
                if s.key == "identityfile" { identities.append(s) } else if first[s.key] == nil { first[s.key] = s }
            }
        }
        // Host blocks match the name as typed; Match host sees the HostName found so far.
        for block in blocks {
            switch block.condition {
            case .hosts(let patterns):
                if SSHConfigFile.patternListMatches(patterns, target.host) { collect(block.settings) }
            case .match(let criteria):
                let hostName = first["hostname"].map { expandHostName($0.args[0], alias: target.host) } ?? target.host
                let user = target.user ?? first["user"]?.args[0] ?? environment.localUser
                if SSHConfigFile.matchApplies(criteria, alias: target.host, hostName: hostName, user: user, localUser: environment.localUser) {
                    collect(block.settings)
                }
            }
        }
        func int(_ key: String) throws -> Int? {
            guard let s = first[key] else { return nil }
            guard let v = Int(s.args[0]), v >= 0 else {
                throw SSHError.configInvalid(file: s.file, line: s.line, reason: "\(s.key): expected a number, got \(s.args[0].debugDescription)")
            }
            return v
        }
        let hostName = first["hostname"].map { expandHostName($0.args[0], alias: target.host) } ?? target.host
        var port = target.port ?? 22
        if target.port == nil, let p = try int("port") {
            guard (1...65535).contains(p) else { throw SSHError.configInvalid(file: first["port"]!.file, line: first["port"]!.line, reason: "Port: \(p) is not a TCP port") }
            port = p
        }
        let user = target.user ?? first["user"]?.args[0] ?? environment.localUser
        var config = SSHHostConfig(alias: target.host, hostName: hostName, port: port, user: user)
        let tokens: [Character: String] = ["d": environment.home, "u": environment.localUser, "h": hostName,
                                           "r": user, "p": String(port), "n": target.host, "%": "%"]
        config.identityFiles = identities.flatMap { $0.args }.filter { $0.lowercased() != "none" }
            .map { environment.expandTilde(SSHConfigFile.expandTokens($0, tokens)) }
        if identities.isEmpty {
            config.identityFiles = ["id_ed25519", "id_ecdsa", "id_rsa"].map { (environment.sshDirectory as NSString).appendingPathComponent($0) }
        }
        if let jump = first["proxyjump"], jump.args[0].lowercased() != "none" {
            config.proxyJump = try jump.args.joined(separator: ",").split(separator: ",").map {
                do { return try SSHTarget(parsing: String($0)) } catch {
                    throw SSHError.configInvalid(file: jump.file, line: jump.line, reason: "ProxyJump: \(String($0).debugDescription) is not [user@]host[:port]")
                }
            }
        }
        if let command = first["proxycommand"], command.args[0].lowercased() != "none" {
            config.proxyCommand = command.args.joined(separator: " ")
        }
        config.serverAliveInterval = try int("serveraliveinterval") ?? 0
        config.serverAliveCountMax = try int("serveralivecountmax") ?? 3
        config.connectTimeout = try int("connecttimeout")
        config.strictHostKeyChecking = first["stricthostkeychecking"]?.args[0].lowercased()
        if let files = first["userknownhostsfile"]?.args {
            config.userKnownHostsFiles = files.map { environment.expandTilde(SSHConfigFile.expandTokens($0, tokens)) }
        }
        return config
    }

    private func expandHostName(_ value: String, alias: String) -> String {
        SSHConfigFile.expandTokens(value, ["h": alias, "%": "%"])
    }

    static func expandTokens(_ text: String, _ tokens: [Character: String]) -> String {
        var out = ""
        var percent = false
        for c in text {
            if percent {
                if let v = tokens[c] { out += v } else { out.append("%"); out.append(c) }
                percent = false
            } else if c == "%" { percent = true } else { out.append(c) }
        }
        if percent { out.append("%") }
        return out
    }

    /// `Match` criteria ferry understands: all, host, originalhost, user, localuser. Anything else
    /// (exec, canonical, final, ...) makes the block not apply: ferry never runs `Match exec`.
    static func matchApplies(_ criteria: [String], alias: String, hostName: String, user: String, localUser: String) -> Bool {
        var i = 0
        while i < criteria.count {
            var word = criteria[i].lowercased()
            let negate = word.hasPrefix("!")
            if negate { word.removeFirst() }
            var result: Bool
            if word == "all" {
                result = true; i += 1
            } else if i + 1 < criteria.count {
                let value = criteria[i + 1].split(separator: ",").map(String.init)
                switch word {
                case "host": result = patternListMatches(value, hostName)
                case "originalhost": result = patternListMatches(value, alias)
                case "user": result = patternListMatches(value, user)
                case "localuser": result = patternListMatches(value, localUser)
                default: return false
                }
                i += 2
            } else {
                return false
            }
            if negate { result.toggle() }
            if !result { return false }
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
#endif
