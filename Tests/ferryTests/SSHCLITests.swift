import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Testing

/// `ferry ssh` in a terminal (a private tmux), with no ssh binary on PATH.
@Suite struct SSHTerminalCLITests {
    @Test func ferrySSHInTmuxForwardsSizeAndRestoresTheTerminal() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        guard let ferry = builtFerry() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let fake = try fakeSSHBin(box)
        let tmux = Tmux(); defer { tmux.kill() }
        // A plain local shell in a 120x40 window; ferry runs inside it with only the fake ssh on PATH.
        try tmux.run(["new-session", "-d", "-s", "t", "-x", "120", "-y", "40", "env", "-i", "HOME=\(box.home)", "TERM=xterm",
                      "PATH=/usr/bin:/bin", "PS1=local$ ", "/bin/bash", "--norc", "--noprofile"])
        try tmux.run(["send-keys", "-t", "t", "PATH=\(fake.path) \(ferry) ssh --known-hosts \(sshd.knownHosts) -i \(sshd.clientKey) \(sshd.target)", "Enter"])
        try await Task.sleep(for: .milliseconds(500))
        try tmux.run(["send-keys", "-t", "t", "PS1='remote$ '; stty size | sed 's/^/SIZE:/'", "Enter"])
        #expect(try await tmux.waitFor("SIZE:40 120"), "screen:\n\((try? tmux.screen()) ?? "")")
        try tmux.run(["resize-window", "-t", "t", "-x", "90", "-y", "30"])
        try await Task.sleep(for: .milliseconds(300))
        try tmux.run(["send-keys", "-t", "t", "stty size | sed 's/^/SIZE:/'", "Enter"])
        #expect(try await tmux.waitFor("SIZE:30 90"), "screen:\n\((try? tmux.screen()) ?? "")")
        try tmux.run(["send-keys", "-t", "t", "exit 3", "Enter"])
        try await Task.sleep(for: .milliseconds(300))
        let settings = box.path("stty.txt")
        try tmux.run(["send-keys", "-t", "t", "echo FERRY-RC=$?; stty -a > \(settings)", "Enter"])
        #expect(try await tmux.waitFor("FERRY-RC=3"), "screen:\n\((try? tmux.screen()) ?? "")")
        try await Task.sleep(for: .milliseconds(300))
        // Back in the local shell, the terminal is cooked again: echo and canonical mode are on.
        let stty = try String(contentsOfFile: settings, encoding: .utf8)
        let flags = Set(stty.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == ";" }).map(String.init))
        #expect(flags.contains("icanon") && flags.contains("echo") && flags.contains("isig"), "stty -a:\n\(stty)")
        #expect(!FileManager.default.fileExists(atPath: fake.marker), "ferry spawned an ssh binary")
    }

    @Test func terminalIsRestoredWhenFerryIsKilled() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        guard let ferry = builtFerry() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let tmux = Tmux(); defer { tmux.kill() }
        try tmux.run(["new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "env", "-i", "HOME=\(box.home)", "TERM=xterm",
                      "PATH=/usr/bin:/bin", "PS1=local$ ", "/bin/bash", "--norc", "--noprofile"])
        // A non-interactive sh runs ferry and then `stty -a`: unlike an interactive bash it does not
        // repair the terminal after a killed job, so what stty sees is what ferry left behind.
        let shPIDFile = box.path("sh.pid")
        let settings = box.path("stty.txt")
        try tmux.run(["send-keys", "-t", "t", "sh -c 'echo $$ > \(shPIDFile); \(ferry) ssh --known-hosts \(sshd.knownHosts) -i \(sshd.clientKey) \(sshd.target); stty -a > \(settings); echo LOCAL-BACK'", "Enter"])
        try await Task.sleep(for: .milliseconds(400))
        try tmux.run(["send-keys", "-t", "t", "echo REMOTE-UP", "Enter"])
        #expect(try await tmux.waitFor("\nREMOTE-UP"), "screen:\n\((try? tmux.screen()) ?? "")")
        let shPID = try String(contentsOfFile: shPIDFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let children = try String(contentsOfFile: "/proc/\(shPID)/task/\(shPID)/children", encoding: .utf8)
        let ferryPID = try #require(children.split(separator: " ").first.flatMap { Int32($0) })
        kill(ferryPID, SIGTERM)
        #expect(try await tmux.waitFor("LOCAL-BACK"), "screen:\n\((try? tmux.screen()) ?? "")")
        try await Task.sleep(for: .milliseconds(200))
        let stty = try String(contentsOfFile: settings, encoding: .utf8)
        let flags = Set(stty.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == ";" }).map(String.init))
        #expect(flags.contains("icanon") && flags.contains("echo"), "stty -a:\n\(stty)")
    }

    @Test func ferrySSHRunsACommandThroughAJumpWithoutAnySSHBinary() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        guard let ferry = builtFerry() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let fake = try fakeSSHBin(box)
        try await withJumpHost { jump in
            let files = try writeJumpConfig(box, inner: sshd, jump: jump)
            let env = ["HOME": box.home, "PATH": fake.path]
            let through = try runProcess(ferry, ["ssh", "--known-hosts", files.knownHosts, "inner", "--", "echo through-jump; exit 5"], environment: env)
            #expect(through.stdout == "through-jump\n", "stderr: \(through.stderr)")
            #expect(through.status == 5)
            // Several arguments are an argv, each quoted: the `;` reaches printf as text.
            let argv = try runProcess(ferry, ["ssh", "--known-hosts", files.knownHosts, "inner", "--", "printf", "%s|", "a b", "; exit 9"], environment: env)
            #expect(argv.stdout == "a b|; exit 9|")
            #expect(argv.status == 0)
            // --cd starts in a directory (quoted: this one has a space and a quote in its name).
            let odd = box.path("start here's")
            try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
            let cd = try runProcess(ferry, ["ssh", "--known-hosts", files.knownHosts, "--cd", odd, "inner", "--", "pwd"], environment: env)
            #expect(cd.stdout == odd + "\n", "stderr: \(cd.stderr)")
            // An unknown host: refused with the fingerprint and exit status 255.
            let empty = box.path("empty_known")
            _ = FileManager.default.createFile(atPath: empty, contents: Data())
            let refused = try runProcess(ferry, ["ssh", "--known-hosts", empty, "-i", sshd.clientKey, sshd.target, "--", "true"],
                                         environment: ["HOME": box.home, "PATH": fake.path])
            #expect(refused.status == 255)
            #expect(refused.stderr.contains(sshd.hostKeyFingerprint) && refused.stderr.contains("--host-key"))
        }
        #expect(!FileManager.default.fileExists(atPath: fake.marker), "ferry spawned an ssh binary")
    }
}

