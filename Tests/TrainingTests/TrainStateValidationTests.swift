import Foundation
import Optim
import TensorCore
import Testing
@testable import Training
import TrainingTestSupport

/// A damaged train state is an error naming the file and the field, never a trap, a hang or a silent
/// misreading (a negative epoch used to train epochs -2…2; a non-scalar monitor.best trapped in item()).
@Suite struct TrainStateValidationTests {
    /// A valid train state's tensors and metadata (SGD with momentum and a StepLR scheduler).
    static func validState() -> (tensors: [String: Tensor], metadata: [String: String]) {
        var s = TrainState(seed: 7, monitorBest: 0.25)
        s.epoch = 2; s.globalStep = 20; s.batchInEpoch = 3; s.bestEpoch = 1; s.notImproved = 1
        s.rng = [1, 2, 3, 4]
        s.partial.add(batchSize: 4, meanLoss: 0.5, metricSums: ["accuracy": 3])
        let p = Tensor.ones([3], requiresGrad: true)
        let opt = SGD([p], lr: 0.1, momentum: 0.9)
        p.grad = Tensor.ones([3])
        opt.step()
        let sched = StepLR(opt, stepSize: 2)
        sched.step()
        let data = Checkpoint.encodeState(s, optimizer: opt, optimizerType: "SGD", scheduler: sched, schedulerType: "StepLR", monitor: .min("val_loss"))
        // `try!` is fine here: the bytes come from the encoder above, and a failure is the test failing.
        return try! SafeTensors.decode(data)
    }

    /// The error `decodeState` gives for the valid state with `changes` applied (nil for none).
    static func decodeError(_ changes: [String: Tensor?]) throws -> String? {
        var (tensors, metadata) = validState()
        for (k, v) in changes { tensors[k] = v }
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let file = dir.path("train_state.safetensors")
        try SafeTensors.write(tensors, to: file, metadata: metadata)
        do {
            _ = try Checkpoint.decodeState(file)
            return nil
        } catch let error as TrainingError {
            guard case .checkpoint(let path, _) = error else { return "unexpected \(error)" }
            #expect(path == file.path)
            return error.description
        }
    }

    static func int(_ v: Int64) -> Tensor { Tensor(shape: [], scalars: [v]) }
    static func double(_ v: Double) -> Tensor { Tensor.full([], value: v, dtype: .float64) }

    @Test func theValidStateDecodes() throws {
        #expect(try Self.decodeError([:]) == nil)
        // Whole-number floats are counts too (another writer may store them so).
        #expect(try Self.decodeError(["progress.epoch": Self.double(2)]) == nil)
    }

    /// A replacement value, as test arguments must be Sendable (tensors are not).
    enum Value: Sendable, CustomTestStringConvertible {
        case int([Int], Int64)
        case double([Int], Double)
        var tensor: Tensor {
            switch self {
            case .int(let shape, let v): return Tensor(shape: shape, scalars: [Int64](repeating: v, count: shape.reduce(1, *)))
            case .double(let shape, let v): return Tensor(shape: shape, scalars: [Double](repeating: v, count: shape.reduce(1, *)))
            }
        }
        var testDescription: String {
            switch self {
            case .int(let shape, let v): return "int64 \(shape) \(v)"
            case .double(let shape, let v): return "float64 \(shape) \(v)"
            }
        }
    }

