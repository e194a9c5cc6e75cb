import Crypto
import Foundation
import System

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
    /// `UserKnownHostsFile`, expanded, when set (`none`: an empty list).
    public var userKnownHostsFiles: [String]?
    /// `GlobalKnownHostsFile` as written (OpenSSH expands neither `~` nor tokens there).
    public var globalKnownHostsFiles: [String] = SSHHostConfig.defaultGlobalKnownHostsFiles
    /// `HostKeyAlias`: the name host keys are looked up and recorded under instead of `[host]:port`.
    public var hostKeyAlias: String?
    /// `IdentitiesOnly yes`: offer the IdentityFiles only, never every key in ssh-agent.
    public var identitiesOnly = false
    /// The IdentityFile values as written (`~` and tokens unexpanded), as `ssh -G` prints them.
    public var identityFilesAsWritten: [String] = []

    /// OpenSSH's GlobalKnownHostsFile default.
    public static let defaultGlobalKnownHostsFiles = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]

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

    /// The host as known_hosts names it: the HostKeyAlias, else `name`, or `[name]:port` off port 22.
    public var knownHostsName: String { hostKeyAlias ?? (port == 22 ? hostName : "[\(hostName)]:\(port)") }

    /// The user known_hosts files read: UserKnownHostsFile, else `~/.ssh/known_hosts` and `known_hosts2`.
    public func userKnownHostsFilesInEffect(_ environment: SSHEnvironment) -> [String] {
        userKnownHostsFiles ?? [environment.userKnownHosts, environment.userKnownHosts + "2"]
    }

    /// What `ssh -G` prints for these settings (the keywords ferry honours), one `keyword value` a line.
    public func openSSHDump(_ environment: SSHEnvironment) -> String {
        var lines = ["host \(alias)", "user \(user)", "hostname \(hostName)", "port \(port)"]
        lines.append("identitiesonly \(identitiesOnly ? "yes" : "no")")
        if let hostKeyAlias { lines.append("hostkeyalias \(hostKeyAlias)") }
        lines += identityFilesAsWritten.map { "identityfile \($0)" }
        if !proxyJump.isEmpty { lines.append("proxyjump \(proxyJump.map(\.description).joined(separator: ","))") }
        if let proxyCommand { lines.append("proxycommand \(proxyCommand)") }
        let user = userKnownHostsFilesInEffect(environment)
        lines.append("userknownhostsfile \(user.isEmpty ? "none" : user.joined(separator: " "))")
        lines.append("globalknownhostsfile \(globalKnownHostsFiles.isEmpty ? "none" : globalKnownHostsFiles.joined(separator: " "))")
        if let strictHostKeyChecking { lines.append("stricthostkeychecking \(strictHostKeyChecking)") }
        if let connectTimeout { lines.append("connecttimeout \(connectTimeout)") }
        lines.append("serveraliveinterval \(serverAliveInterval)")
        lines.append("serveralivecountmax \(serverAliveCountMax)")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A parsed ssh config file (with its `Include`s). ferry reads it itself so `~` is `$HOME`;
/// libssh's own config processing stays off. `Match exec` runs through `/bin/sh -c` as in OpenSSH.
public struct SSHConfigFile: Sendable {
    struct Setting: Sendable { var key: String; var args: [String]; var line: Int; var file: String }
    enum Condition: Sendable { case hosts([String]); case match([String], file: String, line: Int) }
    /// Settings that apply when every condition holds: a `Host`/`Match` line, behind the conditions
    /// of the block an `Include` sits in (an included file's blocks apply only where its Include does).
    struct Block: Sendable { var conditions: [Condition]; var settings: [Setting] }

    var blocks: [Block]

    /// An empty config (no file).
    public init() { blocks = [Block(conditions: [], settings: [])] }

    /// Reads `path` (a missing file is an empty config).
    public init(path: String, environment: SSHEnvironment) throws {
        self.init()
        guard FileManager.default.fileExists(atPath: path) else { return }
        try read(path, environment: environment, depth: 0, enclosing: [])
    }

    /// Parses config text (for tests and for `-F -`-like uses).
    public init(text: String, file: String = "config", environment: SSHEnvironment) throws {
        self.init()
        try parse(text, file: file, environment: environment, depth: 0, enclosing: [])
    }

    private mutating func read(_ path: String, environment: SSHEnvironment, depth: Int, enclosing: [Condition]) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SSHError.configInvalid(file: path, line: 0, reason: "cannot read the file")
        }
        try parse(String(decoding: data, as: UTF8.self), file: path, environment: environment, depth: depth, enclosing: enclosing)
    }

    private mutating func parse(_ text: String, file: String, environment: SSHEnvironment, depth: Int, enclosing: [Condition]) throws {
        // Lines before the file's first Host/Match belong to the block its Include sits in.
        if depth > 0 { blocks.append(Block(conditions: enclosing, settings: [])) }
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
                blocks.append(Block(conditions: enclosing + [.hosts(args)], settings: []))
            case "match":
                guard !args.isEmpty else { throw SSHError.configInvalid(file: file, line: lineNumber, reason: "Match needs a criterion") }
                try SSHConfigFile.checkCriteria(args, file: file, line: lineNumber)
                blocks.append(Block(conditions: enclosing + [.match(args, file: file, line: lineNumber)], settings: []))
            case "include":
                guard depth < 8 else { throw SSHError.configInvalid(file: file, line: lineNumber, reason: "Include nested too deeply") }
                let scope = blocks[blocks.count - 1].conditions
                for pattern in args {
                    var path = environment.expandTilde(pattern)
                    if !path.hasPrefix("/") { path = (environment.sshDirectory as NSString).appendingPathComponent(path) }
                    for match in SSHConfigFile.glob(path) { try read(match, environment: environment, depth: depth + 1, enclosing: scope) }
                }
                // The lines after the Include stay in the block it sits in.
                blocks.append(Block(conditions: scope, settings: []))
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
        var seenIdentities = Set<String>()
        func collect(_ settings: [Setting]) {
            for s in settings {
                if s.key == "identityfile" {
                    // A second pass (Match final) meets the same lines again; OpenSSH ignores duplicates.
                    if seenIdentities.insert("\(s.file):\(s.line)").inserted { identities.append(s) }
                } else if first[s.key] == nil { first[s.key] = s }
            }
        }
        func int(_ key: String) throws -> Int? {
            guard let s = first[key] else { return nil }
            guard let v = Int(s.args[0]), v >= 0 else {
                throw SSHError.configInvalid(file: s.file, line: s.line, reason: "\(s.key): expected a number, got \(s.args[0].debugDescription)")
            }
            return v
        }
        func currentPort() throws -> Int {
            if let p = target.port { return p }
            guard let p = try int("port"), let s = first["port"] else { return 22 }
            guard (1...65535).contains(p) else { throw SSHError.configInvalid(file: s.file, line: s.line, reason: "Port: \(p) is not a TCP port") }
            return p
        }
        func currentHostName() -> String { first["hostname"].map { expandHostName($0.args[0], alias: target.host) } ?? target.host }
        func currentUser() -> String { target.user ?? first["user"]?.args[0] ?? environment.localUser }

        // Host blocks match the name as typed; Match sees the HostName, User and Port found so far.
        // As in OpenSSH, `Match final`/`canonical` make a second pass over the whole file.
        let needsFinalPass = blocks.contains { $0.conditions.contains { if case .match(let c, _, _) = $0 { return c.contains { ["final", "canonical", "!final", "!canonical"].contains($0.lowercased()) } }; return false } }
        for finalPass in needsFinalPass ? [false, true] : [false] {
            var evaluated: [String: Bool] = [:]   // a Match line is evaluated once per pass, where it stands
            for block in blocks {
                var applies = true
                for condition in block.conditions where applies {
                    switch condition {
                    case .hosts(let patterns):
                        applies = SSHConfigFile.patternListMatches(patterns, target.host)
                    case .match(let criteria, let file, let line):
                        let key = "\(file):\(line)"
                        if let known = evaluated[key] { applies = known; break }
                        let context = MatchContext(alias: target.host, hostName: currentHostName(), user: currentUser(),
                                                   port: try currentPort(), hostKeyAlias: first["hostkeyalias"]?.args[0],
                                                   finalPass: finalPass, file: file, line: line)
                        applies = try SSHConfigFile.matchApplies(criteria, context, environment: environment)
                        evaluated[key] = applies
                    }
                }
                if applies { collect(block.settings) }
            }
        }

        let hostName = currentHostName()
        let port = try currentPort()
        let user = currentUser()
        var config = SSHHostConfig(alias: target.host, hostName: hostName, port: port, user: user)
        if let alias = first["hostkeyalias"], alias.args[0].lowercased() != "none" { config.hostKeyAlias = alias.args[0] }
        if let jump = first["proxyjump"], jump.args[0].lowercased() != "none" {
            config.proxyJump = try jump.args.joined(separator: ",").split(separator: ",").map {
                do { return try SSHTarget(parsing: String($0)) } catch {
                    throw SSHError.configInvalid(file: jump.file, line: jump.line, reason: "ProxyJump: \(String($0).debugDescription) is not [user@]host[:port]")
                }
            }
        }
        var tokens = SSHConfigFile.localTokens(environment)
        tokens["h"] = hostName; tokens["r"] = user; tokens["p"] = String(port); tokens["n"] = target.host
        tokens["k"] = config.hostKeyAlias ?? target.host
        tokens["C"] = SSHConfigFile.connectionHash(tokens)
        tokens["j"] = config.proxyJump.isEmpty ? "" : config.proxyJump.map(\.description).joined(separator: ",")
        let written = identities.flatMap { $0.args }.filter { $0.lowercased() != "none" }
        config.identityFilesAsWritten = written
        config.identityFiles = written.map { environment.expandTilde(SSHConfigFile.expandTokens($0, tokens)) }
        if identities.isEmpty {
            config.identityFilesAsWritten = ["id_ed25519", "id_ecdsa", "id_rsa"].map { "~/.ssh/\($0)" }
            config.identityFiles = ["id_ed25519", "id_ecdsa", "id_rsa"].map { (environment.sshDirectory as NSString).appendingPathComponent($0) }
        }
        if let only = first["identitiesonly"] {
            switch only.args[0].lowercased() {
            case "yes", "true": config.identitiesOnly = true
            case "no", "false": config.identitiesOnly = false
            default: throw SSHError.configInvalid(file: only.file, line: only.line, reason: "IdentitiesOnly: expected yes or no, got \(only.args[0].debugDescription)")
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
            config.userKnownHostsFiles = files.first?.lowercased() == "none" ? []
                : files.map { environment.expandTilde(SSHConfigFile.expandTokens($0, tokens)) }
        }
        if let files = first["globalknownhostsfile"]?.args {
            config.globalKnownHostsFiles = files.first?.lowercased() == "none" ? [] : files
        }
        return config
    }

    private func expandHostName(_ value: String, alias: String) -> String {
        SSHConfigFile.expandTokens(value, ["h": alias, "%": "%"])
    }

    /// The tokens that do not depend on the host: `%d %u %i %l %L %%`.
    static func localTokens(_ environment: SSHEnvironment) -> [Character: String] {
        let local = environment.localHostName
        return ["d": environment.home, "u": environment.localUser, "i": String(getuid()), "l": local,
                "L": String(local.prefix { $0 != "." }), "%": "%"]
    }

    /// `%C`: the SHA-1 of `%l%h%p%r` in hex, as OpenSSH 9.2 computes it.
    static func connectionHash(_ tokens: [Character: String]) -> String {
        let text = ["l", "h", "p", "r"].map { tokens[$0] ?? "" }.joined()
        return Insecure.SHA1.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
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

    /// What a `Match` line is evaluated against, at the point in the file where it stands.
    struct MatchContext {
        var alias: String
        var hostName: String
        var user: String
        var port: Int
        var hostKeyAlias: String?
        var finalPass: Bool
        var file: String
        var line: Int
    }

    static let knownCriteria: Set<String> = ["all", "canonical", "final", "exec", "host", "originalhost", "user", "localuser"]

    /// Refuses criteria OpenSSH 9 does not know (or that ferry cannot evaluate) when the file is read.
    static func checkCriteria(_ criteria: [String], file: String, line: Int) throws {
        var i = 0
        while i < criteria.count {
            var word = criteria[i].lowercased()
            if word.hasPrefix("!") { word.removeFirst() }
            guard knownCriteria.contains(word) else {
                throw SSHError.configInvalid(file: file, line: line, reason: "Match \(criteria[i]): ferry knows all, canonical, final, exec, host, originalhost, user and localuser")
            }
            if ["all", "canonical", "final"].contains(word) { i += 1; continue }
            guard i + 1 < criteria.count else {
                throw SSHError.configInvalid(file: file, line: line, reason: "Match \(criteria[i]) needs an argument")
            }
            i += 2
        }
    }

    /// Evaluates `Match` criteria left to right; the first that fails ends it (a later `exec` never runs).
    static func matchApplies(_ criteria: [String], _ c: MatchContext, environment: SSHEnvironment) throws -> Bool {
        var i = 0
        while i < criteria.count {
            var word = criteria[i].lowercased()
            let negate = word.hasPrefix("!")
            if negate { word.removeFirst() }
            var result: Bool
            switch word {
            case "all": result = true; i += 1
            case "canonical", "final": result = c.finalPass; i += 1
            default:
                guard i + 1 < criteria.count else { return false }
                let argument = criteria[i + 1]
                let value = argument.split(separator: ",").map(String.init)
                switch word {
                case "host": result = patternListMatches(value, c.hostName)
                case "originalhost": result = patternListMatches(value, c.alias)
                case "user": result = patternListMatches(value, c.user)
                case "localuser": result = patternListMatches(value, environment.localUser)
                case "exec": result = try exec(argument, c, environment: environment)
                default: throw SSHError.configInvalid(file: c.file, line: c.line, reason: "Match \(criteria[i]): not a criterion ferry knows")
                }
                i += 2
            }
            if negate { result.toggle() }
            if !result { return false }
        }
        return true
    }

    /// `Match exec COMMAND`: true when `/bin/sh -c COMMAND` (tokens expanded) exits 0. A token whose
    /// value a shell would read as more than a word is refused rather than run.
    static func exec(_ template: String, _ c: MatchContext, environment: SSHEnvironment) throws -> Bool {
        var tokens = localTokens(environment)
        tokens["h"] = c.hostName; tokens["n"] = c.alias; tokens["p"] = String(c.port); tokens["r"] = c.user
        tokens["k"] = c.hostKeyAlias ?? c.alias
        tokens["C"] = connectionHash(tokens)
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+:@,/=")
        var percent = false
        for ch in template {
            if percent, ch != "%" {
                guard let value = tokens[ch] else {
                    throw SSHError.configInvalid(file: c.file, line: c.line, reason: "Match exec: %\(ch) is not a token (known: %% %C %d %h %i %k %L %l %n %p %r %u)")
                }
                if !value.allSatisfy({ safe.contains($0) }) {
                    throw SSHError.configInvalid(file: c.file, line: c.line, reason: "Match exec: %\(ch) is \(value.debugDescription), which a shell would not read as one word; ferry does not run it")
                }
            }
            percent = !percent && ch == "%"
        }
        let command = expandTokens(template, tokens)
        let pid: pid_t
        do throws(SystemError) {
            // stdin and stdout away from ferry's, stderr shown, as OpenSSH runs it.
            pid = try Spawn.start(["/bin/sh", "-c", command], stdin: .null, stdout: .null, stderr: .inherit)
        } catch {
            throw SSHError.configInvalid(file: c.file, line: c.line, reason: "Match exec \(command.debugDescription): \(error.reason)")
        }
        let status = Spawn.decodeWaitStatus(Spawn.wait(pid))
        return status.code == 0 && status.signal == nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
