import ArgumentParser
import Foundation
import RunContract
import System
import Jobs
import SSH
import Tunnels

/// `ferry ssh-config NAME [CONNECTION-STRING]`: the ~/.ssh/config block VS Code Remote-SSH (and any
/// OpenSSH) needs to reach a host, with its key pinned in ferry's known_hosts.
struct SSHConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh-config",
        abstract: "Print the ~/.ssh/config block for a host (for VS Code Remote-SSH), pinning its key.",
        discussion: """
        Connects just far enough to learn the host's key (and the relay's, through which it jumps), checks \
        each against the fingerprint in the connection string, and records them in $FERRY_HOME/known_hosts \
        under NAME (and NAME-relay). The block names that file with HostKeyAlias and \
        StrictHostKeyChecking yes, so ssh refuses any other key. Append it to ~/.ssh/config:

            ferry ssh-config gpu 'ferry://root@127.0.0.1:40022?jump=...#SHA256:...' >> ~/.ssh/config

        then connect VS Code to `gpu`. `ferry ssh gpu` reads the same block. For a host added with \
        `ferry hosts add NAME CONNECTION-STRING`, the name is enough: `ferry ssh-config gpu`.
        """)

    @Argument(help: "The name to give the host (the Host alias).")
    var name: String

    @Argument(help: "The connection string `ferry host up` printed (ferry://user@host:port#SHA256:...); default: the one NAME was added with.")
    var connectionString: String?

    @Option(name: [.customShort("i"), .customLong("identity")], help: "The private key to log in with (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa, whichever exists).")
    var identity: String?

    @Option(name: .long, help: "Seconds to wait for each connection.")
    var connectTimeout: Int = 15

    @Flag(name: .long, help: "Print one JSON object (ssh_config, host_key, relay_key, known_hosts).")
    var json = false

    func validate() throws {
        if !SSHConfigBlock.isValidName(name) {
            throw ValidationError("\(name.debugDescription) cannot be a Host alias: use letters, digits, `.`, `_` and `-`")
        }
    }

    func run() async throws {
        let environment = SSHEnvironment.current
        do {
            let (given, recorded) = try resolve()
            let identityFile = identity ?? recorded ?? ["id_ed25519", "id_ecdsa", "id_rsa"]
                .map { (environment.sshDirectory as NSString).appendingPathComponent($0) }
                .first { FileManager.default.fileExists(atPath: $0) }
            let result = try await HostPinning.pin(name: name, connection: given, identityFile: identityFile,
                                                   environment: environment, connectTimeout: connectTimeout)
            if json {
                struct Output: Encodable {
                    var name, sshConfig, hostKey, knownHosts, connectionString: String
                    var relayKey: String?
                }
                print(try JSONCoding.string(Output(name: name, sshConfig: result.block.render(), hostKey: result.hostKey.fingerprint,
                                                   knownHosts: environment.ferryKnownHosts, connectionString: result.connection.description,
                                                   relayKey: result.relayKey?.fingerprint), pretty: false))
            } else {
                FileHandle.standardError.write(Data("ferry: pinned \(name)'s key \(result.hostKey.fingerprint)\(result.relayKey.map { " and its relay's \($0.fingerprint)" } ?? "") in \(environment.ferryKnownHosts)\n".utf8))
                print(result.block.render(), terminator: "")
            }
        } catch let error as any ExitStatusError {
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            throw ExitCode(error.exitStatus)
        }
    }

    /// The connection string given, or the one in the host registry (and its identity file).
    private func resolve() throws -> (ConnectionString, identity: String?) {
        if let text = connectionString { return (try ConnectionString(parsing: text), nil) }
        let record = try Registry(home: SSHEnvironment.current.ferryHome).host(name)
        if let text = record.connectionString { return (try ConnectionString(parsing: text), record.identityFile) }
        // A host added as user@host with --host-key: enough for a block, without a relay pin.
        guard let fingerprint = record.fingerprint, let target = try? SSHTarget(parsing: record.target) else {
            throw ValidationError("\(name) has no pinned host key in ferry's registry: give its connection string, `ferry ssh-config \(name) 'ferry://...#SHA256:...'`")
        }
        let jump = try record.proxyJump?.split(separator: ",").first.map { try SSHTarget(parsing: String($0)) }
        let connection = ConnectionString(user: target.user ?? SSHEnvironment.current.localUser, host: target.host, port: target.port ?? 22,
                                          hostKey: fingerprint, jump: jump, proxyCommand: record.proxyCommand)
        return (connection, record.identityFile)
    }
}
