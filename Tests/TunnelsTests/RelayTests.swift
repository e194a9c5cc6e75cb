import FerryTestSupport
import Foundation
import TunnelsTestSupport
import SSH
import Synchronization
import Testing
import Tunnels

/// Where each party of a relay test runs: in its own network namespace (root), or all on 127.0.0.1
/// with distinct sshds (a non-root run, which cannot make namespaces).
struct RelayWorld {
    let lab: NetworkLab?

    /// As root, namespaces or a failure (CI) / a loopback fallback (elsewhere); otherwise loopback.
    static func make() throws -> RelayWorld {
        guard NetworkLab.mayTry else { return RelayWorld(lab: nil) }
        do { return RelayWorld(lab: try NetworkLab()) } catch {
            if TestPaths.isCI { throw error }
            return RelayWorld(lab: nil)
        }
    }

    var relayAddress: String { lab == nil ? "127.0.0.1" : NetworkLab.relayAddress }

    @discardableResult
    func run(_ namespace: String?, _ command: [String], environment: [String: String],
             currentDirectory: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        let directory = currentDirectory.map { URL(fileURLWithPath: $0) }
        if let lab, let namespace {
            return try runProcess(lab.ip, ["netns", "exec", namespace] + command, environment: environment, currentDirectory: directory)
        }
        return try runProcess(command[0], Array(command.dropFirst()), environment: environment, currentDirectory: directory)
    }
}

/// A throwaway relay sshd (scripts/test-sshd.sh) started inside `namespace`, with short ClientAlive
/// limits so a dead host connection is noticed in seconds.
struct TestRelay {
    let port: Int
    let user: String
    let fingerprint: String
    let directory: String

