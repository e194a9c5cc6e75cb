import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing

/// The lifecycle on `--host local` (LocalTransport: the same agent, a local process for a channel).
@Suite struct LocalHostTests {
    @Test func shellJobLifecycle() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await Scenarios.shellJob(box, host: "local", hostJobs: box.localJob)
    }

    @Test func secondLaunchSendsAlmostNothing() async throws {
        let box = try Sandbox(); defer { box.remove() }
        _ = try await Scenarios.secondLaunchReuses(box, host: "local")
    }

    @Test func cancelEscalatesToKillAfterTheGrace() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await Scenarios.cancelStubbornJob(box, host: "local", hostJobs: box.localJob)
    }

    @Test func cancelLetsTheJobWriteLast() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await Scenarios.cancelWellBehavedJob(box, host: "local", hostJobs: box.localJob)
    }

    @Test func fetchInterruptedThenResumed() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await Scenarios.fetchResumes(box, host: "local", hostJobs: box.localJob)
    }

    @Test func badInputStartsNothing() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await Scenarios.badInput(box, host: "local", hostHome: box.home)
    }

    /// A failed job resumed in its own folder runs again there (attempt 2) and can succeed.
    @Test func resumeRunsAgainInTheSameFolder() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("flaky.sh", "if [ -e marker ]; then echo second; exit 0; fi; touch marker; echo first; exit 3\n")
        let context = box.context()
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "flaky", workingDirectory: box.project, kind: "command", command: ["sh", "flaky.sh"]))
        let jobs = JobsClient(context: context)
        let first = try await jobs.follower(result.id, host: .local).resume(from: 0, first: client, onData: { _ in })
        #expect(first?.state == .failed)
        #expect(first?.exitCode == 3)
        let (info, c2) = try await Launcher(context: context).resume(result.id)
        #expect(info.spec.attempt == 2)
        let second = try await jobs.follower(result.id, host: .local).resume(from: 0, first: c2, onData: { _ in })
        #expect(second?.state == .succeeded)
        #expect(fileText(box.localJob(result.id).log) == "first\nsecond\n")
        // A succeeded job is not resumed again.
        await #expect(throws: JobsError.self) { _ = try await Launcher(context: context).resume(result.id) }
    }

    /// A supervisor that vanishes leaves a job marked lost; cancelling it stops what it left running.
    @Test func supervisorKilledMeansLost() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("long.sh", "echo up; while true; do sleep 0.05; done\n")
        let context = box.context()
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "long", workingDirectory: box.project, kind: "command", command: ["sh", "long.sh"]))
        await client.close()
        let paths = box.localJob(result.id)
        #expect(await eventually { fileText(paths.log).contains("up") })
        let status = try JSONCoding.decoder().decode(JobStatus.self, from: Data(contentsOf: URL(fileURLWithPath: paths.status)))
        let supervisor = try #require(status.supervisorPid)
        let job = try #require(status.pid)
        kill(supervisor, SIGKILL)
        #expect(await eventually(5) { !POSIX.isAlive(supervisor) })
        let info = try await JobsClient(context: context).status(result.id)
        #expect(info.status.state == .lost)
        #expect(kill(-job, 0) == 0, "the job itself keeps running without its supervisor")
        _ = try await JobsClient(context: context).cancel(result.id, grace: 1, wait: false)
        #expect(await eventually(5) { kill(-job, 0) != 0 })
    }

    /// A manifest with `..`, absolute paths or escaping symlinks is refused by the host's agent
    /// itself (not only by a well-behaved client), and nothing is written outside the job.
    @Test func hostileManifestRefusedByTheAgent() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let context = box.context()
        let client = try await context.agent(.local)
        defer { Task { await client.close() } }
        try box.write("x", "payload")
        let hash = try HashCache.hashFile(box.project + "/x")
        _ = try await client.putBlobs([(hash: hash, path: box.project + "/x", offset: 0)])
        let hostile: [Manifest] = [
            Manifest(files: [Manifest.File(path: "../../escaped", sha256: hash, size: 7)]),
            Manifest(files: [Manifest.File(path: box.root + "/abs", sha256: hash, size: 7)]),
            Manifest(symlinks: [Manifest.Symlink(path: "l", target: "../../..")]),
            Manifest(files: [Manifest.File(path: "l/x", sha256: hash, size: 7)], symlinks: [Manifest.Symlink(path: "l", target: ".")]),
        ]
        for (i, manifest) in hostile.enumerated() {
            let spec = JobSpec(id: "evil-\(i)", name: "evil", kind: "command", command: ["true"])
            await #expect(throws: JobsError.self) { _ = try await client.startJob(spec: spec, manifest: manifest) }
            #expect(!FileManager.default.fileExists(atPath: box.localJob("evil-\(i)").directory), "a refused job left its folder")
        }
        #expect(!FileManager.default.fileExists(atPath: box.home + "/escaped"))
        #expect(!FileManager.default.fileExists(atPath: box.root + "/abs"))
        // Hostile ids never become paths.
        for id in ["../evil", "a/b", "x;y"] {
            let spec = JobSpec(id: id, name: "evil", kind: "command", command: ["true"])
            await #expect(throws: JobsError.self) { _ = try await client.startJob(spec: spec, manifest: Manifest()) }
            await #expect(throws: JobsError.self) { _ = try await client.status(id) }
        }
        // A blob whose bytes do not match its name is refused.
        try box.write("y", "other content")
        await #expect(throws: JobsError.self) { _ = try await client.putBlobs([(hash: String(repeating: "b", count: 64), path: box.project + "/y", offset: 0)]) }
    }
}

