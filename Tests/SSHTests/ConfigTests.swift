import Foundation
import SSH
import SSHTestSupport
import Testing

@Suite struct ConfigTests {
    let env = SSHEnvironment(home: "/home/me", ferryHome: "/home/me/.ferry", localUser: "me")

    @Test func firstValueWinsIdentityFilesAccumulateAndPatternsNegate() throws {
        let text = """
        # comment
        Host *.lab !bastion.lab
            User labuser
            IdentityFile ~/.ssh/lab_%h
        Host gpu1
            HostName gpu1.lab
            Port=2222
            IdentityFile "~/.ssh/key with space"
            ServerAliveInterval 30
            ProxyJump alice@bastion.lab:22,second
        Host gpu*
            User gpu-user
            IdentityFile %d/.ssh/gpu_%r_%p
        Host *
            User fallback
            ConnectTimeout 9
        """
        let config = try SSHConfigFile(text: text, environment: env)
        let gpu1 = try config.resolve(SSHTarget(parsing: "gpu1"), environment: env)
        #expect(gpu1.hostName == "gpu1.lab")
        #expect(gpu1.port == 2222)
        // `Host *.lab` matches the name typed (gpu1), not its HostName; `Host gpu*` gives the first User.
        #expect(gpu1.user == "gpu-user")
        #expect(gpu1.identityFiles == ["/home/me/.ssh/key with space", "/home/me/.ssh/gpu_gpu-user_2222"])
        #expect(gpu1.serverAliveInterval == 30)
        #expect(gpu1.connectTimeout == 9)
        #expect(gpu1.proxyJump == [SSHTarget(user: "alice", host: "bastion.lab", port: 22), SSHTarget(host: "second")])

        let node = try config.resolve(SSHTarget(parsing: "node.lab"), environment: env)
        #expect(node.user == "labuser")
        #expect(node.identityFiles == ["/home/me/.ssh/lab_node.lab"])
        let bastion = try config.resolve(SSHTarget(parsing: "bastion.lab"), environment: env)
        #expect(bastion.user == "fallback")   // negated
        // The target's own user and port beat the config.
        let explicit = try config.resolve(SSHTarget(parsing: "root@gpu1:22"), environment: env)
        #expect(explicit.user == "root" && explicit.port == 22 && explicit.knownHostsName == "gpu1.lab")
        #expect(gpu1.knownHostsName == "[gpu1.lab]:2222")
    }

    @Test func defaultsWhenNothingMatches() throws {
        let config = try SSHConfigFile(text: "Host other\n  User x\n", environment: env)
        let plain = try config.resolve(SSHTarget(parsing: "box"), environment: env)
        #expect(plain.user == "me" && plain.port == 22 && plain.hostName == "box")
        #expect(plain.identityFiles == ["/home/me/.ssh/id_ed25519", "/home/me/.ssh/id_ecdsa", "/home/me/.ssh/id_rsa"])
        #expect(plain.proxyJump.isEmpty && plain.proxyCommand == nil)
    }

    @Test func matchBlocksAndNone() throws {
        let text = """
        Host a
            HostName real-a
            ProxyJump none
            ProxyCommand none
        Match host real-a
            User matched
        Match exec "exit 1"
            User never
        """
        let config = try SSHConfigFile(text: text, environment: env)
        let a = try config.resolve(SSHTarget(parsing: "a"), environment: env)
        #expect(a.user == "matched")
        #expect(a.proxyJump.isEmpty && a.proxyCommand == nil)
    }

