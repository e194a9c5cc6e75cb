import ArgumentParser
import Foundation
import Training
import TensorCore

/// `ferry train CONFIG`: a pytorch-template config, trained by ferry's engine.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model from a pytorch-template config.json.",
        discussion: """
        The run folder is SAVE_DIR/NAME/RUN_ID (SAVE_DIR is $FERRY_OUTPUT when set, else trainer.save_dir). \
        Events go to $FERRY_EVENTS when set, else the run folder's events.jsonl.
        SIGTERM or Ctrl-C finishes the current step, saves checkpoints/last and exits 75; Ctrl-C again quits at once.
        Exit codes: 0 done; 1 failed; 2 bad usage or config (nothing was run); 75 stopped on request, resumable.
        """)

    @Argument(help: "The config file (pytorch-template's schema). Optional with --resume PATH: the run folder's config.json is used.")
    var config: String?

    @Option(name: [.customShort("c"), .customLong("config")], help: "The config file, as pytorch-template's train.py -c takes it.")
    var configOption: String?

    @Flag(name: .long, help: "Only check the config (shapes through the layers included): exit 0 if valid, 2 with every problem.")
    var check = false

    @Option(name: [.customShort("r"), .long], help: "Continue a run in its own folder: a checkpoint folder, a run folder, or `auto` (the newest run's last/, or a fresh run).")
    var resume: String?

    @Option(name: .customLong("run-id"), help: "The run folder's name (default: $FERRY_JOB_ID, else MMDD_HHMMSS).")
    var runID: String?

    @Option(name: .long, help: "Set optimizer.args.lr.")
    var lr: Double?

    @Option(name: .customLong("bs"), help: "Set data_loader.args.batch_size.")
    var batchSize: Int?

    @Option(name: .long, help: "Set trainer.epochs.")
    var epochs: Int?

    @Option(name: .customLong("set"), help: ArgumentHelp("Set any config value, typed by the schema (repeatable).", valueName: "path=value"))
    var assignments: [String] = []

    @Option(name: [.customShort("d"), .long], help: ArgumentHelp(
        "GPU indices to make visible, as pytorch-template's -d (0,1: CUDA_VISIBLE_DEVICES); or the engine's device, a value starting with a letter (cpu, cuda, cuda:N). Without it, the config's n_gpu chooses.",
        valueName: "indices|device"))
    var device: String?

    func run() throws {
        try EngineGuard.require()
        // Usage mistakes exit 2 like config mistakes: the runner reads one code for "nothing was run".
        func usage(_ message: String) -> ExitCode {
            FileHandle.standardError.write(Data("ferry train: \(message)\n".utf8))
            return ExitCode(2)
        }
        if config != nil && configOption != nil && config != configOption {
            throw usage("give the config once: either `ferry train CONFIG` or `-c CONFIG`")
        }
        var request = TrainRequest(configFile: config ?? configOption)
        if request.configFile == nil && resume == nil {
            throw usage("give a config: `ferry train config/config.json` (or --resume a checkpoint in a run folder)")
        }
        do {
            request.overrides = try assignments.map(ConfigOverride.init(parsing:))
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
        if let device {
            if let first = device.first, first.isLetter {
                // The engine's device: cpu, cuda (= cuda:0) or cuda:N.
                if device == "cpu" { request.device = .cpu }
                else if device == "cuda" { request.device = .cuda(0) }
                else if device.hasPrefix("cuda:"), let n = Int(device.dropFirst(5)), n >= 0 { request.device = .cuda(n) }
                else { throw usage("--device \(device): give a device (cpu, cuda, cuda:N) or GPU indices (0,1)") }
                if case .cuda(let n)? = request.device, n >= Device.cudaDeviceCount {
                    let status = Device.cudaDriverStatus
                    throw usage("--device \(device): \(status.available ? "this machine has \(Device.cudaDeviceCount) CUDA device(s)" : "no CUDA device is available (\(status.detail))") — use --device cpu, or run on a GPU host")
                }
            } else {
                guard !device.isEmpty, device.allSatisfy({ $0.isNumber || $0 == "," }) else {
                    throw usage("--device \(device): give GPU indices (0,1) or a device (cpu, cuda, cuda:N)")
                }
                setenv("CUDA_VISIBLE_DEVICES", device, 1)   // pytorch-template's -d, before anything loads CUDA
            }
        }
        if let lr { request.overrides.append(.learningRate(lr)) }
        if let batchSize { request.overrides.append(.batchSize(batchSize)) }
        if let epochs { request.overrides.append(.epochs(epochs)) }
        request.resume = resume.map(ResumeRequest.init)
        request.runID = runID
        request.checkOnly = check
        request.versions = ["ferry": FerryVersion.string]
        request.handleSignals = true
        let outcome = TrainingSession.run(request)
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }
}
