import FerryTestSupport
import Foundation
import SSH
import Testing
import Tunnels
import TunnelsTestSupport

@Suite struct HostSetupTests {
    static let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINE2PiMUKylstm+vb8EcUXk+bXfVdjjthIv/2Ybvuwnv laptop"

    @Test func sshdConfigIsKeyOnlyForOneUserWithTheShellsEnvironment() throws {
        let captured = SessionEnvironment.capture(from: [
            "PATH": "/usr/local/nvidia/bin:/usr/bin", "LD_LIBRARY_PATH": "/usr/lib64-nvidia", "CUDA_HOME": "/usr/local/cuda",
            "NGROK_AUTHTOKEN": "2secret", "HF_TOKEN": "hf_secret", "AWS_SECRET_ACCESS_KEY": "x", "FERRY_SSH_PASSWORD": "pw",
            "HOME": "/root", "SSH_AUTH_SOCK": "/tmp/agent", "TERM": "xterm", "EMPTY": "", "MY_VAR": "mine",
        ], extra: ["MY_VAR"])
        #expect(captured.map(\.name) == ["CUDA_HOME", "LD_LIBRARY_PATH", "MY_VAR", "PATH"])
        var config = SSHDConfig(port: 2222, listenAddresses: ["127.0.0.1"], hostKey: "/f/host/key", pidFile: "/f/host/sshd.pid",
                                authorizedKeysFile: "/f/host/authorized_keys", user: "root",
                                environment: Dictionary(uniqueKeysWithValues: captured.map { ($0.name, $0.value) }))
        let text = try config.render()
        let lines = text.split(separator: "\n").map(String.init)
        for expected in ["PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                         "AllowUsers root", "AuthorizedKeysFile /f/host/authorized_keys", "HostKey /f/host/key",
                         "AllowTcpForwarding local", "AllowAgentForwarding no", "ListenAddress 127.0.0.1", "Port 2222",
                         "Subsystem sftp internal-sftp", "UsePAM no"] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
        // sshd honours only the first SetEnv line, so all of it is one line.
        #expect(lines.filter { $0.hasPrefix("SetEnv") } == [#"SetEnv "CUDA_HOME=/usr/local/cuda" "LD_LIBRARY_PATH=/usr/lib64-nvidia" "MY_VAR=mine" "PATH=/usr/local/nvidia/bin:/usr/bin""#])
        #expect(!text.contains("secret") && !text.contains("Include"))
        config.allowPassword = true
        let withPassword = try config.render()
        #expect(withPassword.contains("PasswordAuthentication yes\n") && withPassword.contains("PermitRootLogin yes\n"))
        config.environment = ["BAD": "a\"b"]
        #expect(throws: TunnelError.unsafeEnvironmentValue(name: "BAD")) { try config.render() }
        // sshd itself accepts what we write.
        if let sshd = ChildProcess.find("sshd") {
            let box = try Sandbox(); defer { box.remove() }
            _ = try box.makeKey("hostkey")
            config = SSHDConfig(port: 2222, listenAddresses: ["127.0.0.1"], hostKey: box.path("hostkey"), pidFile: box.path("pid"),
                                authorizedKeysFile: box.path("ak"), user: HostSetup.currentUser, environment: ["CUDA_HOME": "/usr/local/cuda"])
            let file = try box.write("sshd_config", try config.render())
            let check = try runProcess(sshd, ["-t", "-f", file])
            #expect(check.status == 0, "sshd -t: \(check.stderr)")
        }
    }

    @Test func onlyPublicKeysAreAuthorized() throws {
        let box = try Sandbox(); defer { box.remove() }
        let key = try AuthorizedKey(parsing: Self.key)
        #expect(key.type == "ssh-ed25519" && key.comment == "laptop" && key.fingerprint == "SHA256:Zq7nuCl1Hl8TQjjfxQMqeTetMudV8r+5kuRrQR4KcDg")
        let refused: [(String, String)] = [
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "private key"),
            ("command=\"/bin/sh\" " + Self.key, "options"),
            ("ssh-ed25519 not-base64!", "base64"),
            ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAINE2PiMUKylstm+vb8EcUXk+bXfVdjjthIv/2Ybvuwnv", "does not match"),
            ("hello", "type base64"),
        ]
        for (text, reason) in refused {
            #expect {
                _ = try AuthorizedKey(parsing: text)
            } throws: { error in
                guard case TunnelError.invalidPublicKey(_, let why) = error else { return false }
                return why.contains(reason)
            }
        }
        // --authorize takes a key line or a file of them; keys accumulate once each.
        let file = try box.write("keys.pub", "# laptop and desktop\n\(Self.key)\n\n" + box.read(try box.makeKey("desktop") + ".pub"))
        let files = HostFiles(ferryHome: box.ferryHome)
        let first = try HostSetup.authorize(AuthorizedKey.collect([file], home: box.home), files: files)
        let second = try HostSetup.authorize(AuthorizedKey.collect([Self.key], home: box.home), files: files)
        #expect(first.count == 2 && second == first)
        let attributes = try FileManager.default.attributesOfItem(atPath: files.authorizedKeys)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(throws: TunnelError.self) { _ = try AuthorizedKey.collect([box.path("no-such.pub")], home: box.home) }
    }

    @Test func tunnelSpecsParse() throws {
        #expect(try TunnelSpec(parsing: "none") == .none)
        #expect(try TunnelSpec(parsing: "ngrok") == .ngrok)
        #expect(try TunnelSpec(parsing: "ssh://relay@relay.example.com:2200") == .relay(SSHTarget(user: "relay", host: "relay.example.com", port: 2200)))
        #expect(throws: TunnelError.self) { try TunnelSpec(parsing: "relay.example.com") }
        #expect(throws: TunnelError.self) { try HostUpOptions(ferryHome: "/tmp/x", tunnel: .command).validate() }
        // A token named in --env is refused for what it is (a secret that would land in sshd_config),
        // with where to put it instead; a plain variable is fine.
        #expect(throws: TunnelError.secretEnvironment(name: "HF_TOKEN")) {
            try HostUpOptions(ferryHome: "/tmp/x", extraEnvironment: ["HF_TOKEN"]).validate()
        }
        #expect(TunnelError.secretEnvironment(name: "HF_TOKEN").description.contains("ferry launch --env HF_TOKEN"))
        try HostUpOptions(ferryHome: "/tmp/x", extraEnvironment: ["CUDA_HOME"]).validate()
        // A host's relay port is stable for its key and differs between keys.
        let a = ReverseSSHTunnel.defaultRemotePort(forHostKey: "SHA256:Zq7nuCl1Hl8TQjjfxQMqeTetMudV8r+5kuRrQR4KcDg")
        #expect(a == ReverseSSHTunnel.defaultRemotePort(forHostKey: "SHA256:Zq7nuCl1Hl8TQjjfxQMqeTetMudV8r+5kuRrQR4KcDg"))
        #expect(a != ReverseSSHTunnel.defaultRemotePort(forHostKey: bogusFingerprint))
        #expect((20000..<60000).contains(a))
        #expect(ReverseSSHTunnel.relayAuthorizedKeysLine(publicKey: Self.key, remotePort: 40022)
                == #"restrict,port-forwarding,permitlisten="localhost:40022",command="/bin/false" "# + Self.key)
    }
}
