import Foundation
import Testing
import RunContract
import System
@testable import Training
@testable import Jobs

private func folder() throws -> URL {
    let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ferry-contract-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite struct RunContractTests {
    /// What the trainer writes (Training's EventLog), the runner reads (Jobs' JobProgress), field by field.
    @Test func whatTheTrainerWritesTheRunnerReads() throws {
        let root = try folder()
        let events = root.appendingPathComponent("events.jsonl")
        let log = try EventLog(url: events, outputRoot: root)
        let run = root.appendingPathComponent("mnist/job-1")
        log.start(totalEpochs: 4, startEpoch: 2, stepsPerEpoch: 50, runDirectory: run, runID: "job-1",
                  environment: [RunEnvironment.attempt: "3", RunEnvironment.restartCount: "1", RunEnvironment.sweepID: "sw",
                                RunEnvironment.runIndex: "7"])
        log.step(epoch: 2, step: 60, loss: 0.5, lr: 0.01, samplesPerSecond: 1234.4)
        log.step(epoch: 2, step: 70, loss: .nan, lr: 0.01, samplesPerSecond: 1000)   // a NaN loss stays a valid line
        log.epoch(2, metrics: [("loss", 0.4), ("val_accuracy", 0.9), ("val_loss", .infinity)], monitor: .max("val_accuracy"), best: 0.9)
        log.checkpoint(kind: "best", directory: run.appendingPathComponent("checkpoints/best"), epoch: 2)
        log.end(status: .stopped, epoch: 2)

        let lines = try String(contentsOf: events, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 6)
        let parsed = lines.compactMap { RunEvent.parse(Data($0.utf8)) }
        #expect(parsed.count == 6)   // every line is an event the runner understands
        guard case .start(let start) = parsed[0], case .step(let nanStep) = parsed[2], case .epoch(let epoch) = parsed[3] else {
            Issue.record("events out of order: \(parsed.map(\.name))"); return
        }
        #expect(start.runDir == "mnist/job-1" && start.runId == "job-1" && start.device == "cpu")
        #expect(start.attempt == 3 && start.restartCount == 1 && start.sweepId == "sw" && start.runIndex == 7)
        #expect(nanStep.loss == nil && nanStep.step == 70)
        #expect(epoch.metrics == ["loss": 0.4, "val_accuracy": 0.9] && epoch.monitor == "max val_accuracy" && epoch.best == 0.9)

        let progress = JobProgress.read(eventsFile: events.path)
        #expect(progress.totalEpochs == 4 && progress.stepsPerEpoch == 50 && progress.epoch == 2 && progress.step == 70)
        #expect(progress.loss == 0.5 && progress.samplesPerSecond == 1000)   // the NaN step kept the last finite loss
        #expect(progress.metrics["val_accuracy"] == 0.9)
        #expect(progress.checkpoints["best"] == "mnist/job-1/checkpoints/best")
        #expect(progress.runDirectory == "mnist/job-1")
        #expect(progress.endStatus == RunEndStatus.stopped.rawValue)
    }

    /// The wire spelling: snake_case keys, `event` first-class; what older readers and other
    /// programs (Python, jq) expect.
    @Test func eventsAreSnakeCaseLinesAndUnknownFieldsAndEventsAreIgnored() throws {
        let line = RunEvent.step(.init(time: 1.5, epoch: 1, step: 2, loss: 0.25, lr: 0.1, samplesPerS: 10)).line()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["event"] as? String == "step" && object["samples_per_s"] as? Double == 10 && object["loss"] as? Double == 0.25)
        #expect(!line.contains("\n"))

        // A newer writer's extra field, an event this ferry does not know, a torn line.
        let newer = #"{"event":"end","time":3,"status":"preempted","epoch":4,"node":"gpu7"}"#
        #expect(RunEvent.parse(Data(newer.utf8)) == .end(.init(time: 3, status: .preempted, epoch: 4)))
        #expect(RunEvent.parse(Data(#"{"event":"sweep_point","x":1}"#.utf8)) == nil)
        #expect(RunEvent.parse(Data(#"{"event":"step","time":1,"ep"#.utf8)) == nil)
        // Any program may write events: only what identifies one is required.
        #expect(RunEvent.parse(Data(#"{"event":"end","status":"succeeded"}"#.utf8)) == .end(.init(time: nil, status: .succeeded, epoch: nil)))
        #expect(RunEvent.parse(Data(#"{"event":"step","loss":1}"#.utf8)) == nil)   // a step without its number
    }

    /// One set of numbers for the trainer, the job and the commands that follow it.
    @Test func exitStatusesAreTheContracts() {
        #expect(ExitStatus.allCases.map(\.rawValue) == [0, 1, 2, 75, 130, 141, 255])
        #expect(TrainOutcome(status: .succeeded).exitCode == ExitStatus.ok.rawValue)
        #expect(TrainOutcome(status: .failed).exitCode == ExitStatus.failed.rawValue)
        #expect(TrainOutcome(status: .invalid).exitCode == ExitStatus.usage.rawValue)
        #expect(TrainOutcome(status: .stopped).exitCode == ExitStatus.stopped.rawValue)
    }

    /// The supervisor gives a job the contract's names (the trainer reads them from there).
    @Test func theSupervisorSetsTheContractsEnvironment() throws {
        let home = try folder().path
        let layout = HostLayout(home: home)
        let spec = JobSpec(id: "a-1", name: "a", kind: "command", command: ["true"], attempt: 2)
        let env = Supervisor(layout: layout, id: "a-1", ferryBinary: "/bin/true").jobEnvironment(spec, layout.job("a-1"))
        #expect(env[RunEnvironment.jobID] == "a-1")
        #expect(env[RunEnvironment.events] == layout.job("a-1").events)
        #expect(env[RunEnvironment.output] == layout.job("a-1").output)
        #expect(env[RunEnvironment.attempt] == "2")
    }

    /// A job states its needs; a spec written before `needs` existed still resumes a train job
    /// with `--resume auto` and asks for the engine.
    @Test func needsAreDataAndOldSpecsKeepTheirMeaning() throws {
        let old = #"{"attempt":1,"client":"laptop","command":["ferry","train","c.json"],"created_at":1700000000,"directory":".","environment":{},"grace_seconds":30,"id":"m-1","kind":"train","name":"m"}"#
        let spec = try JSONCoding.decoder().decode(JobSpec.self, from: Data(old.utf8))
        #expect(spec.needs == JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]))
        let command = try JSONCoding.decoder().decode(JobSpec.self, from: Data(old.replacingOccurrences(of: #""kind":"train""#, with: #""kind":"command""#).utf8))
        #expect(command.needs == JobNeeds())
        // A new spec round-trips its needs, whatever its kind says.
        let custom = JobSpec(id: "p-1", name: "p", kind: "train", needs: JobNeeds(engine: false, resumeArguments: ["--continue"]), command: ["python", "t.py"],
                             createdAt: Date(timeIntervalSince1970: 1_700_000_000))
        let back = try JSONCoding.decoder().decode(JobSpec.self, from: try JSONCoding.encoder().encode(custom))
        #expect(back == custom)
    }
}
