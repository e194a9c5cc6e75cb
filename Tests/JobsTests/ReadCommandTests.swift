import Foundation
import Testing
import FerryTestSupport
import System
@testable import Jobs
import JobsTestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ReadCommandTests {
    /// `ferry ls` (and status, logs, fetch) never install: a host without an agent of this version
    /// is a row saying so, and nothing is sent there.
    @Test func listDoesNotInstallOnAHostWithoutAnAgent() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd, preinstalled: false)
        let context = box.sshContext(sshd)
        let rows = await JobsClient(context: context).list()
        let row = try #require(rows.first { $0.host == "box" })
        #expect(row.jobs.isEmpty)
        #expect(row.error?.contains("no ferry agent of this version") == true, "\(row.error ?? "no error")")
        #expect(!FileManager.default.fileExists(atPath: box.remoteHome + "/bin/ferry"), "ls installed the agent")
        // A job this machine remembers on that host: status says the host has no agent, and installs none.
        let id = "box-20250101-000000-0000"
        try context.registry.saveJob(JobRecord(id: id, name: "box", host: "box", kind: "command", command: ["true"], createdAt: Date()))
        let expected = JobsError.noAgent(host: "box", detail: "none in " + box.remoteHome + " or on PATH")
        await #expect(throws: expected) { _ = try await JobsClient(context: context).status(id) }
        #expect(!FileManager.default.fileExists(atPath: box.remoteHome + "/bin/ferry"))
    }

    /// A host that accepts the connection and then says nothing is one row with its error, within
    /// the connect time-out; the other hosts are listed meanwhile.
    @Test func aSilentHostIsOneRowNotAHang() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let silent = try SilentServer(); defer { silent.stop() }
        try Registry(home: box.home).addHost(HostRecord(name: "silent", target: "root@127.0.0.1:\(silent.port)"))
        var context = box.context()
        context.connectTimeout = 2
        // A job on the local host, so that host has something to list.
        try box.write("ok.sh", "echo ok")
        let (launched, session) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "ok", workingDirectory: box.project, kind: "command", command: ["sh", "ok.sh"], follow: false))
        await session.close()
        let started = Date()
        let rows = await JobsClient(context: context).list()
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 60, "ls took \(elapsed) s with a silent host (its time-out is 2 s)")
        let silentRow = try #require(rows.first { $0.host == "silent" })
        #expect(silentRow.error != nil && silentRow.jobs.isEmpty)
        #expect(rows.first { $0.host == HostRecord.localName }?.jobs.contains { $0.spec.id == launched.id } == true)
    }

    /// A host whose agent never answers (here the local one: its ferry hangs on `hello`) costs `ls`
    /// its time-out, not forever: the slow host is abandoned, not waited for.
    @Test func aHungAgentIsOneRowNotAHang() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let hang = box.root + "/hanging-ferry"
        try "#!/bin/sh\nexec sleep 300\n".write(toFile: hang, atomically: true, encoding: .utf8)
        chmod(hang, 0o755)
        var context = box.context()
        context.localBinary = hang
        context.connectTimeout = 1
        try FileManager.default.createDirectory(atPath: HostLayout(home: box.home).jobsDirectory, withIntermediateDirectories: true)
        let result = Slot<[HostJobs]>()
        let listing = Task { await result.set(await JobsClient(context: context).list()) }
        let started = Date()
        // Polled, not awaited: before the fix, list() never returned.
        while Date().timeIntervalSince(started) < 90 {
            try await Task.sleep(nanoseconds: 100_000_000)
            if let done = await result.value {
                let elapsed = Date().timeIntervalSince(started)
                // Its time-out is 11 s (connect 1 s + 10 s for the answer); the bound leaves room for a
                // loaded machine, far below the 300 s the agent would hang.
                #expect(elapsed < 60, "ls took \(elapsed) s")
                #expect(done.first { $0.host == HostRecord.localName }?.error != nil)
                return
            }
        }
        listing.cancel()
        Issue.record("ls did not return within 90 s of a host whose agent hangs")
    }

    /// A FERRY_HOME written before protocol 2 and before jobs stated their needs (committed as it
    /// was written; see Fixtures/pre-protocol-2/README.md): its job lists, its checkpoint fetches,
    /// and `launch --resume` continues it with the `--resume auto` an old train job implies.
    @Test func aJobFromBeforeStillListsFetchesAndResumes() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let fixture = try #require(Bundle.module.url(forResource: "Fixtures/pre-protocol-2/home", withExtension: nil))
        try FileManager.default.removeItem(atPath: box.home)
        try FileManager.default.copyItem(atPath: fixture.path, toPath: box.home)
        let id = "legacy-20261206-102633-0817"
        let context = box.context()

        let rows = await JobsClient(context: context).list()
        let listed = try #require(rows.first { $0.host == HostRecord.localName }?.jobs.first { $0.spec.id == id })
        #expect(listed.spec.kind == "train" && listed.status.state == .failed)
        #expect(listed.spec.needs == JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]))
        #expect(listed.progress.checkpoints["last"] == "run/checkpoints/last")

        let session = try await JobsClient(context: context).agent(for: id)
        let fetched = try await session.using { try await Fetcher(client: $0).fetch(id, what: "last", into: box.root + "/fetched") }
        #expect(fetched.count == 1)
        let weights = try #require(fetched.first?.localPath)
        #expect(weights.hasSuffix("model.safetensors"))
        #expect(try String(contentsOfFile: weights, encoding: .utf8) == "weights\n")

        let (resumed, resumedSession) = try await Launcher(context: context).resume(id)
        await resumedSession.close()
        #expect(resumed.spec.attempt == 2 && resumed.spec.command == ["sh", "run.sh", "--resume", "auto"])
        let status = try await JobsClient(context: context).follower(id, host: .local).resume(from: 0, onData: { _ in })
        #expect(status?.state == .succeeded)
        let log = try String(contentsOfFile: HostLayout(home: box.home).job(id).log, encoding: .utf8)
        #expect(log.contains("attempt with args: --resume auto"))
    }

    /// `--host` takes what `ferry ssh` takes: an alias from the ssh config or `user@host:port`,
    /// recorded on first use (under the alias, or `host-port`) and reachable through the same
    /// strict host-key check; a name that is neither stays an error that says what to type.
    @Test func hostAcceptsSSHAliasesAndTargets() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let context = box.sshContext(sshd)
        let sshDir = box.root + "/home/.ssh"
        try FileManager.default.createDirectory(atPath: sshDir, withIntermediateDirectories: true)
        try """
        Host box-alias
          HostName \(sshd.host)
          Port \(sshd.port)
          User \(sshd.user)
        Host *
          IdentityFile \(sshd.clientKey)

        """.write(toFile: sshDir + "/config", atomically: true, encoding: .utf8)
        let registry = context.registry

        let (alias, recordedAlias) = try registry.resolveHost("box-alias", sshEnvironment: context.sshEnvironment)
        #expect(recordedAlias && alias.name == "box-alias" && alias.target == "box-alias")
        #expect(try registry.host("box-alias").target == "box-alias")
        #expect(try registry.resolveHost("box-alias", sshEnvironment: context.sshEnvironment).recorded == false)

        let typed = "\(sshd.user)@\(sshd.host):\(sshd.port)"
        let (direct, recordedDirect) = try registry.resolveHost(typed, sshEnvironment: context.sshEnvironment)
        #expect(recordedDirect && direct.name == "\(sshd.host)-\(sshd.port)" && direct.target == typed)

        // Both connect (the alias through the config's HostName/Port/User, keys as for any host).
        for record in [alias, direct] {
            let transport = try await context.connect(record)
            let command = try await transport.start("echo reached")
            try await command.closeInput()
            let (out, _, status) = try await command.collect()
            #expect(status == 0 && String(decoding: out, as: UTF8.self) == "reached\n", "\(record.name)")
            await transport.close()
        }
        // Not registered, not in the config, not user@host: the error says what to type.
        #expect(throws: JobsError.unknownHost("nowhere", known: registry.hostNames())) {
            _ = try registry.resolveHost("nowhere", sshEnvironment: context.sshEnvironment)
        }
    }
}

actor Slot<T: Sendable> {
    var value: T?
    func set(_ v: T) { value = v }
}
