import ArgumentParser
import Foundation
import Jobs
import RunContract

/// `ferry status ID`: state and live progress (epoch, step, loss, ETA) from the job's events.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a job's state and live progress (epoch, step, loss, ETA).",
        discussion: "When the host cannot be reached, the last state seen is shown and the exit status is 1.")

    @Argument(help: "The job id (see `ferry ls`).")
    var id: String

    @Flag(name: .long, help: "Print one JSON object for scripts.")
    var json = false

    func run() async throws {
        try await JobsCLI.run {
            let context = JobsCLI.context()
            try Names.validateJobID(id)
            let runs = context.registry.jobs().filter { Sweep.sweepID(ofRun: $0.id) == id }
            if (try? context.registry.job(id)) == nil, !runs.isEmpty {
                try await sweepTable(runs, context: context)
                return
            }
            do {
                let info = try await JobsClient(context: context).status(id)
                if json {
                    try JobsCLI.printJSON(StatusReport(id: id, host: (try? context.registry.job(id).host) ?? "?", stale: false,
                                                       spec: info.spec.maskingEnvironment, status: info.status, progress: info.progress,
                                                       directory: info.directory, logBytes: info.logBytes))
                } else {
                    print(StatusCommand.describe(spec: info.spec, status: info.status, progress: info.progress,
                                                 host: (try? context.registry.job(id).host) ?? "?", logBytes: info.logBytes))
                }
            } catch {
                if case JobsError.unknownJob = error { throw error }
                guard let record = try? context.registry.job(id), let status = record.status else { throw error }
                // The host is out of reach: say what was last seen.
                if json {
                    try JobsCLI.printJSON(StatusReport(id: id, host: record.host, stale: true, spec: nil, status: status,
                                                       progress: record.progress ?? JobProgress(), directory: record.directory,
                                                       logBytes: nil))
                } else {
                    print("\(id)  on \(record.host)  \(status.summary)  (as last seen \(record.seenAt.map(JobsCLI.ago) ?? "earlier"))")
                    if let p = record.progress, !p.isEmpty { print("  \(p.line)") }
                }
                JobsCLI.say("ferry: cannot ask \(record.host) now: \(error)")
                throw ExitCode(1)
            }
        }
    }

    /// `ferry status SWEEP`: one row a run — its overrides, state, and the best value of the metric
    /// its trainer monitors (`min val_loss`), the best run marked. Each host is asked over one
    /// connection for all its runs.
    func sweepTable(_ runs: [JobRecord], context: JobsContext) async throws {
        struct Row: Encodable {
            var id: String; var overrides: String; var state: String; var summary: String
            /// The latest epoch's metrics.
            var metrics: [String: Double]
            var monitor: String?; var best: Double?
            /// Whether this run has the sweep's best monitored value.
            var bestRun: Bool
        }
        let ordered = runs.sorted { Int($0.id.split(separator: "-").last ?? "") ?? 0 < Int($1.id.split(separator: "-").last ?? "") ?? 0 }
        let answers = await JobsClient(context: context).statuses(ordered.map(\.id))
        var rows: [Row] = []
        for run in ordered {
            let info = try? answers[run.id]?.get()
            let command = info?.spec.command ?? run.command
            var overrides: [String] = []
            for (i, word) in command.enumerated() where word == "--set" && i + 1 < command.count { overrides.append(command[i + 1]) }
            let status = info?.status ?? run.status
            let progress = info?.progress ?? run.progress
            rows.append(Row(id: run.id, overrides: overrides.joined(separator: " "), state: status?.state.rawValue ?? "unknown",
                            summary: (status?.summary ?? "unknown") + (info == nil ? " (last seen)" : ""),
                            metrics: progress?.metrics ?? [:], monitor: progress?.monitor, best: progress?.best, bestRun: false))
        }
        // The best run: by the monitor most runs state (they share one config), in its direction.
        let monitor = Dictionary(grouping: rows.compactMap(\.monitor), by: { $0 }).max { $0.value.count < $1.value.count }?.key
        if let monitor, let direction = RunEvent.Monitored(monitor) {
            var winner: Int?
            for (i, row) in rows.enumerated() where row.monitor == monitor {
                guard let value = row.best else { continue }
                // A tie keeps the earlier run.
                if let w = winner, let current = rows[w].best, value == current || !direction.improves(value, on: current) { continue }
                winner = i
            }
            if let winner { rows[winner].bestRun = true }
        }
        if json { try JobsCLI.printJSON(rows); return }
        let idWidth = max(3, rows.map(\.id.count).max() ?? 3), overridesWidth = max(9, rows.map(\.overrides.count).max() ?? 9)
        let bestHeader = monitor.map { "BEST \($0)" } ?? "BEST (no monitored metric yet)"
        let values = rows.map { row in row.best.map { String(format: "%.4g", $0) + (row.bestRun ? " *" : "") } ?? "-" }
        let bestWidth = max(bestHeader.count, values.map(\.count).max() ?? 0)
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
        print(pad("RUN", idWidth) + "  " + pad("OVERRIDES", overridesWidth) + "  " + pad(bestHeader, bestWidth) + "  STATE")
        for (row, value) in zip(rows, values) {
            print(pad(row.id, idWidth) + "  " + pad(row.overrides, overridesWidth) + "  " + pad(value, bestWidth) + "  " + row.summary)
        }
        if rows.contains(where: \.bestRun) { print("* the best \(monitor ?? "value") so far") }
    }

    struct StatusReport: Encodable {
        var id: String
        var host: String
        var stale: Bool
        var spec: JobSpec?
        var status: JobStatus
        var progress: JobProgress
        var directory: String?
        var logBytes: Int64?
    }

    static func describe(spec: JobSpec, status: JobStatus, progress: JobProgress, host: String, logBytes: Int64) -> String {
        var lines: [String] = []
        var head = "\(spec.id)  on \(host)  \(status.summary)"
        if spec.attempt > 1 { head += "  (attempt \(spec.attempt))" }
        if let started = status.startedAt {
            if let ended = status.endedAt {
                head += "  ran \(JobProgress.duration(ended.timeIntervalSince(started))), ended \(JobsCLI.ago(ended))"
            } else {
                head += "  started \(JobsCLI.ago(started))"
            }
        }
        lines.append(head)
        lines.append("  command: \(spec.command.joined(separator: " "))")
        if let slurmJob = status.schedulerJobId {
            var line = "  Slurm job \(slurmJob)"
            if let restarts = status.restarts { line += ", restarts: \(restarts)" + (spec.slurm.map { " (at most \($0.maxRestarts))" } ?? "") }
            lines.append(line)
        }
        if !progress.isEmpty { lines.append("  \(progress.line)") }
        if !progress.checkpoints.isEmpty {
            lines.append("  checkpoints: " + progress.checkpoints.keys.sorted().map { "\($0) → \(progress.checkpoints[$0] ?? "")" }.joined(separator: ", "))
        }
        if let message = status.message, status.state != .lost { lines.append("  note: \(message)") }
        lines.append("  log: \(ByteCount.format(logBytes))  (ferry logs -f \(spec.id))")
        return lines.joined(separator: "\n")
    }
}
