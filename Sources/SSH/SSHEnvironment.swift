import Foundation

/// The parts of the process environment the SSH client reads, as a value so tests (which run in
/// parallel) can give each session its own HOME, agent and FERRY_HOME without touching the process.
public struct SSHEnvironment: Sendable, Equatable {
    /// `$HOME`: `~` in paths and ~/.ssh are this, as git reads it (not the password database's home).
    public var home: String
    /// ferry's state directory: `$FERRY_HOME`, else `$HOME/.ferry`.
    public var ferryHome: String
    /// The ssh-agent socket (`$SSH_AUTH_SOCK`); nil means no agent is asked.
    public var agentSocket: String?
    /// A password to use when the server asks for one (`$FERRY_SSH_PASSWORD`); never from argv.
    public var password: String?
    /// The local user name, the default remote user.
    public var localUser: String
    /// The ssh config file; nil means `$HOME/.ssh/config`.
    public var configFile: String?
    /// `$TERM`, passed on when a PTY is requested.
    public var term: String?

    public init(home: String, ferryHome: String? = nil, agentSocket: String? = nil, password: String? = nil,
                localUser: String, configFile: String? = nil, term: String? = nil) {
        self.home = home
        self.ferryHome = ferryHome ?? (home as NSString).appendingPathComponent(".ferry")
        self.agentSocket = agentSocket; self.password = password; self.localUser = localUser
        self.configFile = configFile; self.term = term
    }

    /// Read from this process's environment.
    public static var current: SSHEnvironment {
        let env = ProcessInfo.processInfo.environment
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let user = env["USER"].flatMap { $0.isEmpty ? nil : $0 } ?? NSUserName()
        return SSHEnvironment(home: home, ferryHome: env["FERRY_HOME"].flatMap { $0.isEmpty ? nil : $0 },
                              agentSocket: env["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 },
                              password: env["FERRY_SSH_PASSWORD"], localUser: user, term: env["TERM"])
    }

    /// This machine's name as gethostname(2) gives it (`%l`; `%L` is its first label).
    public var localHostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(cString: buffer)
    }

    /// `$HOME/.ssh`.
    public var sshDirectory: String { (home as NSString).appendingPathComponent(".ssh") }
    /// The user's known_hosts, consulted (never written) by ferry.
    public var userKnownHosts: String { (sshDirectory as NSString).appendingPathComponent("known_hosts") }
    /// ferry's own known_hosts, where keys accepted through ferry are recorded.
    public var ferryKnownHosts: String { (ferryHome as NSString).appendingPathComponent("known_hosts") }
    /// The ssh config file in effect.
    public var sshConfigFile: String { configFile ?? (sshDirectory as NSString).appendingPathComponent("config") }

    /// `~` and `~/...` as `$HOME`; other paths unchanged.
    public func expandTilde(_ path: String) -> String {
        if path == "~" { return home }
        if path.hasPrefix("~/") { return (home as NSString).appendingPathComponent(String(path.dropFirst(2))) }
        return path
    }
}
