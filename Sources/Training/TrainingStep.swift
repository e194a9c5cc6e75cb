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
    let step: TrainingStep
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
