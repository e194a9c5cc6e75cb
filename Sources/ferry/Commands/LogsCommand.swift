import ArgumentParser
import Foundation
import RunContract
import Jobs

/// `ferry logs ID [-f] [--since-start]`: a job's output, from the host or this machine's mirror.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a job's log; -f follows it until the job ends.",
        discussion: """
        Everything received is mirrored under $FERRY_HOME/registry/jobs/ID/, so the log stays \
        readable after the host is gone. Following survives dropped connections: ferry reconnects \
        with backoff and resumes at the exact byte. With -f, the last 10 lines come first \
        (--since-start: the whole log). Ctrl-C stops following, not the job.
        Exit status with -f: 0 the job succeeded, 75 it was cancelled, 1 it failed.
        """)

    @Argument(help: "The job id (see `ferry ls`).")
    var id: String

    @Flag(name: [.customShort("f"), .long], help: "Follow the log until the job ends.")
    var follow = false

    @Flag(name: .customLong("since-start"), help: "With -f, print the whole log first, not its last lines.")
    var sinceStart = false

    func run() async throws {
        try await JobsCLI.run {
            let context = JobsCLI.context()
            try Names.validateJobID(id)
            let mirror = LogMirror(path: context.registry.mirrorPath(id))
            let host: HostRecord
            do {
                host = try await JobsClient(context: context).host(of: id)
            } catch JobsError.unknownJob(let missing) where mirror.size > 0 {
                JobsCLI.say("ferry: job \(missing) is on no reachable host; this is its log as mirrored here")
                mirror.stream(JobsCLI.writeOut)
                return
            }
            if !follow {
                // Bring the mirror up to date (one pass, no waiting), then print it whole.
                let follower = JobsClient(context: context).follower(id, host: host, pollSeconds: 0, maxFailures: 1)
                do {
                    _ = try await follower.resume(from: mirror.size, stopWhenCaughtUp: true, onData: { _ in }, onEvent: LogsCommand.say(host))
                } catch {
                    JobsCLI.say("ferry: \(host.name) is unreachable (\(error)); this is the log as mirrored here (\(ByteCount.format(mirror.size)))")
                }
                mirror.stream(JobsCLI.writeOut)
                return
            }
            // One snapshot of the mirror's end: what lies before it is printed from the mirror, what
            // comes after from the host. (Other followers of this job extend the mirror meanwhile;
            // taking its size twice would skip what they wrote in between.)
            let end = mirror.size
            mirror.stream(from: sinceStart ? 0 : mirror.offsetOfLastLines(10, before: end), upTo: end, JobsCLI.writeOut)
            try await LogsCommand.follow(id: id, host: host, context: context, from: end, first: nil)
        }
    }

    /// A lost connection and its reconnect, said on stderr.
    static func say(_ host: HostRecord) -> @Sendable (LogFollower.Event) -> Void {
        { event in
            switch event {
            case .disconnected(let reason, let retry, let attempt):
                JobsCLI.say("ferry: lost \(host.name) (\(reason)); reconnecting in \(String(format: "%.1f", retry)) s (attempt \(attempt))")
            case .reconnected(let offset):
                JobsCLI.say("ferry: reconnected; resuming at byte \(offset)")
            }
        }
    }

    /// Follows to the end (or Ctrl-C), printing bytes as they come; exits with the job's outcome.
    static func follow(id: String, host: HostRecord, context: JobsContext, from offset: Int64, first: AgentSession?) async throws {
        let jobs = JobsClient(context: context)
        let follower = jobs.follower(id, host: host)
        let (status, interrupted) = try await JobsCLI.interruptible {
            try await follower.resume(from: offset, first: first, onData: { JobsCLI.writeOut($0) }, onEvent: say(host))
        }
        if interrupted {
            JobsCLI.say("\nferry: detached; \(id) keeps running on \(host.name). Re-attach: ferry logs -f \(id)")
            throw ExitCode(.interrupted)
        }
        guard let status = status ?? nil else { return }
        jobs.remember(status, for: id)
        let took = status.startedAt.flatMap { s in status.endedAt.map { JobProgress.duration($0.timeIntervalSince(s)) } }
        JobsCLI.say("ferry: \(id) \(status.summary)" + (took.map { " after \($0)" } ?? "") +
                    (status.state == .succeeded ? " — fetch its checkpoints: ferry fetch \(id)" :
                     status.state.isFinal && status.state != .succeeded ? " — resume it: ferry launch --resume \(id)" : ""))
        let code = JobsCLI.exitCode(for: status)
        if code != 0 { throw ExitCode(code) }
    }
}
