import FerryTestSupport
import Foundation
import SSH
import Testing

/// Drives a private tmux server (its own socket), so tests never touch anyone's tmux.
struct Tmux {
    let socket = "ferry-test-\(UUID().uuidString.prefix(8))"

    @discardableResult
    func run(_ args: [String]) throws -> String {
        let outPath = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tmux-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outPath) }
        waitProgram(try spawnProgram("/usr/bin/tmux", ["-L", socket] + args, outputFile: outPath))
        return (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    }

    func screen() throws -> String { try run(["capture-pane", "-p", "-t", "t", "-S", "-200"]) }

    /// Waits until the pane shows `text` (as a whole line when `line`).
    func waitFor(_ text: String, timeout: Double = 15) async throws -> Bool {
        let start = ContinuousClock.now
        while elapsed(since: start) < timeout {
            if try screen().contains(text) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    func kill() { _ = try? run(["kill-server"]) }
}

/// The built `ferry` executable; nil when it is not built (a recorded issue under CI, where it must be).
func builtFerry() -> String? {
    let ferry = TestPaths.ferryBinary.path
    guard FileManager.default.isExecutableFile(atPath: ferry) else {
        if TestPaths.isCI { Issue.record("the ferry binary is not built at \(ferry)") }
        return nil
    }
    return ferry
}

/// A PATH holding only fake `ssh` and `scp` that leave a marker if anything ever runs them.
func fakeSSHBin(_ box: Sandbox) throws -> (path: String, marker: String) {
    let bin = box.path("fakebin")
    let marker = box.path("ssh-was-spawned")
    try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
    for name in ["ssh", "scp", "sftp"] {
        let script = "#!/bin/sh\necho \"$0 $*\" >> '\(marker)'\nexit 99\n"
        try script.write(toFile: bin + "/" + name, atomically: true, encoding: .utf8)
        chmod(bin + "/" + name, 0o755)
    }
    return (bin, marker)
}

@Suite struct TerminalTests {
    @Test func ptyShellSeesTheSizeAndResizes() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let shell = try await session.startShell(pty: PTYRequest(term: "xterm", columns: 101, rows: 37))
        try await shell.write("stty size; echo TERM=$TERM\n")
        var seen = ""
        var iterator = shell.output.makeAsyncIterator()
        while !seen.contains("37 101") || !seen.contains("TERM=xterm") {
            guard let chunk = try await iterator.next() else { break }
            seen += String(decoding: chunk.data, as: UTF8.self)
        }
        #expect(seen.contains("37 101"))
        try await shell.resizePTY(columns: 132, rows: 50)
        try await shell.write("stty size; exit 4\n")
        while let chunk = try await iterator.next() { seen += String(decoding: chunk.data, as: UTF8.self) }
        #expect(seen.contains("50 132"))
        #expect(try await shell.exitStatus() == .exited(4))
        await session.close()
    }

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

@Suite struct PassphraseTests {
    /// A private sshd that also accepts an encrypted key (the shared one's authorized_keys stays untouched).
    func withEncryptedKeyHost(_ box: Sandbox, _ body: (TestSSHD, String) async throws -> Void) async throws {
        let key = box.path("encrypted_ed25519")
        try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "sesame-42", "-f", key])
        try await withJumpHost(extraConfig: []) { host in
            let pub = try String(contentsOfFile: key + ".pub", encoding: .utf8)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: host.directory + "/authorized_keys"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(pub.utf8))
            try handle.close()
            try await body(host, key)
        }
    }

    @Test func encryptedKeyWithoutATerminalIsSkippedWithAReason() async throws {
        guard try TestSSHD.shared() != nil else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withEncryptedKeyHost(box) { host, key in
            await #expect {
                _ = try await SSHSession.connect(host.target, options: host.options(box, keys: [key]))
            } throws: { error in
                guard case SSHError.authenticationFailed(_, _, let tried) = error else { return false }
                return tried.contains { $0.hasPrefix("publickey \(key) (encrypted") }
            }
        }
    }

    @Test func encryptedKeyAsksForItsPassphraseOnTheTerminal() async throws {
        guard try TestSSHD.shared() != nil else { return }
        guard let ferry = builtFerry() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await withEncryptedKeyHost(box) { host, key in
            let tmux = Tmux(); defer { tmux.kill() }
            try tmux.run(["new-session", "-d", "-s", "t", "-x", "150", "-y", "30", "env", "-i", "HOME=\(box.home)", "TERM=xterm",
                          "PATH=/usr/bin:/bin", "PS1=local$ ", "/bin/bash", "--norc", "--noprofile"])
            try tmux.run(["send-keys", "-t", "t", "\(ferry) ssh --known-hosts \(host.knownHosts) -i \(key) \(host.target) -- 'echo UNLOCKED-$((6*7))'", "Enter"])
            #expect(try await tmux.waitFor("Enter passphrase for key"), "screen:\n\((try? tmux.screen()) ?? "")")
            try tmux.run(["send-keys", "-t", "t", "sesame-42", "Enter"])
            // Generous: the whole suite runs beside it on two cores.
            #expect(try await tmux.waitFor("UNLOCKED-42", timeout: 45), "screen:\n\((try? tmux.screen()) ?? "")")
            #expect(!(try tmux.screen()).contains("sesame-42"), "the passphrase was echoed")
        }
    }
}
