import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Testing

/// Config files that work for OpenSSH's `ssh` must work (or fail) the same way for ferry; `ssh`
/// itself is the reference wherever it can be run.
@Suite struct OpenSSHParityTests {
    /// Runs OpenSSH's client with `-F config` (so neither ~/.ssh/config nor /etc/ssh/ssh_config count).
    static func openSSH(_ arguments: [String], agent: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        var environment = ProcessInfo.processInfo.environment
        environment["SSH_AUTH_SOCK"] = agent
        return try runProcess("/usr/bin/ssh", arguments, environment: environment)
    }

    /// The test sshd's host key as a known_hosts line under `name`.
    static func knownHostsLine(_ sshd: TestSSHD, name: String) throws -> String {
        let line = try String(contentsOfFile: sshd.knownHosts, encoding: .utf8).split(separator: "\n")[0]
        return ([name] + line.split(separator: " ").dropFirst().map(String.init)).joined(separator: " ") + "\n"
    }

    static func hostBlock(_ name: String, _ sshd: TestSSHD, _ extra: [String]) -> String {
        (["Host \(name)", "    HostName \(sshd.host)", "    Port \(sshd.port)", "    User \(sshd.user)",
          "    IdentityFile \(sshd.clientKey)"] + extra.map { "    " + $0 }).joined(separator: "\n") + "\n"
    }

    func options(_ box: Sandbox, config: String, agent: String? = nil) -> SSHConnectOptions {
        var environment = box.environment(agent: agent)
        environment.configFile = config
        return SSHConnectOptions(environment: environment)
    }

