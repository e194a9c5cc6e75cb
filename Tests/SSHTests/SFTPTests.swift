import Crypto
import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Synchronization
import System
import Testing

/// Files of random bytes made once per test process and shared read-only by the SFTP tests.
enum Fixture {
    static let big: Result<String, any Error> = Result { try make(megabytes: 100) }
    static let medium: Result<String, any Error> = Result { try make(megabytes: 12) }

    static func make(megabytes: Int) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-sftp-\(megabytes)M-\(getpid())").path
        let made = try runProcess("/bin/dd", ["if=/dev/urandom", "of=\(path)", "bs=1048576", "count=\(megabytes)", "status=none"])
        guard made.status == 0 else { throw POSIXError(.EIO) }
        return path
    }

    static func sha256(_ path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256()
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty { hasher.update(data: data) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Lets a progress callback cancel the task it reports for.
final class TaskHolder: Sendable {
    private let task = Mutex<Task<SFTPTransferResult, any Error>?>(nil)
    func set(_ t: Task<SFTPTransferResult, any Error>) { task.withLock { $0 = t } }
    func cancel() { task.withLock { $0?.cancel() } }
}

@Suite struct SFTPTests {
    @Test func roundTripOf100MBKeepsTheDigest() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let source = try Fixture.big.get()
        let expected = try Fixture.sha256(source)
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        let remote = box.path("remote/deep/dir/copy.bin")
        try await sftp.makeDirectory((remote as NSString).deletingLastPathComponent)
        let up = try await sftp.upload(source, to: remote)
        #expect(up.sha256 == expected && up.verified && up.totalBytes == 100 << 20)
        #expect(try await sftp.info(remote)?.size == 100 << 20)
        #expect(try await sftp.info(remote + SFTPClient.partialSuffix) == nil)
        let local = box.path("back.bin")
        let reports = Mutex(0)
        let down = try await sftp.download(remote, to: local) { _ in reports.withLock { $0 += 1 } }
        #expect(down.sha256 == expected && down.verified)
        #expect(try Fixture.sha256(local) == expected)
        #expect(down.maxRequestsInFlight >= 16, "only \(down.maxRequestsInFlight) reads in flight")
        #expect(reports.withLock { $0 } > 10)
        #expect(!FileManager.default.fileExists(atPath: local + SFTPClient.partialSuffix))
        await session.close()
    }

    /// An sftp-server that cannot start and says so on stderr before its stdout ends (dropbear
    /// passes a subsystem's stderr on; OpenSSH drops it): SFTP fails at once, with its words.
    /// libssh 0.10 spun at 100 % CPU there, the unread stderr keeping the channel from reading as
    /// ended; dropbear with a missing sftp-server did that now and then.
    @Test func anSFTPServerThatDiesSayingWhyFailsInsteadOfSpinning() async throws {
        guard try TestSSHD.shared() != nil else { return }
        let box = try Sandbox(); defer { box.remove() }
        let script = box.path("broken-sftp")
        try Data("#!/bin/sh\necho 'broken-sftp: cannot start here' >&2\nsleep 0.3\nexit 126\n".utf8).write(to: URL(fileURLWithPath: script))
        chmod(script, 0o755)
        guard let sshd = try TestSSHD.startDropbear(directory: box.path("dropbear"), sftpServer: script) else {
            print("anSFTPServerThatDiesSayingWhyFailsInsteadOfSpinning: skipped (needs root and dropbear-bin: scripts/install-deps.sh)")
            return
        }
        defer { sshd.stop() }
        let session = try await sshd.connect(box)
        for _ in 0..<3 {
            let outcome: String
            var stuck = false
            do { _ = try await withDeadline(seconds: 20) { try await session.openSFTP() }; outcome = "opened" } catch {
                outcome = "\(error)"
                stuck = error is DeadlineExceeded
            }
            #expect(outcome.contains("broken-sftp: cannot start here"), "\(outcome)")
            if stuck { break }   // its thread is stuck: so would the next be
        }
        _ = try? await withDeadline(seconds: 10) { await session.close() }
    }

    @Test(arguments: [SFTPUploadMethod.sftpWrite, .catChannel])
    func uploadMethodsProduceTheSameFile(method: SFTPUploadMethod) async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let source = try Fixture.medium.get()
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        let remote = box.path("up-\(method).bin")
        try Data("old content".utf8).write(to: URL(fileURLWithPath: remote))   // replaced atomically by rename
        let result = try await sftp.upload(source, to: remote, options: SFTPTransferOptions(uploadMethod: method))
        #expect(result.verified)
        #expect(try Fixture.sha256(remote) == Fixture.sha256(source))
        await session.close()
    }

    @Test func interruptedDownloadResumesWithTheRest() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let source = try Fixture.big.get()
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        let local = box.path("resumed.bin")
        let holder = TaskHolder()
        let first = Task {
            try await sftp.download(source, to: local, options: SFTPTransferOptions(verification: .none)) { p in
                if p.completedBytes >= 30 << 20 { holder.cancel() }
            }
        }
        holder.set(first)
        if p_completedEarly(await first.result) { Issue.record("the download finished before it could be cancelled") }
        let partialSize = try #require(try FileManager.default.attributesOfItem(atPath: local + SFTPClient.partialSuffix)[.size] as? UInt64)
        #expect(partialSize >= 30 << 20 && partialSize < 100 << 20)
        #expect(!FileManager.default.fileExists(atPath: local))
        let second = try await sftp.download(source, to: local)
        #expect(second.resumedFrom == partialSize)
        #expect(second.transferredBytes == (100 << 20) - partialSize)
        #expect(second.verified)
        #expect(try Fixture.sha256(local) == Fixture.sha256(source))
        // The session survived the cancelled pipeline (its unread replies were drained).
        #expect(try await session.run("echo ok").stdoutText == "ok\n")
        await session.close()
    }

    private func p_completedEarly(_ r: Result<SFTPTransferResult, any Error>) -> Bool {
        if case .success = r { return true }
        if case .failure(let e) = r, !(e is CancellationError) { Issue.record("unexpected error \(e)") }
        return false
    }

    @Test func uploadResumesFromARemotePartial() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let source = try Fixture.medium.get()
        let remote = box.path("resume-up.bin")
        let head = try Data(contentsOf: URL(fileURLWithPath: source)).prefix(5 << 20)
        try head.write(to: URL(fileURLWithPath: remote + SFTPClient.partialSuffix))
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        let result = try await sftp.upload(source, to: remote)
        #expect(result.resumedFrom == 5 << 20)
        #expect(result.transferredBytes == (12 << 20) - (5 << 20))
        #expect(result.verified)
        #expect(try Fixture.sha256(remote) == Fixture.sha256(source))
        await session.close()
    }

    @Test func corruptPartialIsCaughtByVerification() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let source = try Fixture.medium.get()
        let local = box.path("corrupt.bin")
        try Data(repeating: 0xAB, count: 1 << 20).write(to: URL(fileURLWithPath: local + SFTPClient.partialSuffix))
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        await #expect {
            _ = try await sftp.download(source, to: local)
        } throws: { error in
            guard case SSHError.checksumMismatch = error else { return false }
            return true
        }
        #expect(!FileManager.default.fileExists(atPath: local))
        #expect(!FileManager.default.fileExists(atPath: local + SFTPClient.partialSuffix))
        await session.close()
    }

    @Test func metadataOperations() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        let base = box.path("meta")
        try await sftp.makeDirectory(base + "/a/b/c")
        try await sftp.makeDirectory(base + "/a/b/c")   // idempotent, like mkdir -p
        try Data("hello".utf8).write(to: URL(fileURLWithPath: base + "/a/file.txt"))
        let entries = try await sftp.list(base + "/a")
        #expect(Set(entries.map(\.name)) == ["b", "file.txt"])
        #expect(entries.first { $0.name == "file.txt" }?.size == 5)
        #expect(entries.first { $0.name == "b" }?.kind == .directory)
        #expect(try await sftp.info(base + "/nothing") == nil)
        try await sftp.rename(base + "/a/file.txt", to: base + "/a/renamed.txt")
        #expect(try await sftp.info(base + "/a/renamed.txt")?.kind == .file)
        try await sftp.remove(base + "/a/renamed.txt")
        try await sftp.remove(base + "/a/b/c")
        #expect(try await sftp.list(base + "/a/b").isEmpty)
        await #expect(throws: SSHError.self) { try await sftp.remove(base + "/missing") }
        await session.close()
    }

    @Test func hostileRemoteNamesAreRefused() throws {
        for name in ["..", ".", "", "../escape", "/etc/passwd", "a/../../b", "dir/file", "nul\0byte"] {
            #expect(throws: SSHError.self, "\(name.debugDescription) was accepted") {
                _ = try SFTPClient.localPath(forRemoteName: name, in: "/tmp/dest")
            }
        }
        #expect(try SFTPClient.localPath(forRemoteName: "..hidden", in: "/tmp/dest") == "/tmp/dest/..hidden")
        #expect(try SFTPClient.localPath(forRemoteName: "ok name ✓", in: "/tmp/dest/") == "/tmp/dest/ok name ✓")
    }

    @Test func directoryDownloadStaysInside() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let remote = box.path("tree")
        try FileManager.default.createDirectory(atPath: remote + "/sub", withIntermediateDirectories: true)
        try Data("1".utf8).write(to: URL(fileURLWithPath: remote + "/one"))
        try Data("2".utf8).write(to: URL(fileURLWithPath: remote + "/sub/..two"))
        try FileManager.default.createSymbolicLink(atPath: remote + "/link", withDestinationPath: "/etc/passwd")
        let session = try await sshd.connect(box)
        let sftp = try await session.openSFTP()
        let local = box.path("local-tree")
        let results = try await sftp.downloadDirectory(remote, to: local)
        #expect(results.count == 2)
        #expect(try String(contentsOfFile: local + "/sub/..two", encoding: .utf8) == "2")
        #expect(!FileManager.default.fileExists(atPath: local + "/link"))
        await session.close()
    }
}
