import FerryTestSupport
import Foundation
import SSH
import Testing

@Suite struct ConnectTests {
    func options(_ sshd: TestSSHD, knownHosts: String? = nil, pinned: String? = nil) -> SSHSession.Options {
        SSHSession.Options(host: sshd.host, port: sshd.port, user: sshd.user,
                           knownHostsFiles: [knownHosts ?? sshd.knownHosts], pinnedFingerprint: pinned,
                           identityFiles: [sshd.clientKey])
    }

    @Test func connectVerifyAuthenticateAndRunEcho() throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let session = try SSHSession(options(sshd))
        let result = try session.run("echo hello")
        #expect(String(decoding: result.stdout, as: UTF8.self) == "hello\n")
        #expect(result.status == 0)
        #expect(try session.serverFingerprint() == sshd.hostKeyFingerprint)
    }

    @Test func unknownHostKeyIsRefusedWithItsFingerprint() throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-empty-known-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect {
            _ = try SSHSession(options(sshd, knownHosts: empty))
        } throws: { error in
            guard case SSHError.hostKeyUnknown(_, _, let fp, _) = error else { return false }
            return fp == sshd.hostKeyFingerprint
        }
    }

    @Test func wrongKnownHostsEntryIsRefused() throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-wrong-known-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPath = dir.appendingPathComponent("other").path
        try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyPath])
        let pub = try String(contentsOfFile: keyPath + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        let known = dir.appendingPathComponent("known_hosts").path
        try "[\(sshd.host)]:\(sshd.port) \(pub)\n".write(toFile: known, atomically: true, encoding: .utf8)
        #expect {
            _ = try SSHSession(options(sshd, knownHosts: known))
        } throws: { error in
            guard case SSHError.hostKeyMismatch = error else { return false }
            return true
        }
    }

    @Test func wrongPinnedFingerprintIsRefused() throws {
        guard let sshd = try TestSSHD.shared() else { return }
        #expect(throws: SSHError.self) {
            _ = try SSHSession(options(sshd, pinned: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        }
    }
}