@Suite struct FetchTests {
    /// `fetch --follow` brings checkpoints down as they appear, then stops when the job ends.
    @Test func followTricklesCheckpointsDown() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("epochs.sh", """
        for e in 1 2 3; do
          sleep 0.6
          mkdir -p "$FERRY_OUTPUT/run/checkpoints/epoch-$e.tmp" && echo "weights $e" > "$FERRY_OUTPUT/run/checkpoints/epoch-$e.tmp/model.bin"
          mv "$FERRY_OUTPUT/run/checkpoints/epoch-$e.tmp" "$FERRY_OUTPUT/run/checkpoints/epoch-$e"
        done
        """)
        let context = box.context()
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "epochs", workingDirectory: box.project, kind: "command", command: ["sh", "epochs.sh"], follow: false))
        let seen = Counter()
        let files = try await Fetcher(client: client).follow(result.id, what: "all", into: box.root + "/got", interval: 0.2) { event in
            if case .fetched(let f) = event, !f.unchanged { seen.add() }
        }
        await client.close()
        #expect(files.count == 3)
        for e in 1...3 { #expect(fileText(box.root + "/got/run/checkpoints/epoch-\(e)/model.bin") == "weights \(e)\n") }
        #expect(seen.value == 3, "each checkpoint was sent once")
    }

    /// A host whose listing names `../` paths gets nothing written anywhere.
    @Test func hostileListingWritesNothing() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let listing = """
        {"root":"/x","state":"succeeded","files":[{"path":"output/ok.bin","size":1,"sha256":"\(String(repeating: "a", count: 64))","modified":0},
        {"path":"output/../../escape.bin","size":1,"sha256":"\(String(repeating: "b", count: 64))","modified":0}]}
        """
        let transport = CannedTransport(stdout: Data((listing + "\n").utf8))
        let hello = AgentHello(ferry: TestFerry.version, protocolVersion: AgentProtocol.version, home: "/x", binary: "/x/ferry", system: "Linux")
        let client = AgentSession(transport: transport, host: "evil", hello: hello, prefix: "ferry agent")
        await #expect(throws: JobsError.self) { _ = try await Fetcher(client: client).fetch("a-1", what: "all", into: box.root + "/dest") }
        #expect(!FileManager.default.fileExists(atPath: box.root + "/dest"))
        #expect(!FileManager.default.fileExists(atPath: box.root + "/escape.bin"))
        #expect(transport.downloads.value == 0)
    }
}

/// A transport whose every command prints `stdout` and exits 0; downloads are counted, never done.
final class CannedTransport: Transport, @unchecked Sendable {
    let label = "canned"
    let counters = TransferCounters()
    var knownAgentBinary: String? { nil }
    let stdout: Data
    let downloads = Counter()
    init(stdout: Data) { self.stdout = stdout }

    func start(_ commandLine: String) async throws -> any RemoteCommand { CannedCommand(stdout) }
    func upload(_ localPath: String, to remotePath: String, mode: UInt32, progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport {
        throw JobsError.cancelled
    }
    func download(_ remotePath: String, to localPath: String, expectedSHA256: String?, progress: (@Sendable (Int64) -> Void)?) async throws -> TransferReport {
        downloads.add()
        throw JobsError.cancelled
    }
    func close() async {}
}

final class CannedCommand: RemoteCommand {
    let output: AsyncThrowingStream<TransportOutput, any Error>
    init(_ data: Data) {
        let (stream, continuation) = AsyncThrowingStream<TransportOutput, any Error>.makeStream()
        continuation.yield(.stdout(data))
        continuation.finish()
        output = stream
    }
    func write(_ data: Data) async throws {}
    func closeInput() async throws {}
    func exitStatus() async throws -> Int32 { 0 }
    func cancel() {}
}
