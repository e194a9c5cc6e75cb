import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The embedded default host, `--host local`: the same agent and lifecycle on this machine, with a
/// local process in place of an SSH channel and file copies in place of SFTP.
public final class LocalTransport: Transport {
    public let label: String
    public let counters = TransferCounters()
    /// The "host's" FERRY_HOME.
    public let home: String
    /// The ferry binary that answers `agent` verbs.
    public let agentBinary: String
    let environment: [String: String]

    public var knownAgentBinary: String? { agentBinary }

    public init(home: String, agentBinary: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                label: String = "local") {
        self.home = home; self.agentBinary = agentBinary; self.label = label
        var env = environment
        env["FERRY_HOME"] = home
        self.environment = env
        // A command that exits before reading its stdin must not kill this process with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
    }

    public func start(_ commandLine: String) async throws -> any RemoteCommand {
        counters.addCommand()
        return try LocalCommand(["/bin/sh", "-c", commandLine], environment: environment, counters: counters)
    }

    public func upload(_ localPath: String, to remotePath: String, mode: UInt32,
                       progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport {
        let flag = AtomicFlag()
        let report = try await withTaskCancellationHandler {
            try await Task.detached {
                try LocalFiles.copy(localPath, to: remotePath, expectedSHA256: nil, resume: false, mode: mode_t(mode), cancel: flag, progress: progress)
            }.value
        } onCancel: { flag.set() }
        counters.addSent(report.transferredBytes)
        return report
    }

    public func download(_ remotePath: String, to localPath: String, expectedSHA256: String?,
                         progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport {
        let flag = AtomicFlag()
        let report = try await withTaskCancellationHandler {
            try await Task.detached {
                try LocalFiles.copy(remotePath, to: localPath, expectedSHA256: expectedSHA256, resume: true, mode: 0o644, cancel: flag, progress: progress)
            }.value
        } onCancel: { flag.set() }
        counters.addReceived(report.transferredBytes)
        return report
    }

    public func close() async {}
}

/// A local process with pipes, read by threads.
final class LocalCommand: RemoteCommand, @unchecked Sendable {
    let output: AsyncThrowingStream<TransportOutput, any Error>
    private let pid: pid_t
    private let lock = NSLock()
    private var stdinFD: Int32
    private let status = Promise<Int32>()
    private let counters: TransferCounters

    init(_ arguments: [String], environment: [String: String], counters: TransferCounters) throws {
        self.counters = counters
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0, pipe(&errPipe) == 0 else {
            throw JobsError.io(path: "pipe", reason: SystemError.text(errno))
        }
        for fd in inPipe + outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        do throws(SystemError) {
            pid = try Spawn.start(arguments, environment: environment, stdin: .fd(inPipe[0]), stdout: .fd(outPipe[1]),
                                  stderr: .fd(errPipe[1]), newGroup: true)
        } catch {
            for fd in inPipe + outPipe + errPipe { close(fd) }
            throw JobsError(error)
        }
        close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
        stdinFD = inPipe[1]
        let (stream, continuation) = AsyncThrowingStream<TransportOutput, any Error>.makeStream()
        output = stream
        let readers = ReaderGroup(count: 2) { continuation.finish() }
        let counters = self.counters
        for (fd, isErr) in [(outPipe[0], false), (errPipe[0], true)] {
            let thread = Thread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { FileIO.read(fd, into: $0) }
                    if n <= 0 { break }
                    let data = Data(buffer[0..<n])
                    counters.addReceived(Int64(n))
                    continuation.yield(isErr ? .stderr(data) : .stdout(data))
                }
                close(fd)
                readers.done()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        let pid = self.pid
        let status = self.status
        let waiter = Thread {
            status.resolve(.success(Spawn.decodeWaitStatus(Spawn.wait(pid)).code))
        }
        waiter.stackSize = 1 << 18
        waiter.start()
    }

    deinit {
        if stdinFD >= 0 { close(stdinFD) }
    }

    func write(_ data: Data) async throws {
        let fd: Int32 = lock.withLock { stdinFD }
        guard fd >= 0 else { throw JobsError.io(path: "stdin", reason: "already closed") }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                do {
                    try JobsError.system { try FileIO.writeAll(fd, data, path: "the local agent's stdin") }
                    c.resume()
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
        counters.addSent(Int64(data.count))
    }

    func closeInput() async throws {
        lock.withLock {
            if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
        }
    }

    func exitStatus() async throws -> Int32 {
        try await withTaskCancellationHandler {
            try await status.value()
        } onCancel: {
            self.cancel()
        }
    }

    func cancel() {
        if status.current == nil { kill(-pid, SIGKILL) }
    }
}

/// Calls `done` once `count` readers have finished.
final class ReaderGroup: @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int
    private let onDone: @Sendable () -> Void
    init(count: Int, onDone: @escaping @Sendable () -> Void) { left = count; self.onDone = onDone }
    func done() {
        lock.lock()
        left -= 1
        let finished = left == 0
        lock.unlock()
        if finished { onDone() }
    }
}

/// Resumable, verified local file copies (LocalTransport's put and get, and the fetcher's).
enum LocalFiles {
    static func copy(_ source: String, to destination: String, expectedSHA256: String?, resume: Bool, mode: mode_t,
                     cancel: AtomicFlag = AtomicFlag(), progress: (@Sendable (Int64) -> Void)?) throws -> TransferReport {
        let partial = destination + partialSuffix
        try POSIX.makeDirectory((destination as NSString).deletingLastPathComponent)
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw JobsError.transferFailed(path: source, reason: SystemError.text(errno)) }
        defer { close(input) }
        var st = stat()
        fstat(input, &st)
        let total = Int64(st.st_size)
        let output = open(partial, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0o600)
        guard output >= 0 else { throw JobsError.transferFailed(path: partial, reason: SystemError.text(errno)) }
        var closed = false
        defer { if !closed { close(output) } }
        var start = resume ? Int64(lseek(output, 0, SEEK_END)) : 0
        if start > total { _ = ftruncate(output, 0); start = 0 }
        var hasher = SHA256()
        if start > 0 {
            // Hash what is already there, then continue after it.
            let again = open(partial, O_RDONLY | O_CLOEXEC)
            guard again >= 0 else { throw JobsError.transferFailed(path: partial, reason: SystemError.text(errno)) }
            defer { close(again) }
            try feed(again, from: 0, count: start, into: &hasher, path: partial, write: nil, cancel: cancel)
        }
        lseek(output, off_t(start), SEEK_SET)
        try feed(input, from: start, count: total - start, into: &hasher, path: source, write: output, cancel: cancel,
                 progress: { done in progress?(start + done) })
        let digest = HashCache.hex(hasher.finalize())
        if let expected = expectedSHA256, expected != digest {
            close(output); closed = true
            unlink(partial)
            throw JobsError.checksumMismatch(path: destination, expected: expected, actual: digest)
        }
        fsync(output)
        fchmod(output, mode)
        close(output); closed = true
        guard rename(partial, destination) == 0 else { throw JobsError.transferFailed(path: destination, reason: SystemError.text(errno)) }
        return TransferReport(totalBytes: total, transferredBytes: total - start, resumedFrom: start, sha256: digest)
    }

    private static func feed(_ fd: Int32, from offset: Int64, count: Int64, into hasher: inout SHA256, path: String, write out: Int32?,
                             cancel: AtomicFlag, progress: ((Int64) -> Void)? = nil) throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var done: Int64 = 0
        while done < count {
            if cancel.isSet { throw CancellationError() }
            let n = buffer.withUnsafeMutableBytes { FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<Int(min(Int64($0.count), count - done))]), at: offset + done) }
            guard n > 0 else { throw JobsError.transferFailed(path: path, reason: n == 0 ? "the file shrank while copying" : SystemError.text(errno)) }
            try buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                hasher.update(bufferPointer: chunk)
                if let out { try JobsError.system { try FileIO.writeAll(out, chunk, path: path) } }
            }
            done += Int64(n)
            progress?(done)
        }
    }
}
