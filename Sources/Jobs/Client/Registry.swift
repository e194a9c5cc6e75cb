import Foundation
import System
import SSH
#if canImport(Glibc)
import Glibc
#endif

/// A host ferry knows by name: where it is and how to reach it. `local` is built in.
public struct HostRecord: Codable, Sendable, Equatable {
    public var name: String
    /// What the user typed: `user@host[:port]` or an alias from ~/.ssh/config.
    public var target: String
    /// A pinned `SHA256:...` host key fingerprint (checked at every connection, recorded in
    /// ferry's known_hosts on first use); nil means the known_hosts files decide.
    public var fingerprint: String?
    public var identityFile: String?
    /// Hosts to jump through (`ProxyJump`), comma-separated; nil leaves it to ~/.ssh/config.
    public var proxyJump: String?
    /// A command whose stdin/stdout is the connection (`ProxyCommand`, e.g. cloudflared).
    public var proxyCommand: String?
    /// ferry's folder on the host when not `$FERRY_HOME` / `~/.ferry` there (a larger disk).
    public var ferryHome: String?
    /// The `ferry://…#SHA256:…` line the host was added with (`ferry host up` prints it): target,
    /// fingerprint, proxyJump and proxyCommand above come from it; it also pins the relay's key.
    public var connectionString: String?
    public var addedAt: Date
    /// Set for a Slurm cluster's login node: jobs are submitted to Slurm there.
    public var slurm: SlurmHost?


    public init(name: String, target: String, fingerprint: String? = nil, identityFile: String? = nil, proxyJump: String? = nil,
                proxyCommand: String? = nil, ferryHome: String? = nil, connectionString: String? = nil, addedAt: Date = Date()) {
        self.name = name; self.target = target; self.fingerprint = fingerprint; self.identityFile = identityFile
        self.proxyJump = proxyJump; self.proxyCommand = proxyCommand; self.ferryHome = ferryHome
        self.connectionString = connectionString; self.addedAt = addedAt
    }

    public static let localName = "local"
    public var isLocal: Bool { name == HostRecord.localName }
    public static var local: HostRecord { HostRecord(name: localName, target: "local", addedAt: Date(timeIntervalSince1970: 0)) }
}

/// What this machine remembers about a job it launched (or saw on a host).
public struct JobRecord: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var host: String
    /// The CLI's label for it (`train`, `command`).
    public var kind: String
    public var command: [String]
    public var createdAt: Date
    /// The job's folder on its host.
    public var directory: String?
    /// The working directory it was launched from, here.
    public var workingDirectory: String?
    /// The last status seen, and when.
    public var status: JobStatus?
    public var progress: JobProgress?
    public var seenAt: Date?

}

/// ferry's state on this machine, under `$FERRY_HOME/registry/`:
///
///     hosts/NAME.json        host records
///     jobs/ID/job.json       job records
///     jobs/ID/output.log     the job's log as mirrored so far (its size is where following resumes)
///     hashes/*               file hashes by working directory (unchanged files are not re-read)
///     lock                   held while a record is read, changed and written back
///
/// Plain files, each replaced atomically (temp, fsync, rename) under an flock: concurrent ferry
/// processes never lose an update and a crash never leaves half a record. SQLite would give the
/// same, but costs a C library ferry does not otherwise need, and the log mirror must be a plain
/// file anyway (it is appended by byte offset and read by `ferry logs` after the host is gone).
/// Pinned host keys are not here: they live in ferry's own known_hosts, `$FERRY_HOME/known_hosts`.
public struct Registry: Sendable {
    public let home: String
    public init(home: String) { self.home = home }

    var root: String { (home as NSString).appendingPathComponent("registry") }
    var hostsDirectory: String { (root as NSString).appendingPathComponent("hosts") }
    var jobsDirectory: String { (root as NSString).appendingPathComponent("jobs") }
    var lockPath: String { (root as NSString).appendingPathComponent("lock") }
    public var knownHostsFile: String { (home as NSString).appendingPathComponent("known_hosts") }

