import Foundation
import System

// The contract between a job and the runner that supervises it: the files and numbers through which
// `ferry train` (Training, the writer) and the agent and client (Jobs, the reader) talk. Neither
// imports the other; both import this. No logic here beyond encoding: add a field when the runner
// needs to know more, and readers that do not know it ignore it.

/// The environment the supervisor sets for a job.
public enum RunEnvironment {
    /// The job's id (`mnist-20250101-120000-3f9a`); a trainer names its run after it.
    public static let jobID = "FERRY_JOB_ID"
    /// Where the job writes its events (`events.jsonl`, one `RunEvent` a line).
    public static let events = "FERRY_EVENTS"
    /// Where the job writes its results (run folders, checkpoints); `ferry fetch` brings them home.
    public static let output = "FERRY_OUTPUT"
    /// How many times the job was started (1, then +1 for each `launch --resume`).
    public static let attempt = "FERRY_ATTEMPT"
    /// How many times a scheduler requeued this attempt (Slurm's restarts); 0 or absent on a plain host.
    public static let restartCount = "FERRY_RESTART_COUNT"
    /// A sweep's id and this run's index in it, when the job is one run of a sweep.
    public static let sweepID = "FERRY_SWEEP_ID"
    public static let runIndex = "FERRY_RUN_INDEX"
}

/// Exit statuses, the same for `ferry train`, the job it runs as, and the commands that follow it
/// (`launch`, `logs -f`): a script can act on them without reading output.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    /// Done: the job succeeded.
    case ok = 0
    /// The job (or the command) failed.
    case failed = 1
    /// Bad usage or config: nothing was run.
    case usage = 2
    /// Stopped on request (SIGTERM, cancel, a scheduler's time limit or preemption) with `last/`
    /// written: `launch --resume` continues it.
    case stopped = 75
    /// Interrupted at once (a second Ctrl-C), 128 + SIGINT.
    case interrupted = 130
    /// Its output was closed (`ferry logs ID | head`), 128 + SIGPIPE.
    case brokenPipe = 141
    /// The connection failed (as OpenSSH's `ssh` says it); ssh-like commands otherwise pass the
    /// remote command's own status through.
    case connectionFailed = 255
}

/// How a run ended, in its `end` event.
public enum RunEndStatus: String, Codable, Sendable, CaseIterable {
    case succeeded, failed, stopped, preempted
}

/// One line of `events.jsonl`: `{"event":"start",…}`. Unknown events and fields are ignored by
/// readers, so writers may add both; any program can be a job, so only what identifies an event is
/// required of a line (a step's number, a checkpoint's kind and path, an end's status), the rest
/// is read when present. ferry's trainer writes every field.
public enum RunEvent: Sendable, Equatable {
    case start(Start)
    case step(Step)
    case epoch(Epoch)
    case checkpoint(Checkpoint)
    case end(End)

    public struct Start: Codable, Sendable, Equatable {
        /// Seconds since 1970, to the millisecond.
        public var time: Double?
        public var totalEpochs: Int?
        /// The first epoch this attempt trains (after a resume, the one after the checkpoint's).
        public var startEpoch: Int?
        public var stepsPerEpoch: Int?
        public var runId: String?
        /// The run folder, relative to `FERRY_OUTPUT` (or the save_dir).
        public var runDir: String?
        /// Where the engine trains: `cpu`, `cuda:0`.
        public var device: String?
        public var attempt: Int?
        public var restartCount: Int?
        public var sweepId: String?
        public var runIndex: Int?

        public init(time: Double?, totalEpochs: Int?, startEpoch: Int?, stepsPerEpoch: Int?, runId: String?, runDir: String?,
                    device: String? = nil, attempt: Int? = nil, restartCount: Int? = nil, sweepId: String? = nil, runIndex: Int? = nil) {
            self.time = time; self.totalEpochs = totalEpochs; self.startEpoch = startEpoch; self.stepsPerEpoch = stepsPerEpoch
            self.runId = runId; self.runDir = runDir; self.device = device; self.attempt = attempt; self.restartCount = restartCount
            self.sweepId = sweepId; self.runIndex = runIndex
        }
    }

    public struct Step: Codable, Sendable, Equatable {
        public var time: Double?
        public var epoch: Int?
        /// The global step (batches since the run began).
        public var step: Int
        /// nil when the loss was not a finite number.
        public var loss: Double?
        public var lr: Double?
        public var samplesPerS: Double?

        public init(time: Double?, epoch: Int?, step: Int, loss: Double?, lr: Double? = nil, samplesPerS: Double? = nil) {
            self.time = time; self.epoch = epoch; self.step = step; self.loss = loss; self.lr = lr; self.samplesPerS = samplesPerS
        }
    }

