import FerryTestSupport
import Foundation
import TunnelsTestSupport
import SSH
import Testing
import Tunnels

@Suite struct ConnectionStringTests {
    static let fp = "SHA256:Zq7nuCl1Hl8TQjjfxQMqeTetMudV8r+5kuRrQR4KcDg"
    static let relayFP = "SHA256:JBgUueGyWohAgvlS/HHJz5NtZ3beKsab4m5ZdGYc/w4"

    @Test func printsAndParsesEveryForm() throws {
        let direct = ConnectionString(user: "root", host: "gpu.example.com", port: 2222, hostKey: Self.fp)
        #expect(direct.description == "ferry://root@gpu.example.com:2222#\(Self.fp)")
        let relayed = ConnectionString(user: "root", host: "127.0.0.1", port: 40022, hostKey: Self.fp,
                                       jump: SSHTarget(user: "relay", host: "relay.example.com", port: 22), jumpHostKey: Self.relayFP)
        #expect(relayed.description == "ferry://root@127.0.0.1:40022?jump=relay@relay.example.com:22&jump-key=SHA256:JBgUueGyWohAgvlS/HHJz5NtZ3beKsab4m5ZdGYc/w4#\(Self.fp)")
        // A ProxyCommand with every character that means something in a URL.
        let proxied = ConnectionString(user: "me", host: "gpu.internal", port: 22, hostKey: Self.fp,
                                       proxyCommand: "cloudflared access ssh --hostname %h --id 'a&b=c#d?e+f'")
        let v6 = ConnectionString(user: "ubuntu", host: "2001:db8::7", port: 2222, hostKey: Self.fp)
        #expect(v6.description.hasPrefix("ferry://ubuntu@[2001:db8::7]:2222#"))
        for original in [direct, relayed, proxied, v6] {
            let parsed = try ConnectionString(parsing: original.description)
            #expect(parsed == original)
            #expect(parsed.description == original.description)
        }
        #expect(try ConnectionString(parsing: proxied.description).proxyCommand == "cloudflared access ssh --hostname %h --id 'a&b=c#d?e+f'")
        // Port 22 may be left out; padding on the fingerprint is tolerated and dropped; whitespace around is ignored.
        let short = try ConnectionString(parsing: "  ferry://alice@box#\(Self.fp)=\n")
        #expect(short.port == 22 && short.hostKey == Self.fp && short.knownHostsName == "box")
        #expect(relayed.knownHostsName == "[127.0.0.1]:40022")
    }