    func jobDirectory(_ id: String) -> String { (jobsDirectory as NSString).appendingPathComponent(id) }
    /// The local mirror of a job's output.log.
    public func mirrorPath(_ id: String) -> String { (jobDirectory(id) as NSString).appendingPathComponent("output.log") }

    func hashCachePath(for directory: String) -> String {
        let name = String(format: "%016llx", directory.hashValueStable) + "-" + Names.defaultJobName(from: directory)
        return ((root as NSString).appendingPathComponent("hashes") as NSString).appendingPathComponent(name)
    }

    private func locked<T>(_ body: () throws -> T) throws -> T {
        try POSIX.makeDirectory(root, mode: 0o700)
        return try withLock(lockPath, body)
    }

    // MARK: Hosts

    public func host(_ name: String) throws -> HostRecord {
        if name == HostRecord.localName { return .local }
        try Names.validateHostName(name)
        let path = (hostsDirectory as NSString).appendingPathComponent(name + ".json")
        guard let data = POSIX.read(path) else { throw JobsError.unknownHost(name, known: hostNames()) }
        return try JSON.decode(HostRecord.self, from: data, what: path)
    }

    /// `--host` as `ferry ssh` takes it: a registered name; else an alias with a `Host` block in the
    /// ssh config, or `user@host[:port]`, recorded on first use — under the alias, or as `HOST-PORT`
    /// — so logs, status and fetch find the job's host again. Nothing about host keys changes: the
    /// first connection checks the key against the known_hosts files as `hosts add` would.
    public func resolveHost(_ text: String, sshEnvironment: SSHEnvironment) throws -> (record: HostRecord, recorded: Bool) {
        if (try? Names.validateHostName(text)) != nil, let existing = try? host(text) { return (existing, false) }
        let record: HostRecord
        if text.contains("@") || text.contains(":") {
            let target: SSHTarget
            do { target = try SSHTarget(parsing: text) } catch {
                throw JobsError.invalidTarget(text, reason: "not user@host[:port]")
            }
            let name = Names.hostName(for: target)
            if let existing = try? host(name) {
                guard existing.target == text else { throw JobsError.hostExists(name) }
                return (existing, false)
            }
            record = HostRecord(name: name, target: text)
        } else {
            guard (try? Names.validateHostName(text)) != nil, isSSHConfigAlias(text, sshEnvironment) else {
                throw JobsError.unknownHost(text, known: hostNames())
            }
            record = HostRecord(name: text, target: text)
        }
        try addHost(record)
        return (record, true)
    }

    /// Whether the ssh config says something about `name` that it does not say about every host
    /// (what `Host *` gives all): an alias `ssh NAME` would use.
    func isSSHConfigAlias(_ name: String, _ environment: SSHEnvironment) -> Bool {
        guard let config = try? SSHConfigFile(path: environment.sshConfigFile, environment: environment),
              let resolved = try? config.resolve(SSHTarget(host: name), environment: environment),
              var anyHost = try? config.resolve(SSHTarget(host: "ferry-no-such-alias.invalid"), environment: environment) else { return false }
        anyHost.alias = name
        if anyHost.hostName == "ferry-no-such-alias.invalid" { anyHost.hostName = name }
        return resolved != anyHost
    }

