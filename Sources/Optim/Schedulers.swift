import TensorCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `torch.optim.lr_scheduler`: sets the optimizer's learning rates per step (an epoch, or a
/// batch when the trainer steps per batch). State is a few numbers, saved for resume.
public protocol LRScheduler: AnyObject {
    var optimizer: any Optimizer { get }
    /// Advances one step and applies the new learning rates.
    func step()
    /// Advances one step given the monitored metric's latest value (PyTorch's `step(metrics)`):
    /// every scheduler takes it, only those that step on a metric (`ReduceLROnPlateau`) read it,
    /// so a trainer steps any scheduler the same way.
    func step(metrics: Double?)
    /// The learning rates set by the last step, one per group.
    var lastLR: [Double] { get }
    func stateDict() -> [String: Double]
    func loadStateDict(_ d: [String: Double])
}

extension LRScheduler {
    /// A scheduler that steps on its own ignores the metric.
    public func step(metrics: Double?) { step() }
}

/// Schedulers whose rate is a function of the step count and the groups' initial rates.
public class ClosedFormScheduler {
    public let optimizer: any Optimizer
    public private(set) var lastEpoch: Int = 0
    var baseLRs: [Double]

    init(_ optimizer: any Optimizer) {
        self.optimizer = optimizer
        baseLRs = optimizer.paramGroups.map(\.initialLR)
    }

    func rate(base: Double, epoch: Int) -> Double { base }

    public func step() {
        lastEpoch += 1
        apply()
    }

    func apply() {
        for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = rate(base: baseLRs[i], epoch: lastEpoch) }
    }

    public var lastLR: [Double] { optimizer.paramGroups.map(\.lr) }

    public func stateDict() -> [String: Double] {
        var d = ["last_epoch": Double(lastEpoch)]
        for (i, b) in baseLRs.enumerated() { d["base_lr.\(i)"] = b }
        return d
    }

    public func loadStateDict(_ d: [String: Double]) {
        if let e = d["last_epoch"] { lastEpoch = Int(e) }
        for i in baseLRs.indices { if let b = d["base_lr.\(i)"] { baseLRs[i] = b } }
        apply()
    }
}

/// Multiplies the rate by `gamma` every `stepSize` steps.
public final class StepLR: ClosedFormScheduler, LRScheduler {
    public let stepSize: Int, gamma: Double
    public init(_ optimizer: any Optimizer, stepSize: Int, gamma: Double = 0.1) {
        self.stepSize = Swift.max(stepSize, 1); self.gamma = gamma
        super.init(optimizer)
    }
    override func rate(base: Double, epoch: Int) -> Double { base * pow(gamma, Double(epoch / stepSize)) }
}

/// Multiplies the rate by `gamma` at each milestone.
public final class MultiStepLR: ClosedFormScheduler, LRScheduler {
    public let milestones: [Int], gamma: Double
    public init(_ optimizer: any Optimizer, milestones: [Int], gamma: Double = 0.1) {
        self.milestones = milestones.sorted(); self.gamma = gamma
        super.init(optimizer)
    }
    override func rate(base: Double, epoch: Int) -> Double { base * pow(gamma, Double(milestones.filter { $0 <= epoch }.count)) }
}

/// Multiplies the rate by `gamma` every step.
public final class ExponentialLR: ClosedFormScheduler, LRScheduler {
    public let gamma: Double
    public init(_ optimizer: any Optimizer, gamma: Double) { self.gamma = gamma; super.init(optimizer) }
    override func rate(base: Double, epoch: Int) -> Double { base * pow(gamma, Double(epoch)) }
}

/// Cosine annealing from the initial rate to `etaMin` over `tMax` steps (SGDR without restarts).
public final class CosineAnnealingLR: ClosedFormScheduler, LRScheduler {
    public let tMax: Int, etaMin: Double
    public init(_ optimizer: any Optimizer, tMax: Int, etaMin: Double = 0) {
        self.tMax = Swift.max(tMax, 1); self.etaMin = etaMin
        super.init(optimizer)
    }
    override func rate(base: Double, epoch: Int) -> Double {
        etaMin + (base - etaMin) * (1 + cos(Double.pi * Double(epoch) / Double(tMax))) / 2
    }
}

/// Linear warm-up (`LinearLR`): the factor goes from `startFactor` to `endFactor` over `totalIters` steps.
public final class LinearLR: ClosedFormScheduler, LRScheduler {
    public let startFactor, endFactor: Double
    public let totalIters: Int
    public init(_ optimizer: any Optimizer, startFactor: Double = 1.0 / 3, endFactor: Double = 1, totalIters: Int = 5) {
        self.startFactor = startFactor; self.endFactor = endFactor; self.totalIters = Swift.max(totalIters, 1)
        super.init(optimizer)
        apply()
    }
    override func rate(base: Double, epoch: Int) -> Double {
        let t = Double(Swift.min(epoch, totalIters)) / Double(totalIters)
        return base * (startFactor + (endFactor - startFactor) * t)
    }
}

