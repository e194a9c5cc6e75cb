import Foundation
import Optim
import TensorCore
import Testing

@Suite struct SchedulerTests {
    func optimizer(lr: Double = 1) -> SGD { SGD([Tensor.zeros([1], requiresGrad: true)], lr: lr) }

    func rates(_ s: any LRScheduler, steps: Int) -> [Double] {
        var out: [Double] = []
        for _ in 0..<steps { s.step(); out.append(s.lastLR[0]) }
        return out
    }

    func close(_ a: [Double], _ b: [Double]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { Swift.abs($0 - $1) < 1e-12 } }

    @Test func stepMultiStepExponentialCosine() {
        #expect(close(rates(StepLR(optimizer(), stepSize: 2, gamma: 0.5), steps: 5), [1, 0.5, 0.5, 0.25, 0.25]))
        #expect(close(rates(MultiStepLR(optimizer(), milestones: [2, 4], gamma: 0.1), steps: 5), [1, 0.1, 0.1, 0.01, 0.01]))
        #expect(close(rates(ExponentialLR(optimizer(), gamma: 0.9), steps: 3), [0.9, 0.81, 0.729]))
        let cos = rates(CosineAnnealingLR(optimizer(), tMax: 4, etaMin: 0), steps: 4)
        #expect(close(cos, [0.5 + 0.5 * Foundation.cos(Double.pi / 4), 0.5, 0.5 - 0.5 * Foundation.cos(Double.pi / 4), 0]))
    }

    @Test func linearWarmup() {
        let opt = optimizer(lr: 1)
        let s = LinearLR(opt, startFactor: 0.25, endFactor: 1, totalIters: 3)
        #expect(Swift.abs(opt.lr - 0.25) < 1e-12)
        #expect(close(rates(s, steps: 4), [0.5, 0.75, 1, 1]))
        let opt2 = optimizer(lr: 1)
        let w = WarmupLR(opt2, warmupSteps: 4, then: StepLR(opt2, stepSize: 1, gamma: 0.5))
        #expect(Swift.abs(opt2.lr - 0.25) < 1e-12)
        #expect(close(rates(w, steps: 5), [0.5, 0.75, 1, 0.5, 0.25]))
    }

    @Test func reduceOnPlateauUsesItsMetric() {
        let opt = optimizer(lr: 1)
        let s = ReduceLROnPlateau(opt, mode: .min, factor: 0.5, patience: 1)
        for loss in [1.0, 0.9, 0.95, 0.96] { s.step(metric: loss) }
        #expect(opt.lr == 0.5)   // two bad epochs after 0.9 > patience 1
        let maxMode = ReduceLROnPlateau(optimizer(lr: 1), mode: .max, factor: 0.1, patience: 0)
        maxMode.step(metric: 0.5); maxMode.step(metric: 0.6); #expect(maxMode.lastLR == [1])
        maxMode.step(metric: 0.6); #expect(Swift.abs(maxMode.lastLR[0] - 0.1) < 1e-12)
    }

    @Test func stateRoundTripContinuesTheSchedule() {
        let opt = optimizer(lr: 1)
        let s = StepLR(opt, stepSize: 2, gamma: 0.5)
        _ = rates(s, steps: 3)
        let state = s.stateDict()
        let opt2 = optimizer(lr: 1)
        let s2 = StepLR(opt2, stepSize: 2, gamma: 0.5)
        s2.loadStateDict(state)
        #expect(close(rates(s, steps: 3), rates(s2, steps: 3)))
        let p = ReduceLROnPlateau(optimizer(), patience: 3)
        p.step(metric: 2); p.step(metric: 3)
        let p2 = ReduceLROnPlateau(optimizer(), patience: 3)
        p2.loadStateDict(p.stateDict())
        #expect(p2.best == 2 && p2.badEpochs == 1)
    }
}

/// `step(metrics:)`: every scheduler takes the monitored value; only ReduceLROnPlateau reads it.
@Suite struct SchedulerStepMetricsTests {
    func optimizer() -> SGD { SGD([Tensor.zeros([1], requiresGrad: true)], lr: 1) }

    @Test func schedulersThatStepOnTheirOwnIgnoreTheMetric() {
        let makers: [(String, (SGD) -> any LRScheduler)] = [
            ("StepLR", { StepLR($0, stepSize: 2, gamma: 0.5) }),
            ("MultiStepLR", { MultiStepLR($0, milestones: [1, 3], gamma: 0.1) }),
            ("ExponentialLR", { ExponentialLR($0, gamma: 0.9) }),
            ("CosineAnnealingLR", { CosineAnnealingLR($0, tMax: 4, etaMin: 0.1) }),
            ("LinearLR", { LinearLR($0, startFactor: 0.25, endFactor: 1, totalIters: 3) }),
            ("WarmupLR", { WarmupLR($0, warmupSteps: 2, then: StepLR($0, stepSize: 1, gamma: 0.5)) }),
            ("WarmupLR alone", { WarmupLR($0, warmupSteps: 3) }),
        ]
        for (name, make) in makers {
            let plain = make(optimizer()), withMetric = make(optimizer()), withNil = make(optimizer())
            var a: [Double] = [], b: [Double] = [], c: [Double] = []
            for i in 0..<5 {
                plain.step(); a.append(plain.lastLR[0])
                withMetric.step(metrics: Double(10 - i)); b.append(withMetric.lastLR[0])
                withNil.step(metrics: nil); c.append(withNil.lastLR[0])
            }
            #expect(a == b && a == c, "\(name): \(a) \(b) \(c)")
            #expect(Set(a).count > 1, "\(name) should change the rate within 5 steps: \(a)")
            #expect(plain.stateDict() == withMetric.stateDict(), "\(name)")
        }
    }

    @Test func plateauReadsTheMetricAndCountsNilAsNoImprovement() {
        let viaMetrics = ReduceLROnPlateau(optimizer(), mode: .min, factor: 0.5, patience: 1)
        let viaMetric = ReduceLROnPlateau(optimizer(), mode: .min, factor: 0.5, patience: 1)
        for loss in [1.0, 0.9, 0.95, 0.96] { viaMetrics.step(metrics: loss); viaMetric.step(metric: loss) }
        #expect(viaMetrics.lastLR == [0.5] && viaMetrics.stateDict() == viaMetric.stateDict())

        let missing = ReduceLROnPlateau(optimizer(), mode: .min, factor: 0.5, patience: 1)
        missing.step(metrics: 1)
        missing.step(metrics: nil); #expect(missing.lastLR == [1] && missing.badEpochs == 1)
        missing.step(metrics: nil); #expect(missing.lastLR == [0.5])   // two epochs without a value: a plateau
    }

    @Test func anySchedulerStepsThroughTheProtocol() {
        let schedulers: [any LRScheduler] = [StepLR(optimizer(), stepSize: 1, gamma: 0.5),
                                             ReduceLROnPlateau(optimizer(), mode: .max, factor: 0.1, patience: 0)]
        for s in schedulers { s.step(metrics: 0.5) }
        for s in schedulers { s.step(metrics: 0.4) }
        #expect(schedulers.map { $0.lastLR[0] } == [0.25, 0.1])
    }
}
