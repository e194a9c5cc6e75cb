import Foundation
import SSH
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `host up` reports as it works.
public enum HostEvent: Sendable, Equatable {
    case note(String)
    case warning(String)
    case tunnel(TunnelEvent)
    /// The host is reachable (again, or at a new address): print the connection string.
    case ready(HostReadiness)
}

/// `ferry host up`: prepares this machine's own sshd (its host key, authorized keys and
/// sshd_config under `$FERRY_HOME/host`), starts it, keeps a tunnel to it open, and supervises
/// both until cancelled — then stops them. `host down` (another process) ends it with SIGTERM.
public final class HostService: Sendable {
    public let options: HostUpOptions
    public let files: HostFiles
    private let onEvent: @Sendable (HostEvent) -> Void
    private let sshd = Mutex<ChildProcess?>(nil)
    private let state: Mutex<HostState>
    private let relayKeyCache = Mutex<[String: PublicHostKey]>([:])

    public init(options: HostUpOptions, onEvent: @escaping @Sendable (HostEvent) -> Void) {
        self.options = options
        self.files = HostFiles(ferryHome: options.ferryHome)
        self.onEvent = onEvent
        self.state = Mutex(HostState(pid: getpid(), startedAt: Date()))
    }

    /// Runs until the task is cancelled (returns after stopping everything) or something cannot be
    /// retried (throws, after stopping everything).
    public func run() async throws {
        try options.validate()
        if case .command = options.tunnel, options.publicHost == nil {
            throw TunnelError.invalidTunnel("command (clients need --public-host: the name they connect to)")
        }
        try HostService.claim(files)
        defer { HostService.release(files) }
        do {
            try await prepareAndSupervise()
        } catch is CancellationError {
            // Stopped while starting up: as good as stopped after.
        } catch {
            await stopSSHD()
            throw error
        }
        await stopSSHD()
    }

    private func prepareAndSupervise() async throws {
        let hostKey = try await HostSetup.ensureHostKey(files)
        let authorized = try HostSetup.authorize(AuthorizedKey.collect(options.authorize, home: home), files: files)
        if authorized.isEmpty && !options.allowPassword { throw TunnelError.noAuthorizedKey(file: files.authorizedKeys) }
        let sshdPath = try await HostSetup.locateSSHD(install: options.installSSHD) { [onEvent] in onEvent(.note($0)) }
        if options.allowPassword, let password = options.password {
            try await HostSetup.setPassword(user: options.user, password: password)
            onEvent(.warning("password login is ON for \(options.user): anyone who can reach the port may try it; keys are safer"))
        }
        let environment = sessionEnvironment()
        try HostSetup.writeFile(files.environmentFile, SessionEnvironment.shellFile(environment.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }), mode: 0o600)
        let config = SSHDConfig(port: options.sshdPort, listenAddresses: options.effectiveListenAddresses, hostKey: files.hostKey,
                                pidFile: files.sshdPidFile, authorizedKeysFile: files.authorizedKeys, user: options.user,
                                allowPassword: options.allowPassword, environment: environment)
        HostService.stopStaleSSHD(files)
        try await HostSetup.writeConfig(config, sshd: sshdPath, files: files)
        let probeAddress = options.effectiveListenAddresses.first ?? "127.0.0.1"
        if HostSetup.isPortInUse(options.sshdPort, address: probeAddress) { throw TunnelError.portInUse(port: options.sshdPort) }
        try await startSSHD(sshdPath)
        onEvent(.note("sshd: listening on \(options.effectiveListenAddresses.joined(separator: ", ")) port \(options.sshdPort), key-only\(options.allowPassword ? " + password" : ""), user \(options.user), \(authorized.count) key\(authorized.count == 1 ? "" : "s") authorized (\(files.authorizedKeys))"))
        onEvent(.note("sessions get \(environment.keys.sorted().joined(separator: " ")) from this shell (also in \(files.environmentFile))"))

