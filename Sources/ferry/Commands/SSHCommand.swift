import ArgumentParser
import Foundation
import RunContract
import SSH

/// `ferry ssh TARGET [-- command]`: a shell on the host, or one command with its exit status passed through.
struct SSHCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Open a shell on a host (or in a job's folder on its host), or run one command there.",
        discussion: """
        TARGET is a job id (a shell in that job's folder on its host), a host from `ferry hosts`, \
        a Host alias from ~/.ssh/config ($HOME/.ssh/config) or user@host[:port]. ferry speaks \
        SSH itself (libssh): ProxyJump and ProxyCommand from the config are honoured without an ssh binary.
        After `--`, one argument is a command line for the remote shell (as with ssh); several arguments \
        are a program and its arguments, each quoted so they arrive exactly as typed.
        Exit status: the remote command's (128+N when a signal N ended it); 255 when ferry could not \
        connect, verify the host key or log in.
        An unknown host key is refused: check its fingerprint out of band, then pass --host-key SHA256:... \
        (or --accept-new-host-key). The key is recorded in $FERRY_HOME/known_hosts.
        """)

    @Argument(help: "A job id, a host from `ferry hosts`, a Host alias from ~/.ssh/config, or user@host[:port].")
    var target: String

    @Argument(parsing: .postTerminator, help: "The command to run instead of a shell (after --).")
    var command: [String] = []

    @Option(name: [.customShort("i"), .customLong("identity")], help: "A private key to offer first (repeatable).")
    var identity: [String] = []

    @Option(name: [.customShort("p"), .long], help: "The port, unless TARGET names one.")
    var port: Int?

    @Option(name: [.customShort("l"), .customLong("login")], help: "The remote user.")
    var user: String?

    @Option(name: [.customShort("J"), .customLong("jump")], help: "Hosts to jump through, comma-separated (overrides ProxyJump).")
    var jump: String?

    @Option(name: [.customShort("F"), .customLong("config")], help: "The ssh config file (default $HOME/.ssh/config).")
    var config: String?

    @Option(name: .customLong("known-hosts"), help: "The known_hosts file to read instead of $HOME/.ssh/known_hosts.")
    var knownHosts: String?

    @Option(name: .customLong("host-key"), help: "The SHA256:... fingerprint the host must present (then recorded).")
    var hostKey: String?

    @Flag(name: .customLong("accept-new-host-key"), help: "Accept and record a host key seen for the first time.")
    var acceptNewHostKey = false

    @Flag(name: .customShort("t"), help: "Force a PTY for a command.")
    var forcePTY = false

    @Flag(name: .customShort("T"), help: "Never request a PTY.")
    var noPTY = false

    @Option(name: .customLong("cd"), help: "Start in this remote directory.")
    var directory: String?

    @Flag(name: .customShort("G"), help: "Print the settings TARGET resolves to (as `ssh -G` does: keyword, space, value) and exit without connecting.")
    var printConfig = false

    @Option(name: .customLong("connect-timeout"), help: "Seconds to wait for the connection (default: ConnectTimeout, else 15).")
    var connectTimeout: Int?

    func validate() throws {
        if hostKey != nil && acceptNewHostKey {
            throw ValidationError("use either --host-key SHA256:... or --accept-new-host-key, not both")
        }
        if let hostKey, !hostKey.hasPrefix("SHA256:") {
            throw ValidationError("--host-key takes a fingerprint like SHA256:abc...; get it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host")
        }
        if forcePTY && noPTY { throw ValidationError("use either -t or -T, not both") }
        if let port, !(1...65535).contains(port) { throw ValidationError("-p \(port): a port is 1 to 65535") }
    }

    func run() async throws {
        if printConfig {
            try printResolvedConfig()
            return
        }
        // A job id opens a shell in that job's folder on its host; a host from `ferry hosts` uses its record.
        if let status = try await JobShell.run(target, command: command, pty: forcePTY ? true : noPTY ? false : nil) {
            throw ExitCode(status)
        }
        do {
            var options = try connectOptions(interactive: true)
            options.hostKeyPolicy = hostKey.map { .pinned($0) } ?? (acceptNewHostKey ? .acceptNew : .strict)
            options.connectTimeout = connectTimeout
            let session = try await SSHSession.connect(target, options: options)
            var terminal = TerminalSession.Options(directory: directory)
            if command.count == 1 { terminal.command = command[0] } else if command.count > 1 { terminal.command = ShellQuote.join(command) }
            if forcePTY { terminal.pty = true } else if noPTY { terminal.pty = false }
            let status: SSHExitStatus
            do {
                status = try await TerminalSession.run(session, options: terminal)
            } catch {
                await session.close()
                throw error
            }
            await session.close()
            if case .unknown = status { FileHandle.standardError.write(Data("ferry: the connection closed without an exit status\n".utf8)) }
            throw ExitCode(status.code)
        } catch let error as SSHError {
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            throw ExitCode(.connectionFailed)
        }
    }

    /// The options -F, -i, -p, -l, --known-hosts and -J say, for connecting and for `-G` alike.
    private func connectOptions(interactive: Bool) throws -> SSHConnectOptions {
        var options = SSHConnectOptions(environment: .current, interactive: interactive)
        if let config { options.environment.configFile = options.environment.expandTilde(config) }
        options.identityFiles = identity
        options.port = port
        options.user = user
        options.knownHostsFile = knownHosts
        if let jump { options.proxyJump = try jump.split(separator: ",").map { try SSHTarget(parsing: String($0)) } }
        return options
    }

    /// `-G`: what the config (with -F, -l, -p, -i, -J) says about TARGET; nothing is connected.
    private func printResolvedConfig() throws {
        do {
            let options = try connectOptions(interactive: false)
            var resolved = try SSHSession.resolve(target, options: options)
            if !identity.isEmpty { resolved.identityFilesAsWritten = identity + resolved.identityFilesAsWritten.filter { !identity.contains($0) } }
            print(resolved.openSSHDump(options.environment), terminator: "")
        } catch let error as SSHError {
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            throw ExitCode(.connectionFailed)
        }
    }
}
