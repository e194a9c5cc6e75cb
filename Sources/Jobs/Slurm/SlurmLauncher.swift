import Foundation
import SSH
import System
#if canImport(Glibc)
import Glibc
#endif

/// A Slurm cluster's login node: the agent submits the job's batch script with `sbatch --parsable`
/// and asks the scheduler, never a local pid, where the job stands — `squeue`, then `sacct` when
/// accounting exists, then `scontrol show job`, then the exit status the script wrote.
struct SlurmLauncher: JobLauncher {
    let store: JobStore
    let home: String
    let binary: String
    /// Runs a Slurm client command (sbatch, squeue, …) and captures its output; tests may stand in.
    var run: @Sendable (_ arguments: [String], _ environment: [String: String], _ directory: String?) -> Subprocess.Result = { arguments, environment, directory in
        Subprocess.capture(arguments, environment: environment, directory: directory, timeout: 60)
    }

    // MARK: start

    func start(_ id: String) throws {
        let paths = try store.paths(id)
        let spec = try store.spec(id)
        let slurm = spec.slurm ?? SlurmJob()
        let script = (paths.directory as NSString).appendingPathComponent(SlurmBatchScript.scriptFile)
        let body = Data(SlurmBatchScript(spec: spec, paths: paths, ferryBinary: binary, home: home).text.utf8)
        try JobsError.system { try AtomicFile.write(body, to: script, mode: .exact(0o700)) }
        unlink((paths.directory as NSString).appendingPathComponent(SlurmBatchScript.exitFile))
        unlink((paths.directory as NSString).appendingPathComponent(SlurmBatchScript.checkFile))
        if let member = slurm.array, spec.attempt == 1 {
            try startArrayMember(id, member: member, spec: spec, slurm: slurm, paths: paths)
            return
        }
        let arguments = SlurmLauncher.sbatchArguments(spec: spec, slurm: slurm, paths: paths, script: script)
        let result = run(arguments, submitEnvironment(spec, paths), paths.directory)
        let text = result.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, let jobID = SlurmLauncher.parseJobID(text) else {
            throw JobsError.slurmRefused(host: POSIX.hostName, reason: SlurmLauncher.reason(text, status: result.status))
        }
        _ = try store.update(id) { s in
            s.state = .pending
            s.schedulerJobId = jobID
            s.attempt = spec.attempt
            s.pendingReason = nil; s.expectedStart = nil
            s.startedAt = nil; s.endedAt = nil; s.exitCode = nil; s.signal = nil; s.nodes = nil; s.restarts = nil
            s.cancelRequested = POSIX.exists(paths.cancel)
        }
    }

    /// A sweep's run: its folder and script wait until the last run arrives, which submits them all
    /// as one job array whose task i runs `jobs/SWEEP-i/slurm.sh` with its log as output. A refusal
    /// removes every run's folder: nothing half-submitted.
    private func startArrayMember(_ id: String, member: SlurmArrayMember, spec: JobSpec, slurm: SlurmJob, paths: JobPaths) throws {
        guard member.index == member.count - 1 else {
            _ = try store.update(id) { s in
                s.state = .pending
                s.pendingReason = "waiting for the rest of its sweep (\(member.count) runs) to be sent"
            }
            return
        }
        let runs = (0..<member.count).map { member.runID($0) }
        let jobs = store.layout.jobsDirectory
        for run in runs where !POSIX.exists(store.layout.job(run).spec) {
            throw JobsError.slurmRefused(host: POSIX.hostName, reason: "run \(run) of the sweep never arrived; launch the sweep again")
        }
        let arrayScript = (paths.directory as NSString).appendingPathComponent("slurm-array.sh")
        let prefix = (jobs as NSString).appendingPathComponent(member.sweepId)
        let body = "#!/bin/bash\n# Written by ferry: task i of the sweep's job array runs its run's own script.\nexec /bin/bash \(ShellQuote.quote(prefix))-\"$SLURM_ARRAY_TASK_ID\"/\(SlurmBatchScript.scriptFile)\n"
        try JobsError.system { try AtomicFile.write(Data(body.utf8), to: arrayScript, mode: .exact(0o700)) }
        var arguments = SlurmLauncher.sbatchArguments(spec: spec, slurm: slurm, output: prefix + "-%a/output.log", directory: jobs,
                                                      name: member.sweepId, script: arrayScript)
        arguments.insert("--array=0-\(member.count - 1)" + (member.maxParallel.map { "%\($0)" } ?? ""), at: arguments.count - 1)
        let result = run(arguments, submitEnvironment(spec, paths), jobs)
        let text = result.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, let arrayID = SlurmLauncher.parseJobID(text) else {
            for run in runs.dropLast() { try? FileManager.default.removeItem(atPath: store.layout.job(run).directory) }
            throw JobsError.slurmRefused(host: POSIX.hostName, reason: SlurmLauncher.reason(text, status: result.status))
        }
        for (index, run) in runs.enumerated() {
            _ = try store.update(run) { s in
                s.state = .pending
                s.schedulerJobId = "\(arrayID)_\(index)"
                s.pendingReason = nil; s.expectedStart = nil
            }
        }
    }