/// Linear warm-up for `warmupSteps`, then another scheduler (its steps counted after warm-up).
public final class WarmupLR: LRScheduler {
    public let optimizer: any Optimizer
    public let warmupSteps: Int
    public let after: (any LRScheduler)?
    public private(set) var stepCount = 0
    let baseLRs: [Double]

    public init(_ optimizer: any Optimizer, warmupSteps: Int, then after: (any LRScheduler)? = nil) {
        self.optimizer = optimizer
        self.warmupSteps = Swift.max(warmupSteps, 1)
        self.after = after
        baseLRs = optimizer.paramGroups.map(\.initialLR)
        apply()
    }

    func apply() {
        if stepCount < warmupSteps {
            let f = Double(stepCount + 1) / Double(warmupSteps)
            for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = baseLRs[i] * f }
        }
    }

    public func step() { step(metrics: nil) }

    /// After warm-up the metric goes to the scheduler that follows.
    public func step(metrics: Double?) {
        stepCount += 1
        if stepCount < warmupSteps { apply() } else if let after { after.step(metrics: metrics) } else {
            for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = baseLRs[i] }
        }
    }

    public var lastLR: [Double] { optimizer.paramGroups.map(\.lr) }

    public func stateDict() -> [String: Double] {
        var d = ["warmup_step": Double(stepCount)]
        for (k, v) in after?.stateDict() ?? [:] { d["after." + k] = v }
        return d
    }

    public func loadStateDict(_ d: [String: Double]) {
        stepCount = Int(d["warmup_step"] ?? 0)
        var inner: [String: Double] = [:]
        for (k, v) in d where k.hasPrefix("after.") { inner[String(k.dropFirst(6))] = v }
        if let after, !inner.isEmpty { after.loadStateDict(inner) }
        if stepCount < warmupSteps { apply() }
    }
}

/// Cuts the rate by `factor` when a monitored metric stops improving for `patience` steps.
/// Its `step(metric:)` (or `step(metrics:)`, nil counting as no improvement) takes the metric; a
/// plain `step()` is a usage error.
public final class ReduceLROnPlateau: LRScheduler {
    public enum Mode: String, Sendable { case min, max }
    public let optimizer: any Optimizer
    public let mode: Mode
    public let factor: Double, threshold: Double
    public let patience: Int, cooldown: Int
    public let minLR: Double
    public let relativeThreshold: Bool
    public private(set) var best: Double
    public private(set) var badEpochs = 0
    public private(set) var cooldownCounter = 0
    public private(set) var lastEpoch = 0

    public init(_ optimizer: any Optimizer, mode: Mode = .min, factor: Double = 0.1, patience: Int = 10, threshold: Double = 1e-4,
                relativeThreshold: Bool = true, cooldown: Int = 0, minLR: Double = 0) {
        self.optimizer = optimizer; self.mode = mode; self.factor = factor; self.patience = patience
        self.threshold = threshold; self.relativeThreshold = relativeThreshold; self.cooldown = cooldown; self.minLR = minLR
        best = mode == .min ? .infinity : -.infinity
    }

    func improved(_ v: Double) -> Bool {
        switch (mode, relativeThreshold) {
        case (.min, true): return v < best * (1 - threshold)
        case (.min, false): return v < best - threshold
        case (.max, true): return v > best * (1 + threshold)
        case (.max, false): return v > best + threshold
        }
    }

    /// Records one value of the monitored metric and cuts the rate when it has plateaued.
    public func step(metric: Double) {
        lastEpoch += 1
        if improved(metric) { best = metric; badEpochs = 0 } else { badEpochs += 1 }
        if cooldownCounter > 0 { cooldownCounter -= 1; badEpochs = 0 }
        if badEpochs > patience {
            for i in optimizer.paramGroups.indices {
                let old = optimizer.paramGroups[i].lr
                let new = Swift.max(old * factor, minLR)
                if old - new > 1e-8 { optimizer.paramGroups[i].lr = new }
            }
            cooldownCounter = cooldown
            badEpochs = 0
        }
    }

    public func step(metrics: Double?) { step(metric: metrics ?? .nan) }

    public func step() {
        shapeError("ReduceLROnPlateau.step() needs the monitored metric: call step(metric:)")
    }

    public var lastLR: [Double] { optimizer.paramGroups.map(\.lr) }

    public func stateDict() -> [String: Double] {
        ["best": best, "num_bad_epochs": Double(badEpochs), "cooldown_counter": Double(cooldownCounter), "last_epoch": Double(lastEpoch)]
    }

    public func loadStateDict(_ d: [String: Double]) {
        best = d["best"] ?? best
        badEpochs = Int(d["num_bad_epochs"] ?? 0)
        cooldownCounter = Int(d["cooldown_counter"] ?? 0)
        lastEpoch = Int(d["last_epoch"] ?? 0)
    }
}
