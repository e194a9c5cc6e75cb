import ArgumentParser

@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Ship training jobs to GPU machines over SSH, follow them, and bring the checkpoints home.",
        discussion: """
        Exit codes: 0 done; 1 failed; 2 bad usage or config (nothing was run); \
        75 stopped on request (SIGTERM/SIGINT), resumable.
        """,
        version: FerryVersion.string,
        subcommands: [DoctorCommand.self, SSHCommand.self, HostCommand.self, SSHConfigCommand.self]
    )
}

enum FerryVersion {
    static let string = "0.1.0"
}
