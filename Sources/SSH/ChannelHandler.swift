import CLibSSH
import Foundation

/// A channel whose output goes to a bounded queue for a Swift task and whose input comes from
/// `write` jobs: exec, PTY sessions driven from code, forwarded TCP streams. Loop-confined.
final class ChannelHandler: LoopHandler {
    let core: SessionCore
    private(set) var channel: ssh_channel?
    let output: ChunkQueue<SSHOutputChunk>
    let completion = Promise<SSHExitStatus>()
    let events: ChannelEvents
    private var pendingInput: [UInt8] = []
    private var inputWritten = 0
    private var inputQueued = 0
    private var writers: [(end: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    private var eofRequested = false
    private var eofSent = false
    private var finished = false
    private var outputFinished = false
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    /// Takes ownership of an open channel.
    init(core: SessionCore, channel: ssh_channel, queueLimit: Int = 4 << 20) {
        self.core = core
        self.channel = channel
        self.events = ChannelEvents(core: core)
        let bound = LoopBound<SessionCore>(core)
        let weakSelf = WeakHandler()
        output = ChunkQueue(limit: queueLimit, size: { $0.data.count },
                            onDrain: { bound.value.wake() },
                            onCancel: { bound.value.execute { weakSelf.handler?.cancel() } })
        weakSelf.handler = self
        events.attach(channel)
    }

    var isFinished: Bool { finished }

    /// Queues bytes for the remote stdin; the continuation resumes once libssh took them all.
    func enqueueInput(_ data: Data, _ continuation: CheckedContinuation<Void, any Error>) {
        guard !finished, !eofRequested else {
            continuation.resume(throwing: SSHError.channelFailed(host: core.label, operation: "write", reason: "the channel's input is closed"))
            return
        }
        pendingInput.append(contentsOf: data)
        inputQueued += data.count
        writers.append((inputQueued, continuation))
        core.dirty = true
    }

    func closeInput() {
        eofRequested = true
        core.dirty = true
    }

    func service() -> Bool {
        guard let channel, !finished else { return false }
        var progressed = false
        // Remote stdin, no more than the window allows so the loop never blocks on a stalled reader.
        if inputWritten < inputQueued {
            let window = Int(ssh_channel_window_size(channel))
            let count = min(window, inputQueued - inputWritten, 1 << 20)
            if count > 0 {
                let start = pendingInput.count - (inputQueued - inputWritten)
                let rc = pendingInput[start..<(start + count)].withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32(count)) }
                if rc == SSH_ERROR { fail(core.channelError("write")); return true }
                if rc > 0 {
                    inputWritten += Int(rc)
                    progressed = true
                    while let first = writers.first, first.end <= inputWritten {
                        writers.removeFirst()
                        first.continuation.resume()
                    }
                    if inputWritten == inputQueued { pendingInput.removeAll(keepingCapacity: true); inputQueued = 0; inputWritten = 0 }
                }
            }
        }
        if eofRequested && !eofSent && inputWritten == inputQueued {
            eofSent = true
            _ = ssh_channel_send_eof(channel)
            progressed = true
        }
        for stream: Int32 in [0, 1] {
            while output.hasRoom {
                let n = buffer.withUnsafeMutableBytes { ssh_channel_read_nonblocking(channel, $0.baseAddress, UInt32($0.count), stream) }
                if n > 0 {
                    let data = Data(buffer[0..<Int(n)])
                    output.push(stream == 0 ? .stdout(data) : .stderr(data))
                    progressed = true
                } else {
                    if n == SSH_ERROR { fail(core.channelError("read")); return true }
                    break
                }
            }
        }
        // EOF with the buffers drained ends the output (a TCP peer may wait for our EOF before closing).
        if !outputFinished && ssh_channel_is_eof(channel) != 0 {
            outputFinished = true
            output.finish()
            progressed = true
        }
        // libssh holds a received CLOSE back until the buffers are read, so closed means drained.
        if ssh_channel_is_closed(channel) != 0 {
            finish(.success(events.status))
            return true
        }
        return progressed
    }

    /// Closes the channel from our side (cancellation): the process is sent SIGTERM first, since
    /// sshd does not kill a command whose channel closes.
    func cancel() {
        guard let channel, !finished else { return }
        _ = ssh_channel_request_send_signal(channel, "TERM")
        finish(.failure(CancellationError()))
    }

    func sendSignal(_ name: String) throws {
        guard let channel, !finished else { throw SSHError.channelFailed(host: core.label, operation: "signal", reason: "the channel is closed") }
        guard ssh_channel_request_send_signal(channel, name) == SSH_OK else { throw core.channelError("signal \(name)") }
    }

    func resize(columns: Int, rows: Int) throws {
        guard let channel, !finished else { throw SSHError.channelFailed(host: core.label, operation: "resize", reason: "the channel is closed") }
        guard ssh_channel_change_pty_size(channel, Int32(columns), Int32(rows)) == SSH_OK else { throw core.channelError("window change") }
    }

    func shutdown(_ error: SSHError) { fail(error) }

    private func fail(_ error: any Error) { finish(.failure(error)) }

    private func finish(_ result: Result<SSHExitStatus, any Error>) {
        guard !finished else { return }
        finished = true
        if let channel { events.release(channel) }
        channel = nil
        let writeError: any Error
        switch result {
        case .success: writeError = SSHError.channelFailed(host: core.label, operation: "write", reason: "the remote command ended")
        case .failure(let e): writeError = e
        }
        for w in writers { w.continuation.resume(throwing: writeError) }
        writers.removeAll()
        switch result {
        case .success: output.finish()
        case .failure(let e): output.finish(e)
        }
        completion.resolve(result)
    }
}

/// Lets a queue's cancellation reach its handler without keeping it alive.
final class WeakHandler: @unchecked Sendable {
    // Set once before the handler is shared; read only in loop jobs.
    weak var handler: ChannelHandler?
}
