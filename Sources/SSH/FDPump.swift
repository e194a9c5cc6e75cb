import CLibSSH
import Foundation
import System

/// Pumps bytes between a channel and local descriptors, both ways, with flow control: a socketpair
/// feeding the next hop of a ProxyJump, a local TCP connection of a forwarded port, or the local
/// terminal of an interactive session. Loop-confined.
final class FDPump: LoopHandler {
    let core: SessionCore
    private(set) var channel: ssh_channel?
    /// Local → channel; -1 for none (the channel gets EOF at once).
    let inFD: Int32
    /// Channel stdout → local.
    let outFD: Int32
    /// Channel stderr → local; -1 drops it.
    let errFD: Int32
    /// Close the descriptors when done (sockets we made), or leave them (the terminal).
    let ownsFDs: Bool
    /// Shut down the writing half of `outFD` when the channel sends EOF (sockets only).
    let halfClose: Bool
    /// Blocking descriptors (a terminal) are read once per poll readiness, never speculatively.
    let inIsBlocking: Bool
    let events: ChannelEvents
    let completion = Promise<SSHExitStatus>()
    /// Extra descriptors to watch (a SIGWINCH pipe) with what to do when they are readable.
    var extraWatches: [(fd: Int32, onReadable: () -> Void)] = []

    private let outIsSocket: Bool
    private let errIsSocket: Bool
    private var outPending: [UInt8] = []
    private var errPending: [UInt8] = []
    private var inReadable = false
    private var inEOF = false
    private var outShutdown = false
    private var finished = false
    private var buffer = [UInt8](repeating: 0, count: 131_072)
    private static let pendingLimit = 1 << 20

    init(core: SessionCore, channel: ssh_channel, inFD: Int32, outFD: Int32, errFD: Int32 = -1,
         ownsFDs: Bool, halfClose: Bool, inIsBlocking: Bool = false) {
        self.core = core; self.channel = channel
        self.inFD = inFD; self.outFD = outFD; self.errFD = errFD
        self.ownsFDs = ownsFDs; self.halfClose = halfClose; self.inIsBlocking = inIsBlocking
        outIsSocket = FDPump.isSocket(outFD)
        errIsSocket = errFD >= 0 && FDPump.isSocket(errFD)
        events = ChannelEvents(core: core)
        events.attach(channel)
        if inFD < 0 { inEOF = true; _ = ssh_channel_send_eof(channel) }
    }

    var isFinished: Bool { finished }

    func pollInterest() -> [(fd: Int32, events: Int16)] {
        guard let channel, !finished else { return [] }
        var list: [(Int32, Int16)] = []
        if !inEOF && !inReadable && ssh_channel_window_size(channel) > 0 { list.append((inFD, Int16(POLLIN))) }
        if !outPending.isEmpty { list.append((outFD, Int16(POLLOUT))) }
        if !errPending.isEmpty && errFD >= 0 { list.append((errFD, Int16(POLLOUT))) }
        for w in extraWatches { list.append((w.fd, Int16(POLLIN))) }
        return list
    }

    func pollResult(fd: Int32, revents: Int16) {
        if fd == inFD && revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { inReadable = true }
        for w in extraWatches where w.fd == fd { w.onReadable() }
    }

    func service() -> Bool {
        guard let channel, !finished else { return false }
        var progressed = false
        // Channel → local, holding back while the local side is slow (the SSH window then fills).
        for stream: Int32 in [0, 1] {
            while (stream == 0 ? outPending.count : errPending.count) < FDPump.pendingLimit {
                let n = buffer.withUnsafeMutableBytes { ssh_channel_read_nonblocking(channel, $0.baseAddress, UInt32($0.count), stream) }
                if n > 0 {
                    if stream == 0 { outPending.append(contentsOf: buffer[0..<Int(n)]) }
                    else if errFD >= 0 { errPending.append(contentsOf: buffer[0..<Int(n)]) }
                    progressed = true
                } else {
                    if n == SSH_ERROR { finish(.failure(core.channelError("read"))); return true }
                    break
                }
            }
        }
        switch flush(&outPending, to: outFD) {
        case .failed: closeChannel(); return true
        case .wrote: progressed = true
        case .blocked: break
        }
        if errFD >= 0, case .wrote = flush(&errPending, to: errFD) { progressed = true }
        if !outShutdown && outPending.isEmpty && ssh_channel_is_eof(channel) != 0 {
            outShutdown = true
            if halfClose { Glibc.shutdown(outFD, Int32(SHUT_WR)) }
            progressed = true
        }
        // Local → channel, never more than the remote window so a write cannot block the loop.
        while inReadable && !inEOF {
            let window = Int(ssh_channel_window_size(channel))
            guard window > 0 else { break }
            let n = buffer.withUnsafeMutableBytes { FileIO.read(inFD, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<min($0.count, window)])) }
            if n > 0 {
                let rc = buffer.withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32(n)) }
                if rc == SSH_ERROR { finish(.failure(core.channelError("write"))); return true }
                progressed = true
                if inIsBlocking { inReadable = false }
            } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                inEOF = true
                _ = ssh_channel_send_eof(channel)
                progressed = true
            } else {
                inReadable = false
            }
        }
        if ssh_channel_is_closed(channel) != 0 {
            if case .failed = flush(&outPending, to: outFD) {} 
            if errFD >= 0 { _ = flush(&errPending, to: errFD) }
            if outPending.isEmpty || !ownsFDs { finish(.success(events.status)); return true }
        }
        return progressed
    }

    private enum FlushResult { case wrote, blocked, failed }

    private func flush(_ pending: inout [UInt8], to fd: Int32) -> FlushResult {
        guard !pending.isEmpty else { return .blocked }
        var written = 0
        // To a socket whose peer is gone, write() would raise SIGPIPE and kill the whole process.
        let isSocket = fd == outFD ? outIsSocket : errIsSocket
        while written < pending.count {
            let n = pending[written...].withUnsafeBytes { chunk in
                Syscall.retrying { isSocket ? send(fd, chunk.baseAddress, chunk.count, Int32(MSG_NOSIGNAL)) : write(fd, chunk.baseAddress, chunk.count) }
            }
            if n > 0 { written += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            pending.removeAll()
            return .failed
        }
        pending.removeFirst(written)
        return written > 0 ? .wrote : .blocked
    }

    static func isSocket(_ fd: Int32) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
    }

    /// The local side failed (reset, closed): close the channel from our side.
    private func closeChannel() {
        finish(.success(events.status))
    }

    /// Ends the pump from outside (a cancelled forward, a closed tunnel).
    func stop() { finish(.failure(CancellationError())) }

    func shutdown(_ error: SSHError) { finish(.failure(error)) }

    private func finish(_ result: Result<SSHExitStatus, any Error>) {
        guard !finished else { return }
        finished = true
        if let channel { events.release(channel) }
        channel = nil
        if ownsFDs {
            Glibc.close(inFD)
            if outFD != inFD { Glibc.close(outFD) }
            if errFD >= 0 && errFD != outFD && errFD != inFD { Glibc.close(errFD) }
        }
        completion.resolve(result)
    }
}

#if canImport(Glibc)
import Glibc
#endif
