import CLibSSH
import Foundation
import Synchronization

extension SSHSession {
    /// Opens a direct-tcpip channel: a TCP connection from the server to `host:port` (what `ssh -W`
    /// does), as a byte stream. Use it to reach a machine behind this one without an ssh binary.
    public func openDirectTCPIP(host: String, port: Int) async throws -> SSHChannelStream {
        let core = self.core
        let handler = try await core.submit { core -> LoopBound<ChannelHandler> in
            let channel = try core.openDirectChannel(host: host, port: port)
            let handler = ChannelHandler(core: core, channel: channel)
            core.add(handler)
            return LoopBound(handler)
        }
        return SSHChannelStream(core: core, handler: handler)
    }

    /// A direct-tcpip channel to `host:port` as a local socket: bytes written to the returned
    /// descriptor reach the far end and back. The caller owns (and closes) the descriptor. This is how
    /// ProxyJump hands the next hop to libssh.
    public func openTunnelDescriptor(host: String, port: Int) async throws -> Int32 {
        try await core.submit { core -> Int32 in
            let channel = try core.openDirectChannel(host: host, port: port)
            var pair: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                ssh_channel_free(channel)
                throw SSHError.proxyFailed(via: core.label, reason: "socketpair: \(String(cString: strerror(errno)))")
            }
            _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
            core.add(FDPump(core: core, channel: channel, inFD: pair[0], outFD: pair[0], ownsFDs: true, halfClose: true))
            return pair[1]
        }
    }

    /// Asks the server to listen on `bindAddress:port` (`ssh -R`; port 0 lets it choose) and hands
    /// each connection to `handler` as a stream, on its own task. Cancel the forward to stop.
    public func forwardRemotePort(bindAddress: String = "127.0.0.1", port: Int,
                                  handler: @escaping @Sendable (SSHChannelStream) async -> Void) async throws -> SSHReverseForward {
        try await listen(bindAddress: bindAddress, port: port, target: .handler(handler))
    }

    /// Asks the server to listen on `bindAddress:port` and connects each incoming connection to
    /// `localHost:localPort` here, pumping bytes both ways (`ssh -R port:localHost:localPort`).
    public func forwardRemotePort(bindAddress: String = "127.0.0.1", port: Int, toLocalHost localHost: String = "127.0.0.1",
                                  localPort: Int) async throws -> SSHReverseForward {
        try await listen(bindAddress: bindAddress, port: port, target: .local(host: localHost, port: localPort))
    }

    private func listen(bindAddress: String, port: Int, target: ForwardTarget) async throws -> SSHReverseForward {
        let bound = try await core.submit { core -> Int in
            guard let session = core.session else { throw core.channelError("listen") }
            var boundPort: Int32 = 0
            guard ssh_channel_listen_forward(session, bindAddress, Int32(port), &boundPort) == SSH_OK else {
                throw SSHError.forwardingFailed(address: bindAddress, port: port, reason: core.lastError)
            }
            let actual = port == 0 ? Int(boundPort) : port
            core.forwardAcceptor.routes[actual] = target
            return actual
        }
        return SSHReverseForward(session: self, bindAddress: bindAddress, port: bound)
    }
}

/// What a reverse-forwarded connection is handed to.
enum ForwardTarget: @unchecked Sendable {
    // The handler closure is Sendable; the enum is only stored in loop-confined state.
    case handler(@Sendable (SSHChannelStream) async -> Void)
    case local(host: String, port: Int)
}

/// A port the server listens on for us (`ssh -R`). Connections keep arriving until `cancel()`.
public final class SSHReverseForward: Sendable {
    public let session: SSHSession
    public let bindAddress: String
    /// The port the server listens on (the one it chose when 0 was asked).
    public let port: Int
    private let cancelled = Mutex(false)

    init(session: SSHSession, bindAddress: String, port: Int) {
        self.session = session; self.bindAddress = bindAddress; self.port = port
    }

    /// Connections accepted so far.
    public var acceptedConnections: Int {
        get async { (try? await session.core.submit { [port] core in core.forwardAcceptor.accepted[port] ?? 0 }) ?? 0 }
    }

    /// Asks the server to stop listening; connections already open continue.
    public func cancel() async throws {
        guard cancelled.withLock({ let was = $0; $0 = true; return !was }) else { return }
        let address = bindAddress, port = self.port
        try await session.core.submit { core in
            core.forwardAcceptor.routes[port] = nil
            guard let session = core.session, ssh_channel_cancel_forward(session, address, Int32(port)) == SSH_OK else {
                throw SSHError.forwardingFailed(address: address, port: port, reason: core.lastError)
            }
        }
    }
}

/// Takes forwarded-tcpip channels the server opens and routes them by port. One per session; it
/// looks at libssh's message queue every turn (no callback exists for these in libssh 0.10).
final class ForwardAcceptor: LoopHandler {
    unowned let core: SessionCore
    var routes: [Int: ForwardTarget] = [:]
    var accepted: [Int: Int] = [:]
    var isFinished: Bool { false }

    init(core: SessionCore) { self.core = core }

    func service() -> Bool {
        guard !routes.isEmpty, let session = core.session else { return false }
        var progressed = false
        while true {
            var port: Int32 = 0
            var originator: UnsafeMutablePointer<CChar>?
            var originatorPort: Int32 = 0
            guard let channel = ssh_channel_open_forward_port(session, 0, &port, &originator, &originatorPort) else { break }
            let from = originator.map { String(cString: $0) }
            free(originator)
            progressed = true
            core.heardFromServer()
            guard let target = routes[Int(port)] else {
                ssh_channel_close(channel); ssh_channel_free(channel)
                continue
            }
            accepted[Int(port), default: 0] += 1
            switch target {
            case .handler(let handle):
                let handler = ChannelHandler(core: core, channel: channel)
                core.add(handler)
                let stream = SSHChannelStream(core: core, handler: LoopBound(handler), originatorAddress: from, originatorPort: Int(originatorPort))
                Task { await handle(stream) }
            case .local(let host, let localPort):
                guard let fd = ForwardAcceptor.connectTCP(host: host, port: localPort) else {
                    ssh_channel_close(channel); ssh_channel_free(channel)
                    continue
                }
                core.add(FDPump(core: core, channel: channel, inFD: fd, outFD: fd, ownsFDs: true, halfClose: true))
            }
        }
        return progressed
    }

    func shutdown(_ error: SSHError) { routes.removeAll() }

    /// A non-blocking TCP connection to a local service (connected synchronously: it is local).
    static func connectTCP(host: String, port: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        var info: UnsafeMutablePointer<addrinfo>? = first
        while let ai = info {
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd >= 0 {
                if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                    return fd
                }
                close(fd)
            }
            info = ai.pointee.ai_next
        }
        return nil
    }
}

extension SessionCore {
    /// A direct-tcpip channel to `host:port`, opened. Loop only.
    func openDirectChannel(host: String, port: Int) throws -> ssh_channel {
        assertOnLoop()
        guard let session, let channel = ssh_channel_new(session) else { throw channelError("open channel") }
        guard ssh_channel_open_forward(channel, host, Int32(port), "127.0.0.1", 0) == SSH_OK else {
            let reason = lastError
            ssh_channel_free(channel)
            if let deadError { throw deadError }
            throw SSHError.proxyFailed(via: label, reason: "the server would not connect to \(host):\(port): \(reason)")
        }
        return channel
    }
}

#if canImport(Glibc)
import Glibc
#endif