    @Test(arguments: [
        ("monitor.best", Value.double([2], 0), "monitor.best has shape [2], expected a scalar"),
        ("monitor.best", .double([0], 0), "monitor.best has shape [0], expected a scalar"),
        ("monitor.best", .double([], .nan), "monitor.best is nan"),
        ("progress.batch_in_epoch", .int([], -3), "progress.batch_in_epoch is -3, expected 0...9007199254740992"),
        ("progress.global_step", .int([], Int64.max), "progress.global_step is 9223372036854775807, expected 0...9007199254740992"),
        ("progress.epoch", .int([], -3), "progress.epoch is -3, expected 0..."),
        ("progress.epoch", .int([2, 2], 1), "progress.epoch has shape [2, 2], expected a scalar"),
        ("progress.epoch", .double([], 1.5), "progress.epoch is 1.5, expected a whole number"),
        ("progress.seed", .int([3], 0), "progress.seed has shape [3], expected a scalar"),
        ("early_stop.counter", .int([], Int64.min), "early_stop.counter is -9223372036854775808"),
        ("partial.samples", .double([], .infinity), "partial.samples is inf, expected a whole number"),
        ("partial.loss_sum", .double([4], 0), "partial.loss_sum has shape [4], expected a scalar"),
        ("optimizer.param_groups.0.lr", .double([2], 0), "optimizer.param_groups.0.lr has shape [2], expected a scalar"),
        ("optimizer.param_groups.0.lr", .double([], -1), "optimizer.param_groups.0.lr is -1.0, expected a learning rate >= 0"),
        ("optimizer.state.0.step", .double([], .nan), "optimizer.state.0.step is nan, expected a whole number"),
        ("scheduler.last_epoch", .double([], 1e300), "scheduler.last_epoch is 1e+300, expected a whole number"),
        ("scheduler.base_lr.0", .double([3], 0), "scheduler.base_lr.0 has shape [3], expected a scalar"),
    ] as [(String, Value, String)])
    func damagedFieldsAreNamed(field: String, value: Value, message: String) throws {
        let error = try #require(try Self.decodeError([field: value.tensor]), "\(field) = \(value.testDescription) was accepted")
        #expect(error.contains(message), "\(error)")
        #expect(error.hasSuffix("the checkpoint is damaged; resume from another checkpoint or start afresh"), "\(error)")
    }

    @Test func optimizerStateIndicesFromAFileAreChecked() throws {
        let p = Tensor.ones([3], requiresGrad: true)
        let opt = SGD([p], lr: 0.1, momentum: 0.9)
        // A negative index passed `i < count` and then trapped indexing the state array.
        #expect(throws: OptimError.self) { try opt.loadStateDict(["state.-1.step": Tensor.full([], value: 1, dtype: .float64)]) }
        #expect(throws: OptimError.self) { try opt.loadStateDict(["param_groups.-1.lr": Tensor.full([], value: 1, dtype: .float64)]) }
        #expect(throws: OptimError.self) { try opt.loadStateDict(["state.0.step": Tensor.zeros([2], dtype: .float64)]) }
        #expect(throws: OptimError.self) { try opt.loadStateDict(["param_groups.0.lr": Tensor.full([], value: .nan, dtype: .float64)]) }
    }

    /// A batch_in_epoch beyond the epoch's steps (the trainer would skip batches that do not exist) and
    /// a seed beyond what a config holds are refused when resuming, before anything trains.
    @Test(arguments: [("progress.batch_in_epoch", Int64(1_000_000), "progress.batch_in_epoch is 1000000, expected 0...4"),
                      ("progress.seed", Int64(-1), "progress.seed is -1, expected 0...")])
    func resumeChecksTheStateAgainstTheRun(field: String, value: Int64, message: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let config = tinyConfig(saveDir: dir.url.path, epochs: 1, extraTrainer: #", "tensorboard": false"#)
        #expect(try trainInProcess(config, registry: TestRegistry.registry()).status == .succeeded)
        let last = dir.path("tiny/run/checkpoints/last")
        let file = last.appendingPathComponent(Checkpoint.stateFile)
        var (tensors, metadata) = try SafeTensors.readWithMetadata(file)
        tensors[field] = Tensor(shape: [], scalars: [value])
        try SafeTensors.write(tensors, to: file, metadata: metadata)

        var request = TrainRequest()
        request.config = try json(tinyConfig(saveDir: dir.url.path, epochs: 2, extraTrainer: #", "tensorboard": false"#))
        request.registry = TestRegistry.registry()
        request.randomness = .scoped
        request.console = .silent
        request.environment = [:]
        request.resume = .path(last.path)
        let outcome = TrainingSession.run(request)
        #expect(outcome.status != .succeeded, "\(outcome.status)")
        let description = outcome.error?.description ?? ""
        #expect(description.contains("checkpoints/last/train_state.safetensors: ") && description.contains(message), "\(description)")
        #expect(try SafeTensors.read(file)[field]?.scalars(as: Int64.self) == [value], "nothing was trained or saved over it")
    }
}
