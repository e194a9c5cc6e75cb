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
