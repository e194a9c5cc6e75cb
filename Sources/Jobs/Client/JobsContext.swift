import Foundation
import System
import SSH

/// Everything the client side needs that differs between the CLI and a test running beside others:
/// its FERRY_HOME, the ferry binary that runs `--host local` and is installed on hosts, the
/// environment SSH reads. Passed explicitly, never read from the process environment behind a
/// test's back.
public struct JobsContext: Sendable {
    /// This machine's FERRY_HOME (the registry lives in `registry/` under it).
    public var home: String
    /// ferry's version; a host's agent must match it.
    public var version: String
    /// The ferry binary installed on hosts that lack one (`FERRY_AGENT_BINARY`: a static build).
    public var agentBinary: String
    /// The ferry binary that answers `--host local` (this executable, in the CLI).
    public var localBinary: String
    /// HOME, ssh config, agent socket for SSH connections (FERRY_HOME is `home`: ferry's known_hosts).
    public var sshEnvironment: SSHEnvironment
    /// The environment of local jobs (`--host local`); FERRY_HOME is set to `home`.
    public var localEnvironment: [String: String]
    /// Another known_hosts to read besides ~/.ssh/known_hosts and ferry's own (tests).
    public var knownHostsFile: String?
    /// Seconds to wait for an SSH connection.
    public var connectTimeout: Int
    /// Progress of self-installation: `(what, done, total)`.
    public var installProgress: (@Sendable (String, Int64, Int64) -> Void)?
    /// Details for `-v`: which way files travel, how long each step took.
    public var verbose: (@Sendable (String) -> Void)?

    public init(home: String, version: String, agentBinary: String,
                localEnvironment: [String: String] = ProcessInfo.processInfo.environment,
                sshEnvironment: SSHEnvironment? = nil, knownHostsFile: String? = nil, connectTimeout: Int = 15) {
        self.home = home; self.version = version; self.agentBinary = agentBinary; self.localBinary = agentBinary
        self.localEnvironment = localEnvironment
        self.sshEnvironment = sshEnvironment ?? JobsContext.defaultSSHEnvironment(home: home)
        self.knownHostsFile = knownHostsFile; self.connectTimeout = connectTimeout
    }

    /// The ferry binary to install on hosts: `$FERRY_AGENT_BINARY`, else the running executable.
    public static func defaultAgentBinary(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit = environment["FERRY_AGENT_BINARY"], !explicit.isEmpty { return explicit }
        return Executable.path
    }

    public var registry: Registry { Registry(home: home) }

    /// A connection to a host: SSH, or this machine for `local`.
    public func connect(_ host: HostRecord) async throws -> any Transport {
        if host.isLocal {
            return LocalTransport(home: home, agentBinary: localBinary, environment: localEnvironment)
        }
        return try await SSHTransport.connect(host, context: self)
    }

    /// The one way to a session with a host's agent. With `install` (launch, resume), a host
    /// without ferry of this version gets it; read commands pass `false` and get `JobsError.noAgent`.
    /// With `preflight`, the host answers it along with finding its agent (one command fewer). With
    /// `known` (an agent found before), the probe is skipped.
    /// `transport`: a connection to `host` made already (a launch connects while it packages);
    /// `probe`: the probe started on it already.
    public func agent(_ host: HostRecord, install: Bool = false, preflight: PreflightRequest? = nil,
                      known: AgentSession.Known? = nil, transport connected: (any Transport)? = nil,
                      probe: AgentSession.StartedProbe? = nil) async throws -> AgentSession {
        let transport: any Transport
        if let connected { transport = connected } else { transport = try await connect(host) }
        if let known { return AgentSession(transport: transport, host: host.name, known: known) }
        do {
            return try await AgentSession.connect(transport, host: host.name, version: version, remoteHome: host.ferryHome,
                                                  install: install ? AgentInstaller(binary: agentBinary, progress: installProgress, note: verbose) : nil,
                                                  preflight: preflight, probe: probe)
        } catch {
            await transport.close()
            throw error
        }
    }

    public func agent(hostNamed name: String, install: Bool = false) async throws -> AgentSession {
        try await agent(try registry.host(name), install: install)
    }

    static func defaultSSHEnvironment(home: String) -> SSHEnvironment {
        var env = SSHEnvironment.current
        env.ferryHome = home
        return env
    }
}