    @Test func hostKeyAliasIsTheNameTheKeyIsLookedUpUnder() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let underAlias = box.path("alias_known_hosts")
        try Self.knownHostsLine(sshd, name: "pinned-name").write(toFile: underAlias, atomically: true, encoding: .utf8)
        let config = box.path("config")
        func write(knownHosts: String) throws {
            try Self.hostBlock("aliased", sshd, ["IdentitiesOnly yes", "HostKeyAlias pinned-name", "UserKnownHostsFile \(knownHosts)",
                                                 "GlobalKnownHostsFile /dev/null", "StrictHostKeyChecking yes", "BatchMode yes"])
                .write(toFile: config, atomically: true, encoding: .utf8)
        }
        // The key is on record under [host]:port only: OpenSSH looks under the alias and refuses.
        try write(knownHosts: sshd.knownHosts)
        let refused = try Self.openSSH(["-F", config, "aliased", "true"])
        #expect(refused.status == 255, "ssh: \(refused.stderr)")
        await #expect {
            _ = try await SSHSession.connect("aliased", options: options(box, config: config))
        } throws: { error in
            guard case SSHError.hostKeyUnknown = error else { return false }
            return true
        }
        // On record under the alias: both connect.
        try write(knownHosts: underAlias)
        let accepted = try Self.openSSH(["-F", config, "aliased", "true"])
        #expect(accepted.status == 0, "ssh: \(accepted.stderr)")
        let session = try await SSHSession.connect("aliased", options: options(box, config: config))
        #expect(session.hostKeyFingerprint == sshd.hostKeyFingerprint)
        #expect(try await session.run("echo aliased").stdoutText == "aliased\n")
        await session.close()
    }

    @Test func everyUserKnownHostsFileAndTheGlobalOnesAreRead() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let empty = box.path("empty_known_hosts")
        try "".write(toFile: empty, atomically: true, encoding: .utf8)
        let config = box.path("config")
        let cases: [(lines: [String], connects: Bool)] = [
            (["UserKnownHostsFile \(empty) \(sshd.knownHosts)", "GlobalKnownHostsFile /dev/null"], true),
            (["UserKnownHostsFile \(empty)", "GlobalKnownHostsFile \(box.path("missing")) \(sshd.knownHosts)"], true),
            (["UserKnownHostsFile \(empty)", "GlobalKnownHostsFile /dev/null"], false),
        ]
        for (lines, connects) in cases {
            try Self.hostBlock("box", sshd, lines + ["IdentitiesOnly yes", "StrictHostKeyChecking yes", "BatchMode yes"])
                .write(toFile: config, atomically: true, encoding: .utf8)
            let reference = try Self.openSSH(["-F", config, "box", "true"])
            #expect((reference.status == 0) == connects, "ssh with \(lines): \(reference.stderr)")
            do {
                let session = try await SSHSession.connect("box", options: options(box, config: config))
                await session.close()
                #expect(connects, "ferry connected with \(lines)")
            } catch SSHError.hostKeyUnknown {
                #expect(!connects, "ferry refused the key with \(lines)")
            }
        }
    }

    @Test func identitiesOnlyKeepsTheAgentsKeysBackAndTooManyKeysSaysSo() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let socket = box.path("agent.sock")
        let agent = try spawnProgram("/usr/bin/ssh-agent", ["-D", "-a", socket])
        defer { kill(agent, SIGTERM); waitProgram(agent) }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(50_000) }
        // Eight keys the server does not know: more than sshd's MaxAuthTries (6).
        for i in 0..<8 {
            let key = box.path("extra\(i)")
            #expect(try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "extra-\(i)", "-f", key]).status == 0)
            var environment = ProcessInfo.processInfo.environment
            environment["SSH_AUTH_SOCK"] = socket
            #expect(try runProcess("/usr/bin/ssh-add", ["-q", key], environment: environment).status == 0)
        }
        let config = box.path("config")
        let common = ["UserKnownHostsFile \(sshd.knownHosts)", "GlobalKnownHostsFile /dev/null", "BatchMode yes"]
        // A long ConnectTimeout: a refusal that waited for it (libssh polling the closed socket) shows.
        try (Self.hostBlock("many", sshd, common + ["ConnectTimeout 60"]) + Self.hostBlock("only", sshd, common + ["IdentitiesOnly yes"]))
            .write(toFile: config, atomically: true, encoding: .utf8)

        let refused = try Self.openSSH(["-F", config, "many", "true"], agent: socket)
        #expect(refused.status == 255 && refused.stderr.contains("Too many authentication failures"), "ssh: \(refused.stderr)")
        // The hang-up ends the wait, not the 60 s connect timeout (connecting alone can take seconds
        // while the whole network round runs beside this test).
        let started = Date()
        await #expect {
            _ = try await SSHSession.connect("many", options: options(box, config: config, agent: socket))
        } throws: { error in
            guard case SSHError.tooManyAuthenticationFailures = error else { return false }
            return "\(error)".hasPrefix("too many authentication failures: tried publickey (ssh-agent: 8 keys: extra-0, ")
        }
        #expect(Date().timeIntervalSince(started) < 30, "the refusal took \(Date().timeIntervalSince(started)) s")

        #expect(try Self.openSSH(["-F", config, "only", "true"], agent: socket).status == 0)
        let session = try await SSHSession.connect("only", options: options(box, config: config, agent: socket))
        #expect(session.authenticationMethod == "publickey \(sshd.clientKey)")
        await session.close()
    }

    @Test func identitiesOnlyStillSignsWithTheAgentsCopyOfAnIdentityFile() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await withJumpHost(extraConfig: []) { server in
            let socket = box.path("agent.sock")
            let agent = try spawnProgram("/usr/bin/ssh-agent", ["-D", "-a", socket])
            defer { kill(agent, SIGTERM); waitProgram(agent) }
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(50_000) }
            var environment = ProcessInfo.processInfo.environment
            environment["SSH_AUTH_SOCK"] = socket
            // Seven keys the server does not know, then the one it does; that one's file is then
            // encrypted, so only the agent's copy can sign without a terminal.
            let key = box.path("work_key")
            for name in (0..<7).map({ "extra\($0)" }) + ["work_key"] {
                #expect(try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", box.path(name)]).status == 0)
                #expect(try runProcess("/usr/bin/ssh-add", ["-q", box.path(name)], environment: environment).status == 0)
            }
            #expect(try runProcess("/usr/bin/ssh-keygen", ["-q", "-p", "-P", "", "-N", "not typed", "-f", key]).status == 0)
            let authorized = server.directory + "/authorized_keys"
            try (String(contentsOfFile: authorized, encoding: .utf8) + String(contentsOfFile: key + ".pub", encoding: .utf8))
                .write(toFile: authorized, atomically: true, encoding: .utf8)
            let config = box.path("config")
            try """
            Host work
                HostName \(server.host)
                Port \(server.port)
                User \(server.user)
                IdentityFile \(key)
                IdentitiesOnly yes
                UserKnownHostsFile \(server.knownHosts)
                GlobalKnownHostsFile /dev/null
                BatchMode yes
            """.write(toFile: config, atomically: true, encoding: .utf8)
            #expect(try Self.openSSH(["-F", config, "work", "true"], agent: socket).status == 0)
            let session = try await SSHSession.connect("work", options: options(box, config: config, agent: socket))
            #expect(session.authenticationMethod == "publickey (ssh-agent)")
            await session.close()
            // Only that key was shown to the server.
            let log = try String(contentsOfFile: server.directory + "/sshd.log", encoding: .utf8)
            #expect(!log.contains("Failed publickey"), "\(log)")
        }
    }

}
