import Foundation
import RunContract
import TensorCore

/// How a run draws random numbers (weight initialisation, dropout).
public enum RandomnessMode: Sendable {
    /// Seeds the process-wide generator (`Tensor.manualSeed`) and saves its state in every
    /// checkpoint, so a resumed run is bit-identical to an uninterrupted one. `ferry train` runs
    /// this way: it owns its process.
    case global
    /// The same, on a generator of this run's own (`GlobalRandom.withSeed` around the whole run:
    /// model building, dropout, checkpoints), leaving other users of the process-wide generator
    /// undisturbed — for training inside a program that does other work (and for tests).
    case scoped
}

/// What `ferry train` was asked to do.
public struct TrainRequest {
    /// The config file; optional with `--resume PATH` (the run folder's `config.json` is used).
    public var configFile: String?
    /// A config given in memory instead of a file (named `configName` in messages).
    public var config: JSONValue?
    public var configName = "config.json"
    public var overrides: [ConfigOverride] = []
    public var resume: ResumeRequest?
    public var runID: String?
    /// The engine's device from `ferry train --device cpu|cuda|cuda:N`; nil: the config's n_gpu chooses.
    public var device: Device?
    /// Only check the config (`--check`): nothing is loaded, built or written. Data files missing
    /// here are warnings then (the runner checks on the laptop; the data is on the host).
    public var checkOnly = false
    /// `FERRY_OUTPUT`, `FERRY_EVENTS`, `FERRY_JOB_ID` are read from here.
    public var environment: [String: String] = ProcessInfo.processInfo.environment
    public var commandLine: [String] = CommandLine.arguments
    /// Recorded in run.json (the CLI adds ferry's version).
    public var versions: [String: String] = [:]
    public var registry: ComponentRegistry = .standard
    public var randomness: RandomnessMode = .global
    public var console: ConsoleSink = .standard
    public var stop = StopFlag()
    /// Route SIGTERM/SIGINT to `stop` (the CLI does; in-process callers usually do not).
    public var handleSignals = false

    public init(configFile: String? = nil) { self.configFile = configFile }
}

/// How a run ended.
public enum TrainStatus: String, Sendable {
    case succeeded, failed, stopped
    /// The config or the command line was wrong; nothing ran.
    case invalid
}

/// The result of `TrainingSession.run`.
public struct TrainOutcome: Sendable {
    public var status: TrainStatus
    public var runDirectory: URL?
    public var epochsCompleted = 0
    public var lastRecord: EpochRecord?
    public var error: TrainingError?
    public var config: TrainConfig?

    /// The contract's status: ok, failed, usage (invalid: nothing ran), stopped (resumable).
    public var exit: ExitStatus {
        switch status {
        case .succeeded: return .ok
        case .failed: return .failed
        case .invalid: return .usage
        case .stopped: return .stopped
        }
    }

    /// 0 succeeded, 1 failed, 2 invalid (nothing ran), 75 stopped on request (resumable).
    public var exitCode: Int32 { exit.rawValue }
}

/// `ferry train`: check the config, find the run folder, train, and say how it ended.
public enum TrainingSession {
    public static func run(_ request: TrainRequest) -> TrainOutcome {
        let sink = request.console
        func invalid(_ error: TrainingError) -> TrainOutcome {
            for line in error.description.split(separator: "\n") { sink.err("\(line)\n") }
            return TrainOutcome(status: .invalid, error: error)
        }
        // Which config, which checkpoint.
        var checkpoint: URL?
        let plan: TrainingPlan
        do {
            if case .path(let p)? = request.resume { checkpoint = try RunLocator.checkpoint(at: p) }
            plan = try loadPlan(request, checkpoint: checkpoint)
        } catch let error as TrainingError {
            return invalid(error)
        } catch {
            return invalid(.configUnreadable(file: request.configFile ?? request.configName, reason: "\(error)"))
        }
        let config = plan.config
        for w in config.warnings { sink.err("warning: \(config.file): \(w)\n") }
        if request.checkOnly {
            sink.out(plan.summary + "\n")
            return TrainOutcome(status: .succeeded, config: config)
        }
        let run: RunDirectory
        let resumeFrom: URL?
        do {
            (run, resumeFrom) = try RunLocator.locate(config: config, resume: request.resume, resumeCheckpoint: checkpoint,
                                                      runID: request.runID, environment: request.environment)
        } catch let error as TrainingError {
            return invalid(error)
        } catch {
            return invalid(.io(path: config.trainer.saveDir, reason: "\(error)"))
        }
        if request.handleSignals {
            request.stop.installSignalHandlers { sink.err("\n\($0)\n") }
        }
        func start() -> TrainOutcome {
            let trainer: Trainer
            do {
                trainer = try Trainer(plan: plan, run: run, resumeFrom: resumeFrom, request: request)
            } catch let error as TrainingError {
                return invalid(error)
            } catch {
                return invalid(.checkpoint(path: resumeFrom?.path ?? "", reason: "\(error)"))
            }
            return trainer.execute()
        }
        switch request.randomness {
        case .global:
            return start()
        case .scoped:
            // The trainer seeds (or restores) this scope's generator itself.
            return GlobalRandom.withSeed(0) { start() }
        }
    }

    /// The plan of the config: the file named, else (with `--resume PATH`) the run folder's `config.json`.
    static func loadPlan(_ request: TrainRequest, checkpoint: URL?) throws -> TrainingPlan {
        let requireData = !request.checkOnly
        if let json = request.config {
            return try TrainingPlan.make(json, file: request.configName, overrides: request.overrides, registry: request.registry,
                                         requireData: requireData)
        }
        if let file = request.configFile {
            return try TrainingPlan.load(file: file, overrides: request.overrides, registry: request.registry, requireData: requireData)
        }
        if let checkpoint, let home = RunDirectory.containing(checkpoint: checkpoint) {
            let file = home.appendingPathComponent("config.json").path
            if FileManager.default.fileExists(atPath: file) {
                return try TrainingPlan.load(file: file, overrides: request.overrides, registry: request.registry)
            }
        }
        throw TrainingError.nothingToResume("no config: give a CONFIG file, or --resume a checkpoint inside a run folder (its config.json is used)")
    }
}
