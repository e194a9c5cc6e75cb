import FerryTestSupport
import Foundation
@testable import Jobs
import JobsTestSupport
import Testing

/// `ferry train` as a job: the runner knows it only through the file contract (FERRY_EVENTS,
/// FERRY_OUTPUT, exit 75), checked here end to end on a Fashion-MNIST subset.
@Suite struct TrainJobTests {
    static var hasFashionMNIST: Bool {
        FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    }

    static func train(_ box: Sandbox, host: String, context: JobsContext, hostJobs: (String) -> JobPaths) async throws {
        try box.write("tiny.json", TrainJobConfig.text(limit: 512, epochs: 2))
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: host, name: "tiny", workingDirectory: box.project, kind: "train", needs: JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]), command: ["ferry", "train", "tiny.json"],
                          hostPaths: ["/usr/share/datasets/fashion-mnist"]))
        let sink = ByteSink()
        let status = try await JobsClient(context: context).follower(result.id, host: try context.registry.host(host))
            .resume(from: 0, first: client, onData: { sink.append($0) })
        #expect(status?.state == .succeeded, "\(sink.text)")
        #expect(sink.text.contains("Finished 2 epochs"))
        let info = try await JobsClient(context: context).status(result.id)
        #expect(info.progress.epoch == 2)
        #expect(info.progress.totalEpochs == 2)
        #expect(info.progress.fraction == 1)
        #expect(info.progress.metrics["val_accuracy"] != nil)
        #expect(info.progress.checkpoints["best"] != nil)
        // The trainer used the contract's places: its events, its output folder named after the job.
        #expect(fileText(hostJobs(result.id).events).contains("\"event\":\"end\""))
        let c = try await JobsClient(context: context).agent(for: result.id)
        let files = try await Fetcher(client: c).fetch(result.id, what: "best", into: box.root + "/runs")
        await c.close()
        #expect(Set(files.map { ($0.localPath as NSString).lastPathComponent }) == ["model.safetensors", "train_state.safetensors"])
        #expect(files.allSatisfy { $0.localPath.hasPrefix(box.root + "/runs/tiny/\(result.id)/checkpoints/best/") })
    }

    @Test func trainJobLocally() async throws {
        guard TrainJobTests.hasFashionMNIST else { return }
        let box = try Sandbox(); defer { box.remove() }
        try await TrainJobTests.train(box, host: "local", context: box.context(), hostJobs: box.localJob)
    }

    @Test func trainJobOverSSH() async throws {
        guard TrainJobTests.hasFashionMNIST, let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try await TrainJobTests.train(box, host: "box", context: box.sshContext(sshd), hostJobs: box.remoteJob)
    }

    /// Cancel: the trainer finishes its step, writes last/ and exits 75 within the grace; resumed,
    /// it continues from last/ (`--resume auto`) in the same folder and finishes.
    @Test func cancelWritesLastAndResumeContinues() async throws {
        guard TrainJobTests.hasFashionMNIST else { return }
        let box = try Sandbox(); defer { box.remove() }
        let context = box.context()
        try box.write("slow.json", TrainJobConfig.text(limit: 6000, epochs: 3, hidden: 256))
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "slow", workingDirectory: box.project, kind: "train", needs: JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]), command: ["ferry", "train", "slow.json"]))
        await client.close()
        let paths = box.localJob(result.id)
        #expect(await eventually(60) { fileText(paths.events).contains("\"event\":\"step\"") })
        let cancelled = try await JobsClient(context: context).cancel(result.id, grace: 60, wait: true)
        #expect(cancelled.status.state == .cancelled, "\(fileText(paths.log))")
        #expect(cancelled.status.exitCode == 75)
        let last = paths.output + "/tiny/\(result.id)/checkpoints/last"
        #expect(FileManager.default.fileExists(atPath: last + "/model.safetensors"))
        #expect(FileManager.default.fileExists(atPath: last + "/train_state.safetensors"))
        #expect(fileText(paths.events).contains("\"status\":\"stopped\""))

        let (resumed, c2) = try await Launcher(context: context).resume(result.id)
        #expect(resumed.spec.command == ["ferry", "train", "slow.json", "--resume", "auto"])
        #expect(resumed.spec.attempt == 2)
        let final = try await JobsClient(context: context).follower(result.id, host: .local).resume(from: 0, first: c2, onData: { _ in })
        #expect(final?.state == .succeeded, "\(fileText(paths.log))")
        let starts = fileText(paths.events).split(separator: "\n").filter { $0.contains("\"event\":\"start\"") }
        #expect(starts.count == 2)
        #expect(fileText(paths.log).contains("Finished 3 epochs"))
    }
}
