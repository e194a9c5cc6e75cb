import ArgumentParser
import Foundation
import RunContract

@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Ship training jobs to GPU machines over SSH, follow them, and bring the checkpoints home.",
        discussion: """
        Exit codes (the same for every command and for the job it runs): 0 done; 1 failed; 2 bad usage \
        or config (nothing was run); 75 stopped on request (cancel, SIGTERM, preemption), resumable; \
        130 interrupted; 141 its output was closed; ssh-like commands pass the remote status through, \
        255 when the connection fails.
        """,
        version: FerryVersion.string,
        subcommands: [DoctorCommand.self, TrainCommand.self, TestCommand.self, NewCommand.self,
                      LaunchCommand.self, LogsCommand.self, StatusCommand.self, LsCommand.self, CancelCommand.self,
                      FetchCommand.self, SSHCommand.self, HostsCommand.self, HostCommand.self, SSHConfigCommand.self,
                      AgentCommand.self]
    )

    /// argument-parser reports usage errors with 64 (EX_USAGE); ferry's contract says 2 for
    /// "bad usage or config, nothing was run", so the runner can tell it from a failed job.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let error as any ExitStatusError {
            // Every module's error: its message, and the contract's status it maps to (one place).
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            Foundation.exit(error.exitStatus.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(ExitStatus.usage.rawValue)
            }
            exit(withError: error)
        }
    }
}

enum FerryVersion {
    static let string = "0.1.0"
}
