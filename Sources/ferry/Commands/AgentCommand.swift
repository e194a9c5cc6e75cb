import ArgumentParser
import Foundation
import Jobs
import TensorCore

/// `ferry agent VERB`: the host side, which the client runs over SSH (see `Agent.usage`).
struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: AgentProtocol.subcommand,
        abstract: "The host side of ferry (run by the client over SSH; answers in JSON).",
        discussion: Agent.usage)

    @Argument(parsing: .captureForPassthrough, help: "[--home DIR] VERB ARGS...")
    var arguments: [String] = []

    func run() throws {
        var args = arguments
        var home = FerryHome.path
        if args.first == AgentProtocol.homeFlag, args.count >= 2 {
            home = args[1]
            args.removeFirst(2)
        }
        if args.first == "--help" || args.first == "-h" || args.isEmpty {
            print(Agent.usage)
            return
        }
        let agent = Agent(home: home, version: FerryVersion.string, probes: AgentCommand.probes)
        let status = agent.main(args)
        if status != 0 { throw ExitCode(status) }
    }

    /// TensorCore's own checks (the engine's CPU features, oneDNN, CUDA), for `preflight`.
    static let probes = AgentProbes {
        let missing = EngineGuard.missingFeatures
        // The driver, its devices, and cuBLAS/NVRTC: a GPU job needs all three.
        let cuda = CUDARuntime.report()
        let cudaCheck = LibraryCheck(available: cuda.available && cuda.missingLibraries == nil,
                                     detail: cuda.lines.joined(separator: "; ") + (cuda.missingLibraries.map { " — install them with: \($0)" } ?? ""))
        guard missing.isEmpty else {
            return (missing, LibraryCheck(available: false, detail: "not checked: the CPU lacks \(missing.joined(separator: ", "))"), cudaCheck)
        }
        do {
            return ([], LibraryCheck(available: true, detail: try DNNL.versionString()), cudaCheck)
        } catch {
            return ([], LibraryCheck(available: false, detail: "\(error)"), cudaCheck)
        }
    }
}
