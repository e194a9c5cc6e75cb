import ArgumentParser
import Foundation
import Training

/// `ferry test --resume CHECKPOINT`: pytorch-template's test.py.
struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Evaluate a checkpoint on the test split: loss and metrics averaged per sample.",
        discussion: "Exit codes: 0 done; 1 failed; 2 bad usage, config or checkpoint.")

    @Option(name: [.customShort("r"), .long], help: "A checkpoint folder (…/checkpoints/best), its model.safetensors, or a run folder.")
    var resume: String

    @Option(name: [.customShort("c"), .customLong("config")], help: "The config (default: the run folder's config.json).")
    var config: String?

    @Option(name: .customLong("bs"), help: "Samples per batch.")
    var batchSize: Int = 512

    @Option(name: .customLong("set"), help: ArgumentHelp("Set a config value, typed by the schema (repeatable).", valueName: "path=value"))
    var assignments: [String] = []

    @Flag(name: .long, help: "Print one JSON object for scripts.")
    var json = false

    func run() throws {
        try EngineGuard.require()
        var request = TestRequest(checkpoint: resume)
        request.configFile = config
        request.batchSize = batchSize
        let report: TestReport
        do {
            request.overrides = try assignments.map(ConfigOverride.init(parsing:))
            report = try Evaluation.run(request)
        } catch let error as TrainingError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(error.exitCode)
        }
        if json {
            print(report.json.serialized(pretty: true))
        } else {
            print("\(report.checkpoint.path): \(report.samples) test samples")
            for (name, value) in report.metrics {
                print("    \(name.padding(toLength: 15, withPad: " ", startingAt: 0)): \(String(format: "%.6g", value))")
            }
        }
    }
}
