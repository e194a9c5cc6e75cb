import CLibSSH
import Foundation

/// One SSH connection: host key verified, authenticated, ready to run commands, move files and
/// forward ports. Every libssh call for it runs on the session's own thread; this facade is Sendable
/// and its methods are async. Objects it hands out (processes, SFTP clients, forwards) keep it alive.
public final class SSHSession: Sendable {
    let core: SessionCore
    /// The resolved settings it connected with (host name, port, user, jump hops).
    public let hostConfig: SSHHostConfig
    /// The server's host key, `SHA256:...`, as verified.
    public let hostKeyFingerprint: String
    /// How it authenticated, e.g. `publickey (ssh-agent)` or `publickey /home/me/.ssh/id_ed25519`.
    public let authenticationMethod: String
    /// The session this one is tunnelled through (ProxyJump), kept open as long as this one.
    public let jumpSession: SSHSession?
    /// The environment it was opened with (TERM for PTYs, HOME, FERRY_HOME).
    public let environment: SSHEnvironment

    init(core: SessionCore, hostConfig: SSHHostConfig, fingerprint: String, method: String, jump: SSHSession?,
         environment: SSHEnvironment) {
        self.core = core; self.hostConfig = hostConfig; self.hostKeyFingerprint = fingerprint
        self.authenticationMethod = method; self.jumpSession = jump; self.environment = environment
    }

    /// Dropping the last reference closes the connection in the background; call `close()` to wait
    /// for it (a process should, before it exits, so libssh is not torn down mid-call).
    deinit { core.close() }

    /// libssh's version string, e.g. "0.10.6".
    public static var libraryVersion: String { String(cString: ssh_version(0)) }

    // MARK: - Connecting

    /// Connects to an alias from the ssh config or `[user@]host[:port]`, honouring HostName, User,
    /// Port, IdentityFile, ProxyJump, ProxyCommand, ServerAliveInterval and ConnectTimeout.
    public static func connect(_ target: String, options: SSHConnectOptions = SSHConnectOptions()) async throws -> SSHSession {
        let config = try resolve(target, options: options)
        return try await connect(config: config, options: options, displayTarget: target)
    }

    /// What `connect(_:options:)` would use for `target`, from the config file and the options.
    public static func resolve(_ target: String, options: SSHConnectOptions = SSHConnectOptions()) throws -> SSHHostConfig {
        let parsed = try SSHTarget(parsing: target)
        let file = try SSHConfigFile(path: options.environment.sshConfigFile, environment: options.environment)
        // -l and -p count before the config, as with ssh: `Match user` and `%r %p` see them.
        let effective = SSHTarget(user: options.user ?? parsed.user, host: parsed.host, port: parsed.port ?? options.port)
        var config = try file.resolve(effective, environment: options.environment)
        if !options.identityFiles.isEmpty {
            let explicit = options.identityFiles.map { options.environment.expandTilde($0) }
            config.identityFiles = explicit + config.identityFiles.filter { !explicit.contains($0) }
        }
        if let jump = options.proxyJump { config.proxyJump = jump; if !jump.isEmpty { config.proxyCommand = nil } }
        return config
    }

    /// Connects with settings already resolved. With `jump`, the connection is tunnelled through that
    /// session (a direct-tcpip channel), ignoring the config's ProxyJump and ProxyCommand.
    public static func connect(config: SSHHostConfig, options: SSHConnectOptions = SSHConnectOptions(),
                               via jump: SSHSession? = nil, displayTarget: String? = nil) async throws -> SSHSession {
        try await connect(config: config, options: options, via: jump, displayTarget: displayTarget ?? config.alias, depth: 0)
    }