    public struct Epoch: Codable, Sendable, Equatable {
        public var time: Double?
        public var epoch: Int
        /// Finite metrics only (`loss`, `val_accuracy`, `lr`, …).
        public var metrics: [String: Double]?
        /// The metric the trainer watches (`min val_loss`) and its best value so far.
        public var monitor: String?
        public var best: Double?

        public init(time: Double?, epoch: Int, metrics: [String: Double]?, monitor: String? = nil, best: Double? = nil) {
            self.time = time; self.epoch = epoch; self.metrics = metrics; self.monitor = monitor; self.best = best
        }
    }

    /// The metric a trainer watches, as `Epoch.monitor` writes it: `min val_loss`, `max val_accuracy`.
    /// The trainer's config (`trainer.monitor`) and the readers of its events (`ferry status SWEEP`)
    /// share this form and its rule for what counts as better.
    public struct Monitored: Sendable, Equatable, CustomStringConvertible {
        public var lowerIsBetter: Bool
        public var metric: String

        public init(lowerIsBetter: Bool, metric: String) { self.lowerIsBetter = lowerIsBetter; self.metric = metric }

        /// `min NAME` or `max NAME`; nil for anything else (`off` included).
        public init?(_ text: String) {
            let words = text.split(separator: " ")
            guard words.count == 2, words[0] == "min" || words[0] == "max", !words[1].isEmpty else { return nil }
            self.init(lowerIsBetter: words[0] == "min", metric: String(words[1]))
        }

        /// Whether `value` is at least as good as `best` (pytorch-template counts ties as
        /// improvements); NaN never is.
        public func improves(_ value: Double, on best: Double) -> Bool {
            guard !value.isNaN else { return false }
            return lowerIsBetter ? value <= best : value >= best
        }

        public var description: String { (lowerIsBetter ? "min " : "max ") + metric }
    }

    public struct Checkpoint: Codable, Sendable, Equatable {
        public var time: Double?
        /// `best`, `last` or `epoch`.
        public var kind: String
        /// The checkpoint folder, relative to `FERRY_OUTPUT`.
        public var path: String
        public var epoch: Int?

        public init(time: Double?, kind: String, path: String, epoch: Int?) {
            self.time = time; self.kind = kind; self.path = path; self.epoch = epoch
        }
    }

    public struct End: Codable, Sendable, Equatable {
        public var time: Double?
        public var status: RunEndStatus
        public var epoch: Int?
        public var message: String?

        public init(time: Double?, status: RunEndStatus, epoch: Int?, message: String? = nil) {
            self.time = time; self.status = status; self.epoch = epoch; self.message = message
        }
    }

    /// The event's name on the wire.
    public var name: String {
        switch self {
        case .start: return "start"
        case .step: return "step"
        case .epoch: return "epoch"
        case .checkpoint: return "checkpoint"
        case .end: return "end"
        }
    }

    /// Now, as events write it (seconds since 1970, to the millisecond).
    public static var now: Double { (Date().timeIntervalSince1970 * 1000).rounded() / 1000 }

    /// The event as one line of JSON, without the newline.
    public func line() -> String {
        // Encoding these plain structs cannot fail (every Double in them is finite or nil).
        (try? JSONCoding.string(self, pretty: false)) ?? #"{"event":"\#(name)"}"#
    }

    /// Reads one line; nil for an event this ferry does not know, or a line that is not an event
    /// (a torn last line, another program's output).
    public static func parse(_ line: some DataProtocol, decoder: JSONDecoder = JSONCoding.decoder()) -> RunEvent? {
        try? decoder.decode(RunEvent.self, from: Data(line))
    }
}

extension RunEvent: Codable {
    private enum Key: String, CodingKey { case event }

    public init(from decoder: Decoder) throws {
        let name = try decoder.container(keyedBy: Key.self).decode(String.self, forKey: .event)
        switch name {
        case "start": self = .start(try Start(from: decoder))
        case "step": self = .step(try Step(from: decoder))
        case "epoch": self = .epoch(try Epoch(from: decoder))
        case "checkpoint": self = .checkpoint(try Checkpoint(from: decoder))
        case "end": self = .end(try End(from: decoder))
        default:
            throw DecodingError.dataCorrupted(.init(codingPath: [Key.event], debugDescription: "unknown event \(name.debugDescription)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(name, forKey: .event)
        switch self {
        case .start(let e): try e.encode(to: encoder)
        case .step(let e): try e.encode(to: encoder)
        case .epoch(let e): try e.encode(to: encoder)
        case .checkpoint(let e): try e.encode(to: encoder)
        case .end(let e): try e.encode(to: encoder)
        }
    }
}

/// An error that says how the command it ends exits: the one way every module's error becomes an
/// exit status (`ferry`'s main prints the message and exits with it).
public protocol ExitStatusError: Error, CustomStringConvertible {
    var exitStatus: ExitStatus { get }
}
