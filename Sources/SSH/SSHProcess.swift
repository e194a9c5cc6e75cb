import Foundation

/// A remote command in flight: its output streams in as it arrives, its stdin is writable, and its
/// end is an exit status or a signal. Cancelling the task that reads `output` or awaits
/// `exitStatus()` closes the channel. A SIGTERM request goes first, but OpenSSH's sshd honours signal
/// requests only for privilege-separated (non-root) sessions; otherwise the command learns of the
/// close through its pipes (SIGPIPE on its next write, EOF on stdin) — a silent `sleep` outlives it.
public final class SSHProcess: Sendable {
    let session: SSHSession
    let handler: LoopBound<ChannelHandler>
    /// stdout and stderr chunks in arrival order. Iterate it once, from one task.
    public let output: SSHOutputStream

    init(session: SSHSession, handler: LoopBound<ChannelHandler>) {
        self.session = session
        self.handler = handler
        self.output = SSHOutputStream(queue: handler.value.output)
    }

    /// Sends bytes to the command's stdin; returns once libssh has taken them (the SSH window paces it).
    public func write(_ data: Data) async throws {
        let handler = self.handler
        let payload = data
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let accepted = session.core.execute { handler.value.enqueueInput(payload, c) }
            if !accepted { c.resume(throwing: SSHError.disconnected(host: session.core.label, reason: "the session was closed")) }
        }
    }

    public func write(_ text: String) async throws { try await write(Data(text.utf8)) }

    /// Sends EOF on stdin (after what was written).
    public func closeInput() async throws {
        let handler = self.handler
        try await session.core.submit { _ in handler.value.closeInput() }
    }

    /// Waits for the command to end. Cancelling the waiting task cancels the command.
    public func exitStatus() async throws -> SSHExitStatus {
        let completion = handler.value.completion
        return try await withTaskCancellationHandler {
            try await completion.value()
        } onCancel: {
            self.cancel()
        }
    }

    /// Closes the channel now (the command is sent SIGTERM first). Output ends with CancellationError.
    public func cancel() {
        let handler = self.handler
        session.core.execute { handler.value.cancel() }
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`, ...) to the command.
    public func signal(_ name: String) async throws {
        let handler = self.handler
        try await session.core.submit { _ in try handler.value.sendSignal(name) }
    }

    /// Tells the remote PTY its new size (SIGWINCH on the far side).
    public func resizePTY(columns: Int, rows: Int) async throws {
        let handler = self.handler
        try await session.core.submit { _ in try handler.value.resize(columns: columns, rows: rows) }
    }

    /// Reads all output and waits for the status.
    public func collect() async throws -> SSHRunResult {
        var out = Data(), err = Data()
        for try await chunk in output {
            switch chunk {
            case .stdout(let d): out.append(d)
            case .stderr(let d): err.append(d)
            }
        }
        return SSHRunResult(stdout: out, stderr: err, status: try await exitStatus())
    }
}

/// A remote command's output as an async sequence of chunks.
public struct SSHOutputStream: AsyncSequence, Sendable {
    public typealias Element = SSHOutputChunk
    let queue: ChunkQueue<SSHOutputChunk>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: ChunkQueue<SSHOutputChunk>
        public mutating func next() async throws -> SSHOutputChunk? { try await queue.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue) }
}

/// A byte stream over an SSH channel: a direct-tcpip connection opened through the server
/// (`ssh -W`), or a connection forwarded back from the server (`ssh -R`).
public final class SSHChannelStream: Sendable {
    let core: SessionCore
    let handler: LoopBound<ChannelHandler>
    /// For forwarded connections: who connected to the server's port.
    public let originatorAddress: String?
    public let originatorPort: Int?
    /// Bytes from the far end, as they arrive; ends when the far end closes.
    public let inbound: SSHByteStream

    init(core: SessionCore, handler: LoopBound<ChannelHandler>, originatorAddress: String? = nil, originatorPort: Int? = nil) {
        self.core = core; self.handler = handler
        self.originatorAddress = originatorAddress; self.originatorPort = originatorPort
        self.inbound = SSHByteStream(queue: handler.value.output)
    }

    public func write(_ data: Data) async throws {
        let handler = self.handler
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let accepted = core.execute { handler.value.enqueueInput(data, c) }
            if !accepted { c.resume(throwing: SSHError.disconnected(host: core.label, reason: "the session was closed")) }
        }
    }

    /// Half-closes: the far end reads EOF, and can still answer.
    public func closeWrite() async throws {
        let handler = self.handler
        try await core.submit { _ in handler.value.closeInput() }
    }

    /// Closes both directions now.
    public func close() {
        let handler = self.handler
        core.execute { handler.value.cancel() }
    }
}

/// Bytes from a channel as an async sequence of `Data`.
public struct SSHByteStream: AsyncSequence, Sendable {
    public typealias Element = Data
    let queue: ChunkQueue<SSHOutputChunk>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: ChunkQueue<SSHOutputChunk>
        public mutating func next() async throws -> Data? {
            while let chunk = try await queue.next() {
                if case .stdout(let data) = chunk { return data }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue) }
}
