import ArgumentParser
import Foundation
import RunContract
import Jobs

/// `ferry fetch ID`: bring a job's checkpoints (or any of its files) home.
struct FetchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Bring a job's checkpoints (best, last, all, or a path) home, resumably and verified.",
        discussion: """
        --what P takes work/P (the folder you sent, as the job left it) or else output/P (both \
        existing is an error: write work/P or output/P); its files land in --dest (default \
        ./ferry-runs/ID/) as P/...; --what all lands the job's output there, best/last the newest \
        such checkpoint, log and events the job's output.log and events.jsonl. Files come in one \
        stream from the host's agent (no SFTP needed), each checked against the host's sha256 \
        as it arrives, with the host's permission bits (never wider); no symlink is followed on \
        either side. An interrupted fetch continues where it stopped when run again. --follow \
        keeps fetching new checkpoints while the job runs.
        """)

    @Argument(help: "The job id (see `ferry ls`).")
    var id: String

    @Option(name: .long, help: "best, last, all (the job's whole output), log, events, or a path P: work/P (the folder you sent), else output/P.")
    var what: String = "best"

    @Option(name: .long, help: "Where to put the files (default ./ferry-runs/ID).")
    var dest: String?

    @Flag(name: .long, help: "Keep fetching new checkpoints until the job ends.")
    var follow = false

    @Flag(name: [.customShort("v"), .long], help: "Say how the files travel and how long it took.")
    var verbose = false

    @Flag(name: .long, help: "Print the fetched files as JSON.")
    var json = false

    func run() async throws {
        try await JobsCLI.run {
            let context = JobsCLI.context(verbose: verbose)
            try Names.validateJobID(id)
            if !Fetcher.selections.contains(what) { try Names.validateRelativePath(what) }
            let destination = URL(fileURLWithPath: dest ?? "ferry-runs/\(id)",
                                  relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
            let quiet = json
            // One line per landed file for the first few; a count for the rest (10,000 lines of
            // a dataset would bury the summary, and cost a write each).
            let listed = LineBudget(FetchCommand.filesListed)
            let events: @Sendable (FetchEvent) -> Void = { event in
                switch event {
                case .file:
                    break
                case .progress(let files, let totalFiles, let bytes, let totalBytes):
                    Progress.shared.update("fetching", done: bytes, total: totalBytes, files: (files, totalFiles))
                case .fetched(let file):
                    guard !quiet, listed.take() else { return }
                    let how = file.unchanged ? "unchanged" : file.resumedFrom > 0 ? "resumed from \(ByteCount.format(file.resumedFrom))" : "sha256 ok"
                    JobsCLI.say("  \(file.localPath)  \(ByteCount.format(file.size))  (\(how))")
                case .waiting(let state):
                    Progress.shared.clear()
                    if !quiet { JobsCLI.say("  job \(state.rawValue); checking again in a few seconds (Ctrl-C stops)") }
                }
            }
            // One file by its path comes over SFTP while the agent is found, where the host has SFTP.
            let (client, ahead) = follow ? (try await JobsClient(context: context).agent(for: id), nil)
                : try await JobsClient(context: context).agent(for: id, fetchingAhead: what, into: destination, events: events)
            let fetcher = Fetcher(client: client, note: context.verbose)
            let outcome: ([FetchedFile]?, interrupted: Bool)
            do {
                outcome = try await JobsCLI.interruptible {
                    if let ahead { return [ahead] }
                    return follow ? try await fetcher.follow(id, what: what, into: destination, events: events)
                                  : try await fetcher.fetch(id, what: what, into: destination, events: events)
                }
                await client.close()
            } catch {
                await client.close()
                throw error
            }
            let (files, interrupted) = outcome
            Progress.shared.clear()
            if interrupted {
                JobsCLI.say("ferry: stopped; run the same command to continue where it left off")
                throw ExitCode(.interrupted)
            }
            let fetched = files ?? []
            if json { try JobsCLI.printJSON(fetched); return }
            let bytes = fetched.reduce(Int64(0)) { $0 + $1.transferredBytes }
            if listed.over > 0 {
                let unchanged = fetched.filter(\.unchanged).count
                JobsCLI.say("  … and \(listed.over) more (\(unchanged) of all \(fetched.count) unchanged; --json lists each)")
            }
            print("fetched \(fetched.count) files (\(ByteCount.format(bytes)) transferred) into \(destination)")
        }
    }

    /// Files named one per line before the rest are counted.
    static let filesListed = 20
}

/// Lets `limit` things through, then counts the rest.
final class LineBudget: @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int
    private var counted = 0
    init(_ limit: Int) { left = limit }
    /// Those not let through.
    var over: Int { lock.lock(); defer { lock.unlock() }; return counted }
    func take() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if left > 0 { left -= 1; return true }
        counted += 1
        return false
    }
}