/// `ferry ssh` asks for an encrypted key's passphrase on the terminal.
@Suite struct SSHPassphraseCLITests {
    @Test func encryptedKeyAsksForItsPassphraseOnTheTerminal() async throws {
        guard try TestSSHD.shared() != nil else { return }
        guard let ferry = builtFerry() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withEncryptedKeyHost(box) { host, key in
            let tmux = Tmux(); defer { tmux.kill() }
            try tmux.run(["new-session", "-d", "-s", "t", "-x", "150", "-y", "30", "env", "-i", "HOME=\(box.home)", "TERM=xterm",
                          "PATH=/usr/bin:/bin", "PS1=local$ ", "/bin/bash", "--norc", "--noprofile"])
            try tmux.run(["send-keys", "-t", "t", "\(ferry) ssh --known-hosts \(host.knownHosts) -i \(key) \(host.target) -- 'echo UNLOCKED-$((6*7))'", "Enter"])
            #expect(try await tmux.waitFor("Enter passphrase for key", timeout: 45), "screen:\n\((try? tmux.screen()) ?? "")")
            try tmux.run(["send-keys", "-t", "t", "sesame-42", "Enter"])
            // Generous: the whole suite runs beside it on two cores.
            #expect(try await tmux.waitFor("UNLOCKED-42", timeout: 45), "screen:\n\((try? tmux.screen()) ?? "")")
            #expect(!(try tmux.screen()).contains("sesame-42"), "the passphrase was echoed")
        }
    }
}