    private static func connect(config: SSHHostConfig, options: SSHConnectOptions, via jump: SSHSession?,
                                displayTarget: String, depth: Int) async throws -> SSHSession {
        var fd: Int32 = -1
        var proxyProcess: ProxyCommand?
        var hop = jump
        if hop == nil {
            if let command = config.proxyCommand {
                proxyProcess = try ProxyCommand.spawn(command, config: config)
                fd = proxyProcess?.fd ?? -1
            } else if !config.proxyJump.isEmpty {
                guard depth < 8 else { throw SSHError.proxyFailed(via: "ProxyJump", reason: "more than 8 nested jumps (a loop in the config?)") }
                let file = try SSHConfigFile(path: options.environment.sshConfigFile, environment: options.environment)
                var jumpOptions = options
                if case .pinned = options.hostKeyPolicy { jumpOptions.hostKeyPolicy = .strict }   // the pin is the target's
                jumpOptions.identityFiles = []
                jumpOptions.user = nil; jumpOptions.port = nil; jumpOptions.proxyJump = nil
                for target in config.proxyJump {
                    do {
                        var hopConfig = try file.resolve(target, environment: options.environment)
                        hopConfig.identityFiles = options.identityFiles.map { options.environment.expandTilde($0) } + hopConfig.identityFiles
                        hop = try await connect(config: hopConfig, options: jumpOptions, via: hop, displayTarget: target.description, depth: depth + 1)
                    } catch {
                        await hop?.close()
                        throw error
                    }
                }
            }
        }
        // Hops made here are closed (and waited for) if the rest fails; a caller's `via` is theirs.
        let ownedHop = jump == nil ? hop : nil
        if let hop {
            do {
                fd = try await hop.openTunnelDescriptor(host: config.hostName, port: config.port)
            } catch {
                await ownedHop?.close()
                throw error
            }
        }
        let label = "\(config.user)@\(config.hostName):\(config.port)"
        let core: SessionCore
        do { core = try SessionCore(label: label) } catch {
            if fd >= 0 { Glibc.close(fd) }
            proxyProcess?.terminate()
            await ownedHop?.close()
            throw error
        }
        let parameters = ConnectParameters(
            displayTarget: displayTarget, hostName: config.hostName, port: config.port, user: config.user,
            identityFiles: config.identityFiles, identityFilesAreExplicit: !options.identityFiles.isEmpty,
            environment: options.environment,
            knownHostsFiles: (options.knownHostsFile.map { [$0] } ?? config.userKnownHostsFilesInEffect(options.environment))
                + config.globalKnownHostsFiles,
            hostKeyAlias: config.hostKeyAlias, identitiesOnly: config.identitiesOnly,
            hostKeyPolicy: policy(options.hostKeyPolicy, config: config),
            connectTimeout: options.connectTimeout ?? config.connectTimeout ?? 15,
            keepaliveInterval: options.keepaliveInterval ?? config.serverAliveInterval,
            keepaliveCountMax: options.keepaliveCountMax ?? config.serverAliveCountMax,
            ciphers: options.ciphers.joined(separator: ","), useAgent: options.useAgent,
            interactive: options.interactive, fd: fd)
        let proxy = proxyProcess.map(LoopBoundValue.init)
        do {
            let (fingerprint, method) = try await core.submit { core in
                if let proxy { core.onClose.append { proxy.value.terminate() } }
                return try core.connect(parameters)
            }
            return SSHSession(core: core, hostConfig: config, fingerprint: fingerprint, method: method, jump: hop,
                              environment: options.environment)
        } catch {
            // Waited for: a process exiting right after this error must not race libssh's teardown.
            await core.closeAndWait(reason: "connection failed")
            await ownedHop?.close()
            if let proxyProcess, case SSHError.connectionFailed(_, _, let reason) = error {
                throw SSHError.proxyFailed(via: "ProxyCommand \(proxyProcess.command)", reason: reason)
            }
            throw error
        }
    }

    /// The config's StrictHostKeyChecking accept-new/no is the user's explicit choice; a pin stays a pin.
    private static func policy(_ requested: HostKeyPolicy, config: SSHHostConfig) -> HostKeyPolicy {
        if requested == .strict, let strict = config.strictHostKeyChecking, strict == "accept-new" || strict == "no" || strict == "off" {
            return .acceptNew
        }
        return requested
    }

