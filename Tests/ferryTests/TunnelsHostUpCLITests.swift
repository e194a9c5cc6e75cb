import FerryTestSupport
import Foundation
import SSH
import Testing
import Tunnels
import TunnelsTestSupport

/// `ferry host up` for real, on 127.0.0.1: its own sshd, its own key, pinned by the line it prints.
@Suite struct TunnelsHostUpCLITests {
    /// SIGTERM reaches `host up` while its relay hangs (a relay that accepts and never answers, as
    /// a frozen network looks): it is gone within 5 s and its sshd with it. It stayed until its
    /// relay attempt timed out before (20 s and more).
    @Test func stopsWithinFiveSecondsWhateverTheRelayDoes() async throws {
        guard ChildProcess.find("sshd") != nil || TestPaths.isCI else { return }
        let box = try Sandbox(); defer { box.remove() }
        let key = try box.makeKey("laptop")
        let relay = try SilentServer(); defer { relay.stop() }
        let port = freePort()
        let env = box.processEnvironment(["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"])
        let up = try ChildProcess.spawn(TestPaths.ferryBinary.path,
                                        ["host", "up", "--authorize", key + ".pub", "--sshd-port", String(port), "--listen", "127.0.0.1",
                                         "--tunnel", "ssh://relay@127.0.0.1:\(relay.port)", "--relay-host-key", bogusFingerprint,
                                         "--connect-timeout", "120"],
                                        environment: env, logFile: box.path("host-up.log"))
        // Up to the point where it waits on the relay: its sshd runs.
        let sshdPidFile = box.ferryHome + "/host/sshd.pid"
        let started = Date()
        while Date().timeIntervalSince(started) < 60, !FileManager.default.fileExists(atPath: sshdPidFile) || up.exitStatus != nil {
            if up.exitStatus != nil { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(up.exitStatus == nil, "host up ended early: \(box.read(box.path("host-up.log")))")
        let sshdPid = Int32(box.read(sshdPidFile).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        try await Task.sleep(nanoseconds: 1_000_000_000)   // into the relay's handshake
        // Timed on a thread of its own: the test pool's threads may be busy with other tests.
        let took: Double = await withCheckedContinuation { done in
            DispatchQueue.global().async {
                kill(up.pid, SIGTERM)
                let signalled = Date()
                while up.exitStatus == nil && Date().timeIntervalSince(signalled) < 30 { usleep(20_000) }
                done.resume(returning: Date().timeIntervalSince(signalled))
            }
        }
        #expect(up.exitStatus != nil && took < 5, "host up took \(took) s after SIGTERM: \(box.read(box.path("host-up.log")))")
        // Gone, or a zombie waiting for a reaper (its parent, host up, is gone; PID 1 of a container may not reap).
        func running(_ pid: Int32) -> Bool {
            guard kill(pid, 0) == 0 else { return false }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? false)
        }
        #expect(sshdPid > 0 && !running(sshdPid), "its sshd (pid \(sshdPid)) still runs")
        if up.exitStatus == nil { kill(up.pid, SIGKILL) }
    }

    @Test func runsItsOwnSSHDReachableByThePrintedLineAndStopsIt() async throws {
        guard ChildProcess.find("sshd") != nil || TestPaths.isCI else { return }
        let box = try Sandbox(); defer { box.remove() }
        let laptopKey = try box.makeKey("laptop")
        // The setup shell's CUDA: a fake nvidia-smi on its PATH (colab-ssh sessions lost it).
        _ = try box.write("cuda/bin/nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI 550.54 fake'\n", mode: 0o755)
        let systemConfig = FileManager.default.contents(atPath: "/etc/ssh/sshd_config")
        let port = freePort()
        let env = box.processEnvironment(["PATH": box.path("cuda/bin") + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                                          "CUDA_HOME": "/usr/local/cuda-12", "NGROK_AUTHTOKEN": "2ngrokSECRET"])
        let up = try ferry(["host", "up", "--authorize", laptopKey + ".pub", "--sshd-port", String(port), "--listen", "127.0.0.1",
                            "--public-host", "127.0.0.1", "--name", "gpu", "--detach", "--json"], environment: env)
        #expect(up.status == 0, "host up: \(up.stderr)")
        defer { _ = try? ferry(["host", "down"], environment: env) }
        let json = try #require(firstJSON(up.stdout), "no JSON in: \(up.stdout)")
        let line = try #require(json["connection_string"] as? String)
        let connection = try ConnectionString(parsing: line)
        #expect(connection.host == "127.0.0.1" && connection.port == port && connection.user == HostSetup.currentUser)
        let hostKey = try #require(box.read(box.ferryHome + "/host/ssh_host_ed25519_key.pub").split(separator: " ").dropFirst().first)
        #expect(connection.hostKey == KnownHosts.fingerprint(ofKeyBlob: Data(base64Encoded: String(hostKey))!))
        #expect(json["sshd_port"] as? Int == port)

        // A second one is refused while the first runs.
        let again = try ferry(["host", "up", "--sshd-port", String(freePort()), "--detach"], environment: env)
        #expect(again.status != 0 && again.stderr.contains("already running"))

        // The laptop: nothing known about the host but the line; the pin is all it trusts.
        let laptop = try Sandbox("laptop"); defer { laptop.remove() }
        let empty = try laptop.write("known_hosts", "")
        let options = SSHConnectOptions(environment: laptop.environment(), hostKeyPolicy: connection.hostKeyPolicy,
                                        identityFiles: [laptopKey], knownHostsFile: empty)
        let session = try await SSHSession.connect(config: connection.hostConfig(alias: "gpu", identityFiles: [laptopKey]), options: options)
        let result = try await session.run("nvidia-smi; echo \"$CUDA_HOME|$FERRY_HOME\"; whoami")
        #expect(result.stdoutText == "NVIDIA-SMI 550.54 fake\n/usr/local/cuda-12|\(box.ferryHome)\n\(HostSetup.currentUser)\n")
        await session.close()

        // Key-only: password auth is not even offered.
        let config = box.read(box.ferryHome + "/host/sshd_config")
        #expect(config.contains("PasswordAuthentication no") && !config.contains("2ngrokSECRET"))
        #expect(FileManager.default.contents(atPath: "/etc/ssh/sshd_config") == systemConfig, "the system's sshd_config must not change")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/.ssh/authorized_keys"))

        // The printed ~/.ssh/config block works for OpenSSH (what VS Code runs), key pinned inline...
        let sshConfig = try #require(json["ssh_config"] as? String)
        if let ssh = ChildProcess.find("ssh") {
            let block = sshConfig.replacingOccurrences(of: "Host gpu\n", with: "Host gpu\n    IdentityFile \(laptopKey)\n    UserKnownHostsFile /dev/null\n")
            let file = try laptop.write("ssh_config", block)
            let ok = try runProcess(ssh, ["-F", file, "-o", "BatchMode=yes", "gpu", "echo", "ok"])
            #expect(ok.status == 0 && ok.stdout == "ok\n", "ssh: \(ok.stderr)")
            // ...and refuses the host when the block holds another key.
            let other = box.read(try laptop.makeKey("imposter") + ".pub").split(separator: " ")[1]
            let wrongBlock = block.replacingOccurrences(of: String(hostKey), with: String(other))
            let wrong = try runProcess(ssh, ["-F", try laptop.write("ssh_config_wrong", wrongBlock), "-o", "BatchMode=yes", "gpu", "echo", "ok"])
            #expect(wrong.status != 0 && wrong.stderr.contains("Host key verification failed"))
        }

        let status = try ferry(["host", "status", "--json"], environment: env)
        #expect(status.stdout.contains("\"running\" : true") && status.stdout.contains(line))

        let sshdPid = pid_t(box.read(box.ferryHome + "/host/sshd.pid").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let down = try ferry(["host", "down", "--json"], environment: env)
        #expect(down.status == 0 && down.stdout.contains("\"stopped\":true"))
        #expect(await eventually(5) { !isListening(port) }, "sshd still listens after host down")
        #expect(sshdPid > 0 && kill(sshdPid, 0) != 0)
        #expect(!FileManager.default.fileExists(atPath: box.ferryHome + "/host/host-up.pid"))
        let downAgain = try ferry(["host", "down"], environment: env)
        #expect(downAgain.status == 0 && downAgain.stdout.contains("not running"))
    }
}

/// Any program as the transport: the host supervises a tunnel command (restarted when it exits) and
/// the connection string carries the ProxyCommand clients use (as with cloudflared).
@Suite struct TunnelsCommandTunnelCLITests {
    @Test func aProxyCommandCarriesTheConnectionAndTheTunnelCommandIsRestarted() async throws {
        guard ChildProcess.find("sshd") != nil || TestPaths.isCI else { return }
        let box = try Sandbox(); defer { box.remove() }
        let laptopKey = try box.makeKey("laptop-key")
        let port = freePort()
        let env = box.processEnvironment()
        let starts = box.path("tunnel-starts")
        // Stand-ins: the host side "connector" lives 1 s and is restarted; the client side is bash's /dev/tcp.
        let proxy = "/bin/bash -c 'exec 3<>/dev/tcp/%h/%p; cat <&3 & exec cat >&3'"
        let up = try ferry(["host", "up", "--authorize", laptopKey + ".pub", "--sshd-port", String(port), "--name", "gpu",
                            "--tunnel", "command", "--tunnel-command", "echo started %p >> \(starts); sleep 1.5",
                            "--public-host", "127.0.0.1", "--public-port", String(port), "--proxy-command", proxy,
                            "--max-backoff", "1", "--detach", "--json"], environment: env)
        #expect(up.status == 0, "host up: \(up.stderr)")
        defer { _ = try? ferry(["host", "down"], environment: env) }
        let line = try #require(firstJSON(up.stdout)?["connection_string"] as? String)
        let connection = try ConnectionString(parsing: line)
        #expect(connection.proxyCommand == proxy && connection.jump == nil)

        let laptop = try Sandbox("laptop"); defer { laptop.remove() }
        let laptopEnv = laptop.processEnvironment()
        let config = try ferry(["ssh-config", "gpu", line, "-i", laptopKey], environment: laptopEnv)
        #expect(config.status == 0, "ssh-config: \(config.stderr)")
        #expect(config.stdout.contains("ProxyCommand \(proxy)"))
        try config.stdout.write(toFile: laptop.home + "/.ssh/config", atomically: true, encoding: .utf8)
        let viaFerry = try ferry(["ssh", "gpu", "--", "echo", "proxied"], environment: laptopEnv)
        #expect(viaFerry.status == 0 && viaFerry.stdout == "proxied\n", "ferry ssh: \(viaFerry.stderr)")
        if let ssh = ChildProcess.find("ssh") {
            let viaOpenSSH = try runProcess(ssh, ["-F", laptop.home + "/.ssh/config", "-o", "BatchMode=yes", "gpu", "echo", "proxied"])
            #expect(viaOpenSSH.status == 0 && viaOpenSSH.stdout == "proxied\n", "OpenSSH: \(viaOpenSSH.stderr)")
        }
        // The command exits every 1.5 s and is started again, %p expanded to the sshd's port.
        #expect(await eventually(10) { box.read(starts).split(separator: "\n").count >= 3 })
        #expect(Set(box.read(starts).split(separator: "\n")) == ["started \(port)"])
        #expect(box.read(box.ferryHome + "/host/host-up.log").contains("tunnel: dropped:"))
    }
}

@Suite struct TunnelsNgrokHostUpCLITests {
    /// `host up --tunnel ngrok` end to end with a stand-in agent: the public address from the agent
    /// API becomes the connection string; the token travels in the environment only.
    @Test func theAgentsPublicAddressBecomesTheConnectionString() async throws {
        guard ChildProcess.find("sshd") != nil || TestPaths.isCI else { return }
        let box = try Sandbox(); defer { box.remove() }
        let laptopKey = try box.makeKey("laptop-key")
        let port = freePort()
        let api = try TinyHTTPServer(routes: ["/api/tunnels": .init(body: NgrokFixture.tcp(port: port))])
        defer { api.stop() }
        let agent = try box.write("bin/ngrok", "#!/bin/sh\nprintf '%s\\n' \"$@\" > \(box.path("argv"))\nexec sleep 600\n", mode: 0o755)
        let env = box.processEnvironment(["NGROK_AUTHTOKEN": "2tokenNEVERinARGV"])
        let up = try ferry(["host", "up", "--authorize", laptopKey + ".pub", "--sshd-port", String(port), "--name", "colab",
                            "--tunnel", "ngrok", "--ngrok-binary", agent, "--ngrok-api", api.baseURL + "/api/tunnels",
                            "--detach", "--json"], environment: env)
        #expect(up.status == 0, "host up: \(up.stderr)")
        defer { _ = try? ferry(["host", "down"], environment: env) }
        let json = try #require(firstJSON(up.stdout))
        let connection = try ConnectionString(parsing: try #require(json["connection_string"] as? String))
        #expect(connection.host == "4.tcp.eu.ngrok.io" && connection.port == 17341 && connection.jump == nil)
        #expect((json["ssh_config"] as? String)?.contains("HostName 4.tcp.eu.ngrok.io\n    Port 17341") == true)
        #expect(box.read(box.path("argv")) == "tcp\n127.0.0.1:\(port)\n--log\nstdout\n--log-format\njson\n")
        #expect(!box.read(box.ferryHome + "/host/sshd_config").contains("2tokenNEVERinARGV"))
        // Behind a tunnel, sshd listens on loopback only.
        #expect(box.read(box.ferryHome + "/host/sshd_config").contains("ListenAddress 127.0.0.1\n"))
        let down = try ferry(["host", "down"], environment: env)
        #expect(down.status == 0)
        #expect(await eventually(5) { !isListening(port) })
    }
}

/// `ferry host up`'s password rules, as a person meets them on the command line.
@Suite struct TunnelsHostSetupCLITests {
    @Test func passwordLoginNeedsTheFlag() async throws {
        let box = try Sandbox(); defer { box.remove() }
        _ = try box.makeKey("laptop")
        let port = freePort()
        let base = ["host", "up", "--authorize", box.path("laptop.pub"), "--sshd-port", String(port), "--listen", "127.0.0.1"]
        // A password in the environment without --allow-password: refused before anything starts.
        let env = box.processEnvironment(["FERRY_HOST_PASSWORD": "correct horse battery staple"])
        let refused = try ferry(base, environment: env)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("--allow-password") && refused.stderr.contains("password login is off"))
        #expect(!FileManager.default.fileExists(atPath: box.ferryHome + "/host/sshd_config"))
        #expect(!isListening(port))
        // There is no way to give one on the command line.
        let argv = try ferry(base + ["--password", "hunter2hunter2"], environment: box.processEnvironment())
        #expect(argv.status == 2 && argv.stderr.contains("Unknown option '--password'"))
        // With the flag, a short one is refused (checked before any account is touched).
        let short = try ferry(base + ["--allow-password"], environment: box.processEnvironment(["FERRY_HOST_PASSWORD": "short"]))
        #expect(short.status == 2)
        #expect(short.stderr.contains(HostSetup.isRoot ? "shorter than 12" : "needs `ferry host up` to run as root"))
        #expect(!isListening(port))
        // No key and no password: nothing could log in, so nothing starts.
        let nobody = try ferry(["host", "up", "--sshd-port", String(port), "--listen", "127.0.0.1"], environment: box.processEnvironment())
        #expect(nobody.status == 2 && nobody.stderr.contains("no key may log in yet"), "\(nobody.stderr)")
        #expect(!isListening(port))
        // The options say the same without the CLI.
        #expect(throws: TunnelError.passwordNeedsFlag(source: "FERRY_HOST_PASSWORD or the prompt")) {
            try HostUpOptions(ferryHome: box.ferryHome, password: "correct horse battery staple").validate()
        }
    }
}
