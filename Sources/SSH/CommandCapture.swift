import CLibSSH
import Foundation

/// A small command run beside a long job on the same session (the remote `sha256sum` of a file being
/// downloaded), its output captured in memory. Loop-confined; the job polls `isFinished`.
final class CommandCapture: LoopHandler {
    let core: SessionCore
    private var channel: ssh_channel?
    private let events: ChannelEvents
    private(set) var stdout = Data()
    private(set) var stderr = Data()
    private(set) var status: SSHExitStatus = .unknown
    private(set) var failure: SSHError?
    private var finished = false
    private var buffer = [UInt8](repeating: 0, count: 16_384)
    private static let limit = 1 << 20

    init(core: SessionCore, command: String) throws {
        self.core = core
        let channel = try core.openSessionChannel()
        guard ssh_channel_request_exec(channel, command) == SSH_OK else {
            let error = core.channelError("exec")
            ssh_channel_free(channel)
            throw error
        }
        _ = ssh_channel_send_eof(channel)
        self.channel = channel
        events = ChannelEvents(core: core)
        events.attach(channel)
    }

    var isFinished: Bool { finished }

    func service() -> Bool {
        guard let channel, !finished else { return false }
        var progressed = false
        for stream: Int32 in [0, 1] {
            while true {
                let n = buffer.withUnsafeMutableBytes { ssh_channel_read_nonblocking(channel, $0.baseAddress, UInt32($0.count), stream) }
                if n > 0 {
                    if stream == 0 { if stdout.count < CommandCapture.limit { stdout.append(contentsOf: buffer[0..<Int(n)]) } }
                    else if stderr.count < CommandCapture.limit { stderr.append(contentsOf: buffer[0..<Int(n)]) }
                    progressed = true
                } else {
                    if n == SSH_ERROR { finish(core.channelError("read")); return true }
                    break
                }
            }
        }
        if ssh_channel_is_closed(channel) != 0 { finish(nil); return true }
        return progressed
    }

    func shutdown(_ error: SSHError) { finish(error) }

    /// Stops it early (the job it served failed).
    func cancel() { finish(nil) }

    private func finish(_ error: SSHError?) {
        guard !finished else { return }
        finished = true
        failure = error
        status = events.status
        if let channel { events.release(channel) }
        channel = nil
    }
}

extension SessionCore {
    /// From inside a job: keeps the session's handlers (and so `condition`'s inputs) moving until
    /// `condition` holds or the connection dies.
    func waitInJob(until condition: () -> Bool) throws {
        assertOnLoop()
        while !condition() {
            if let deadError { throw deadError }
            serviceHandlersFromJob()
            if condition() { return }
            if let session, let event = sessionEvent {
                _ = ssh_event_dopoll(event, 20)
                if ssh_is_connected(session) == 0 { throw channelError("wait") }
            }
        }
    }
}