    /// sbatch's argv (no shell between: every value reaches Slurm as it is).
    static func sbatchArguments(spec: JobSpec, slurm: SlurmJob, paths: JobPaths, script: String) -> [String] {
        sbatchArguments(spec: spec, slurm: slurm, output: paths.log, directory: paths.directory, name: spec.name, script: script)
    }

    static func sbatchArguments(spec: JobSpec, slurm: SlurmJob, output: String, directory: String, name: String, script: String) -> [String] {
        var arguments = ["sbatch", "--parsable", "--job-name=\(name)", "--output=\(output)", "--open-mode=append",
                         "--chdir=\(directory)", "--signal=B:USR2@\(slurm.warningSeconds)",
                         (!spec.needs.resumeArguments.isEmpty || slurm.requeue) ? "--requeue" : "--no-requeue"]
        if let gpus = spec.gpus, case .count(let n)? = GPURequest(parsing: gpus), n > 0 { arguments.append("--gres=gpu:\(n)") }
        if let time = slurm.time { arguments.append("--time=\(time)") }
        if let nodes = slurm.nodes { arguments.append("--nodes=\(nodes)") }
        if let partition = slurm.partition { arguments.append("--partition=\(partition)") }
        if let account = slurm.account { arguments.append("--account=\(account)") }
        arguments += slurm.sbatchArguments
        arguments.append(script)
        return arguments
    }

    /// The login session's environment (sbatch exports it to the job) without another job's Slurm
    /// variables, then the spec's, then ferry's contract variables. Secrets stay out of argv and files.
    func submitEnvironment(_ spec: JobSpec, _ paths: JobPaths) -> [String: String] {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SLURM_") || $0.key == "SLURM_CONF" }
        env["FERRY_HOME"] = home
        env["PYTHONUNBUFFERED"] = env["PYTHONUNBUFFERED"] ?? "1"
        for (k, v) in spec.environment { env[k] = v }
        env["FERRY_JOB_ID"] = spec.id
        env["FERRY_EVENTS"] = paths.events
        env["FERRY_OUTPUT"] = paths.output
        env["FERRY_ATTEMPT"] = String(spec.attempt)
        env["FERRY_JOB_DIR"] = paths.directory
        return env
    }

    /// `123` or `123;cluster` on sbatch's last line.
    static func parseJobID(_ output: String) -> String? {
        guard let last = output.split(separator: "\n").last else { return nil }
        let id = last.split(separator: ";").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
        return !id.isEmpty && id.allSatisfy(\.isNumber) ? id : nil
    }

    /// Slurm's words, without its `sbatch: error: ` prefixes.
    static func reason(_ output: String, status: Int32) -> String {
        let lines = output.split(separator: "\n").map { line -> String in
            var l = String(line)
            for prefix in ["sbatch: error: ", "sbatch: fatal: ", "scancel: error: ", "sacct: error: "] where l.hasPrefix(prefix) { l.removeFirst(prefix.count) }
            return l
        }
        if status == 127 { return "sbatch is not on this host's PATH (is it the cluster's login node?): \(lines.joined(separator: "; "))" }
        return lines.isEmpty ? "sbatch ended with status \(status) and said nothing" : lines.joined(separator: "; ")
    }

    // MARK: status

    func status(_ id: String) throws -> JobStatus {
        let paths = try store.paths(id)
        let raw = try store.rawStatus(paths, id: id)
        guard !raw.state.isFinal, let jobID = raw.schedulerJobId else { return raw }
        let spec = try store.spec(id)
        let start = SlurmLauncher.readStart(paths)
        var seen = raw
        if let start { seen.restarts = start.restart; seen.startedAt = seen.startedAt ?? Date(timeIntervalSince1970: TimeInterval(start.epoch)) }

        let scheduler = schedulerState(jobID)
        switch scheduler {
        case .queue(let state, let reason, let nodes, let expected):
            if SlurmLauncher.runningStates.contains(state) {
                seen.state = .running
                seen.nodes = nodes.isEmpty ? nil : nodes
                seen.pendingReason = nil; seen.expectedStart = nil
            } else if SlurmLauncher.pendingStates.contains(state) {
                seen.state = .pending
                seen.pendingReason = reason.isEmpty || reason == "None" ? nil : reason
                seen.expectedStart = expected
                seen.nodes = nil
            } else {
                return try finish(id, paths, spec: spec, slurmState: state, slurmExit: nil, start: start)
            }
            if seen != raw { try? store.write(seen, paths) }
            return seen
        case .ended(let state, let exit):
            return try finish(id, paths, spec: spec, slurmState: state, slurmExit: exit, start: start)
        case .unknown:
            return try finish(id, paths, spec: spec, slurmState: nil, slurmExit: nil, start: start)
        case .unreachable(let why):
            seen.message = "Slurm did not answer: \(why)"
            return seen
        }
    }

