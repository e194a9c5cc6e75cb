import Foundation

/// What a job is: a working directory (materialised from the manifest) and a command. Written to the
/// host's `jobs/ID/spec.json`, which the supervisor reads.
public struct JobSpec: Codable, Sendable, Equatable {
    /// A `ferry train CONFIG` job, or any command.
    public enum Kind: String, Codable, Sendable { case train, command }

    public var id: String
    public var name: String
    public var kind: Kind
    /// argv. A first word of `ferry` means the host's own ferry binary (the one running the agent).
    public var command: [String]
    /// Extra environment for the command (on top of the host session's); never passed in argv.
    public var environment: [String: String]
    /// The command's directory, relative to `work/` ("." by default).
    public var directory: String
    /// CUDA_VISIBLE_DEVICES for the job, when set (`--gpus 0,1`).
    public var gpus: String?
    /// Seconds between SIGTERM and SIGKILL when cancelled.
    public var graceSeconds: Int
    public var createdAt: Date
    /// Which machine launched it (for `ferry ls` on another laptop).
    public var client: String
    /// How many times it was started (1, then +1 for each `launch --resume`).
    public var attempt: Int


    public init(id: String, name: String, kind: Kind, command: [String], environment: [String: String] = [:],
                directory: String = ".", gpus: String? = nil, graceSeconds: Int = 30, createdAt: Date = Date(),
                client: String? = nil, attempt: Int = 1) {
        self.id = id; self.name = name; self.kind = kind; self.command = command; self.environment = environment
        self.directory = directory; self.gpus = gpus; self.graceSeconds = graceSeconds; self.createdAt = createdAt
        self.client = client ?? POSIX.hostName; self.attempt = attempt
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
    }
}

/// Where a job stands, as `status.json` says (written only by its supervisor, or by the agent when
/// the supervisor vanished).
public enum JobState: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled, lost

    /// Succeeded, failed, cancelled or lost: nothing more will happen without `launch --resume`.
    public var isFinal: Bool { self != .queued && self != .running }
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


    public init(id: String, state: JobState, attempt: Int = 1) {
        self.id = id; self.state = state; self.attempt = attempt; self.cancelRequested = false
    }

    /// A line for people: `running`, `failed (exit 1)`, `cancelled`, `lost (its supervisor vanished)`.
    public var summary: String {
        switch state {
        case .failed:
            if let signal { return "failed (killed by SIG\(signal))" }
            if let exitCode { return exitCode == 75 ? "failed (stopped by a signal on the host, exit 75; resumable)" : "failed (exit \(exitCode))" }
            return "failed" + (message.map { " (\($0))" } ?? "")
        case .lost: return "lost" + (message.map { " (\($0))" } ?? "")
        default: return state.rawValue
        }
    }
}
