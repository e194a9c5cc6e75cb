import CLibSSH
import Foundation

/// libssh channel callbacks for one channel. They only note what happened (exit status, signal) and
/// mark the loop dirty; the handler reads buffered data on its next turn, so no callback does I/O.
final class ChannelEvents {
    unowned let core: SessionCore
    var exitCode: Int32?
    var exitSignal: String?
    private let callbacks: UnsafeMutablePointer<ssh_channel_callbacks_struct>
    private var attached: ssh_channel?

    init(core: SessionCore) {
        self.core = core
        callbacks = .allocate(capacity: 1)
        memset(callbacks, 0, MemoryLayout<ssh_channel_callbacks_struct>.size)
    }

    deinit { callbacks.deallocate() }

    func attach(_ channel: ssh_channel) {
        callbacks.pointee.size = MemoryLayout<ssh_channel_callbacks_struct>.size
        callbacks.pointee.userdata = Unmanaged.passUnretained(self).toOpaque()
        // Data stays in libssh's channel buffer (we consume 0 bytes); the handler reads it when it has room.
        // Each of these is a message from the server: the connection is alive (keepalives wait).
        callbacks.pointee.channel_data_function = { _, _, _, _, _, userdata in
            ChannelEvents.from(userdata)?.core.heardFromServer()
            return 0
        }
        callbacks.pointee.channel_eof_function = { _, _, userdata in ChannelEvents.from(userdata)?.core.heardFromServer() }
        callbacks.pointee.channel_close_function = { _, _, userdata in ChannelEvents.from(userdata)?.core.heardFromServer() }
        callbacks.pointee.channel_exit_status_function = { _, _, status, userdata in
            guard let events = ChannelEvents.from(userdata) else { return }
            events.exitCode = status
            events.core.heardFromServer()
        }
        callbacks.pointee.channel_exit_signal_function = { _, _, signal, _, _, _, userdata in
            guard let events = ChannelEvents.from(userdata) else { return }
            events.exitSignal = signal.map { String(cString: $0) } ?? "?"
            events.core.heardFromServer()
        }
        callbacks.pointee.channel_write_wontblock_function = { _, _, _, userdata in
            ChannelEvents.from(userdata)?.core.dirty = true
            return 0
        }
        _ = ssh_set_channel_callbacks(channel, callbacks)
        attached = channel
    }

    func detach() {
        if let attached { _ = ssh_remove_channel_callbacks(attached, callbacks) }
        attached = nil
    }

    /// The one teardown of a channel: callbacks off, closed if still open, freed.
    func release(_ channel: ssh_channel) {
        detach()
        if ssh_channel_is_closed(channel) == 0 { _ = ssh_channel_close(channel) }
        ssh_channel_free(channel)
    }

    var status: SSHExitStatus {
        if let exitSignal { return .signaled(exitSignal) }
        if let exitCode { return .exited(exitCode) }
        return .unknown
    }

    private static func from(_ userdata: UnsafeMutableRawPointer?) -> ChannelEvents? {
        guard let userdata else { return nil }
        return Unmanaged<ChannelEvents>.fromOpaque(userdata).takeUnretainedValue()
    }
}

/// How a remote command ended.
public enum SSHExitStatus: Sendable, Equatable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// A signal ended it; the name without `SIG` (`TERM`, `KILL`).
    case signaled(String)
    /// The channel closed without the server saying (the connection dropped, or it was cancelled).
    case unknown

    /// As a shell reports it: the status, 128 + the signal's number, or 255 when unknown (like ssh).
    public var code: Int32 {
        switch self {
        case .exited(let n): return n
        case .signaled(let name): return 128 + (SSHExitStatus.signalNumbers[name] ?? 0)
        case .unknown: return 255
        }
    }

    public var succeeded: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let n): return "exit status \(n)"
        case .signaled(let name): return "killed by SIG\(name)"
        case .unknown: return "closed without an exit status"
        }
    }

    static let signalNumbers: [String: Int32] = ["HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9,
                                                 "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15]
}

/// A piece of a remote command's output, as it arrived.
public enum SSHOutputChunk: Sendable, Equatable {
    case stdout(Data)
    case stderr(Data)

    public var data: Data {
        switch self { case .stdout(let d), .stderr(let d): return d }
    }
}