    static let pendingStates: Set<String> = ["PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"]
    static let runningStates: Set<String> = ["RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"]

    enum SchedulerState: Equatable {
        /// squeue knows it: state, reason, nodes, expected start.
        case queue(String, reason: String, nodes: String, expected: Date?)
        /// sacct or scontrol knows how it ended: the state and `code:signal`.
        case ended(String, exit: String?)
        /// The scheduler forgot it (no accounting, MinJobAge passed).
        case unknown
        case unreachable(String)
    }

    /// squeue → sacct (when accounting exists) → scontrol show job.
    func schedulerState(_ jobID: String) -> SchedulerState {
        let env = ProcessInfo.processInfo.environment
        let queue = run(["squeue", "-h", "-j", jobID, "-o", "%T|%r|%N|%S"], env, nil)
        let queueText = queue.text.trimmingCharacters(in: .whitespacesAndNewlines)
        if queue.status == 0, let line = queueText.split(separator: "\n").first {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            if f.count >= 4 {
                return .queue(f[0], reason: f[1], nodes: f[2], expected: SlurmLauncher.parseTime(f[3]))
            }
        }
        if queue.status != 0 && !queueText.contains("Invalid job id") {
            return .unreachable(queueText.isEmpty ? "squeue ended with status \(queue.status)" : queueText)
        }
        let accounting = run(["sacct", "-X", "-n", "-P", "-j", jobID, "-o", "State,ExitCode"], env, nil)
        if accounting.status == 0, let line = accounting.text.split(separator: "\n").last {
            let f = line.split(separator: "|").map(String.init)
            if f.count >= 2, let state = f[0].split(separator: " ").first {
                return .ended(String(state), exit: f[1])
            }
        }
        // Accounting that exists but does not answer (slurmdbd or its database down) is not "no
        // accounting": a job nobody else remembers then waits for it rather than ending as lost.
        let accountingText = accounting.text.trimmingCharacters(in: .whitespacesAndNewlines)
        let accountingDown = accounting.status != 0 && accounting.status != 127 && !accountingText.contains("accounting storage is disabled")
        let control = run(["scontrol", "show", "job", "-o", jobID], env, nil)
        if control.status == 0 {
            let fields = SlurmLauncher.keyValues(control.text)
            if let state = fields["JobState"] {
                // Between squeue's answers (a requeue in progress) scontrol may still see it queued.
                if SlurmLauncher.pendingStates.contains(state) || SlurmLauncher.runningStates.contains(state) {
                    return .queue(state, reason: fields["Reason"] ?? "", nodes: fields["NodeList"] ?? "", expected: nil)
                }
                return .ended(state, exit: fields["ExitCode"])
            }
        }
        if accountingDown {
            return .unreachable("sacct: " + (accountingText.isEmpty ? "ended with status \(accounting.status)" : SlurmLauncher.reason(accountingText, status: accounting.status)))
        }
        return .unknown
    }

