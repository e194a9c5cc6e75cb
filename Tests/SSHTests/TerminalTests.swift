import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Testing

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

}

@Suite struct PassphraseTests {

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

}
