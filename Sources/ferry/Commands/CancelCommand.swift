import ArgumentParser
import Foundation
import Jobs

/// `ferry cancel ID`: SIGTERM to the job's process group, SIGKILL after the grace period.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Stop a job: SIGTERM to its process group, SIGKILL after the grace period.",
        discussion: """
        A `ferry train` job finishes its step, writes its last checkpoint and exits 75 within the \
        grace; `ferry launch --resume ID` continues it later.
        """)

    @Argument(help: "The job id (see `ferry ls`).")
    var id: String

    @Option(name: .long, help: "Seconds between SIGTERM and SIGKILL (default: the job's, 30 unless launched with --grace).")
    var grace: Int?

    @Flag(name: .customLong("no-wait"), help: "Return once the signal is sent.")
    var noWait = false

    @Flag(name: .long, help: "Print the job's status as JSON.")
    var json = false

    func validate() throws {
        if let grace, !(0...3600).contains(grace) { throw ValidationError("--grace takes 0 to 3600 seconds") }
    }

    func run() async throws {
        try await JobsCLI.run {
            let context = JobsCLI.context()
            try Names.validateJobID(id)
            let info = try await JobsClient(context: context).cancel(id, grace: grace, wait: !noWait)
            if json {
                try JobsCLI.printJSON(info.status)
            } else if info.status.state.isFinal {
                print("\(id): \(info.status.summary)" + (info.status.state == .cancelled ? " — resume it with: ferry launch --resume \(id)" : ""))
            } else {
                print("\(id): asked to stop (\(info.status.state.rawValue) now); see `ferry status \(id)`")
            }
        }
    }
}
