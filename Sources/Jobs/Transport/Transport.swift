import Foundation

/// A piece of a command's output on the host.
public enum TransportOutput: Sendable, Equatable {
    case stdout(Data)
    case stderr(Data)
}

/// A command running on the host: streamed output, writable stdin, an exit status.
public protocol RemoteCommand: Sendable {
    /// Output in arrival order; iterate once. Ends when the command's output ends; throws when the
    /// connection drops.
    var output: AsyncThrowingStream<TransportOutput, any Error> { get }
    func write(_ data: Data) async throws
    func closeInput() async throws
    /// The exit status (128+N for a signal N, 255 when the connection closed without one).
    func exitStatus() async throws -> Int32
    /// Stops the command (closes the channel / kills the local process group).
    func cancel()
}

/// How a file moved.
public struct TransferReport: Sendable, Equatable {
    public var totalBytes: Int64
    /// Bytes moved by this call (total minus what a resumed partial already had).
    public var transferredBytes: Int64
    public var resumedFrom: Int64
    public var sha256: String?
    public init(totalBytes: Int64, transferredBytes: Int64, resumedFrom: Int64, sha256: String?) {
        self.totalBytes = totalBytes; self.transferredBytes = transferredBytes; self.resumedFrom = resumedFrom; self.sha256 = sha256
    }
}

/// What `Jobs` speaks to reach a host: run a command with streamed output, put and get files.
/// `SSHTransport` and `LocalTransport` both implement it, so the whole lifecycle runs the same way
/// over SSH and on this machine.
public protocol Transport: Sendable {
    /// The host's name for messages (`gpu1`, `local`).
    var label: String { get }
    /// Bytes this transport moved each way (commands' stdin/output and file transfers).
    var counters: TransferCounters { get }
    /// The agent binary to use without probing (LocalTransport knows it); nil over SSH.
    var knownAgentBinary: String? { get }
    /// Starts a command line for a POSIX shell on the host (build it with `ShellQuote`).
    func start(_ commandLine: String) async throws -> any RemoteCommand
    /// Copies a local file to the host: written beside `remotePath` first, then renamed over it.
    func upload(_ localPath: String, to remotePath: String, mode: UInt32,
                progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport
    /// Copies a host file here, resuming a `.ferry-partial` left by an interrupted call, checking
    /// the whole file's sha256 against `expectedSHA256`, then renaming it into place.
    func download(_ remotePath: String, to localPath: String, expectedSHA256: String?,
                  progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport
    func close() async
}

/// Byte counts at the transfer layer, shared by everything that uses one transport.
public final class TransferCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var _sent: Int64 = 0
    private var _received: Int64 = 0
    private var _commands = 0

    public init() {}

    /// Remote commands started (on an SSH host, each one starts the login shell).
    public var commands: Int { lock.lock(); defer { lock.unlock() }; return _commands }
    public func addCommand() { lock.lock(); _commands += 1; lock.unlock() }

    /// Bytes sent to the host.
    public var sent: Int64 { lock.lock(); defer { lock.unlock() }; return _sent }
    /// Bytes received from the host.
    public var received: Int64 { lock.lock(); defer { lock.unlock() }; return _received }

    public func addSent(_ n: Int64) { lock.lock(); _sent += n; lock.unlock() }
    public func addReceived(_ n: Int64) { lock.lock(); _received += n; lock.unlock() }
}

/// The suffix of files being written by a transfer (the SSH module's too).
public let partialSuffix = ".ferry-partial"

extension RemoteCommand {
    /// Reads all output and the exit status.
    public func collect() async throws -> (stdout: Data, stderr: Data, status: Int32) {
        var out = Data(), err = Data()
        for try await chunk in output {
            switch chunk {
            case .stdout(let d): out.append(d)
            case .stderr(let d): err.append(d)
            }
        }
        return (out, err, try await exitStatus())
    }
}
