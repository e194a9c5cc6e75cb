import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The local copy of a job's output.log. Bytes are written at the offset the host gave them
/// (pwrite), so the mirror is byte-identical to the host's file, two followers writing at once
/// write the same bytes in the same places, and its size is where following resumes after a crash.
public struct LogMirror: Sendable {
    public let path: String
    public init(path: String) { self.path = path }

    /// Bytes mirrored so far.
    public var size: Int64 { POSIX.fileSize(path) ?? 0 }

    public func write(_ data: Data, at offset: Int64) throws {
        try POSIX.makeDirectory((path as NSString).deletingLastPathComponent, mode: 0o700)
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        defer { close(fd) }
        try JobsError.system { try FileIO.writeAll(fd, data, at: offset, path: path) }
    }

    public func read(from offset: Int64 = 0) -> Data {
        var data = Data()
        stream(from: offset) { data.append(contentsOf: $0) }
        return data
    }

    /// Passes the mirrored bytes in `[offset, end)` to `sink` in pieces of at most 1 MiB, so a log of
    /// any size is printed in constant memory. Returns the offset reached.
    @discardableResult
    public func stream(from offset: Int64 = 0, upTo end: Int64 = .max, _ sink: (UnsafeRawBufferPointer) -> Void) -> Int64 {
        let start = max(0, offset)
        guard end > start else { return start }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return start }
        defer { close(fd) }
        let read = (try? FileIO.readChunks(fd, from: start, limit: end - start, path: path) { sink($0) }) ?? 0
        return start + read
    }

    /// Where the last `count` lines before `end` begin (0 when there are fewer), found by reading
    /// backwards from `end` in pieces: the tail of a log of any size without reading it whole.
    public func offsetOfLastLines(_ count: Int, before end: Int64) -> Int64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, count > 0, end > 0 else { if fd >= 0 { close(fd) }; return max(0, end) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var newlines = 0
        var position = end
        var first = true
        while position > 0 {
            let length = Int(min(Int64(buffer.count), position))
            position -= Int64(length)
            let n = buffer.withUnsafeMutableBytes { FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<length]), at: position) }
            guard n == length else { return 0 }
            var i = length - 1
            // A final newline ends the last line; it does not start another.
            if first && buffer[i] == 0x0A { i -= 1 }
            first = false
            while i >= 0 {
                if buffer[i] == 0x0A {
                    newlines += 1
                    if newlines == count { return position + Int64(i) + 1 }
                }
                i -= 1
            }
        }
        return 0
    }
}

/// Follows a job's log by byte offset through the agent (`job-logs ID --offset N`, a bounded
/// long-poll). A dropped connection is reconnected with backoff and resumed exactly at the offset:
/// no byte lost, none repeated. The end is the host saying the job is over and every byte was sent.
public final class LogFollower: Sendable {
    public let id: String
    public let mirror: LogMirror
    /// Opens a connection; gets the number of failed attempts in a row (0 the first time).
    let connect: @Sendable (_ failures: Int) async throws -> AgentSession
    /// Seconds each long-poll may wait for new output before the agent answers `T`.
    public let pollSeconds: Double
    /// Reconnection attempts in a row before giving up (nil: never give up).
    public let maxFailures: Int?

    /// What happened along the way, for a status line.
    public enum Event: Sendable {
        case disconnected(reason: String, retryIn: Double, attempt: Int)
        case reconnected(offset: Int64)
    }

    public init(id: String, mirror: LogMirror, pollSeconds: Double = 20, maxFailures: Int? = nil,
                connect: @escaping @Sendable (_ failures: Int) async throws -> AgentSession) {
        self.id = id; self.mirror = mirror; self.pollSeconds = pollSeconds; self.maxFailures = maxFailures; self.connect = connect
    }

    /// Follows from `offset` until the job ends; every received byte goes to the mirror, then to
    /// `onData`. `first` is an already connected client to start with (the launch's). With
    /// `stopWhenCaughtUp`, returns nil once everything written so far has arrived.
    public func resume(from offset: Int64, first: AgentSession? = nil, stopWhenCaughtUp: Bool = false,
                       onData: @Sendable (Data) -> Void, onEvent: (@Sendable (Event) -> Void)? = nil) async throws -> JobStatus? {
        let state = FollowState(offset: offset, client: first)
        do {
            let status = try await follow(state, stopWhenCaughtUp: stopWhenCaughtUp, onData: onData, onEvent: onEvent)
            if let client = state.client { await client.close() }
            return status
        } catch {
            if let client = state.client { await client.close() }
            throw error
        }
    }

    /// Where a follow stands; confined to the following task.
    final class FollowState {
        var offset: Int64
        var client: AgentSession?
        var failures = 0
        var host: String
        init(offset: Int64, client: AgentSession?) {
            self.offset = offset; self.client = client; host = client?.host ?? "the host"
        }
    }

    private func follow(_ state: FollowState, stopWhenCaughtUp: Bool, onData: @Sendable (Data) -> Void,
                        onEvent: (@Sendable (Event) -> Void)?) async throws -> JobStatus? {
        let mirror = self.mirror
        while true {
            try Task.checkCancellation()
            do {
                if state.client == nil {
                    state.client = try await connect(state.failures)
                    if state.failures > 0 { onEvent?(.reconnected(offset: state.offset)) }
                }
                guard let current = state.client else { continue }
                state.host = current.host
                let receive: (LogFrame) throws -> Void = { frame in
                    guard case .data(let at, let bytes) = frame else { return }
                    guard at == state.offset else {
                        throw JobsError.protocolViolation(host: current.host, detail: "log bytes at \(at), expected \(state.offset)")
                    }
                    try mirror.write(bytes, at: at)
                    state.offset += Int64(bytes.count)
                    // Bytes arrived: this connection worked, so a later drop starts the backoff afresh.
                    state.failures = 0
                    onData(bytes)
                }
                let closing = try await current.logs(id, offset: state.offset, wait: pollSeconds, onFrame: receive)
                state.failures = 0
                switch closing {
                case .end(let status): return status
                case .more: continue   // a full round: more is there already
                default: if stopWhenCaughtUp { return nil }
                }
            } catch let error as CancellationError {
                throw error
            } catch let error as JobsError where !LogFollower.isRetryable(error) {
                throw error
            } catch {
                if Task.isCancelled { throw CancellationError() }
                if let dead = state.client { state.client = nil; await dead.close() }
                state.failures += 1
                if let maxFailures, state.failures > maxFailures {
                    throw JobsError.connectionLost(host: state.host, reason: "\(error)", attempts: state.failures - 1)
                }
                let delay = LogFollower.backoff(state.failures)
                onEvent?(.disconnected(reason: "\(error)", retryIn: delay, attempt: state.failures))
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            }
        }
    }

    /// 0.1 s, 0.2 s, 0.4 s ... up to 10 s, with ±20 % jitter so many followers do not reconnect in step.
    static func backoff(_ failures: Int) -> Double {
        let base = min(10, 0.1 * pow(2, Double(min(failures - 1, 10))))
        return base * Double.random(in: 0.8...1.2)
    }

    /// Errors that another connection could fix (the rest are definitive: unknown job, bad offset).
    static func isRetryable(_ error: JobsError) -> Bool {
        switch error {
        case .unknownJob, .invalidJobID, .agentFailed, .protocolViolation, .unsafePath, .unknownHost, .io, .noAgent: return false
        default: return true
        }
    }
}
