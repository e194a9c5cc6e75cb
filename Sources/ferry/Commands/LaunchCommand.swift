import ArgumentParser
import Foundation
import Training
import Jobs

/// `ferry launch [--host H] CONFIG | -- cmd...`: package, send, start, follow.
struct LaunchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Start a training job (or any command) on a host and follow its log.",
        discussion: """
        With CONFIG, the job is `ferry train CONFIG` (the config is checked here first, with \
        `ferry train --check`, before anything is sent). After `--`, any command is a job: \
        `ferry launch --host gpu1 -- python train.py --epochs 3`.
        The working directory (the current one, or --workdir) is sent, minus what .ferryignore \
        excludes (gitignore syntax; .git/, saved/, .build/, ferry-runs/ are out by default). \
        Files the host already has are not sent again.
        Ctrl-C stops following, not the job: re-attach with `ferry logs -f ID`.
        Exit status when following: 0 the job succeeded, 75 it was cancelled, 1 it failed; \
        2 bad input (nothing was started).
        """)

    @Option(name: .long, help: "The host: a name from `ferry hosts ls`, or local (this machine).")
    var host: String = "local"

    @Option(name: .long, help: "The job's name (letters, digits, . _ -); default from the config or command.")
    var name: String?

    @Option(name: .long, help: "The folder to send (default: the current one).")
    var workdir: String?

    @Option(name: .customLong("env"), help: ArgumentHelp(
        "An environment variable for the job (repeatable): NAME takes its value from this shell, as `docker run -e NAME` does — use it for tokens, which NAME=VALUE would leave in your shell history and process list.",
        valueName: "NAME|NAME=VALUE"))
    var environment: [String] = []

    @Option(name: .long, help: "GPUs for the job: a count (--gpus 2: the host picks its 2 least busy GPUs) or indices with a comma (--gpus 0,1 or --gpus 3,: exactly those, as CUDA_VISIBLE_DEVICES).")
    var gpus: String?

    @Option(name: .long, help: "Seconds between SIGTERM and SIGKILL when the job is cancelled.")
    var grace: Int = 30

    @Option(name: .long, help: "Disk the job will write on the host, e.g. 20G (checked before anything is sent).")
    var disk: String?

    @Option(name: .long, help: "The job's time limit (30 minutes, 2:00:00, 1-12 as Slurm writes it). On a plain host: SIGTERM at the limit, SIGKILL after --grace; it ends as timeout. On Slurm: USR2 min(2 min, time/4) before the limit; a job that stops with progress is requeued.")
    var time: String?

    @Option(name: .long, help: "On Slurm: nodes for a command that brings its own launcher (srun, torchrun).")
    var nodes: Int?

    @Option(name: .long, help: "On Slurm: the partition (default: the host's).")
    var partition: String?

    @Option(name: .customLong("max-restarts"), help: "On Slurm: how often a job stopped with progress (preemption, time limit) is requeued (default 3).")
    var maxRestarts: Int?

    @Flag(name: .long, help: "On Slurm: requeue a command job too when it stops with status 75 after USR2 (train jobs always are).")
    var requeue = false

    @Option(name: .long, help: ArgumentHelp("A sweep axis (repeatable): KEY=a,b or KEY=[a,b] (a JSON array), e.g. --sweep 'optimizer.args.lr=1e-3,3e-4'. Every combination is one run (`ferry train CONFIG --set KEY=VALUE …`), all started at once, detached; `ferry status SWEEP` tables them.", valueName: "KEY=VALUES"))
    var sweep: [String] = []

    @Option(name: .customLong("max-parallel"), help: "With --sweep on Slurm: at most this many runs at once (the job array's %K).")
    var maxParallel: Int?

    @Option(name: .long, help: "Start a stopped job again in its own folder (a train job continues from its last checkpoint).")
    var resume: String?

    @Flag(name: [.customShort("v"), .long], help: "Say how the files travel and how long each step took.")
    var verbose = false

    @Flag(name: [.customShort("d"), .long], help: "Return once the job has started; do not follow its log (SkyPilot's -d).")
    var detach = false

    @Flag(name: .long, help: "Print one JSON object (id, host, uploaded_bytes, reused_bytes) once started; implies --detach.")
    var json = false

    @Argument(help: "A pytorch-template config.json: the job is `ferry train CONFIG`.")
    var config: String?

    @Argument(parsing: .postTerminator, help: "A command to run instead (after --).")
    var command: [String] = []

    func validate() throws {
        if resume != nil && (config != nil || !command.isEmpty) {
            throw ValidationError("--resume JOBID takes no config or command: the job runs again as it was launched")
        }
        if resume == nil && config == nil && command.isEmpty {
            throw ValidationError("give a config (`ferry launch config.json`) or a command after -- (`ferry launch -- python train.py`)")
        }
        if config != nil && !command.isEmpty {
            throw ValidationError("give either a config or a command after --, not both")
        }
        if !(0...3600).contains(grace) { throw ValidationError("--grace takes 0 to 3600 seconds") }
        if let gpus, GPURequest(parsing: gpus) == nil {
            throw ValidationError("--gpus \(gpus): give a count (--gpus 2: the host picks) or GPU indices with a comma (--gpus 0,1; one GPU: --gpus 3,)")
        }
        if let disk, LaunchCommand.parseSize(disk) == nil { throw ValidationError("--disk \(disk): write a size like 500M or 20G") }
        if let maxParallel, sweep.isEmpty || maxParallel < 1 { throw ValidationError("--max-parallel \(maxParallel): a count of 1 or more, with --sweep") }
        if !sweep.isEmpty && config == nil { throw ValidationError("--sweep varies a config: give one (`ferry launch --sweep 'optimizer.args.lr=1e-3,3e-4' config.json`)") }
        for axis in sweep {
            do { _ = try Sweep.axis(parsing: axis) } catch { throw ValidationError("--sweep \(axis): \(error)") }
        }
        if let time, SlurmJob.seconds(ofTime: time) == nil { throw ValidationError("--time \(time): write Slurm's MM, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS") }
        if let nodes, nodes < 1 { throw ValidationError("--nodes takes 1 or more") }
        if let maxRestarts, !(0...100).contains(maxRestarts) { throw ValidationError("--max-restarts takes 0 to 100") }
        for pair in environment {
            let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 == 95 || ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }),
                  !(name.utf8.first.map { $0 >= 48 && $0 <= 57 } ?? true) else {
                throw ValidationError("--env \(pair.prefix(40)): not NAME or NAME=VALUE (a name is letters, digits and _)")
            }
            if !pair.contains("="), ProcessInfo.processInfo.environment[String(name)] == nil {
                throw ValidationError("--env \(name): \(name) is not set in this shell — export it first, or write \(name)=VALUE")
            }
        }
    }

    func run() async throws {
        try await JobsCLI.run {
            let context = JobsCLI.context(verbose: verbose)
            let client: AgentSession
            let id: String
            if let resume {
                let (info, c) = try await Launcher(context: context).resume(resume)
                client = c; id = info.spec.id
                JobsCLI.say("resumed \(id) on \(c.host) (attempt \(info.spec.attempt))")
                if json { try JobsCLI.printJSON(["id": id, "host": c.host]); await client.close(); return }
            } else if !sweep.isEmpty {
                try await launchSweep(context: context)
                return
            } else {
                var made = try makeRequest()
                made.slurm = SlurmRequest(partition: partition, nodes: nodes, time: time, maxRestarts: maxRestarts, requeue: requeue)
                let request = made
                if let time, let seconds = SlurmJob.seconds(ofTime: time), seconds < 300,
                   (try? context.registry.host(request.host))?.slurm != nil {
                    JobsCLI.say("ferry: warning: --time \(time) is under 5 minutes: Slurm's warning signal may come up to a minute early, leaving little time to train")
                }
                let (result, c) = try await Launcher(context: context).launch(request) { event in
                    switch event {
                    case .recordedHost(let name, let target):
                        JobsCLI.say("remembering \(target) as host \(name) (`ferry hosts` lists it; `ferry hosts forget \(name)` drops it)")
                    case .packaged(let files, let bytes, let skipped):
                        if !json { JobsCLI.say("packaged \(files) files, \(ByteCount.format(bytes))") }
                        for s in skipped { JobsCLI.say("  left out: \(s)") }
                    case .connected(let host, let agent):
                        if !json { JobsCLI.say("\(host): agent \(agent)") }
                    case .preflight(let report):
                        if !json { JobsCLI.say(LaunchCommand.describe(report, host: request.host)) }
                        if report.sbatch != nil, request.host != HostRecord.localName, (try? context.registry.host(request.host))?.slurm == nil {
                            JobsCLI.say("ferry: \(request.host) has Slurm's sbatch: this job runs on it directly; to submit jobs to Slurm instead, add it with `ferry hosts add NAME TARGET --slurm`")
                        }
                    case .uploading(let done, let total):
                        Progress.shared.update("uploading", done: done, total: total)
                    case .started:
                        Progress.shared.clear()
                    }
                }
                client = c; id = result.id
                if json {
                    try JobsCLI.printJSON(result)
                    await client.close()
                    return
                }
                JobsCLI.say("started \(id) on \(result.host) (sent \(ByteCount.format(result.uploadedBytes)), reused \(ByteCount.format(result.reusedBytes)))")
            }
            if detach {
                JobsCLI.say("follow it with: ferry logs -f \(id)")
                await client.close()
                return
            }
            JobsCLI.say("following its log — Ctrl-C detaches (the job keeps running)")
            try await LogsCommand.follow(id: id, host: try context.registry.host(client.host), context: context, from: 0, first: client)
        }
    }

    /// Every run of the grid as its own job, started at once and detached: ids `SWEEP-0`, `SWEEP-1`, …,
    /// each with FERRY_SWEEP_ID and FERRY_RUN_INDEX.
    func launchSweep(context: JobsContext) async throws {
        let runs = try Sweep.grid(try sweep.map(Sweep.axis(parsing:)))
        var base = try makeRequest()
        base.slurm = SlurmRequest(partition: partition, nodes: nodes, time: time, maxRestarts: maxRestarts, requeue: requeue)
        base.follow = false
        let sweepID = Sweep.newID(name: base.job.name)
        try Names.validateJobID(sweepID + "-\(runs.count - 1)")
        JobsCLI.say("sweep \(sweepID): \(runs.count) runs on \(host)")
        var started: [[String: String]] = []
        // One connection for every run: one authentication for the whole sweep.
        var client: AgentSession?
        do {
            for (index, overrides) in runs.enumerated() {
                var request = base
                request.job.id = "\(sweepID)-\(index)"
                request.job.command += overrides.flatMap { ["--set", $0] }
                request.job.environment["FERRY_SWEEP_ID"] = sweepID
                request.job.environment["FERRY_RUN_INDEX"] = String(index)
                request.slurm.array = SlurmArrayMember(sweepID: sweepID, index: index, count: runs.count, maxParallel: maxParallel)
                let (result, session) = if let open = client {
                    try await Launcher(context: context).launch(request, over: open)
                } else {
                    try await Launcher(context: context).launch(request)
                }
                client = session
                started.append(["id": result.id, "overrides": overrides.joined(separator: " ")])
                if !json { JobsCLI.say("  \(result.id)  \(overrides.joined(separator: " "))") }
            }
        } catch {
            await client?.close()
            throw error
        }
        await client?.close()
        if json { try JobsCLI.printJSON(["sweep": sweepID, "host": host, "runs": String(runs.count)]) }
        JobsCLI.say("follow them with: ferry status \(sweepID)")
    }

    func makeRequest() throws -> LaunchRequest {
        let cwd = FileManager.default.currentDirectoryPath
        let root = URL(fileURLWithPath: workdir ?? cwd, relativeTo: URL(fileURLWithPath: cwd)).standardizedFileURL.path
        var env: [String: String] = [:]
        for pair in environment {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            // NAME alone: the value comes from this shell (checked in validate), never from argv.
            env[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ProcessInfo.processInfo.environment[String(parts[0])] ?? ""
        }
        if let config {
            let full = URL(fileURLWithPath: config, relativeTo: URL(fileURLWithPath: cwd)).standardizedFileURL.path
            guard FileManager.default.fileExists(atPath: full) else { throw JobsError.noSuchFile(config) }
            guard full.hasPrefix(root + "/") else { throw JobsError.configOutsideWorkingDirectory(config: config, directory: root) }
            let relative = String(full.dropFirst(root.count + 1))
            let checked = try checkConfig(relative, root: root)
            let (configName, hostPaths) = try checked.map { try LaunchCommand.hostPaths(of: $0, root: root) }
                ?? LaunchCommand.inspect(configAt: full, root: root)
            let jobName = try name ?? LaunchCommand.defaultName(configName: configName, file: relative)
            try Names.validateJobName(jobName)
            // ferry's trainer needs the engine's libraries on the host and continues from its last/.
            var request = LaunchRequest(host: host, name: jobName, workingDirectory: root, kind: "train",
                                        needs: JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]), command: ["ferry", "train", relative],
                                        environment: env, gpus: gpus, graceSeconds: grace, hostPaths: hostPaths,
                                        reserveBytes: disk.flatMap(LaunchCommand.parseSize) ?? 0, follow: !detach && !json)
            // Counted by the check, nothing built: the host's preflight weighs it against its memory.
            request.modelBytes = checked?.modelBytes.map(Int64.init)
            return request
        }
        let jobName = name ?? Names.defaultJobName(from: command.dropFirst().first(where: { $0.contains(".") && !$0.hasPrefix("-") }) ?? command[0])
        try Names.validateJobName(jobName)
        return LaunchRequest(host: host, name: jobName, workingDirectory: root, kind: "command", command: command,
                             environment: env, gpus: gpus, graceSeconds: grace, reserveBytes: disk.flatMap(LaunchCommand.parseSize) ?? 0,
                             follow: !detach && !json)
    }

    /// `500M`, `20G`, `1T`, or plain bytes.
    static func parseSize(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var t = text.uppercased()
        if t.hasSuffix("B") { t.removeLast() }
        if let last = t.last, let unit = units[last], let n = Double(t.dropLast()), n >= 0 { return Int64(n * Double(unit)) }
        return Int64(t).flatMap { $0 >= 0 ? $0 : nil }
    }

    static func defaultName(configName: String?, file: String) throws -> String {
        if let configName, (try? Names.validateJobName(configName)) != nil { return configName }
        return Names.defaultJobName(from: file)
    }

    /// The config checked as `ferry train --check` would, in this process and the working directory:
    /// a config that would fail on the host stops here, before anything is sent, and the resolved
    /// plan comes back. On a CPU the engine cannot run on (the checker is engine code) nothing is
    /// checked here: the launch says so and the host checks the config when the job starts.
    func checkConfig(_ relative: String, root: String) throws -> TrainingPlan? {
        let missing = EngineGuard.missingFeatures
        guard missing.isEmpty else {
            JobsCLI.say("this CPU lacks \(missing.map { $0.uppercased() }.joined(separator: " and ")), which ferry's engine needs: \(relative) is checked on the host when the job starts")
            return nil
        }
        let fm = FileManager.default
        let previous = fm.currentDirectoryPath
        guard fm.changeCurrentDirectoryPath(root) else { throw JobsError.io(path: root, reason: "cannot enter the working directory") }
        defer { _ = fm.changeCurrentDirectoryPath(previous) }
        let result = TrainingPlan.check(configFile: relative)
        guard let plan = result.plan, result.error == nil else {
            throw JobsError.configInvalid(config: relative, output: result.messages.joined(separator: "\n") + "\n")
        }
        return plan
    }

    /// The config's name and the absolute data paths it reads, from the checked plan.
    static func hostPaths(of plan: TrainingPlan, root: String) throws -> (name: String?, hostPaths: [String]) {
        (plan.config.name, try hostPaths(plan.dataPaths, root: root))
    }

    /// The data paths a job reads on the host (absolute or `~`); a relative one must be inside the
    /// working directory, which travels with the job.
    static func hostPaths(_ dataPaths: [String], root: String) throws -> [String] {
        var paths: [String] = []
        for dir in dataPaths {
            if dir.hasPrefix("/") || dir.hasPrefix("~") {
                paths.append(dir)
            } else if !FileManager.default.fileExists(atPath: (root as NSString).appendingPathComponent(dir)) {
                throw JobsError.missingOnHost(host: "the working directory", paths: [dir + " (data_loader.args.data_dir is relative, so it must be inside \(root))"])
            }
        }
        return paths
    }

    /// The config's name and the absolute data paths it reads (checked on the host before sending),
    /// read from the file: for a CPU the engine cannot run on, where the config was checked by a child.
    static func inspect(configAt path: String, root: String) throws -> (name: String?, hostPaths: [String]) {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return (nil, []) }
        let args = (object["data_loader"] as? [String: Any])?["args"] as? [String: Any]
        let dirs = (args?["data_dir"] as? String).map { [$0] } ?? []
        return (object["name"] as? String, try hostPaths(dirs, root: root))
    }

    static func describe(_ report: PreflightReport, host: String) -> String {
        var parts: [String] = []
        if let free = report.freeBytes { parts.append("\(ByteCount.format(free)) free") }
        parts.append("\(report.cpus) CPUs")
        if report.gpus.isEmpty {
            parts.append("no GPU")
        } else {
            parts.append(report.gpus.map { "GPU \($0.index) \($0.name)" }.joined(separator: ", "))
        }
        if report.cuda != .notChecked { parts.append(report.cuda.available ? "CUDA ok" : "no CUDA") }
        if report.oneDNN != .notChecked && !report.oneDNN.available { parts.append("oneDNN missing") }
        return "\(host): " + parts.joined(separator: ", ")
    }
}
