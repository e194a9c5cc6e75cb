import ArgumentParser
import Foundation
import RunContract
import Jobs
import SSH
import Tunnels

/// `ferry hosts add|ls|forget`: the hosts ferry knows by name.
struct HostsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hosts",
        abstract: "Name the hosts jobs run on.",
        subcommands: [Add.self, List.self, Forget.self],
        defaultSubcommand: List.self)

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Remember a host: ferry hosts add gpu1 me@gpu1.lab.example:22",
            discussion: """
            TARGET is user@host[:port] or an alias from ~/.ssh/config. With --host-key, the host \
            must present that key (recorded in $FERRY_HOME/known_hosts on first connection); \
            without it, the key must already be in a known_hosts file.
            TARGET may also be the connection string `ferry host up` printed \
            (ferry://user@host:port[?jump=...&jump-key=...]#SHA256:...): the host's key and its \
            relay's are checked against it and pinned in $FERRY_HOME/known_hosts now.
            """)

        @Argument(help: "The name to use with --host (letters, digits, . _ -).")
        var name: String

        @Argument(help: "user@host[:port], an alias from ~/.ssh/config, or a ferry://...#SHA256:... connection string.")
        var target: String

        @Option(name: .customLong("host-key"), help: "The SHA256:... fingerprint the host must present.")
        var hostKey: String?

        @Option(name: [.customShort("i"), .customLong("identity")], help: "A private key to offer first.")
        var identity: String?

        @Option(name: [.customShort("J"), .customLong("jump")], help: "Hosts to jump through, comma-separated.")
        var jump: String?

        @Option(name: .customLong("proxy-command"), help: "A command that connects stdin/stdout to the host's sshd.")
        var proxyCommand: String?

        @Option(name: .customLong("ferry-home"), help: "ferry's folder on the host (default: its $FERRY_HOME, else ~/.ferry).")
        var ferryHome: String?

        @Flag(name: .long, help: "Replace a host of the same name.")
        var replace = false

        @Flag(name: .long, help: "The host is a Slurm cluster's login node: jobs are submitted with sbatch there.")
        var slurm = false

        @Option(name: .long, help: "With --slurm: the partition jobs go to unless `ferry launch --partition` says otherwise.")
        var partition: String?

        @Option(name: .long, help: "With --slurm: the account jobs are charged to.")
        var account: String?

        @Option(name: .long, help: ArgumentHelp("With --slurm: a shell line run before every job (repeatable), e.g. 'module load cuda'.", valueName: "LINE"))
        var setup: [String] = []

        @Option(name: .customLong("sbatch-arg"), parsing: .unconditionalSingleValue,
                help: ArgumentHelp("With --slurm: an sbatch option for every job (repeatable), e.g. --sbatch-arg=--qos=high. Options ferry sets itself (--output, --signal, --requeue, --open-mode, --array) are refused.", valueName: "ARG"))
        var sbatchArguments: [String] = []

        /// The Slurm part of the record, or nil for a plain host.
        func slurmHost() throws -> SlurmHost? {
            guard slurm else { return nil }
            let host = SlurmHost(partition: partition, account: account, setup: setup, sbatchArguments: sbatchArguments)
            try SlurmJob(host: host, partition: nil, nodes: nil, time: nil, maxRestarts: nil, requeue: false).validate()
            return host
        }

        func validate() throws {
            if target.hasPrefix(ConnectionString.scheme) && (hostKey != nil || jump != nil || proxyCommand != nil) {
                throw ValidationError("a connection string already says the host key, jump and proxy: leave out --host-key, --jump and --proxy-command")
            }
            if let hostKey, !hostKey.hasPrefix("SHA256:") {
                throw ValidationError("--host-key takes a fingerprint like SHA256:abc...; get it on the host with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`")
            }
            if let ferryHome, !(ferryHome.hasPrefix("/") || ferryHome.hasPrefix("~/")) {
                throw ValidationError("--ferry-home takes an absolute path (or ~/...) on the host")
            }
            if !slurm && (partition != nil || account != nil || !setup.isEmpty || !sbatchArguments.isEmpty) {
                throw ValidationError("--partition, --account, --setup and --sbatch-arg are for a Slurm host: add --slurm")
            }
            do { _ = try slurmHost() } catch let error as JobsError { throw ValidationError("\(error)") }
        }

        func run() async throws {
            let context = JobsCLI.context()
            let registry = context.registry
            do {
                try Names.validateHostName(name)
                var identityPath = identity
                if let i = identity, !i.hasPrefix("/") && !i.hasPrefix("~") {
                    identityPath = URL(fileURLWithPath: i, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
                }
                if target.hasPrefix(ConnectionString.scheme) {
                    try await addConnectionString(context: context, identity: identityPath)
                    return
                }
                try HostsCommand.validateTarget(target)
                var record = HostRecord(name: name, target: target, fingerprint: hostKey, identityFile: identityPath,
                                        proxyJump: jump, proxyCommand: proxyCommand, ferryHome: ferryHome)
                record.slurm = try slurmHost()
                try registry.addHost(record, replace: replace)
                print("added \(name) → \(target)" + (hostKey.map { " (host key pinned: \($0))" } ?? "") + (slurm ? " (Slurm: jobs are submitted with sbatch)" : ""))
            } catch let error as JobsError {
                FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }

        /// A `ferry host up` line: pin the host's (and relay's) keys now, store how to get there.
        private func addConnectionString(context: JobsContext, identity: String?) async throws {
            let connection: ConnectionString
            do { connection = try ConnectionString(parsing: target) } catch {
                FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
                throw ExitCode(2)
            }
            let registry = context.registry
            if !replace, registry.hosts().contains(where: { $0.name == name }) { throw JobsError.hostExists(name) }
            do {
                let pinned = try await HostPinning.pin(name: name, connection: connection, identityFile: identity,
                                                       environment: context.sshEnvironment, connectTimeout: context.connectTimeout)
                var record = HostRecord(name: name, target: connection.target.description, fingerprint: connection.hostKey,
                                        identityFile: identity, proxyJump: connection.jump?.description,
                                        proxyCommand: connection.proxyCommand, ferryHome: ferryHome,
                                        connectionString: connection.description)
                record.slurm = try slurmHost()
                try registry.addHost(record, replace: replace)
                var line = "added \(name) → \(connection.target)"
                if let jump = connection.jump { line += " via \(jump)" }
                line += " (host key pinned: \(pinned.hostKey.fingerprint)"
                if let relay = pinned.relayKey { line += ", relay's: \(relay.fingerprint)" }
                print(line + ")")
            } catch let error as any ExitStatusError {
                FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
                throw ExitCode(error.exitStatus)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the known hosts.")

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            let hosts = [HostRecord.local] + JobsCLI.context().registry.hosts()
            if json {
                try JobsCLI.printJSON(hosts)
                return
            }
            for h in hosts {
                var line = h.name.padding(toLength: 16, withPad: " ", startingAt: 0) + " " + (h.isLocal ? "this machine" : h.target)
                if let fp = h.fingerprint { line += "  key \(fp)" }
                if let j = h.proxyJump { line += "  via \(j)" }
                if let home = h.ferryHome { line += "  ferry home \(home)" }
                if let slurm = h.slurm { line += "  Slurm" + (slurm.partition.map { " partition \($0)" } ?? "") + (slurm.account.map { " account \($0)" } ?? "") }
                print(line)
            }
        }
    }

    struct Forget: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "forget",
            abstract: "Forget a host and its recorded host key (in $FERRY_HOME/known_hosts).")

        @Argument(help: "The host's name.")
        var name: String

        func run() throws {
            let registry = JobsCLI.context().registry
            do {
                let record = try registry.host(name)
                // A host added from a connection string also has its alias lines (ferry ssh-config).
                let aliases = record.connectionString == nil ? [] : [name, "\(name)-relay"]
                try registry.forgetHost(name, knownHostsNames: HostsCommand.knownHostsNames(record.target) + aliases)
                print("forgot \(name)")
            } catch let error as JobsError {
                FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
    }

    /// `user@host[:port]` or an alias: no spaces, no shell characters, not an option.
    static func validateTarget(_ target: String) throws {
        guard !target.isEmpty, !target.hasPrefix("-") else { throw JobsError.invalidTarget(target, reason: "it is empty or starts with -") }
        let bad = target.unicodeScalars.first { !(CharacterSet.alphanumerics.contains($0) || "@.:-_[]".unicodeScalars.contains($0)) }
        if let bad { throw JobsError.invalidTarget(target, reason: "it contains \(String(bad).debugDescription)") }
    }

    /// How known_hosts spells the target: `host` on port 22, else `[host]:port`.
    static func knownHostsNames(_ target: String) -> [String] {
        var rest = Substring(target)
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        var host = String(rest)
        var port = 22
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            if let p = Int(rest[rest.index(after: close)...].dropFirst()) { port = p }
        } else if rest.filter({ $0 == ":" }).count == 1, let colon = rest.firstIndex(of: ":") {
            host = String(rest[..<colon])
            port = Int(rest[rest.index(after: colon)...]) ?? 22
        }
        return port == 22 ? [host] : ["[\(host)]:\(port)"]
    }
}
