/// How to connect: everything beyond what ~/.ssh/config says about the host.
public struct SSHConnectOptions: Sendable {
    /// HOME, FERRY_HOME, SSH_AUTH_SOCK, FERRY_SSH_PASSWORD, as values (tests give each session its own).
    public var environment: SSHEnvironment
    /// Unknown host keys: refused (default), accepted and recorded, or checked against a pinned fingerprint.
    public var hostKeyPolicy: HostKeyPolicy
    /// Overrides the config's and the target's user (`-l`) when set.
    public var user: String?
    /// Overrides the config's port (`-p`); a port in the target still wins, as with ssh.
    public var port: Int?
    /// Keys offered before the config's IdentityFiles (`-i`).
    public var identityFiles: [String]
    /// Replaces the config's ProxyJump (`-J`); an empty array means no jump.
    public var proxyJump: [SSHTarget]?
    /// Seconds to wait for the TCP connect and the SSH handshake; the config's ConnectTimeout, else 15.
    public var connectTimeout: Int?
    /// Overrides ServerAliveInterval: seconds of server silence before a keepalive; 0 is off.
    public var keepaliveInterval: Int?
    /// Overrides ServerAliveCountMax: keepalives left unanswered before the connection is declared dead.
    public var keepaliveCountMax: Int?
    /// Replaces the user's known_hosts ($HOME/.ssh/known_hosts); ferry's own is always consulted too.
    public var knownHostsFile: String?
    /// Ciphers in order of preference (both directions).
    public var ciphers: [String]
    /// Ask ssh-agent (when `environment.agentSocket` is set).
    public var useAgent: Bool
    /// May ask for passphrases and passwords on /dev/tty.
    public var interactive: Bool

    /// AES-GCM first: with AES-NI it is the fastest cipher libssh and OpenSSH share (see the SSH benchmark).
    public static let defaultCiphers = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                                        "aes128-ctr", "aes256-ctr"]

    public init(environment: SSHEnvironment = .current, hostKeyPolicy: HostKeyPolicy = .strict, user: String? = nil,
                port: Int? = nil, identityFiles: [String] = [], proxyJump: [SSHTarget]? = nil, connectTimeout: Int? = nil,
                keepaliveInterval: Int? = nil, knownHostsFile: String? = nil, ciphers: [String] = SSHConnectOptions.defaultCiphers,
                useAgent: Bool = true, interactive: Bool = false) {
        self.environment = environment; self.hostKeyPolicy = hostKeyPolicy; self.user = user; self.port = port
        self.identityFiles = identityFiles; self.proxyJump = proxyJump; self.connectTimeout = connectTimeout
        self.keepaliveInterval = keepaliveInterval; self.knownHostsFile = knownHostsFile; self.ciphers = ciphers
        self.useAgent = useAgent; self.interactive = interactive
    }
}
