import Foundation

/// A host that is a Slurm cluster's login node: jobs are submitted with `sbatch` there (through the
/// same agent), not run beside it. Stored in the host's record (`ferry hosts add … --slurm`).
public struct SlurmHost: Codable, Sendable, Equatable {
    public var partition: String?
    public var account: String?
    /// Shell lines run at the start of every job, before the payload (`module load cuda`).
    public var setup: [String]
    /// Further sbatch arguments for every job (`--qos=high`, `--mem=64G`); never one ferry owns.
    public var sbatchArguments: [String]

    public init(partition: String? = nil, account: String? = nil, setup: [String] = [], sbatchArguments: [String] = []) {
        self.partition = partition; self.account = account; self.setup = setup; self.sbatchArguments = sbatchArguments
    }

    /// The sbatch options ferry sets itself, and why a user's copy would break what it promises.
    public static let ownedOptions: [(names: [String], reason: String)] = [
        (["--output", "-o", "--error", "-e"], "ferry sends the job's output into its log (output.log), which `ferry logs` follows"),
        (["--open-mode"], "ferry appends to the log across restarts (--open-mode=append), so no line is lost"),
        (["--signal"], "ferry asks for USR2 before the time limit (--signal=B:USR2@…) to stop with last/ written"),
        (["--requeue", "--no-requeue"], "ferry requeues a job itself, only when it stopped with progress (see --max-restarts)"),
        (["--array", "-a"], "ferry makes job arrays for sweeps (--sweep)"),
        (["--parsable", "--wrap"], "ferry submits its own batch script and reads the job id"),
        (["--chdir", "-D"], "ferry runs the job in its own folder on the cluster"),
    ]

    /// Refuses an argument ferry owns, saying why.
    public static func validate(sbatchArgument argument: String) throws {
        let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
        for owned in ownedOptions {
            let clash = owned.names.contains { option in
                option.hasPrefix("--") ? name == option : (argument == option || (argument.hasPrefix(option) && argument.count > 2))
            }
            if clash {
                throw JobsError.slurmOptionRefused(option: argument, reason: owned.reason)
            }
        }
        guard argument.hasPrefix("-") else {
            throw JobsError.slurmOptionRefused(option: argument, reason: "an sbatch argument is an option (--qos=high, --mem=64G), written as one word")
        }
        if argument.utf8.contains(0) || argument.contains("\n") {
            throw JobsError.slurmOptionRefused(option: argument, reason: "it contains a newline or NUL byte")
        }
    }
}

/// What a job asks of Slurm (written into its spec): the host's defaults merged with `ferry launch`'s.
public struct SlurmJob: Codable, Sendable, Equatable {
    public var partition: String?
    public var account: String?
    public var setup: [String]
    public var sbatchArguments: [String]
    public var nodes: Int?
    /// `--time` as Slurm takes it (`30`, `2:00:00`, `1-12`).
    public var time: String?
    /// How often the batch script requeues itself after a stop with progress (preemption, time limit).
    public var maxRestarts: Int
    /// Whether a command job (not ferry train) is requeued too; train jobs always may be.
    public var requeue: Bool
    /// A run of a sweep: its runs are one job array, submitted with the last run's start.
    public var array: SlurmArrayMember?

    public init(partition: String? = nil, account: String? = nil, setup: [String] = [], sbatchArguments: [String] = [],
                nodes: Int? = nil, time: String? = nil, maxRestarts: Int = 3, requeue: Bool = false) {
        self.partition = partition; self.account = account; self.setup = setup; self.sbatchArguments = sbatchArguments
        self.nodes = nodes; self.time = time; self.maxRestarts = maxRestarts; self.requeue = requeue
    }

    /// The host's defaults, with what this launch says taking precedence.
    public init(host: SlurmHost, partition: String?, nodes: Int?, time: String?, maxRestarts: Int?, requeue: Bool) {
        self.init(partition: partition ?? host.partition, account: host.account, setup: host.setup,
                  sbatchArguments: host.sbatchArguments, nodes: nodes, time: time, maxRestarts: maxRestarts ?? 3, requeue: requeue)
    }

