import ArgumentParser
import Dispatch
import Foundation
import RunContract
import System
import SSH
import Tunnels

/// `ferry host up|down|status`: run on the GPU machine to make it reachable.
struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Make this machine reachable for ferry (run on the GPU host): its own sshd plus a tunnel.",
        subcommands: [HostUpCommand.self, HostDownCommand.self, HostStatusCommand.self])
}

struct HostUpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start this machine's own sshd and a tunnel to it, and print the line to paste on the laptop.",
        discussion: """
        Starts OpenSSH's sshd with its own config, host key and authorized_keys under $FERRY_HOME/host \
        (installing openssh-server when root and missing); the system's sshd_config and \
        ~/.ssh/authorized_keys are never touched, and it works unprivileged on a high port. Logins are \
        key-only; --allow-password enables a password read from the prompt or FERRY_HOST_PASSWORD \
        (never from the command line). SSH sessions get this shell's PATH, LD_LIBRARY_PATH and CUDA_* \
        variables, so nvidia-smi works over SSH.

        Tunnels: --tunnel ngrok (token from NGROK_AUTHTOKEN or ngrok's config, never argv); \
        --tunnel ssh://user@relay[:port] (a reverse forward on any OpenSSH relay, bound to its \
        loopback; clients jump through the relay); --tunnel command --tunnel-command CMD (e.g. \
        cloudflared; %p is the sshd port) with --public-host and --proxy-command for clients; or none. \
        A tunnel that drops is reopened with backoff, and says so.

        Prints a connection string that pins this host's key (ferry://user@host:port#SHA256:...) and \
        a ~/.ssh/config block for VS Code Remote-SSH. Runs in the foreground until interrupted, or \
        with --detach in the background (stop it with `ferry host down`).
        """)

    @Option(name: .long, help: ArgumentHelp("A public key that may log in: the key line, or a file of them (repeatable).", valueName: "KEY-OR-FILE"))
    var authorize: [String] = []

    @Flag(name: .long, help: "Also allow password login (password from the prompt or FERRY_HOST_PASSWORD; root only).")
    var allowPassword = false

    @Option(name: .long, help: "The port of the sshd this starts.")
    var sshdPort: Int = 2222

    @Option(name: .long, help: ArgumentHelp("Where sshd listens (repeatable; default 127.0.0.1 behind a tunnel, 0.0.0.0 without).", valueName: "ADDRESS"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("none, ngrok, ssh://user@relay[:port], or command.", valueName: "TUNNEL"))
    var tunnel: String = "none"

    @Option(name: .long, help: ArgumentHelp("With --tunnel command: the command that carries connections to sshd (%p: its port).", valueName: "COMMAND"))
    var tunnelCommand: String?

    @Option(name: .long, help: "The address clients connect to (without a tunnel, or with --tunnel command).")
    var publicHost: String?

    @Option(name: .long, help: "The port clients connect to, when it differs from --sshd-port.")
    var publicPort: Int?

    @Option(name: .long, help: ArgumentHelp("The ProxyCommand clients use (put into the connection string), e.g. 'cloudflared access ssh --hostname %h'.", valueName: "COMMAND"))
    var proxyCommand: String?

    @Option(name: .long, help: "The host's name in the printed lines (default: this machine's short host name).")
    var name: String?

    @Option(name: .long, help: ArgumentHelp("The relay's host key fingerprint, when it is not in a known_hosts file yet.", valueName: "SHA256:..."))
    var relayHostKey: String?

    @Option(name: .long, help: ArgumentHelp("The private key to log in to the relay with (default: one ferry makes in $FERRY_HOME/host).", valueName: "PATH"))
    var relayIdentity: String?

    @Option(name: .long, help: "The port the relay listens on for this host (default: derived from this host's key, stable across restarts).")
    var relayPort: Int?

    @Option(name: .long, help: "Seconds between keepalives on the relay connection.")
    var keepalive: Int = 15

    @Option(name: .long, help: "Unanswered keepalives before the relay connection counts as dropped.")
    var keepaliveCount: Int = 3

    @Option(name: .long, help: "Seconds to wait when connecting to the relay.")
    var connectTimeout: Int = 15

    @Option(name: .long, help: "The longest wait between attempts to reopen a tunnel, in seconds.")
    var maxBackoff: Double = 60

    @Option(name: .long, help: ArgumentHelp("The ngrok agent binary (default: ngrok on PATH).", valueName: "PATH"))
    var ngrokBinary: String?

    @Option(name: .long, help: ArgumentHelp("The ngrok agent's tunnel list.", valueName: "URL"))
    var ngrokAPI: String = NgrokAgentAPI.defaultURL

    @Option(name: .customLong("env"), help: ArgumentHelp("Also pass this variable of this shell into SSH sessions (repeatable).", valueName: "NAME"))
    var environmentNames: [String] = []

    @Flag(name: .long, help: "Run in the background (pid file in $FERRY_HOME/host; stop with `ferry host down`).")
    var detach = false

    @Option(name: .long, help: "With --detach: seconds to wait for the tunnel before returning.")
    var readyTimeout: Double = 120

    @Flag(name: .long, help: "Print connection_string and ssh_config as JSON (one object per line each time the host becomes reachable).")
    var json = false

    func validate() throws {
        if let relayHostKey, !ConnectionString.isFingerprint(relayHostKey) {
            throw ValidationError("--relay-host-key takes a fingerprint like SHA256:abc... (43 characters after the colon); run `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the relay")
        }
        if !(1...65535).contains(sshdPort) { throw ValidationError("--sshd-port \(sshdPort): a port is 1 to 65535") }
        if let relayPort, !(1...65535).contains(relayPort) { throw ValidationError("--relay-port \(relayPort): a port is 1 to 65535") }
        if keepalive < 1 || keepaliveCount < 1 { throw ValidationError("--keepalive and --keepalive-count must be at least 1") }
        if let name, !SSHConfigBlock.isValidName(name) { throw ValidationError("--name \(name): use letters, digits, `.`, `_` and `-`") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let ferryHome = SSHEnvironment.current.ferryHome
        var password = environment["FERRY_HOST_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if allowPassword && password == nil && !detachedChild { password = HostUpCommand.promptPassword() }
        let tunnelSpec: TunnelSpec
        do { tunnelSpec = try TunnelSpec(parsing: tunnel) } catch { throw ValidationError("\(error)") }
        var options = HostUpOptions(ferryHome: ferryHome, authorize: authorize, allowPassword: allowPassword, password: password,
                                    sshdPort: sshdPort, listenAddresses: listen.isEmpty ? nil : listen, tunnel: tunnelSpec,
                                    tunnelCommand: tunnelCommand, publicHost: publicHost, publicPort: publicPort,
                                    proxyCommand: proxyCommand, name: name, relayHostKey: relayHostKey, relayIdentity: relayIdentity,
                                    relayPort: relayPort, keepaliveInterval: keepalive, keepaliveCountMax: keepaliveCount,
                                    connectTimeout: connectTimeout, maxBackoff: maxBackoff, ngrokBinary: ngrokBinary, ngrokAPI: ngrokAPI,
                                    extraEnvironment: environmentNames, processEnvironment: environment)
        options.processEnvironment["FERRY_HOST_PASSWORD"] = nil
        do {
            try options.validate()
            if detach {
                try await runDetached(options: options, password: password)
            } else {
                try await runForeground(options: options)
            }
        } catch let error as any ExitStatusError {
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            throw ExitCode(error.exitStatus)
        }
    }

    private var detachedChild: Bool { ProcessInfo.processInfo.environment["FERRY_HOST_UP_DETACHED"] == "1" }

    private func runForeground(options: HostUpOptions) async throws {
        let json = self.json
        let service = HostService(options: options) { event in HostUpCommand.report(event, json: json) }
        let task = Task { try await service.run() }
        // SIGINT/SIGTERM/SIGHUP stop sshd and the tunnel before exiting.
        var sources: [DispatchSourceSignal] = []
        // Whatever its peers do (a relay frozen mid-request), it is gone within 5 s: after 3 s of
        // an orderly stop, sshd and the tunnel's children are stopped directly and it exits.
        let ferryHome = options.ferryHome
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                task.cancel()
                DispatchQueue.global().asyncAfter(deadline: .now() + 3) {
                    HostService.stopNow(ferryHome: ferryHome)
                    FileHandle.standardError.write(Data("ferry host up: stopped (sshd and the tunnel are down; a peer did not answer)\n".utf8))
                    Glibc.exit(ExitStatus.interrupted.rawValue)
                }
            }
            source.resume()
            sources.append(source)
        }
        defer { sources.forEach { $0.cancel() } }
        try await task.value
        FileHandle.standardError.write(Data("ferry host up: stopped (sshd and the tunnel are down)\n".utf8))
    }

    static func report(_ event: HostEvent, json: Bool) {
        switch event {
        case .note(let text):
            FileHandle.standardError.write(Data("ferry host up: \(text)\n".utf8))
        case .warning(let text):
            FileHandle.standardError.write(Data("ferry host up: warning: \(text)\n".utf8))
        case .tunnel(let event):
            FileHandle.standardError.write(Data("ferry host up: \(event.message)\n".utf8))
        case .ready(let readiness):
            if json {
                if let text = try? JSONCoding.string(readiness, pretty: false) { print(text) }
            } else {
                print(HostUpCommand.human(readiness))
            }
            fflush(nil)
        }
    }

    static func human(_ r: HostReadiness) -> String {
        var text = """

        ready. On your laptop, paste:

            \(r.addCommand)

        """
        if let direct = r.directConnectionString {
            text += "  (on the same network, without the tunnel: ferry hosts add \(r.name) '\(direct)')\n"
        }
        text += """

        For VS Code Remote-SSH (or plain ssh), add this to the laptop's ~/.ssh/config and connect to \(r.name):

        \(r.sshConfig)
        """
        return text
    }

    private func runDetached(options: HostUpOptions, password: String?) async throws {
        if let state = HostService.status(ferryHome: options.ferryHome) {
            throw TunnelError.alreadyRunning(pid: state.pid, ferryHome: options.ferryHome)
        }
        let files = HostFiles(ferryHome: options.ferryHome)
        try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let executable = Executable.path
        let arguments = Array(CommandLine.arguments.dropFirst()).filter { $0 != "--detach" }
        var environment = ProcessInfo.processInfo.environment
        environment["FERRY_HOME"] = options.ferryHome
        environment["FERRY_HOST_UP_DETACHED"] = "1"
        if let password { environment["FERRY_HOST_PASSWORD"] = password }
        let header = "\n--- ferry host up --detach, \(Date()) ---\n"
        if let handle = FileHandle(forWritingAtPath: files.log) ?? {
            _ = FileManager.default.createFile(atPath: files.log, contents: nil, attributes: [.posixPermissions: 0o600])
            return FileHandle(forWritingAtPath: files.log)
        }() {
            handle.seekToEndOfFile(); handle.write(Data(header.utf8)); try? handle.close()
        }
        let child = try ChildProcess.spawn(executable, arguments, environment: environment, logFile: files.log, newSession: true)
        let deadline = Date().addingTimeInterval(readyTimeout)
        while Date() < deadline {
            if child.exitStatus != nil {
                throw TunnelError.detachFailed(log: ChildProcess.tailOfLog(files.log))
            }
            if let state = HostState.read(files), state.pid == child.pid, let ready = state.ready {
                HostUpCommand.report(.ready(ready), json: json)
                FileHandle.standardError.write(Data("ferry host up: running in the background (pid \(child.pid)); log \(files.log); stop it with `ferry host down`\n".utf8))
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        FileHandle.standardError.write(Data("""
            ferry host up: not reachable yet after \(Int(readyTimeout)) s; it keeps trying in the background (pid \(child.pid)).
            \(ChildProcess.tailOfLog(files.log))
            See `ferry host status` later, or stop it with `ferry host down`.

            """.utf8))
        throw ExitCode(1)
    }

    /// Asks twice on the terminal, echo off.
    static func promptPassword() -> String? {
        guard let first = TerminalPrompt.readSecret("Password for SSH logins to this machine: "), !first.isEmpty else { return nil }
        guard let second = TerminalPrompt.readSecret("Again: "), second == first else {
            FileHandle.standardError.write(Data("ferry: the passwords differ\n".utf8))
            return nil
        }
        return first
    }
}

struct HostDownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop what `ferry host up` started here (its sshd and tunnel).")

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func run() async throws {
        let ferryHome = SSHEnvironment.current.ferryHome
        let result = await HostService.down(ferryHome: ferryHome)
        let (stopped, pid, text): (Bool, Int32?, String)
        switch result {
        case .stopped(let p): (stopped, pid, text) = (true, p, "stopped ferry host up (pid \(p)) and its sshd and tunnel")
        case .stoppedStaleSSHD(let p): (stopped, pid, text) = (true, p, "stopped an sshd (pid \(p)) left by an earlier ferry host up")
        case .notRunning: (stopped, pid, text) = (false, nil, "ferry host up is not running (FERRY_HOME \(ferryHome))")
        }
        if json {
            struct Down: Encodable { var stopped: Bool; var pid: Int32?; var ferryHome: String }
            print(try JSONCoding.string(Down(stopped: stopped, pid: pid, ferryHome: ferryHome), pretty: false))
        } else {
            print(text)
        }
    }
}

struct HostStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether `ferry host up` runs here, and its connection string.")

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func run() throws {
        let ferryHome = SSHEnvironment.current.ferryHome
        let state = HostService.status(ferryHome: ferryHome)
        if json {
            struct Status: Encodable {
                var running: Bool
                var pid: Int32?
                var ready: HostReadiness?
            }
            print(try JSONCoding.string(Status(running: state != nil, pid: state?.pid, ready: state?.ready)))
            return
        }
        guard let state else {
            print("ferry host up is not running (FERRY_HOME \(ferryHome))")
            return
        }
        if let ready = state.ready {
            print("ferry host up is running (pid \(state.pid)), reachable:")
            print(HostUpCommand.human(ready))
        } else {
            print("ferry host up is running (pid \(state.pid)) but not reachable yet: see \(HostFiles(ferryHome: ferryHome).log) or its terminal")
        }
    }
}

extension ChildProcess {
    static func tailOfLog(_ file: String) -> String {
        guard let data = FileManager.default.contents(atPath: file) else { return "" }
        let text = String(decoding: data.suffix(8192), as: UTF8.self)
        return text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }
}
