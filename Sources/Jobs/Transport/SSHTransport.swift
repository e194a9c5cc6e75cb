import Foundation
import SSH

/// A host over SSH (the SSH module): commands on exec channels of one session, files over SFTP
/// on the same session. Host keys are checked strictly, against the record's pinned fingerprint
/// when it has one (then recorded in ferry's known_hosts).
public final class SSHTransport: Transport {
    public let label: String
    public let counters = TransferCounters()
    public let session: SSHSession
    private let sftpSlot = SFTPSlot()

    public var knownAgentBinary: String? { nil }

    init(label: String, session: SSHSession) {
        self.label = label; self.session = session
    }

    /// What the SSH module needs to reach `host`: its pin, key, jump hosts, the context's known_hosts.
    public static func options(for host: HostRecord, context: JobsContext) throws -> SSHConnectOptions {
        var options = SSHConnectOptions(environment: context.sshEnvironment,
                                        hostKeyPolicy: host.fingerprint.map { .pinned($0) } ?? .strict,
                                        identityFiles: host.identityFile.map { [$0] } ?? [],
                                        connectTimeout: context.connectTimeout,
                                        keepaliveInterval: 10,
                                        knownHostsFile: context.knownHostsFile)
        if let jump = host.proxyJump {
            options.proxyJump = try jump.split(separator: ",").map { try SSHTarget(parsing: String($0)) }
        }
        return options
    }

    /// An SSH session to `host` (also used by `ferry ssh JOBID`).
    public static func session(for host: HostRecord, context: JobsContext, interactive: Bool = false) async throws -> SSHSession {
        var options = try options(for: host, context: context)
        options.interactive = interactive
        var config = try SSHSession.resolve(host.target, options: options)
        if let command = host.proxyCommand {
            config.proxyCommand = command
            config.proxyJump = []
        }
        return try await SSHSession.connect(config: config, options: options, displayTarget: host.name)
    }

    public static func connect(_ host: HostRecord, context: JobsContext) async throws -> SSHTransport {
        SSHTransport(label: host.name, session: try await session(for: host, context: context))
    }

    public func start(_ commandLine: String) async throws -> any RemoteCommand {
        counters.addCommand()
        return SSHRemoteCommand(try await session.execute(commandLine), counters: counters)
    }

    /// The connection's SFTP client (opened on first use, closed with the transport).
    func sftp() async throws -> SFTPClient {
        if let open = sftpSlot.value { return open }
        let opened = try await session.openSFTP()
        return sftpSlot.setIfEmpty(opened)
    }

    public func upload(_ localPath: String, to remotePath: String, mode: UInt32,
                       progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport {
        // SSH authenticates every packet; the agent's hello (or the loader) then proves the file works.
        let options = SFTPTransferOptions(resume: false, verification: .none, permissions: mode, syncToDisk: false)
        let result = try await sftp().upload(localPath, to: remotePath, options: options) { p in progress?(Int64(p.completedBytes)) }
        counters.addSent(Int64(result.transferredBytes))
        return TransferReport(totalBytes: Int64(result.totalBytes), transferredBytes: Int64(result.transferredBytes),
                              resumedFrom: Int64(result.resumedFrom), sha256: result.sha256)
    }

    public func download(_ remotePath: String, to localPath: String, expectedSHA256: String?,
                         progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport {
        let options = SFTPTransferOptions(resume: true, verification: expectedSHA256.map { .expected($0) } ?? .none, permissions: 0o644)
        let result: SFTPTransferResult
        do {
            result = try await sftp().download(remotePath, to: localPath, options: options) { p in progress?(Int64(p.completedBytes)) }
        } catch SSHError.checksumMismatch(let path, let expected, let actual) {
            throw JobsError.checksumMismatch(path: path, expected: expected, actual: actual)
        }
        counters.addReceived(Int64(result.transferredBytes))
        return TransferReport(totalBytes: Int64(result.totalBytes), transferredBytes: Int64(result.transferredBytes),
                              resumedFrom: Int64(result.resumedFrom), sha256: result.sha256)
    }

    public func close() async {
        if let open = sftpSlot.value { await open.close() }
        await session.close()
    }
}

/// The transport's SFTP client, opened on first use.
final class SFTPSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var client: SFTPClient?
    var value: SFTPClient? { lock.lock(); defer { lock.unlock() }; return client }
    func setIfEmpty(_ c: SFTPClient) -> SFTPClient {
        lock.lock(); defer { lock.unlock() }
        if let client { return client }
        client = c
        return c
    }
}

/// A command on an SSH exec channel, its output counted as it arrives.
final class SSHRemoteCommand: RemoteCommand {
    let process: SSHProcess
    let output: AsyncThrowingStream<TransportOutput, any Error>
    let counters: TransferCounters

    init(_ process: SSHProcess, counters: TransferCounters) {
        self.process = process
        self.counters = counters
        let (stream, continuation) = AsyncThrowingStream<TransportOutput, any Error>.makeStream()
        output = stream
        let pump = Task {
            do {
                for try await chunk in process.output {
                    switch chunk {
                    case .stdout(let d): counters.addReceived(Int64(d.count)); continuation.yield(.stdout(d))
                    case .stderr(let d): counters.addReceived(Int64(d.count)); continuation.yield(.stderr(d))
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { reason in
            if case .cancelled = reason { pump.cancel(); process.cancel() }
        }
    }

    func write(_ data: Data) async throws {
        try await process.write(data)
        counters.addSent(Int64(data.count))
    }

    func closeInput() async throws { try await process.closeInput() }

    func exitStatus() async throws -> Int32 { try await process.exitStatus().code }

    func cancel() { process.cancel() }
}
