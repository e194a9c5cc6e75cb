import FerryTestSupport
import Foundation
@testable import Jobs
import JobsTestSupport
import Testing

/// A host whose system lacks what ferry links and loads: an sshd in its own mount namespace where
/// libssh, libcurl, libdnnl and libgomp are empty files. ferry installs its binary, then each
/// library the host's loader says it lacks, and a training job runs there. (Root only: it needs
/// `unshare -m` and bind mounts.)
@Suite struct RestrictedHostTests {
    @Test func installsBinaryAndLibrariesOnAHostThatLacksThem() async throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"), TrainJobTests.hasFashionMNIST,
              let sshd = try TestSSHD.shared(), let sshdBinary = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"].first(where: FileManager.default.isExecutableFile) else {
            print("jobs: restricted-host test skipped (needs root, unshare, sshd and Fashion-MNIST)")
            return
        }
        let box = try Sandbox(); defer { box.remove() }
        let locator = LibraryLocator(binary: TestFerry.binary)
        var hidden: [String] = []
        for name in ["libssh.so.4", "libcurl.so.4", "libdnnl.so.2", "libgomp.so.1"] {
            let path = try #require(locator.find(name), "this machine has no \(name)")
            hidden.append(URL(fileURLWithPath: path).resolvingSymlinksInPath().path)
        }
        let empty = box.root + "/empty"
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        let port = Int.random(in: 40000...59000)
        let config = box.root + "/sshd_config"
        try """
        Port \(port)
        ListenAddress 127.0.0.1
        HostKey \(sshd.directory)/ssh_host_ed25519_key
        PidFile \(box.root)/sshd.pid
        AuthorizedKeysFile \(sshd.directory)/authorized_keys
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin prohibit-password
        UsePAM no
        StrictModes no
        MaxSessions 50
        Subsystem sftp internal-sftp
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let mounts = hidden.map { "mount --bind \(ShellQuoteForTest.quote(empty)) \(ShellQuoteForTest.quote($0))" }.joined(separator: " && ")
        let log = box.root + "/sshd.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let server = try BackgroundProcess(["/usr/bin/unshare", "-m", "--propagation", "private", "sh", "-c",
                                            "\(mounts) && exec \(sshdBinary) -D -e -f \(config)"], stderrFile: log)
        defer { server.kill() }
        #expect(await eventually(10) { fileText(log).contains("Server listening") }, "the restricted sshd did not start: \(fileText(log))")

        try Registry(home: box.home).addHost(HostRecord(name: "bare", target: "\(sshd.user)@127.0.0.1:\(port)", fingerprint: sshd.hostKeyFingerprint,
                                                        identityFile: sshd.clientKey, ferryHome: box.remoteHome))
        var context = box.sshContext(sshd)
        // scripts/test-agent-install.sh sets the static build here (the test build needs the toolchain's runtime).
        if let agent = ProcessInfo.processInfo.environment["FERRY_TEST_AGENT_BINARY"], !agent.isEmpty { context.agentBinary = agent }
        // The host really lacks them.
        let probe = try await context.connect(try context.registry.host("bare"))
        let sizes = try await probe.start("wc -c < \(ShellQuoteForTest.quote(hidden[0]))")
        try await sizes.closeInput()
        #expect(String(decoding: try await sizes.collect().stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        await probe.close()

        try box.write("tiny.json", TrainJobConfig.text(limit: 256, epochs: 1))
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "bare", name: "tiny", workingDirectory: box.project, kind: "train", needs: JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]), command: ["ferry", "train", "tiny.json"]))
        let sink = ByteSink()
        let status = try await JobsClient(context: context).follower(result.id, host: try context.registry.host("bare"))
            .resume(from: 0, first: client, onData: { sink.append($0) })
        #expect(status?.state == .succeeded, "\(sink.text)")
        let installed = Set((try? FileManager.default.contentsOfDirectory(atPath: box.remoteHome + "/lib")) ?? [])
        #expect(installed.isSuperset(of: ["libssh.so.4", "libcurl.so.4", "libdnnl.so.2", "libgomp.so.1"]), "lib/ has \(installed.sorted())")
        #expect(FileManager.default.isExecutableFile(atPath: box.remoteHome + "/bin/ferry"))
        #expect(POSIX.fileSize(box.remoteHome + "/bin/ferry") == POSIX.fileSize(context.agentBinary))
        print("jobs: installed ferry and \(installed.sorted().joined(separator: ", ")) on a host that lacked them; the train job \(status?.state.rawValue ?? "?")")
    }
}

/// Quoting for the test's own shell lines.
enum ShellQuoteForTest {
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
