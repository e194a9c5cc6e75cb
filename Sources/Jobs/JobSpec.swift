import Foundation
import RunContract

/// What a job is: a working directory (materialised from the manifest) and a command. Written to the
/// host's `jobs/ID/spec.json`, which the supervisor reads.
public struct JobSpec: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// What the CLI calls it (`train`, `command`): a label for people; Jobs never branches on it.
    public var kind: String
    /// What the job needs from its host and how it continues, chosen by the CLI.
    public var needs: JobNeeds
    /// argv. A first word of `ferry` means the host's own ferry binary (the one running the agent).
    public var command: [String]
    /// Extra environment for the command (on top of the host session's); never passed in argv.
    public var environment: [String: String]
    /// The command's directory, relative to `work/` ("." by default).
    public var directory: String
    /// `--gpus`: a count (`2`, the host picks) or a list with a comma (`0,1`, as CUDA_VISIBLE_DEVICES).
    public var gpus: String?
    /// Seconds between SIGTERM and SIGKILL when cancelled.
    public var graceSeconds: Int
    public var createdAt: Date
    /// Which machine launched it (for `ferry ls` on another laptop).
    public var client: String
    /// How many times it was started (1, then +1 for each `launch --resume`).
    public var attempt: Int
    /// Set when the host is a Slurm cluster: the job is submitted with sbatch, not run by a supervisor.
    public var slurm: SlurmJob?
    /// `--time` on a plain host: the supervisor sends SIGTERM after this many seconds of running
    /// (then SIGKILL after the grace) and the job ends as `timeout`. On Slurm, `slurm.time` says it.
    public var timeLimitSeconds: Int?

    public init(id: String, name: String, kind: String, needs: JobNeeds = JobNeeds(), command: [String], environment: [String: String] = [:],
                directory: String = ".", gpus: String? = nil, graceSeconds: Int = 30, createdAt: Date = Date(),
                client: String? = nil, attempt: Int = 1) {
        self.id = id; self.name = name; self.kind = kind; self.needs = needs; self.command = command; self.environment = environment
        self.directory = directory; self.gpus = gpus; self.graceSeconds = graceSeconds; self.createdAt = createdAt
        self.client = client ?? POSIX.hostName; self.attempt = attempt
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, kind, needs, command, environment, directory, gpus, graceSeconds, createdAt, client, attempt, slurm, timeLimitSeconds
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decode(String.self, forKey: .kind)
        // A spec written before jobs stated their needs: a `train` job was ferry's trainer, which
        // needs the engine and resumes with `--resume auto`.
        needs = try c.decodeIfPresent(JobNeeds.self, forKey: .needs) ?? (kind == JobNeeds.legacyTrainKind ? .legacyTrain : JobNeeds())
        command = try c.decode([String].self, forKey: .command)
        environment = try c.decode([String: String].self, forKey: .environment)
        directory = try c.decode(String.self, forKey: .directory)
        gpus = try c.decodeIfPresent(String.self, forKey: .gpus)
        graceSeconds = try c.decode(Int.self, forKey: .graceSeconds)
        createdAt = try c.decode(Date.self, forKey: .createdAt)
        client = try c.decode(String.self, forKey: .client)
        attempt = try c.decode(Int.self, forKey: .attempt)
        slurm = try c.decodeIfPresent(SlurmJob.self, forKey: .slurm)
        timeLimitSeconds = try c.decodeIfPresent(Int.self, forKey: .timeLimitSeconds)
    }

    /// The spec with every environment value replaced by `********`, for output (`status --json`):
    /// a job's environment often carries tokens; the names say enough.
    public var maskingEnvironment: JobSpec {
        var masked = self
        masked.environment = environment.mapValues { _ in "********" }
        return masked
    }

    /// Checks what a hostile or broken client could send.
    public func validate() throws {
        try Names.validateJobID(id)
        try Names.validateJobName(name)
        guard let first = command.first, !first.isEmpty else { throw JobsError.emptyCommand }
        if directory != "." { try Names.validateRelativePath(directory) }
        for key in environment.keys {
            let ok = key.utf8.allSatisfy { $0 == 95 || ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }
            guard ok, let first = key.utf8.first, !(first >= 48 && first <= 57) else {
                throw JobsError.unsafePath(path: key, reason: "not an environment variable name (letters, digits and _)")
            }
        }
        for (k, v) in environment where v.utf8.contains(0) {
            throw JobsError.unsafePath(path: k, reason: "its value contains a NUL byte")
        }
        for arg in command where arg.utf8.contains(0) {
            throw JobsError.unsafePath(path: arg, reason: "a command argument contains a NUL byte")
        }
        guard (0...3600).contains(graceSeconds) else { throw JobsError.unsafePath(path: "grace", reason: "grace must be 0 to 3600 seconds") }
        if let gpus, GPURequest(parsing: gpus) == nil {
            throw JobsError.unsafePath(path: gpus, reason: "--gpus takes a count (2) or GPU indices with a comma (0,1)")
        }
        for arg in needs.resumeArguments where arg.utf8.contains(0) {
            throw JobsError.unsafePath(path: arg, reason: "a resume argument contains a NUL byte")
        }
        if let limit = timeLimitSeconds, limit < 1 { throw JobsError.unsafePath(path: "--time", reason: "a time limit is 1 second or more") }
        if let slurm {
            try slurm.validate()
            if let gpus, case .list? = GPURequest(parsing: gpus) {
                throw JobsError.slurmOptionRefused(option: "--gpus \(gpus)", reason: "on Slurm the scheduler picks the GPUs: give a count (--gpus 2)")
            }
        }
    }
}