    @Test func includeReadsRelativeToTheSSHDirectory() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-include-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: home) }
        try FileManager.default.createDirectory(at: home.appendingPathComponent(".ssh/conf.d"), withIntermediateDirectories: true)
        try "Host inc\n  Port 2200\n".write(to: home.appendingPathComponent(".ssh/conf.d/one.conf"), atomically: true, encoding: .utf8)
        try "Include conf.d/*.conf\nHost *\n  Port 1\n".write(to: home.appendingPathComponent(".ssh/config"), atomically: true, encoding: .utf8)
        let e = SSHEnvironment(home: home.path, localUser: "me")
        let config = try SSHConfigFile(path: e.sshConfigFile, environment: e)
        #expect(try config.resolve(SSHTarget(parsing: "inc"), environment: e).port == 2200)
        #expect(try config.resolve(SSHTarget(parsing: "other"), environment: e).port == 1)
    }

    @Test func includeInsideAHostBlockAppliesOnlyWhereThatBlockDoes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-include-scope-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let included = dir.appendingPathComponent("inc.conf").path
        try "Port 2200\nHost target\n    HostName included\n".write(toFile: included, atomically: true, encoding: .utf8)
        let text = """
        Host other
            Include \(included)
            User after-include
        Host target
            User target-user
        Host *
            Port 1
        """
        let config = try SSHConfigFile(text: text, environment: env)
        // Inside `Host other`, the included file (its own `Host target` too) does not apply to target...
        let target = try config.resolve(SSHTarget(parsing: "target"), environment: env)
        #expect(target.hostName == "target" && target.port == 1 && target.user == "target-user")
        // ...and the line after the Include is still `Host other`'s.
        let other = try config.resolve(SSHTarget(parsing: "other"), environment: env)
        #expect(other.port == 2200 && other.user == "after-include" && other.hostName == "other")
    }

    @Test func localAndHostTokensExpand() throws {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, 255)
        let local = String(cString: buffer)
        let short = String(local.prefix { $0 != "." })
        let text = """
        Host t
            HostName real.%h
            User bob
            Port 2200
            HostKeyAlias ka
            IdentityFile ~/.ssh/k_%l_%L_%i_%u_%n_%r_%h_%p_%k_%%
            UserKnownHostsFile %d/kh_%l_%i_%n_%r_%k
        """
        let t = try SSHConfigFile(text: text, environment: env).resolve(SSHTarget(parsing: "t"), environment: env)
        #expect(t.identityFiles == ["/home/me/.ssh/k_\(local)_\(short)_\(getuid())_me_t_bob_real.t_2200_ka_%"])
        #expect(t.identityFilesAsWritten == ["~/.ssh/k_%l_%L_%i_%u_%n_%r_%h_%p_%k_%%"])
        #expect(t.userKnownHostsFiles == ["/home/me/kh_\(local)_\(getuid())_t_bob_ka"])
        #expect(t.hostKeyAlias == "ka" && t.knownHostsName == "ka")
    }

    @Test func matchExecRunsThroughTheShellAndStopsAtTheFirstFailure() throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-match-exec-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let text = """
        Host a
            HostName real-a
        Match exec "test %h = real-a && test %n = a && test %r = me"
            Port 2222
        Match exec "exit 1"
            User never
        Match originalhost nomatch exec "touch \(marker)"
            User never-either
        Match !exec "exit 3"
            IdentitiesOnly yes
        """
        let config = try SSHConfigFile(text: text, environment: env)
        let a = try config.resolve(SSHTarget(parsing: "a"), environment: env)
        #expect(a.port == 2222)
        #expect(a.user == "me")
        #expect(a.identitiesOnly)
        #expect(!FileManager.default.fileExists(atPath: marker), "exec ran after a criterion that failed")
        // A token a shell would split or interpret is refused, never run.
        #expect {
            _ = try config.resolve(SSHTarget(host: "x$(touch${IFS}\(marker))"), environment: env)
        } throws: { error in
            guard case SSHError.configInvalid(_, let line, let reason) = error else { return false }
            return line == 3 && reason.contains("Match exec")
        }
        #expect(!FileManager.default.fileExists(atPath: marker))
        // A token OpenSSH does not know is refused too, as ssh refuses it.
        #expect(throws: SSHError.self) {
            _ = try SSHConfigFile(text: "Match exec \"test %Z\"\n  User y\n", environment: env).resolve(SSHTarget(host: "h"), environment: env)
        }
        // Criteria ferry cannot evaluate are refused, not skipped.
        #expect(throws: SSHError.self) { _ = try SSHConfigFile(text: "Match tagged x\n  User y\n", environment: env) }
    }

    @Test func connectionStringAliasesResolveThroughTheConfig() throws {
        let box = try Sandbox(); defer { box.remove() }
        try """
        Host relay-alias
            HostName relay.example
            Port 2022
            User relayuser
        Host inner-alias
            HostName 10.0.0.5
            Port 2200
            ProxyJump relay-alias
        """.write(toFile: box.home + "/.ssh/config", atomically: true, encoding: .utf8)
        let key = "SHA256:" + String(repeating: "A", count: 43)
        let viaConfig = try ConnectionString(parsing: "ferry://root@inner-alias#\(key)").resolvingConfigAliases(environment: box.environment())
        #expect(viaConfig.host == "10.0.0.5" && viaConfig.port == 2200 && viaConfig.user == "root")
        #expect(viaConfig.jump == SSHTarget(user: "relayuser", host: "relay.example", port: 2022))
        // What the string says itself wins: its port, its jump's user.
        let explicit = try ConnectionString(parsing: "ferry://root@inner-alias:2300?jump=me@relay-alias#\(key)")
            .resolvingConfigAliases(environment: box.environment())
        #expect(explicit.port == 2300 && explicit.jump == SSHTarget(user: "me", host: "relay.example", port: 2022))
        // Names the config does not know stay as they are.
        let plain = try ConnectionString(parsing: "ferry://root@10.1.1.1:2222?jump=r@relay:22#\(key)").resolvingConfigAliases(environment: box.environment())
        #expect(plain.host == "10.1.1.1" && plain.port == 2222 && plain.jump == SSHTarget(user: "r", host: "relay", port: 22))
    }

    @Test func badValuesNameTheLine() {
        #expect {
            _ = try SSHConfigFile(text: "Host x\n  Port lots\n", file: "cfg", environment: env)
                .resolve(SSHTarget(host: "x"), environment: env)
        } throws: { error in
            guard case SSHError.configInvalid(let file, let line, _) = error else { return false }
            return file == "cfg" && line == 2
        }
        #expect(throws: SSHError.self) { _ = try SSHConfigFile(text: "Host\n", environment: env) }
        #expect(throws: SSHError.self) { _ = try SSHConfigFile(text: "Host x\n  User \"open\n", environment: env) }
    }
}