        let tunnel = try await makeTunnel(hostKey: hostKey, authorized: authorized)
        let supervisor = TunnelSupervisor(tunnel: tunnel, backoff: Backoff(initial: 1, maximum: options.maxBackoff)) { [self] event in
            onEvent(.tunnel(event))
            if case .up(let endpoint, _) = event {
                Task { await self.announce(endpoint, hostKey: hostKey) }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await supervisor.run() }
            group.addTask { try await self.superviseSSHD(sshdPath) }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private var home: String { options.processEnvironment["HOME"] ?? NSHomeDirectory() }

    /// Variables SSH sessions get: the setup shell's CUDA/Python/locale set, and FERRY_HOME, so
    /// `ferry agent` over SSH uses this FERRY_HOME.
    func sessionEnvironment() -> [String: String] {
        var chosen: [String: String] = [:]
        for (name, value) in SessionEnvironment.capture(from: options.processEnvironment, extra: options.extraEnvironment) {
            if SessionEnvironment.isCarriable(value) { chosen[name] = value } else {
                onEvent(.warning("\(name) is not passed to SSH sessions: its value has quotes or control characters"))
            }
        }
        chosen["FERRY_HOME"] = options.ferryHome
        return chosen
    }

    // MARK: - sshd

    private func startSSHD(_ path: String) async throws {
        let child = try ChildProcess.spawn(path, ["-D", "-f", files.sshdConfig, "-E", files.sshdLog],
                                           environment: ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                           logFile: files.sshdLog)
        sshd.withLock { $0 = child }
        let address = options.effectiveListenAddresses.first.map { $0 == "0.0.0.0" ? "127.0.0.1" : $0 } ?? "127.0.0.1"
        for _ in 0..<100 {
            if child.exitStatus != nil { break }
            if HostSetup.isPortInUse(options.sshdPort, address: address) {
                state.withLock { $0.sshdPid = child.pid }
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        await child.terminate()
        throw TunnelError.sshdFailed(port: options.sshdPort, log: ChildProcess.tail(of: files.sshdLog, lines: 15))
    }

    /// Restarts sshd with backoff when it exits, saying so.
    private func superviseSSHD(_ path: String) async throws {
        let backoff = Backoff(initial: 1, maximum: options.maxBackoff)
        var failures = 0
        while !Task.isCancelled {
            try await Task.sleep(for: .milliseconds(500))
            guard let child = sshd.withLock({ $0 }), let status = child.exitStatus else { continue }
            failures += 1
            let delay = backoff.delay(afterFailures: failures)
            onEvent(.warning("sshd exited with status \(status) (\(ChildProcess.tail(of: files.sshdLog, lines: 2))); restarting in \(Backoff.format(delay))"))
            try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            do {
                try await startSSHD(path)
                onEvent(.note("sshd: running again"))
                failures = 0
            } catch {
                onEvent(.warning("\(error)"))
            }
        }
    }

    private func stopSSHD() async {
        if let child = sshd.withLock({ $0 }) { await child.terminate() }
    }

    // MARK: - The tunnel

    private var sshEnvironment: SSHEnvironment {
        let env = options.processEnvironment
        return SSHEnvironment(home: home, ferryHome: options.ferryHome, agentSocket: env["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 },
                              password: nil, localUser: options.user, term: nil)
    }

    private func makeTunnel(hostKey: AuthorizedKey, authorized: [AuthorizedKey]) async throws -> any Tunnel {
        switch options.tunnel {
        case .none:
            let host = options.publicHost ?? HostSetup.primaryAddress() ?? "127.0.0.1"
            return DirectEndpoint(endpoint: TunnelEndpoint(host: host, port: options.publicPort ?? options.sshdPort,
                                                           proxyCommand: options.proxyCommand))
        case .command:
            let endpoint = TunnelEndpoint(host: options.publicHost ?? "localhost", port: options.publicPort ?? 22, proxyCommand: options.proxyCommand)
            return CommandTunnel(command: options.tunnelCommand ?? "", localPort: options.sshdPort, endpoint: endpoint,
                                 environment: options.processEnvironment, logFile: files.tunnelLog)
        case .ngrok:
            return NgrokTunnel(.init(binary: options.ngrokBinary, localPort: options.sshdPort, apiURL: options.ngrokAPI,
                                     environment: options.processEnvironment, logFile: files.tunnelLog,
                                     startTimeout: Double(max(15, options.connectTimeout * 2))))
        case .relay(let relay):
            let remotePort = options.relayPort ?? ReverseSSHTunnel.defaultRemotePort(forHostKey: hostKey.fingerprint)
            let identity: String
            let publicLine: String?
            if let given = options.relayIdentity {
                identity = sshEnvironment.expandTilde(given)
                publicLine = FileManager.default.contents(atPath: identity + ".pub").map { String(decoding: $0, as: UTF8.self) }
            } else {
                identity = files.relayKey
                publicLine = try await HostSetup.ensureRelayKey(files).line
            }
            if let publicLine {
                let line = ReverseSSHTunnel.relayAuthorizedKeysLine(publicKey: publicLine, remotePort: remotePort)
                relayLine.withLock { $0 = line }
                onEvent(.note("the relay must accept this host's key: on \(relay.host), add to ~\(relay.user ?? "")/.ssh/authorized_keys:\n    \(line)"))
            }
            if !authorized.isEmpty {
                let lines = authorized.map { "    " + ReverseSSHTunnel.clientAuthorizedKeysLine(publicKey: $0.line, remotePort: remotePort) }
                onEvent(.note("laptops jump through the relay with their own key, allowed only to reach this host:\n" + lines.joined(separator: "\n")))
            }
            return ReverseSSHTunnel(.init(relay: relay, relayHostKey: options.relayHostKey, identityFiles: [identity],
                                          environment: sshEnvironment, remotePort: remotePort, localPort: options.sshdPort,
                                          keepaliveInterval: options.keepaliveInterval, keepaliveCountMax: options.keepaliveCountMax,
                                          connectTimeout: options.connectTimeout))
        }
    }

    private let relayLine = Mutex<String?>(nil)

    /// Builds what clients need for `endpoint`, records it in state.json and reports it.
    func announce(_ endpoint: TunnelEndpoint, hostKey: AuthorizedKey) async {
        let connection = endpoint.connectionString(user: options.user, hostKey: hostKey.fingerprint)
        var relayKey: PublicHostKey?
        if let jump = endpoint.jump, let fingerprint = endpoint.jumpHostKey {
            if let cached = relayKeyCache.withLock({ $0[fingerprint] }) { relayKey = cached } else {
                do {
                    relayKey = try await HostKeyProbe.fetch(hostName: jump.host, port: jump.port ?? 22, fingerprint: fingerprint,
                                                            environment: sshEnvironment, connectTimeout: options.connectTimeout)
                    relayKeyCache.withLock { $0[fingerprint] = relayKey }
                } catch {
                    onEvent(.warning("could not read the relay's full key for the ssh config block (\(error)); `ferry ssh-config` on the laptop pins it instead"))
                }
            }
        }
        let block = SSHConfigBlock(name: options.name, connection: connection,
                                   keys: .inline(host: PublicHostKey(type: hostKey.type, base64: hostKey.base64), relay: relayKey))
        var direct: String?
        if options.tunnel != .none, options.effectiveListenAddresses.contains(where: { !$0.hasPrefix("127.") && $0 != "localhost" && $0 != "::1" }),
           let address = HostSetup.primaryAddress() {
            direct = ConnectionString(user: options.user, host: address, port: options.sshdPort, hostKey: hostKey.fingerprint).description
        }
        let readiness = HostReadiness(name: options.name, connectionString: connection.description, directConnectionString: direct,
                                      sshConfig: block.render(), hostKey: hostKey.fingerprint, user: options.user,
                                      sshdPort: options.sshdPort, tunnel: options.tunnel.description,
                                      relayAuthorizedKeysLine: relayLine.withLock { $0 })
        // Stopped meanwhile (host down): the state file is gone and must stay gone.
        guard HostService.readPid(files.pidFile) == getpid() else { return }
        let snapshot = state.withLock { s -> HostState in
            s.ready = readiness
            return s
        }
        do { try snapshot.write(files) } catch { onEvent(.warning("\(error)")) }
        onEvent(.ready(readiness))
    }

    // MARK: - One supervisor per FERRY_HOME

    /// Takes the pid file, refusing when a live `host up` holds it.
    static func claim(_ files: HostFiles) throws {
        try HostSetup.makeDirectory(files)
        if let pid = readPid(files.pidFile), pid != getpid(), isHostUp(pid) {
            throw TunnelError.alreadyRunning(pid: pid, ferryHome: (files.directory as NSString).deletingLastPathComponent)
        }
        try HostSetup.writeFile(files.pidFile, "\(getpid())\n", mode: 0o600)
        unlink(files.stateFile)
        try HostState(pid: getpid(), startedAt: Date()).write(files)
    }

    static func release(_ files: HostFiles) {
        if readPid(files.pidFile) == getpid() {
            unlink(files.pidFile)
            unlink(files.stateFile)
        }
    }

    static func readPid(_ file: String) -> pid_t? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return pid_t(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The command line of a live process, NUL-separated arguments joined by spaces.
    static func commandLine(_ pid: pid_t) -> String? {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM,
              let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
    }

    /// Whether `pid` is a live `ferry host up` (not a recycled pid).
    static func isHostUp(_ pid: pid_t) -> Bool {
        guard let line = commandLine(pid) else { return false }
        return line.contains(" host ") && line.contains(" up")
    }

    /// The sshd of this FERRY_HOME's `host up`, by its pid file, when that pid still runs it (not a
    /// recycled pid).
    static func ourSSHD(_ files: HostFiles) -> pid_t? {
        guard let pid = readPid(files.sshdPidFile), let line = commandLine(pid), line.contains("sshd"), line.contains(files.sshdConfig) else { return nil }
        return pid
    }

    /// An sshd left running by a `host up` that was killed: stop it before starting ours.
    static func stopStaleSSHD(_ files: HostFiles) {
        guard let pid = ourSSHD(files) else { return }
        kill(pid, SIGTERM)
        for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
    }

    /// The last resort of a `host up` that must end now: its sshd and tunnel child stopped
    /// (SIGTERM, SIGKILL after 0.3 s), its pid and state files removed. Synchronous, no peer asked.
    public static func stopNow(ferryHome: String) {
        let files = HostFiles(ferryHome: ferryHome)
        var pids: [pid_t] = []
        if let pid = ourSSHD(files) { pids.append(pid) }
        if let state = HostState.read(files), state.pid == getpid() {
            pids += [state.sshdPid, state.tunnelPid].compactMap { $0 }.filter { $0 > 1 && !pids.contains($0) }
        }
        for pid in pids { kill(pid, SIGTERM) }
        for _ in 0..<3 where pids.contains(where: { kill($0, 0) == 0 }) { usleep(100_000) }
        for pid in pids where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        if readPid(files.pidFile) == getpid() { unlink(files.pidFile) }
        unlink(files.stateFile)
    }

    // MARK: - host down / status

    /// What `host down` did.
    public enum DownResult: Sendable, Equatable {
        case stopped(pid: pid_t)
        case stoppedStaleSSHD(pid: pid_t)
        case notRunning
    }

    /// Stops the `host up` of `ferryHome` (SIGTERM, then SIGKILL after `grace`), and any sshd of its
    /// left behind.
    public static func down(ferryHome: String, grace: Double = 15) async -> DownResult {
        let files = HostFiles(ferryHome: ferryHome)
        var result = DownResult.notRunning
        if let pid = readPid(files.pidFile), isHostUp(pid) {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(grace)
            while Date() < deadline, isHostUp(pid) { try? await Task.sleep(for: .milliseconds(100)) }
            if isHostUp(pid) { kill(pid, SIGKILL); try? await Task.sleep(for: .milliseconds(200)) }
            result = .stopped(pid: pid)
        }
        if let pid = ourSSHD(files) {
            stopStaleSSHD(files)
            if result == .notRunning { result = .stoppedStaleSSHD(pid: pid) }
        }
        unlink(files.pidFile)
        unlink(files.stateFile)
        return result
    }

    /// The state of the `host up` of `ferryHome`, when one is running.
    public static func status(ferryHome: String) -> HostState? {
        let files = HostFiles(ferryHome: ferryHome)
        guard let state = HostState.read(files), isHostUp(state.pid) else { return nil }
        return state
    }
}
