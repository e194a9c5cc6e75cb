import FerryTestSupport
import Foundation
@testable import Jobs
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
            LaunchRequest(host: "local", name: "flaky", workingDirectory: box.project, kind: .command, command: ["sh", "flaky.sh"]))
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
            LaunchRequest(host: "local", name: "long", workingDirectory: box.project, kind: .command, command: ["sh", "long.sh"]))
        await client.close()
        let paths = box.localJob(result.id)
        #expect(eventually { fileText(paths.log).contains("up") })
        let status = try JSON.decoder().decode(JobStatus.self, from: Data(contentsOf: URL(fileURLWithPath: paths.status)))
        let supervisor = try #require(status.supervisorPID)
        let job = try #require(status.pid)
        kill(supervisor, SIGKILL)
        #expect(eventually(5) { !POSIX.isAlive(supervisor) })
        let info = try await JobsClient(context: context).status(result.id)
        #expect(info.status.state == .lost)
        #expect(kill(-job, 0) == 0, "the job itself keeps running without its supervisor")
        _ = try await JobsClient(context: context).cancel(result.id, grace: 1, wait: false)
        #expect(eventually(5) { kill(-job, 0) != 0 })
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
            let spec = JobSpec(id: "evil-\(i)", name: "evil", kind: .command, command: ["true"])
            await #expect(throws: JobsError.self) { _ = try await client.startJob(spec: spec, manifest: manifest) }
            #expect(!FileManager.default.fileExists(atPath: box.localJob("evil-\(i)").directory), "a refused job left its folder")
        }
        #expect(!FileManager.default.fileExists(atPath: box.home + "/escaped"))
        #expect(!FileManager.default.fileExists(atPath: box.root + "/abs"))
        // Hostile ids never become paths.
        for id in ["../evil", "a/b", "x;y"] {
            let spec = JobSpec(id: id, name: "evil", kind: .command, command: ["true"])
            await #expect(throws: JobsError.self) { _ = try await client.startJob(spec: spec, manifest: Manifest()) }
            await #expect(throws: JobsError.self) { _ = try await client.status(id) }
        }
        // A blob whose bytes do not match its name is refused.
        try box.write("y", "other content")
        await #expect(throws: JobsError.self) { _ = try await client.putBlobs([(hash: String(repeating: "b", count: 64), path: box.project + "/y", offset: 0)]) }
    }
}
