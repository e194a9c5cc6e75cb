import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Testing

@Suite struct ConnectTests {
    @Test func connectsVerifiesAuthenticatesAndRuns() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let result = try await session.run("echo hello")
        #expect(result.stdoutText == "hello\n")
        #expect(result.status == .exited(0))
        #expect(session.hostKeyFingerprint == sshd.hostKeyFingerprint)
        #expect(session.authenticationMethod == "publickey \(sshd.clientKey)")
        await session.close()
    }

    @Test func connectsThroughAConfigAlias() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        // Written into the sandbox's $HOME/.ssh/config: ferry must read it from HOME, not the passwd home.
        let config = """
        # ferry test
        Host other
            HostName 192.0.2.1
        Host gpu-box
            HostName \(sshd.host)
            Port \(sshd.port)
            User \(sshd.user)
            IdentityFile \(sshd.clientKey)
            ServerAliveInterval 7
        Host *
            User someone-else
            Port 1
        """
        try config.write(toFile: box.home + "/.ssh/config", atomically: true, encoding: .utf8)
        var options = SSHConnectOptions(environment: box.environment(), knownHostsFile: sshd.knownHosts)
        options.identityFiles = []
        let resolved = try SSHSession.resolve("gpu-box", options: options)
        #expect(resolved.hostName == sshd.host && resolved.port == sshd.port && resolved.user == sshd.user)
        #expect(resolved.identityFiles == [sshd.clientKey])
        #expect(resolved.serverAliveInterval == 7)
        let session = try await SSHSession.connect("gpu-box", options: options)
        #expect(try await session.run("echo via-alias").stdoutText == "via-alias\n")
        await session.close()
    }

    @Test func unknownHostKeyIsRefusedWithFingerprintAndCommand() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let empty = box.path("known_hosts")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        await #expect {
            _ = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: empty))
        } throws: { error in
            guard case SSHError.hostKeyUnknown(_, _, let fp, let command) = error else { return false }
            return fp == sshd.hostKeyFingerprint && command.contains("--host-key \(sshd.hostKeyFingerprint)")
                && "\(error)".contains(sshd.hostKeyFingerprint)
        }
        #expect(!FileManager.default.fileExists(atPath: box.ferryHome + "/known_hosts"))
    }

    @Test func pinnedFingerprintIsCheckedThenRecorded() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let empty = box.path("known_hosts")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        await #expect(throws: SSHError.self) {
            _ = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: empty,
                policy: .pinned("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")))
        }
        #expect(!FileManager.default.fileExists(atPath: box.ferryHome + "/known_hosts"))
        let session = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: empty, policy: .pinned(sshd.hostKeyFingerprint)))
        await session.close()
        let recorded = try String(contentsOfFile: box.ferryHome + "/known_hosts", encoding: .utf8)
        #expect(recorded.hasPrefix("[\(sshd.host)]:\(sshd.port) ssh-ed25519 "))
        // Recorded in ferry's known_hosts: now strict mode accepts it.
        let again = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: empty))
        #expect(again.hostKeyFingerprint == sshd.hostKeyFingerprint)
        await again.close()
    }

    @Test func acceptNewRecordsOnce() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let empty = box.path("known_hosts")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        for _ in 0..<2 {
            let s = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: empty, policy: .acceptNew))
            await s.close()
        }
        let lines = try String(contentsOfFile: box.ferryHome + "/known_hosts", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1)
    }

    @Test func changedHostKeyIsRefusedWithBothFingerprintsEvenWithAcceptNew() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let keyPath = box.path("other")
        try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyPath])
        let pub = try String(contentsOfFile: keyPath + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        let otherFP = try runProcess("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", keyPath + ".pub"]).stdout.split(separator: " ")[1]
        // Hashed entry (`ssh-keygen -H` style) for [host]:port: libssh must match it.
        let known = box.path("known_hosts")
        try "[\(sshd.host)]:\(sshd.port) \(pub)\n".write(toFile: known, atomically: true, encoding: .utf8)
        try runProcess("/usr/bin/ssh-keygen", ["-q", "-H", "-f", known])
        #expect(try String(contentsOfFile: known, encoding: .utf8).hasPrefix("|1|"))
        await #expect {
            _ = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: known, policy: .acceptNew))
        } throws: { error in
            guard case SSHError.hostKeyMismatch(_, let expected, let presented) = error else { return false }
            return presented == sshd.hostKeyFingerprint && expected.contains(String(otherFP))
        }
    }

    @Test func hashedKnownHostsEntryIsAccepted() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let known = box.path("known_hosts")
        try FileManager.default.copyItem(atPath: sshd.knownHosts, toPath: known)
        try runProcess("/usr/bin/ssh-keygen", ["-q", "-H", "-f", known])
        #expect(try String(contentsOfFile: known, encoding: .utf8).hasPrefix("|1|"))
        let session = try await SSHSession.connect(sshd.target, options: sshd.options(box, knownHosts: known))
        await session.close()
    }

    @Test func wrongClientKeyFailsNamingWhatWasTried() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let keyPath = box.path("stranger")
        try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyPath])
        await #expect {
            _ = try await SSHSession.connect(sshd.target, options: sshd.options(box, keys: [keyPath]))
        } throws: { error in
            guard case SSHError.authenticationFailed(_, _, let tried) = error else { return false }
            return tried.contains("publickey \(keyPath)") && "\(error)".contains(keyPath)
        }
    }

    @Test func agentAuthentication() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let socket = box.path("agent.sock")
        let agentPID = try spawnProgram("/usr/bin/ssh-agent", ["-D", "-a", socket])
        defer { kill(agentPID, SIGTERM); waitProgram(agentPID) }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
        let added = try runProcess("/usr/bin/ssh-add", [sshd.clientKey], environment: ["SSH_AUTH_SOCK": socket, "PATH": "/usr/bin:/bin"])
        #expect(added.status == 0, "ssh-add: \(added.stderr)")
        // No identity files at all (the sandbox HOME has no keys): only the agent can get us in.
        let session = try await SSHSession.connect(sshd.target, options: sshd.options(box, keys: [], agent: socket))
        #expect(session.authenticationMethod == "publickey (ssh-agent)")
        #expect(try await session.run("echo agent").stdoutText == "agent\n")
        await session.close()
    }

    @Test func connectTimeoutWhenServerNeverSpeaks() async throws {
        // A listener that accepts and stays silent: the SSH banner never comes.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 4)
        defer { close(fd) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let box = try Sandbox(); defer { box.remove() }
        var options = SSHConnectOptions(environment: box.environment())
        options.connectTimeout = 1
        let start = ContinuousClock.now
        await #expect {
            _ = try await SSHSession.connect("someone@127.0.0.1:\(port)", options: options)
        } throws: { error in
            // The configured 1 s, not the 15 s default, is what gave up.
            if case SSHError.connectTimedOut(_, _, let seconds) = error { return seconds == 1 }
            if case SSHError.connectionFailed = error { return true }
            return false
        }
        // Alone this takes about 1 s; the bound only catches a hang, since a full parallel test run
        // can keep the session thread waiting for a core for many seconds.
        #expect(elapsed(since: start) < 60)
    }

    @Test func keepalivesAreSentWhenIdle() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        var options = sshd.options(box)
        options.keepaliveInterval = 1
        options.keepaliveCountMax = 60   // a loaded CI machine may answer late; this test is about sending
        let session = try await SSHSession.connect(sshd.target, options: options)
        try await Task.sleep(for: .milliseconds(2600))
        #expect(session.keepalivesSent >= 2)
        #expect(session.isConnected)
        #expect(try await session.run("echo alive").stdoutText == "alive\n")
        await session.close()
        #expect(!session.isConnected)
    }

    @Test func targetsParse() throws {
        #expect(try SSHTarget(parsing: "alice@gpu1:2222") == SSHTarget(user: "alice", host: "gpu1", port: 2222))
        #expect(try SSHTarget(parsing: "gpu1") == SSHTarget(host: "gpu1"))
        #expect(try SSHTarget(parsing: "ssh://bob@[::1]:22") == SSHTarget(user: "bob", host: "::1", port: 22))
        #expect(try SSHTarget(parsing: "a@b@host") == SSHTarget(user: "a@b", host: "host"))
        #expect(throws: SSHError.self) { try SSHTarget(parsing: "host:99999") }
        #expect(throws: SSHError.self) { try SSHTarget(parsing: "-oProxyCommand=evil") }
        #expect(throws: SSHError.self) { try SSHTarget(parsing: "") }
    }
}