/// `ferry ssh -G` and `ferry ssh-config` against OpenSSH's `ssh` as the reference.
@Suite struct SSHOpenSSHParityCLITests {
    @Test func ferrySSHDashGPrintsWhatSSHDashGPrints() throws {
        let box = try Sandbox(); defer { box.remove() }
        let gpuInclude = box.path("gpu.conf"), otherInclude = box.path("other.conf")
        try "User gpu-user\nHost gpu2\n    HostKeyAlias gpu2-alias\n".write(toFile: gpuInclude, atomically: true, encoding: .utf8)
        try "Port 9999\nHost gpu1\n    Port 1111\n    User wrong\n".write(toFile: otherInclude, atomically: true, encoding: .utf8)
        let config = box.path("config")
        try """
        Host *.lab !skip.lab
            User labuser
            IdentityFile /keys/lab_%h_%r
        Host gpu?
            HostName %h.cluster.example
            Port 2201
            ProxyJump jumper,alice@second:2222
            Include \(gpuInclude)
            IdentityFile /keys/gpu_%n
        Host other
            Include \(otherInclude)
            User after-include
        Match originalhost gpu1 exec "test %h = gpu1.cluster.example"
            HostKeyAlias gpu1-alias
            UserKnownHostsFile /kh/%l_%L_%i_%u_%n_%r_%h_%p_%k_%d /kh/%C
        Match host *.cluster.example user gpu-user
            IdentitiesOnly yes
        Match final originalhost plain
            Port 2345
            IdentityFile /keys/final_%h
        Host *
            User fallback
            IdentityFile ~/.ssh/all_%u
            UserKnownHostsFile ~/kh/default_%n /kh/second_%h
        """.write(toFile: config, atomically: true, encoding: .utf8)

        // ssh expands ~ and %d from the password database; ferry from HOME: make them the same.
        guard let pw = getpwuid(getuid()) else { Issue.record("no passwd entry"); return }
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = String(cString: pw.pointee.pw_dir)
        environment["USER"] = String(cString: pw.pointee.pw_name)
        environment["FERRY_HOME"] = box.ferryHome
        let compared = ["hostname", "user", "port", "identityfile", "proxyjump", "hostkeyalias", "userknownhostsfile", "identitiesonly"]
        func values(_ output: String) -> [String: [String]] {
            var found: [String: [String]] = [:]
            for line in output.split(separator: "\n") {
                guard let space = line.firstIndex(of: " ") else { continue }
                let key = String(line[..<space])
                if compared.contains(key) { found[key, default: []].append(String(line[line.index(after: space)...])) }
            }
            return found
        }
        for target in [["gpu1"], ["gpu2"], ["node.lab"], ["skip.lab"], ["other"], ["plain"], ["-p", "22", "-l", "root", "gpu1"]] {
            let reference = try runProcess("/usr/bin/ssh", ["-G", "-F", config] + target, environment: environment)
            let ours = try runProcess(TestPaths.ferryBinary.path, ["ssh", "-G", "-F", config] + target, environment: environment)
            #expect(reference.status == 0 && ours.status == 0, "\(target): ssh \(reference.stderr) ferry \(ours.stderr)")
            let expected = values(reference.stdout), got = values(ours.stdout)
            for key in compared {
                #expect(got[key] == expected[key], "\(target.joined(separator: " ")): \(key): ssh says \(expected[key] ?? []), ferry \(got[key] ?? [])")
            }
        }
    }

    @Test func sshConfigFollowsConfigAliasesForTheTargetAndTheJump() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withJumpHost(extraConfig: []) { jump in
            // The relay accepts only its own key, which only its Host block names (item 7: the relay
            // was offered the -i key and the defaults, and refused them).
            try """
            Host relay-alias
                HostName \(jump.host)
                Port \(jump.port)
                User \(jump.user)
                IdentityFile \(jump.clientKey)
            Host inner-alias
                HostName \(sshd.host)
                Port \(sshd.port)
            """.write(toFile: box.home + "/.ssh/config", atomically: true, encoding: .utf8)
            let line = "ferry://\(sshd.user)@inner-alias?jump=relay-alias&jump-key=\(jump.hostKeyFingerprint)#\(sshd.hostKeyFingerprint)"
            var environment = ProcessInfo.processInfo.environment
            environment["HOME"] = box.home
            environment["FERRY_HOME"] = box.ferryHome
            environment["SSH_AUTH_SOCK"] = nil
            let printed = try runProcess(TestPaths.ferryBinary.path, ["ssh-config", "gpu", line, "-i", sshd.clientKey], environment: environment)
            #expect(printed.status == 0, "ferry ssh-config: \(printed.stderr)")
            #expect(printed.stdout.contains("HostName \(sshd.host)\n    Port \(sshd.port)\n"), "\(printed.stdout)")
            #expect(printed.stdout.contains("IdentityFile \(jump.clientKey)"), "the relay block names the relay's own key: \(printed.stdout)")
            // `hosts add` with the same line pins both keys through the relay alias too.
            let added = try runProcess(TestPaths.ferryBinary.path, ["hosts", "add", "gpu2", line, "-i", sshd.clientKey], environment: environment)
            #expect(added.status == 0, "ferry hosts add: \(added.stderr)")
            // OpenSSH takes the block: through the relay to the host, each key checked against its pin.
            let block = box.path("block.conf")
            try (printed.stdout + "Host *\n    BatchMode yes\n    GlobalKnownHostsFile /dev/null\n").write(toFile: block, atomically: true, encoding: .utf8)
            let ssh = try runProcess("/usr/bin/ssh", ["-F", block, "gpu", "echo through"], environment: environment)
            #expect(ssh.status == 0 && ssh.stdout == "through\n", "ssh: \(ssh.stderr)\n\(printed.stdout)")
        }
    }
}