    // MARK: - State

    /// Closes every channel and the connection (and the jump session this one owns).
    public func close() async {
        await core.closeAndWait()
        if let jumpSession { await jumpSession.close() }
    }

    /// False once the connection dropped or was closed.
    public var isConnected: Bool { core.isAlive }

    /// Keepalives sent so far (ServerAliveInterval).
    public var keepalivesSent: Int { core.keepalivesSent }

    // MARK: - Running commands

    /// Starts `command` through the remote user's shell (build it with `ShellQuote`), streaming its
    /// output as it arrives. With `pty`, the command gets a terminal of that size.
    public func execute(_ command: String, pty: PTYRequest? = nil) async throws -> SSHProcess {
        guard !command.utf8.contains(0) else {
            throw SSHError.channelFailed(host: core.label, operation: "exec", reason: "the command contains a NUL byte, which no shell can receive")
        }
        return try await startChannel { core, channel in
            if let pty {
                guard ssh_channel_request_pty_size(channel, pty.term, Int32(pty.columns), Int32(pty.rows)) == SSH_OK else {
                    throw core.channelError("PTY request")
                }
            }
            guard ssh_channel_request_exec(channel, command) == SSH_OK else { throw core.channelError("exec") }
        }
    }

    /// Starts the user's login shell on a PTY, driven from code (see `TerminalSession` for the local terminal).
    public func startShell(pty: PTYRequest) async throws -> SSHProcess {
        try await startChannel { core, channel in
            guard ssh_channel_request_pty_size(channel, pty.term, Int32(pty.columns), Int32(pty.rows)) == SSH_OK,
                  ssh_channel_request_shell(channel) == SSH_OK else {
                throw core.channelError("shell")
            }
        }
    }

    /// Opens a session channel, makes `requests` on it (PTY, exec or shell) and hands it to a
    /// `ChannelHandler` on the loop; a refused request frees the channel.
    private func startChannel(_ requests: @escaping @Sendable (SessionCore, ssh_channel) throws -> Void) async throws -> SSHProcess {
        let handler = try await core.submit { core -> LoopBound<ChannelHandler> in
            let channel = try core.openSessionChannel()
            do { try requests(core, channel) } catch {
                ssh_channel_free(channel)
                throw error
            }
            let handler = ChannelHandler(core: core, channel: channel)
            core.add(handler)
            return LoopBound(handler)
        }
        return SSHProcess(session: self, handler: handler)
    }

    /// Runs `command` to completion and collects its output.
    public func run(_ command: String) async throws -> SSHRunResult {
        try await execute(command).collect()
    }

    /// Runs a program with arguments, each quoted for the remote shell.
    public func run(arguments: [String]) async throws -> SSHRunResult {
        try await run(ShellQuote.join(arguments))
    }
}

/// A PTY to request: terminal type and size.
public struct PTYRequest: Sendable, Equatable {
    public var term: String
    public var columns: Int
    public var rows: Int
    public init(term: String = "xterm-256color", columns: Int = 80, rows: Int = 24) {
        self.term = term; self.columns = columns; self.rows = rows
    }
}

/// A finished command's output and status.
public struct SSHRunResult: Sendable, Equatable {
    public var stdout: Data
    public var stderr: Data
    public var status: SSHExitStatus
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// A value carried into a loop job. `@unchecked Sendable`: used only inside that job.
struct LoopBoundValue<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension SessionCore {
    /// A new session channel, opened. Loop only.
    func openSessionChannel() throws -> ssh_channel {
        assertOnLoop()
        guard let session, let channel = ssh_channel_new(session) else { throw channelError("open channel") }
        guard openWithoutDelayedACK(session, { ssh_channel_open_session(channel) }) == SSH_OK else {
            let error = channelError("open session channel")
            ssh_channel_free(channel)
            throw error
        }
        return channel
    }
}

#if canImport(Glibc)
import Glibc
#endif