    /// The final status from what the scheduler and the batch script say, written once.
    private func finish(_ id: String, _ paths: JobPaths, spec: JobSpec, slurmState: String?, slurmExit: String?,
                        start: (restart: Int, node: String, epoch: Int)?) throws -> JobStatus {
        let record = POSIX.read((paths.directory as NSString).appendingPathComponent(SlurmBatchScript.exitFile))
            .flatMap { try? JSONCoding.decoder().decode(SlurmExitRecord.self, from: $0) }
        let cancelled = POSIX.exists(paths.cancel)
        return try store.update(id) { s in
            guard !s.state.isFinal else { return }
            s.endedAt = record.map { Date(timeIntervalSince1970: TimeInterval($0.ended)) } ?? Date()
            if let start { s.restarts = start.restart; s.startedAt = s.startedAt ?? Date(timeIntervalSince1970: TimeInterval(start.epoch)) }
            s.cancelRequested = cancelled
            s.pendingReason = nil; s.expectedStart = nil
            let code = record?.code ?? slurmExit.flatMap { Int32($0.split(separator: ":").first ?? "") }
            s.exitCode = code
            let stoppedByUSR2 = record.map { $0.signal == "USR2" && $0.code == 75 && !$0.requeued } ?? false
            // The script requeued the job but Slurm ended it before the script ran again.
            let restartNeverRan = record?.requeued == true
            switch (slurmState ?? "", cancelled) {
            case (_, true):
                s.state = .cancelled
            case _ where record?.checkFailed == true:
                // Final, never requeued: the node cannot run ferry's engine (or CUDA for a GPU job).
                s.state = .failed
                s.exitCode = nil
                let why = POSIX.read((paths.directory as NSString).appendingPathComponent(SlurmBatchScript.checkFile))
                    .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
                s.message = "engine check failed at job start, nothing ran: " + (why ?? "the check could not run (status \(record?.code ?? -1)); see the job's log")
            case ("TIMEOUT", _): s.state = .timeout
            case ("OUT_OF_MEMORY", _): s.state = .outOfMemory
            case ("NODE_FAIL", _): s.state = .nodeFailed
            case ("PREEMPTED", _): s.state = .preempted
            case ("CANCELLED", _):
                s.state = .cancelled
                s.message = "cancelled by Slurm (scancel or an administrator)"
            case _ where stoppedByUSR2:
                // The script stopped the payload at Slurm's warning and did not requeue: out of
                // time when the warning came at the time limit, else preempted.
                if let record, let limit = spec.slurm?.time.flatMap(SlurmJob.seconds(ofTime:)),
                   record.ended - record.started + (spec.slurm?.warningSeconds ?? 120) + 90 >= limit {
                    s.state = .timeout
                } else {
                    s.state = .preempted
                }
            case _ where restartNeverRan:
                s.state = .failed
                s.exitCode = nil
                s.message = "requeued after a stop with last/ written, but its restart did not run" + (slurmState.map { $0.isEmpty ? "" : " (Slurm says \($0))" } ?? "") + " — resume it with `ferry launch --resume`"
            case ("COMPLETED", _): s.state = .succeeded
            case ("", _) where record == nil:
                s.state = .lost
                s.message = "Slurm no longer knows job \(s.schedulerJobId ?? "?") and it left no exit status (it never ran, or its node vanished)"
            default:
                s.state = code == 0 ? .succeeded : .failed
                if let slurmState, !["FAILED", "COMPLETED", ""].contains(slurmState) { s.message = "Slurm says \(slurmState)" }
            }
        }
    }

    /// `slurm-start`: restart count, node, start time (seconds), Slurm job id.
    static func readStart(_ paths: JobPaths) -> (restart: Int, node: String, epoch: Int)? {
        guard let data = POSIX.read((paths.directory as NSString).appendingPathComponent(SlurmBatchScript.startFile)) else { return nil }
        let f = String(decoding: data, as: UTF8.self).split(separator: " ").map(String.init)
        guard f.count >= 3, let restart = Int(f[0]), let epoch = Int(f[2].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return (restart, f[1], epoch)
    }

    /// `Key=Value` words of `scontrol show -o`.
    static func keyValues(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let kv = word.split(separator: "=", maxSplits: 1)
            if kv.count == 2, out[String(kv[0])] == nil { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }

    /// Slurm's `2026-01-01T12:00:00` (local time); nil for `N/A`.
    static func parseTime(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return f.date(from: text)
    }

    // MARK: cancel

    /// A pending job is removed at once; a running one gets TERM (`scancel --signal=TERM --full`:
    /// the batch script forwards it, the payload writes last/), then `scancel` after the grace.
    func cancel(_ id: String, grace: Int) throws {
        let paths = try store.paths(id)
        let current = try status(id)
        guard !current.state.isFinal, let jobID = current.schedulerJobId else { return }
        try JSON.write(CancelRequest(graceSeconds: grace, requestedAt: Date()), to: paths.cancel, pretty: false)
        _ = try? store.update(id) { $0.cancelRequested = true }
        let env = ProcessInfo.processInfo.environment
        if current.state == .pending || current.state == .queued {
            let result = run(["scancel", jobID], env, nil)
            if result.status != 0 { throw JobsError.agentFailed(host: POSIX.hostName, verb: "scancel", message: SlurmLauncher.reason(result.text, status: result.status)) }
            return
        }
        let result = run(["scancel", "--signal=TERM", "--full", jobID], env, nil)
        if result.status != 0 { throw JobsError.agentFailed(host: POSIX.hostName, verb: "scancel", message: SlurmLauncher.reason(result.text, status: result.status)) }
        // After the grace, whatever still runs is ended by Slurm (a detached sleeper outlives this request).
        _ = try? Spawn.start(["/bin/sh", "-c", "sleep \"$1\"; exec scancel \"$2\"", "ferry-scancel", String(grace), jobID],
                             environment: env, stdin: .null, stdout: .null, stderr: .null, newSession: true)
    }
}