    public func hosts() -> [HostRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: hostsDirectory)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted().compactMap { name in
            guard let data = POSIX.read((hostsDirectory as NSString).appendingPathComponent(name)) else { return nil }
            return try? JSONCoding.decoder().decode(HostRecord.self, from: data)
        }
    }

    public func hostNames() -> [String] { [HostRecord.localName] + hosts().map(\.name) }

    public func addHost(_ record: HostRecord, replace: Bool = false) throws {
        try Names.validateHostName(record.name)
        guard record.name != HostRecord.localName else { throw JobsError.hostExists(record.name) }
        try locked {
            try POSIX.makeDirectory(hostsDirectory, mode: 0o700)
            let path = (hostsDirectory as NSString).appendingPathComponent(record.name + ".json")
            if !replace && POSIX.exists(path) { throw JobsError.hostExists(record.name) }
            try JSON.write(record, to: path, mode: 0o600)
        }
    }

    /// Removes the record and the host's lines from ferry's known_hosts.
    public func forgetHost(_ name: String, knownHostsNames: [String]) throws {
        try Names.validateHostName(name)
        guard name != HostRecord.localName else { throw JobsError.invalidHostName(name) }
        try locked {
            let path = (hostsDirectory as NSString).appendingPathComponent(name + ".json")
            guard POSIX.exists(path) else { throw JobsError.unknownHost(name, known: hostNames()) }
            unlink(path)
        }
        try KnownHostsFile.remove(names: knownHostsNames, from: knownHostsFile)
    }

    // MARK: Jobs

    public func job(_ id: String) throws -> JobRecord {
        try Names.validateJobID(id)
        let path = (jobDirectory(id) as NSString).appendingPathComponent("job.json")
        guard let data = POSIX.read(path) else { throw JobsError.unknownJob(id) }
        return try JSON.decode(JobRecord.self, from: data, what: path)
    }

    public func jobs() -> [JobRecord] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: jobsDirectory)) ?? []
        return ids.filter(Names.isValidJobID).compactMap { try? job($0) }.sorted { $0.createdAt < $1.createdAt }
    }

    public func saveJob(_ record: JobRecord) throws {
        try Names.validateJobID(record.id)
        try locked {
            try POSIX.makeDirectory(jobDirectory(record.id), mode: 0o700)
            try JSON.write(record, to: (jobDirectory(record.id) as NSString).appendingPathComponent("job.json"))
        }
    }

    /// Changes a job record under the lock (read, change, write back).
    @discardableResult
    public func updateJob(_ id: String, _ change: (inout JobRecord) -> Void) throws -> JobRecord {
        try locked {
            var record = try job(id)
            change(&record)
            try JSON.write(record, to: (jobDirectory(id) as NSString).appendingPathComponent("job.json"))
            return record
        }
    }

    /// Records what a host said about a job (creating the record for jobs launched elsewhere).
    public func remember(_ info: JobInfo, host: String) throws {
        try locked {
            let path = (jobDirectory(info.spec.id) as NSString).appendingPathComponent("job.json")
            var record = (POSIX.read(path).flatMap { try? JSONCoding.decoder().decode(JobRecord.self, from: $0) })
                ?? JobRecord(id: info.spec.id, name: info.spec.name, host: host, kind: info.spec.kind, command: info.spec.command,
                             createdAt: info.spec.createdAt)
            record.command = info.spec.command
            record.directory = info.directory
            record.status = info.status
            record.progress = info.progress
            record.seenAt = Date()
            try POSIX.makeDirectory(jobDirectory(info.spec.id), mode: 0o700)
            try JSON.write(record, to: path)
        }
    }
}

extension String {
    /// FNV-1a: stable across runs (Swift's hashValue is seeded per process).
    var hashValueStable: UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }
}

/// Edits ferry's own known_hosts through the SSH module's `KnownHosts.update` (its lock, its
/// atomic rewrite), so an entry the SSH module records meanwhile is never lost.
enum KnownHostsFile {
    /// Drops lines whose host field names any of `names` (`host` or `[host]:port`).
    static func remove(names: [String], from file: String) throws {
        guard POSIX.exists(file), !names.isEmpty else { return }
        do {
            try KnownHosts.update(file) { content in
                let lines = content.split(separator: "\n", omittingEmptySubsequences: false)
                let kept = lines.filter { line in
                    guard let field = line.split(separator: " ").first else { return true }
                    let hosts = field.split(separator: ",").map(String.init)
                    return !hosts.contains(where: names.contains)
                }
                return kept.count == lines.count ? nil : kept.joined(separator: "\n")
            }
        } catch SSHError.knownHostsUnwritable(let path, let reason) {
            throw JobsError.io(path: path, reason: reason)
        }
    }
}