/// What a job needs from its host, and how it continues after a stop: data chosen by the CLI, so
/// the runner starts any program the same way.
public struct JobNeeds: Codable, Sendable, Equatable {
    /// Whether the job runs ferry's engine: oneDNN (and the libraries it needs) must load on the host.
    public var engine: Bool
    /// Appended to the command when the job is launched again (`ferry train`'s `--resume auto`),
    /// unless the command already holds them.
    public var resumeArguments: [String]

    public init(engine: Bool = false, resumeArguments: [String] = []) {
        self.engine = engine; self.resumeArguments = resumeArguments
    }

    /// How specs and registry records written before `needs` existed spelled a training job.
    static let legacyTrainKind = "train"
    static let legacyTrain = JobNeeds(engine: true, resumeArguments: ["--resume", "auto"])
}

/// Where a job stands, as `status.json` says (written only by its supervisor, or by the agent when
/// the supervisor vanished).
public enum JobState: String, Codable, Sendable, CaseIterable {
    /// Written by the agent, not yet claimed by a supervisor.
    case queued
    /// Waiting for a scheduler (Slurm) to start it; the status says why and when it expects to.
    case pending
    case running
    case succeeded, failed, cancelled
    /// Its supervisor vanished (killed, the host rebooted).
    case lost
    /// A scheduler ended it: out of time, out of memory, its node failed, or preempted.
    case timeout
    case outOfMemory = "out_of_memory"
    case nodeFailed = "node_failed"
    case preempted

    /// Over: nothing more will happen without `launch --resume`.
    public var isFinal: Bool { self != .queued && self != .pending && self != .running }
}

public struct JobStatus: Codable, Sendable, Equatable {
    public var id: String
    public var state: JobState
    /// The supervisor's pid and start time (clock ticks since boot) and the boot it ran in.
    public var supervisorPid: Int32?
    public var supervisorStart: UInt64?
    public var bootId: String?
    /// The command's pid (also its process group).
    public var pid: Int32?
    public var startedAt: Date?
    public var endedAt: Date?
    public var exitCode: Int32?
    public var signal: String?
    public var message: String?
    public var attempt: Int
    /// Whether a cancel was asked for.
    public var cancelRequested: Bool
    /// Why a pending job waits (a scheduler's reason: `Resources`, `Priority`) and when it expects to start.
    public var pendingReason: String?
    public var expectedStart: Date?
    /// A scheduler's job id (Slurm's), the nodes it runs on, and how often the scheduler requeued it.
    public var schedulerJobId: String?
    public var nodes: String?
    public var restarts: Int?

    public init(id: String, state: JobState, attempt: Int = 1) {
        self.id = id; self.state = state; self.attempt = attempt; self.cancelRequested = false
    }

    /// A line for people: `running`, `failed (exit 1)`, `cancelled`, `lost (its supervisor vanished)`.
    public var summary: String {
        switch state {
        case .failed:
            if let signal { return "failed (killed by SIG\(signal))" }
            if let exitCode { return exitCode == ExitStatus.stopped.rawValue ? "failed (stopped by a signal on the host, exit 75; resumable)" : "failed (exit \(exitCode))" }
            return "failed" + (message.map { " (\($0))" } ?? "")
        case .lost: return "lost" + (message.map { " (\($0))" } ?? "")
        case .pending:
            var detail: [String] = []
            if let pendingReason { detail.append(pendingReason) }
            if let expectedStart { detail.append("expected to start \(ISO8601DateFormatter().string(from: expectedStart))") }
            return "pending" + (detail.isEmpty ? "" : " (\(detail.joined(separator: ", ")))")
        case .outOfMemory: return "out of memory" + (message.map { " (\($0))" } ?? "")
        case .nodeFailed: return "node failed" + (message.map { " (\($0))" } ?? "")
        case .timeout: return "timeout (out of time; resumable)"
        case .preempted: return "preempted (resumable)"
        case .running:
            var text = "running"
            if let nodes, !nodes.isEmpty { text += " on \(nodes)" }
            if let restarts, restarts > 0 { text += " (restart \(restarts))" }
            return text
        default: return state.rawValue
        }
    }
}

/// `--gpus` as a job states it: a count (`2`: the host's supervisor picks that many of its least
/// busy GPUs; on Slurm, `--gres=gpu:2`) or an explicit list with a comma (`0,1`, `3,`: exactly
/// those, as CUDA_VISIBLE_DEVICES).
public enum GPURequest: Equatable, Sendable {
    case count(Int)
    case list(String)

    /// nil for text that is neither (the spec's validation says so).
    public init?(parsing text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.contains(",") {
            let items = trimmed.split(separator: ",", omittingEmptySubsequences: true)
            guard !items.isEmpty, items.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isNumber } }) else { return nil }
            self = .list(items.joined(separator: ","))
        } else if let n = Int(trimmed), (0...64).contains(n) {
            self = .count(n)
        } else {
            return nil
        }
    }

    /// The `wanted` least busy GPUs (least memory used, then lowest utilisation, then index) as a
    /// CUDA_VISIBLE_DEVICES list; nil when the host has fewer. Zero GPUs: "" (none visible).
    public static func pick(_ wanted: Int, from gpus: [GPUInfo]) -> String? {
        guard wanted <= gpus.count else { return nil }
        let order = gpus.sorted {
            ($0.memoryUsedMib ?? 0, $0.utilizationPercent ?? 0, $0.index) < ($1.memoryUsedMib ?? 0, $1.utilizationPercent ?? 0, $1.index)
        }
        return order.prefix(wanted).map { String($0.index) }.sorted { Int($0)! < Int($1)! }.joined(separator: ",")
    }
}