    static func start(in world: RelayWorld, namespace: String?, directory: String) throws -> TestRelay {
        let script = TestPaths.repoRoot.appendingPathComponent("scripts/test-sshd.sh").path
        var env = ProcessInfo.processInfo.environment
        env["FERRY_TEST_SSHD_DIR"] = directory
        var extra = ["ClientAliveInterval 2", "ClientAliveCountMax 2", "LogLevel DEBUG1"]
        if world.lab != nil { extra.insert("ListenAddress \(NetworkLab.relayAddress)", at: 0) }
        env["FERRY_TEST_SSHD_EXTRA_CONFIG"] = extra.joined(separator: "\n")
        let started = try world.run(namespace, ["/bin/bash", script, "start"], environment: env)
        guard started.status == 0 else { throw TestSSHD.Unavailable.notInstalled(started.stderr) }
        let printed = try world.run(namespace, ["/bin/bash", script, "env"], environment: env).stdout
        var vars: [String: String] = [:]
        for line in printed.split(separator: "\n") {
            let text = line.hasPrefix("export ") ? line.dropFirst(7) : line[...]
            guard let eq = text.firstIndex(of: "=") else { continue }
            vars[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        guard let port = vars["FERRY_TEST_SSH_PORT"].flatMap(Int.init), let user = vars["FERRY_TEST_SSH_USER"],
              let fp = vars["FERRY_TEST_SSH_HOST_FINGERPRINT"] else { throw TestSSHD.Unavailable.notInstalled("relay env: \(printed)") }
        return TestRelay(port: port, user: user, fingerprint: fp, directory: directory)
    }

    func stop() {
        if let pid = FileManager.default.contents(atPath: directory + "/sshd.pid").flatMap({ pid_t(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            kill(pid, SIGTERM)
        }
    }
}

@Suite struct RelayTests {
    /// The whole story of issue 8: a GPU host the laptop cannot reach runs one command; the laptop
    /// pastes one line and reaches it through an OpenSSH relay with both keys pinned — with ferry
    /// ssh, OpenSSH (VS Code's ssh) and `ferry launch`; the host's link drops mid-job for longer than
    /// every keepalive limit, the tunnel says so and comes back, `ferry logs -f` resumes without
    /// losing or repeating a line, and `ferry fetch` brings the output home.
    @Test(.timeLimit(.minutes(2))) func aHostBehindNATIsReachedThroughARelayAndSurvivesADrop() async throws {
        let world = try RelayWorld.make()
        let lab = world.lab
        defer { lab?.teardown() }
        let box = try Sandbox(); defer { box.remove() }
        let laptopKey = try box.makeKey("laptop")
        let hostRelayKey = try box.makeKey("host-relay")
        let ferryPath = TestPaths.ferryBinary.path

        let relay = try TestRelay.start(in: world, namespace: lab?.relay, directory: box.path("relay-sshd"))
        defer { relay.stop() }
        let relayPort = lab == nil ? freePort() : 40022
        // The relay's authorized_keys: the host may only listen on relayPort, the laptop only reach it.
        try (ReverseSSHTunnel.relayAuthorizedKeysLine(publicKey: box.read(hostRelayKey + ".pub"), remotePort: relayPort) + "\n"
             + ReverseSSHTunnel.clientAuthorizedKeysLine(publicKey: box.read(laptopKey + ".pub"), remotePort: relayPort) + "\n")
            .write(toFile: relay.directory + "/authorized_keys", atomically: true, encoding: .utf8)

        // The GPU host: one command.
        let hostHome = box.path("gpu-home")
        let hostEnv = ["HOME": hostHome, "FERRY_HOME": hostHome + "/.ferry", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"]
        let sshdPort = lab == nil ? freePort() : 2222
        let up = try world.run(lab?.host, [ferryPath, "host", "up", "--authorize", laptopKey + ".pub",
                                           "--sshd-port", String(sshdPort), "--listen", lab == nil ? "127.0.0.1" : "0.0.0.0", "--name", "gpu",
                                           "--tunnel", "ssh://\(relay.user)@\(world.relayAddress):\(relay.port)",
                                           "--relay-host-key", relay.fingerprint, "--relay-identity", hostRelayKey,
                                           "--relay-port", String(relayPort), "--keepalive", "1", "--keepalive-count", "2",
                                           "--connect-timeout", "3", "--max-backoff", "2", "--detach", "--json", "--ready-timeout", "60"],
                               environment: hostEnv)
        let hostLog = hostHome + "/.ferry/host/host-up.log"
        #expect(up.status == 0, "host up: \(up.stderr)\n\(box.read(hostLog))")
        defer { _ = try? world.run(lab?.host, [ferryPath, "host", "down"], environment: hostEnv) }
        let ready = try #require(firstJSON(up.stdout), "no JSON from host up: \(up.stdout) \(up.stderr)")
        let line = try #require(ready["connection_string"] as? String)
        let connection = try ConnectionString(parsing: line)
        #expect(connection.jump == SSHTarget(user: relay.user, host: world.relayAddress, port: relay.port))
        #expect(connection.jumpHostKey == relay.fingerprint && connection.host == "127.0.0.1" && connection.port == relayPort)
        #expect((ready["relay_authorized_keys_line"] as? String)?.contains("permitlisten=\"localhost:\(relayPort)\"") == true)

        if let lab {
            // The laptop cannot reach the host by itself — not even its sshd on 0.0.0.0 — but the relay can.
            #expect(!lab.canConnect(from: lab.client, to: NetworkLab.hostAddress, port: sshdPort))
            #expect(lab.canConnect(from: lab.relay, to: NetworkLab.hostAddress, port: sshdPort))
            #expect((ready["direct_connection_string"] as? String)?.contains("@\(NetworkLab.hostAddress):\(sshdPort)#") == true)
        }

        // The laptop: one line pins both keys and gives the ~/.ssh/config block.
        let laptop = box.path("laptop-home")
        let laptopEnv = ["HOME": laptop, "FERRY_HOME": laptop + "/.ferry", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"]
        try FileManager.default.createDirectory(atPath: laptop + "/.ssh", withIntermediateDirectories: true)
        let config = try world.run(lab?.client, [ferryPath, "ssh-config", "gpu", line, "-i", laptopKey], environment: laptopEnv)
        #expect(config.status == 0, "ssh-config: \(config.stderr)")
        #expect(config.stdout.contains("ProxyJump gpu-relay") && config.stdout.contains("HostKeyAlias gpu"))
        try config.stdout.write(toFile: laptop + "/.ssh/config", atomically: true, encoding: .utf8)
        let knownHosts = box.read(laptop + "/.ferry/known_hosts")
        #expect(knownHosts.contains("gpu ssh-ed25519 ") && knownHosts.contains("gpu-relay ssh-ed25519 "))

        func sshOK(_ tag: String) throws {
            let viaFerry = try world.run(lab?.client, [ferryPath, "ssh", "gpu", "--", "echo", tag], environment: laptopEnv)
            #expect(viaFerry.status == 0 && viaFerry.stdout == "\(tag)\n", "ferry ssh: \(viaFerry.stderr)")
            let viaOpenSSH = try world.run(lab?.client, ["/usr/bin/ssh", "-F", laptop + "/.ssh/config", "-o", "BatchMode=yes", "gpu", "echo", tag],
                                           environment: laptopEnv)
            #expect(viaOpenSSH.status == 0 && viaOpenSSH.stdout == "\(tag)\n", "OpenSSH: \(viaOpenSSH.stderr)")
        }
        try sshOK("ok")

        // The laptop adds the host by the same line and launches a job through the relay; its log is
        // followed (`ferry logs -f`) across the drop below.
        let added = try world.run(lab?.client, [ferryPath, "hosts", "add", "gpu", line, "-i", laptopKey], environment: laptopEnv)
        #expect(added.status == 0 && added.stdout.contains("host key pinned: \(connection.hostKey)"), "hosts add: \(added.stderr)")
        let project = box.path("project")
        try FileManager.default.createDirectory(atPath: project, withIntermediateDirectories: true)
        try """
            i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo "line $i"; sleep 0.3; done
            echo "weights" > "$FERRY_OUTPUT/result.txt"; echo done
            """.write(toFile: project + "/job.sh", atomically: true, encoding: .utf8)
        let launched = try world.run(lab?.client, [ferryPath, "launch", "--host", "gpu", "--json", "--", "sh", "job.sh"],
                                     environment: laptopEnv, currentDirectory: project)
        #expect(launched.status == 0, "launch: \(launched.stderr)")
        let id = try #require(firstJSON(launched.stdout)?["id"] as? String, "no job id: \(launched.stdout) \(launched.stderr)")
        let followed = box.path("followed.log")
        let follower = try spawnProgram(lab == nil ? ferryPath : lab!.ip,
                                        (lab.map { ["netns", "exec", $0.client, ferryPath] } ?? []) + ["logs", "-f", "--since-start", id],
                                        outputFile: followed, environment: laptopEnv)
        var followerStatus: Int32?
        defer { if followerStatus == nil { kill(follower, SIGKILL); waitProgram(follower) } }
        #expect(await eventually(20) { box.read(followed).contains("line 2\n") }, "the log never started: \(box.read(followed))")

        if let lab {
            // Cut the host off for longer than both keepalive limits (host: 1 s × 2; relay: 2 s × 2).
            try lab.setHostLink(up: false)
            try await Task.sleep(for: .seconds(8))
            try lab.setHostLink(up: true)
            let back = await eventually(45) { box.read(hostLog).contains("tunnel: up again") }
            let log = box.read(hostLog)
            #expect(back, "the tunnel did not come back:\n\(log)")
            #expect(log.contains("tunnel: dropped:") && log.contains("retrying in"), "the drop was not reported:\n\(log)")
            try sshOK("ok again")
        }
        // The follower reconnected through the returned tunnel and resumed at its offset: every line once.
        #expect(await eventually(60) {
            var raw: Int32 = 0
            guard waitpid(follower, &raw, WNOHANG) == follower else { return false }
            followerStatus = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            return true
        }, "logs -f did not finish")
        #expect(followerStatus == 0)
        #expect(box.read(followed) == (1...50).map { "line \($0)\n" }.joined() + "done\n")
        let fetched = box.path("fetched")
        let fetch = try world.run(lab?.client, [ferryPath, "fetch", id, "--what", "all", "--dest", fetched], environment: laptopEnv)
        #expect(fetch.status == 0, "fetch: \(fetch.stderr)")
        #expect(box.read(fetched + "/result.txt") == "weights\n", "fetched: \((try? FileManager.default.subpathsOfDirectory(atPath: fetched)) ?? [])")

        // host down stops the tunnel: the relay's port closes.
        let down = try world.run(lab?.host, [ferryPath, "host", "down"], environment: hostEnv)
        #expect(down.status == 0 && down.stdout.contains("stopped"))
        if let lab { #expect(await eventually(5) { !lab.canConnect(from: lab.relay, to: "127.0.0.1", port: relayPort) }) }
    }

    /// After a drop the relay may still hold the old forward: the new bind is refused, the host says
    /// why and retries until the port is free.
    @Test func aRefusedBindIsRetriedUntilTheRelayLetsGo() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let env = box.environment()
        let empty = try box.write("known_hosts", "")
        _ = empty
        let oldService = try TinyHTTPServer(routes: ["/who": .init(body: "old")])
        defer { oldService.stop() }
        let newService = try TinyHTTPServer(routes: ["/who": .init(body: "new")])
        defer { newService.stop() }
        let remotePort = freePort()
        // The "stale" forward: another session holding the relay's port.
        let holder = try await SSHSession.connect("\(sshd.user)@\(sshd.host):\(sshd.port)",
                                                  options: SSHConnectOptions(environment: env, hostKeyPolicy: .pinned(sshd.hostKeyFingerprint),
                                                                             identityFiles: [sshd.clientKey], knownHostsFile: empty))
        let stale = try await holder.forwardRemotePort(bindAddress: ReverseSSHTunnel.bindAddress, port: remotePort,
                                                       toLocalHost: "127.0.0.1", localPort: oldService.port)
        let tunnel = ReverseSSHTunnel(.init(relay: SSHTarget(user: sshd.user, host: sshd.host, port: sshd.port),
                                            relayHostKey: sshd.hostKeyFingerprint, identityFiles: [sshd.clientKey], environment: env,
                                            remotePort: remotePort, localPort: newService.port, keepaliveInterval: 2, connectTimeout: 5))
        let events = Mutex<[TunnelEvent]>([])
        let supervisor = TunnelSupervisor(tunnel: tunnel, backoff: Backoff(initial: 0.2, maximum: 0.5)) { e in events.withLock { $0.append(e) } }
        let task = Task { try await supervisor.run() }
        defer { task.cancel() }
        let refused = await eventually(20) {
            events.withLock { $0.contains { if case .retrying(let reason, _) = $0 { return reason.contains("refused to listen on localhost:\(remotePort)") }; return false } }
        }
        #expect(refused, "no refused bind reported: \(events.withLock { $0.map(\.message) })")
        #expect(try HTTPClient.get("http://127.0.0.1:\(remotePort)/who").body == Data("old".utf8))
        // The relay lets go of the old forward: the host's retry takes the port.
        try await stale.cancel()
        await holder.close()
        let up = await eventually(20) { events.withLock { $0.contains { if case .up = $0 { return true }; return false } } }
        #expect(up, "the tunnel never came up: \(events.withLock { $0.map(\.message) })")
        #expect(try HTTPClient.get("http://127.0.0.1:\(remotePort)/who").body == Data("new".utf8))
        let upEvent = events.withLock { $0.compactMap { if case .up(let endpoint, _) = $0 { return endpoint }; return nil }.first }
        #expect(upEvent?.jumpHostKey == sshd.hostKeyFingerprint && upEvent?.port == remotePort)
        task.cancel()
        try await task.value
        #expect(await eventually(5) { !isListening(remotePort) }, "cancelling must release the relay's port")
    }
}

@Suite struct RelayKeyTests {
    /// Nobody vouched for the relay's key: host up stops at once and says how to pin it.
    @Test func anUnknownRelayKeyIsNotRetriedButExplained() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let tunnel = ReverseSSHTunnel(.init(relay: SSHTarget(user: sshd.user, host: sshd.host, port: sshd.port),
                                            identityFiles: [sshd.clientKey], environment: box.environment(),
                                            remotePort: freePort(), localPort: 9))
        let supervisor = TunnelSupervisor(tunnel: tunnel, sleep: { _ in Issue.record("a permanent error must not be retried") }) { _ in }
        await #expect {
            try await supervisor.run()
        } throws: { error in
            guard case TunnelError.relayHostKeyUnknown(_, let fp) = error else { return false }
            return fp == sshd.hostKeyFingerprint && "\(error)".contains("--relay-host-key \(sshd.hostKeyFingerprint)")
        }
        // A wrong pin is refused just as firmly.
        let pinnedWrong = ReverseSSHTunnel(.init(relay: SSHTarget(user: sshd.user, host: sshd.host, port: sshd.port), relayHostKey: bogusFingerprint,
                                                 identityFiles: [sshd.clientKey], environment: box.environment(), remotePort: freePort(), localPort: 9))
        await #expect {
            try await TunnelSupervisor(tunnel: pinnedWrong, sleep: { _ in }) { _ in }.run()
        } throws: { error in
            if case SSHError.hostKeyMismatch = error { return true }
            return false
        }
    }
}
