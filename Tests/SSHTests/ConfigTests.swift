import Foundation
import SSH
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
        Match exec "touch /tmp/never"
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
