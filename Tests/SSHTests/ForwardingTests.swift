import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Testing

/// Reads from a connected socket until `count` bytes or EOF.
func readAll(_ fd: Int32, atLeast count: Int = .max, timeout seconds: Int = 10) -> Data {
    var tv = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var out = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while out.count < count {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        out.append(contentsOf: buffer[0..<n])
    }
    return out
}

/// Runs blocking socket work on a thread of its own: blocking a cooperative-pool thread could starve
/// the very tasks (a forward's handler) that the work waits for.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

func connectLocal(_ port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if rc != 0 { close(fd); return -1 }
    return fd
}

@Suite struct ForwardingTests {
    @Test func proxyJumpFromTheConfigReachesTheInnerHost() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withJumpHost { jump in
            let files = try writeJumpConfig(box, inner: sshd, jump: jump)
            let options = SSHConnectOptions(environment: box.environment(), knownHostsFile: files.knownHosts)
            let session = try await SSHSession.connect("inner", options: options)
            #expect(session.jumpSession?.hostConfig.port == jump.port)
            #expect(session.hostKeyFingerprint == sshd.hostKeyFingerprint)
            #expect(try await session.run("echo through").stdoutText == "through\n")
            // Bulk data through two encrypted hops.
            let big = try await session.run("head -c 5000000 /dev/zero | wc -c")
            #expect(big.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "5000000")
            await session.close()
            // The jump host's sshd saw a direct-tcpip request for the inner host.
            let log = try String(contentsOfFile: jump.directory + "/sshd.log", encoding: .utf8)
            #expect(log.contains("direct-tcpip") && log.contains("target \(sshd.host) port \(sshd.port)"), "no direct-tcpip request in the jump host's log")
        }
    }

    @Test func eachHopsHostKeyIsVerified() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withJumpHost { jump in
            let files = try writeJumpConfig(box, inner: sshd, jump: jump)
            // Only the inner host is trusted: the jump host's key must be refused.
            let options = SSHConnectOptions(environment: box.environment(), knownHostsFile: sshd.knownHosts)
            await #expect {
                _ = try await SSHSession.connect("inner", options: options)
            } throws: { error in
                guard case SSHError.hostKeyUnknown(_, let port, let fp, _) = error else { return false }
                return port == jump.port && fp == jump.hostKeyFingerprint
            }
            _ = files
        }
    }

    @Test func aJumpHostThatRefusesForwardingIsReported() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withJumpHost(extraConfig: ["AllowTcpForwarding no"]) { jump in
            let files = try writeJumpConfig(box, inner: sshd, jump: jump)
            let options = SSHConnectOptions(environment: box.environment(), knownHostsFile: files.knownHosts)
            await #expect {
                _ = try await SSHSession.connect("inner", options: options)
            } throws: { error in
                guard case SSHError.proxyFailed(_, let reason) = error else { return false }
                return reason.contains("\(sshd.host):\(sshd.port)")
            }
        }
    }

    @Test func proxyCommandCarriesTheConnection() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let config = """
        Host via-command
            HostName \(sshd.host)
            Port \(sshd.port)
            User \(sshd.user)
            IdentityFile \(sshd.clientKey)
            ProxyCommand /bin/bash -c 'exec 3<>/dev/tcp/%h/%p; cat <&3 & exec cat >&3'
        """
        try config.write(toFile: box.home + "/.ssh/config", atomically: true, encoding: .utf8)
        let session = try await SSHSession.connect("via-command", options: SSHConnectOptions(environment: box.environment(), knownHostsFile: sshd.knownHosts))
        #expect(try await session.run("echo proxied").stdoutText == "proxied\n")
        await session.close()
    }

    @Test func directTCPIPStreamReachesAServiceBehindTheHost() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let http = try TinyHTTPServer(routes: ["/hello": .init(body: "{\"hi\":1}")])
        defer { http.stop() }
        let session = try await sshd.connect(box)
        let stream = try await session.openDirectTCPIP(host: "127.0.0.1", port: http.port)
        try await stream.write(Data("GET /hello HTTP/1.0\r\n\r\n".utf8))
        var reply = Data()
        for try await chunk in stream.inbound { reply.append(chunk) }
        let text = String(decoding: reply, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.0 200") && text.hasSuffix("{\"hi\":1}"))
        await session.close()
    }

    @Test func reverseForwardHandsConnectionsToTheHandler() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let forward = try await session.forwardRemotePort(bindAddress: "127.0.0.1", port: 0) { stream in
            var got = Data()
            do {
                for try await chunk in stream.inbound {
                    got.append(chunk)
                    if got.contains(UInt8(ascii: "\n")) { break }
                }
                try await stream.write(Data("echo:".utf8) + got)
                try await stream.closeWrite()
            } catch {}
        }
        #expect(forward.port > 0)
        // Connect to the port the *server* listens on; the bytes travel back over SSH to our handler.
        for round in 0..<2 {
            let port = forward.port
            let reply = await onOwnThread { () -> String in
                let fd = connectLocal(port)
                guard fd >= 0 else { return "cannot connect" }
                defer { close(fd) }
                _ = "hello \(round)\n".withCString { write(fd, $0, strlen($0)) }
                return String(decoding: readAll(fd), as: UTF8.self)
            }
            #expect(reply == "echo:hello \(round)\n")
        }
        #expect(await forward.acceptedConnections == 2)
        try await forward.cancel()
        try await Task.sleep(for: .milliseconds(200))
        let refused = connectLocal(forward.port)
        #expect(refused < 0, "the server still listens after cancel")
        if refused >= 0 { close(refused) }
        await session.close()
    }

    @Test func reverseForwardToALocalPort() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let http = try TinyHTTPServer(routes: ["/status": .init(body: "{\"ok\":true}")])
        defer { http.stop() }
        let session = try await sshd.connect(box)
        let forward = try await session.forwardRemotePort(port: 0, toLocalHost: "127.0.0.1", localPort: http.port)
        // A remote program (curl-less: bash's /dev/tcp) talks to the forwarded port on the server.
        let result = try await session.run("exec 3<>/dev/tcp/127.0.0.1/\(forward.port); printf 'GET /status HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
        #expect(result.stdoutText.hasPrefix("HTTP/1.0 200"))
        #expect(result.stdoutText.hasSuffix("{\"ok\":true}"))
        #expect(http.requestCount == 1)
        try await forward.cancel()
        await session.close()
    }

    @Test func aLocalServiceThatHangsUpDoesNotKillTheProcess() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        // A local service that accepts and hangs up at once, with unread data in flight: writing to
        // it raises SIGPIPE unless the pump uses MSG_NOSIGNAL.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 8)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let localPort = Int(UInt16(bigEndian: addr.sin_port))
        let acceptor = Thread {
            for _ in 0..<3 {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                var linger = linger(l_onoff: 1, l_linger: 0)   // reset, not a polite FIN
                setsockopt(c, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
                close(c)
            }
        }
        acceptor.start()
        defer { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }
        let session = try await sshd.connect(box)
        let forward = try await session.forwardRemotePort(port: 0, toLocalHost: "127.0.0.1", localPort: localPort)
        for _ in 0..<3 {
            _ = try await session.run("head -c 20000000 /dev/zero > /dev/tcp/127.0.0.1/\(forward.port) 2>/dev/null; true")
        }
        #expect(try await session.run("echo alive").stdoutText == "alive\n")
        try await forward.cancel()
        await session.close()
    }
}
