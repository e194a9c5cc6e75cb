import ArgumentParser
import Foundation
import Jobs

/// `ferry ls`: every job on every known host.
struct LsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the jobs on every known host (and this machine).",
        discussion: "Hosts are asked at once; for one that cannot be reached, the jobs this machine remembers are shown as last seen.")

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    struct Row: Encodable {
        var id: String
        var host: String
        var name: String
        var state: String
        var summary: String
        var progress: JobProgress?
        var createdAt: Date
        var reachable: Bool
    }

    func run() async throws {
        try await JobsCLI.run {
            let context = JobsCLI.context()
            let results = await JobsClient(context: context).list()
            var rows: [Row] = []
            var problems: [String] = []
            for host in results {
                if let error = host.error {
                    problems.append("\(host.host): \(error)")
                    for r in host.remembered {
                        rows.append(Row(id: r.id, host: r.host, name: r.name, state: r.status?.state.rawValue ?? "unknown",
                                        summary: (r.status?.summary ?? "unknown") + " (last seen)", progress: r.progress,
                                        createdAt: r.createdAt, reachable: false))
                    }
                } else {
                    for info in host.jobs {
                        rows.append(Row(id: info.spec.id, host: host.host, name: info.spec.name, state: info.status.state.rawValue,
                                        summary: info.status.summary, progress: info.progress.isEmpty ? nil : info.progress,
                                        createdAt: info.spec.createdAt, reachable: true))
                    }
                }
            }
            rows.sort { $0.createdAt < $1.createdAt }
            // A sweep's runs stay together (at its first run's place), under one line naming it.
            var grouped: [Row] = [], sweepsPlaced = Set<String>()
            for row in rows {
                guard let sweep = Sweep.sweepID(ofRun: row.id) else { grouped.append(row); continue }
                if sweepsPlaced.insert(sweep).inserted { grouped += rows.filter { Sweep.sweepID(ofRun: $0.id) == sweep } }
            }
            rows = grouped
            if json {
                try JobsCLI.printJSON(rows)
            } else if rows.isEmpty {
                print("no jobs yet — start one with `ferry launch --host HOST config.json`")
            } else {
                let idWidth = max(2, rows.map(\.id.count).max() ?? 2)
                let hostWidth = max(4, rows.map(\.host.count).max() ?? 4)
                print("ID".padding(toLength: idWidth, withPad: " ", startingAt: 0) + "  " +
                      "HOST".padding(toLength: hostWidth, withPad: " ", startingAt: 0) + "  STARTED              STATE")
                var sweepShown: String?
                for row in rows {
                    if let sweep = Sweep.sweepID(ofRun: row.id), sweep != sweepShown {
                        sweepShown = sweep
                        print("sweep \(sweep): \(rows.filter { Sweep.sweepID(ofRun: $0.id) == sweep }.count) runs (ferry status \(sweep))")
                    }
                    var line = row.id.padding(toLength: idWidth, withPad: " ", startingAt: 0) + "  " +
                        row.host.padding(toLength: hostWidth, withPad: " ", startingAt: 0) + "  " +
                        JobsCLI.time(row.createdAt) + "  " + row.summary
                    if let p = row.progress, row.state == "running" { line += "  " + p.line }
                    print(line)
                }
            }
            for p in problems { JobsCLI.say("ferry: cannot reach \(p)") }
        }
    }
}