    @Test func refusesWhatItCannotTrust() {
        let bad: [(String, String)] = [
            ("ssh://root@gpu:22#\(Self.fp)", "ferry://"),
            ("ferry://root@gpu:22", "host key is missing"),
            ("ferry://root@gpu:22#MD5:aa:bb", "not a host key fingerprint"),
            ("ferry://root@gpu:22#SHA256:short", "not a host key fingerprint"),
            ("ferry://gpu:22#\(Self.fp)", "user is missing"),
            ("ferry://root@gpu:99999#\(Self.fp)", "user@host"),
            ("ferry://root@gpu?insecure=1#\(Self.fp)", "unknown parameter"),
            ("ferry://root@gpu?jump-key=\(Self.relayFP)#\(Self.fp)", "jump-key without jump"),
            ("ferry://root@gpu?jump=r@relay&jump=s@relay#\(Self.fp)", "twice"),
            ("ferry://root@gpu?jump=r@relay&proxy=nc%20%25h#\(Self.fp)", "either jump or proxy"),
            ("ferry://root@gpu?jump=r@relay&jump-key=SHA256:x#\(Self.fp)", "jump-key="),
        ]
        for (text, reason) in bad {
            #expect {
                _ = try ConnectionString(parsing: text)
            } throws: { error in
                guard case SSHError.invalidConnectionString(_, let why) = error else { return false }
                return why.contains(reason) && "\(error)".contains("ferry://user@host:port#SHA256")
            }
        }
    }

    @Test func fingerprintsAreChecked() {
        #expect(ConnectionString.isFingerprint(Self.fp))
        #expect(ConnectionString.isFingerprint(bogusFingerprint))
        #expect(!ConnectionString.isFingerprint("SHA256:" + String(repeating: "A", count: 42)))
        #expect(!ConnectionString.isFingerprint("SHA256:" + String(repeating: "!", count: 43)))
        #expect(!ConnectionString.isFingerprint(String(Self.fp.dropFirst(7))))
    }

    /// The fragment is a pin: a server with another key is refused, before anything is recorded.
    @Test func aWrongPinnedFingerprintIsRefused() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let empty = try box.write("empty_known_hosts", "")
        let wrong = ConnectionString(user: sshd.user, host: sshd.host, port: sshd.port, hostKey: bogusFingerprint)
        let options = SSHConnectOptions(environment: box.environment(), hostKeyPolicy: wrong.hostKeyPolicy,
                                        identityFiles: [sshd.clientKey], knownHostsFile: empty)
        await #expect {
            _ = try await SSHSession.connect(config: wrong.hostConfig(alias: "gpu", identityFiles: [sshd.clientKey]), options: options)
        } throws: { error in
            guard case SSHError.hostKeyMismatch(_, let expected, let presented) = error else { return false }
            return expected == bogusFingerprint && presented == sshd.hostKeyFingerprint
        }
        await #expect {
            _ = try await HostKeyProbe.fetch(hostName: sshd.host, port: sshd.port, fingerprint: bogusFingerprint, environment: box.environment())
        } throws: { error in
            if case SSHError.hostKeyMismatch = error { return true }
            return false
        }
        #expect(!FileManager.default.fileExists(atPath: box.ferryHome + "/known_hosts"), "nothing may be recorded for a refused key")

        // The right pin: connects, and the probe returns the full key behind the fingerprint.
        let right = ConnectionString(user: sshd.user, host: sshd.host, port: sshd.port, hostKey: sshd.hostKeyFingerprint)
        var rightOptions = options
        rightOptions.hostKeyPolicy = right.hostKeyPolicy
        let session = try await SSHSession.connect(config: right.hostConfig(alias: "gpu", identityFiles: [sshd.clientKey]), options: rightOptions)
        #expect(try await session.run("echo pinned").stdoutText == "pinned\n")
        await session.close()
        let key = try await HostKeyProbe.fetch(hostName: sshd.host, port: sshd.port, fingerprint: sshd.hostKeyFingerprint, environment: box.environment())
        #expect(key.type == "ssh-ed25519" && key.fingerprint == sshd.hostKeyFingerprint)
    }

    @Test func knownHostsPinsReplaceOnlyTheirOwnNames() throws {
        let box = try Sandbox(); defer { box.remove() }
        let file = try box.write("known_hosts", "other ssh-ed25519 AAAAother\ngpu,[127.0.0.1]:40022 ssh-ed25519 AAAAold\n# comment gpu\n")
        let key = PublicHostKey(type: "ssh-ed25519", base64: "AAAAC3NzaC1lZDI1NTE5AAAAINE2PiMUKylstm+vb8EcUXk+bXfVdjjthIv/2Ybvuwnv")
        try KnownHostsEditor.pin(key, names: ["gpu", "[127.0.0.1]:40022"], in: file)
        try KnownHostsEditor.pin(key, names: ["gpu", "[127.0.0.1]:40022"], in: file)   // idempotent
        let lines = box.read(file).split(separator: "\n").map(String.init)
        #expect(lines == ["other ssh-ed25519 AAAAother", "# comment gpu", key.knownHostsLine(for: "gpu"), key.knownHostsLine(for: "[127.0.0.1]:40022")])
        #expect(KnownHostsEditor.keys(for: "gpu", in: file) == [key])
    }
}