    public func validate() throws {
        for argument in sbatchArguments { try SlurmHost.validate(sbatchArgument: argument) }
        if let time, SlurmJob.seconds(ofTime: time) == nil {
            throw JobsError.slurmOptionRefused(option: "--time \(time)", reason: "Slurm's time is MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
        }
        if let nodes, !(1...10_000).contains(nodes) { throw JobsError.slurmOptionRefused(option: "--nodes \(nodes)", reason: "1 or more") }
        guard (0...100).contains(maxRestarts) else { throw JobsError.slurmOptionRefused(option: "--max-restarts \(maxRestarts)", reason: "0 to 100") }
        for name in [partition, account].compactMap({ $0 }) {
            let ok = !name.isEmpty && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-,".unicodeScalars.contains($0) }
            if !ok { throw JobsError.slurmOptionRefused(option: name, reason: "a partition or account is letters, digits, . _ - and commas") }
        }
        for line in setup where line.utf8.contains(0) || line.contains("\n") {
            throw JobsError.slurmOptionRefused(option: line, reason: "a setup line is one line")
        }
    }

    /// Seconds in a Slurm time (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`); nil when malformed.
    public static func seconds(ofTime text: String) -> Int? {
        var days = 0
        var rest = Substring(text)
        if let dash = rest.firstIndex(of: "-") {
            guard let d = Int(rest[..<dash]), d >= 0 else { return nil }
            days = d
            rest = rest[rest.index(after: dash)...]
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
            guard (1...3).contains(parts.count), parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
            let p = parts.map { $0! }
            let h = p[0], m = p.count > 1 ? p[1] : 0, s = p.count > 2 ? p[2] : 0
            return days * 86400 + h * 3600 + m * 60 + s
        }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard (1...3).contains(parts.count), parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
        let p = parts.map { $0! }
        switch p.count {
        case 1: return p[0] * 60
        case 2: return p[0] * 60 + p[1]
        default: return p[0] * 3600 + p[1] * 60 + p[2]
        }
    }

    /// Seconds before the time limit at which the batch script gets USR2: min(120, time/4).
    public var warningSeconds: Int {
        guard let time, let total = SlurmJob.seconds(ofTime: time) else { return 120 }
        return max(1, min(120, total / 4))
    }
}

/// What `ferry launch` asks of a Slurm host: `--partition`, `--nodes`, `--time`, `--max-restarts`, `--requeue`.
public struct SlurmRequest: Sendable, Equatable {
    public var partition: String?
    public var nodes: Int?
    public var time: String?
    public var maxRestarts: Int?
    public var requeue: Bool
    /// Set by `ferry launch --sweep` for each run: on Slurm the runs are one job array.
    public var array: SlurmArrayMember?

    public init(partition: String? = nil, nodes: Int? = nil, time: String? = nil, maxRestarts: Int? = nil, requeue: Bool = false,
                array: SlurmArrayMember? = nil) {
        self.partition = partition; self.nodes = nodes; self.time = time; self.maxRestarts = maxRestarts; self.requeue = requeue
        self.array = array
    }


    /// The job's Slurm options on a Slurm host; nil on a plain host, which refuses Slurm's options.
    func job(for host: HostRecord) throws -> SlurmJob? {
        guard let slurm = host.slurm else {
            // --time alone is for any host (a plain host's supervisor enforces it).
            let given = [partition.map { _ in "--partition" }, nodes.map { _ in "--nodes" },
                         maxRestarts.map { _ in "--max-restarts" }, requeue ? "--requeue" : nil].compactMap { $0 }
            if let first = given.first {
                throw JobsError.slurmOptionRefused(option: first, reason: "\(host.name) is not a Slurm host (add one with `ferry hosts add NAME user@login --slurm`); \(given.joined(separator: ", ")) only mean something to Slurm")
            }
            return nil
        }
        var job = SlurmJob(host: slurm, partition: partition, nodes: nodes, time: time, maxRestarts: maxRestarts, requeue: requeue)
        job.array = array
        return job
    }
}

/// A sweep's run on Slurm: index `index` of `count` in one job array (`--array=0-N-1%K`).
public struct SlurmArrayMember: Codable, Sendable, Equatable {
    public var sweepId: String
    public var index: Int
    public var count: Int
    /// `--max-parallel`: at most this many runs at once (`%K`).
    public var maxParallel: Int?
    public init(sweepID: String, index: Int, count: Int, maxParallel: Int?) {
        self.sweepId = sweepID; self.index = index; self.count = count; self.maxParallel = maxParallel
    }
    /// The job id of run `index` of this sweep.
    public func runID(_ index: Int) -> String { "\(sweepId)-\(index)" }
}
