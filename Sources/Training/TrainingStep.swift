import Data
import NN
import Optim
import TensorCore

/// What a run trains with, built once from the plan before the first step.
struct TrainingParts {
    let model: any Module
    let optimizer: any Optimizer
    let scheduler: (any LRScheduler)?
    let scorer: Scorer
    let trainLoader: DataLoader<AnyDataset>
    let validLoader: DataLoader<AnyDataset>?
    /// Where the model lives and batches are moved to.
    let device: Device
    let step: TrainingStep
}

/// The device a run trains on, as pytorch-template's `prepare_device`: n_gpu 0 is the CPU; more
/// GPUs than there are is a warning and as many as there are (none: the CPU); ferry trains on one
/// GPU, cuda:0. An explicit `--device` wins, and a CUDA device that is not there is an error.
public enum DevicePlan {
    public static func choose(nGPU: Int, requested: Device?, available: Int, driver: String) throws(TrainingError) -> (device: Device, notes: [String], warnings: [String]) {
        if let requested {
            if case .cuda(let n) = requested, n >= available {
                throw .device("--device \(requested): \(available == 0 ? "no CUDA device is available (\(driver))" : "this machine has \(available) CUDA device(s)") — use --device cpu, or run on a GPU host")
            }
            return (requested, ["training on \(requested)"], [])
        }
        var use = nGPU, warnings: [String] = []
        if use > 0 && available == 0 {
            warnings.append("Warning: There's no GPU available on this machine, training will be performed on CPU.")
            use = 0
        }
        if use > available {
            warnings.append("Warning: The number of GPU's configured to use is \(use), but only \(available) are available on this machine.")
            use = available
        }
        if use == 0 { return (.cpu, ["training on cpu"], warnings) }
        var notes = ["training on cuda:0"]
        if use > 1 { notes.append("n_gpu is \(use): ferry trains on one GPU (cuda:0); the others stay idle (no data parallelism)") }
        return (.cuda(0), notes, warnings)
    }
}

/// One optimizer step on one batch: forward, loss, backward, gradient clipping, the optimizer's
/// step, and the scheduler's when it steps per batch.
struct TrainingStep {
    let model: any Module
    let optimizer: any Optimizer
    let scheduler: (any LRScheduler)?
    let scorer: Scorer
    let gradClip: GradClipSetting?
    let schedulerInterval: SchedulerInterval
    let parameters: [Tensor]

    init(model: any Module, optimizer: any Optimizer, scheduler: (any LRScheduler)?, scorer: Scorer,
         gradClip: GradClipSetting?, schedulerInterval: SchedulerInterval) {
        self.model = model; self.optimizer = optimizer; self.scheduler = scheduler; self.scorer = scorer
        self.gradClip = gradClip; self.schedulerInterval = schedulerInterval
        parameters = model.parameters()
    }

    /// Trains on `x` (labels `y`); returns the model's scores and the batch's mean loss.
    func callAsFunction(_ x: Tensor, _ y: Tensor) -> (output: Tensor, loss: Double) {
        optimizer.zeroGrad()
        let output = model(x)
        let loss = scorer.loss(output, y)
        loss.backward()
        switch gradClip {
        case .norm(let maxNorm, let normType)?: GradClip.clipGradNorm(parameters, maxNorm: maxNorm, normType: normType)
        case .value(let v)?: GradClip.clipGradValue(parameters, clipValue: v)
        case nil: break
        }
        optimizer.step()
        // A scheduler that steps on a metric steps per epoch (the checker allows nothing else).
        if schedulerInterval == .step { scheduler?.step(metrics: nil) }
        return (output, loss.item())
    }
}
