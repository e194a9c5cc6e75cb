import Foundation
import Optim
import TensorCore
import Testing

/// Optimizer trajectories against scripts/fixtures/make_optim_fixtures.py (numpy, PyTorch's
/// update rules). The gradient depends on the current parameter, so every step is checked.
@Suite struct OptimizerReferenceTests {
    struct Reference: Decodable { let n: Int; let steps: Int; let cases: [String: [[Double]]] }

    static let reference: Reference = {
        guard let url = Bundle.module.url(forResource: "optim_reference", withExtension: "json", subdirectory: "Fixtures"),
              let data = try? Data(contentsOf: url), let r = try? JSONDecoder().decode(Reference.self, from: data) else {
            return Reference(n: 0, steps: 0, cases: [:])
        }
        return r
    }()

    func trajectory(_ name: String, dtype: DType, make: ([Tensor]) -> any Optimizer) -> [[Double]] {
        let r = Self.reference
        let p = Tensor(shape: [r.n], scalars: (0..<r.n).map { 0.1 * Double($0 + 1) - 0.35 }).to(dtype).requiresGrad(true)
        let opt = make([p])
        var out: [[Double]] = []
        for t in 1...r.steps {
            let pv = p.scalars(as: Double.self)
            let g = (0..<r.n).map { Foundation.sin(0.7 * Double(t) + Double($0)) + 0.1 * pv[$0] }
            p.grad = Tensor(shape: [r.n], scalars: g).to(dtype)
            opt.step()
            out.append(p.scalars(as: Double.self))
        }
        return out
    }

    static func maker(_ name: String) -> ([Tensor]) -> any Optimizer {
        switch name {
        case "sgd": return { SGD($0, lr: 0.1) }
        case "sgd_momentum": return { SGD($0, lr: 0.1, momentum: 0.9) }
        case "sgd_momentum_dampening_wd": return { SGD($0, lr: 0.05, momentum: 0.8, dampening: 0.3, weightDecay: 0.01) }
        case "sgd_nesterov": return { SGD($0, lr: 0.1, momentum: 0.9, nesterov: true) }
        case "adam": return { Adam($0, lr: 0.01) }
        case "adam_wd": return { Adam($0, lr: 0.01, weightDecay: 0.1) }
        case "adam_amsgrad": return { Adam($0, lr: 0.01, amsgrad: true) }
        default: return { AdamW($0, lr: 0.01, weightDecay: 0.1) }
        }
    }

    @Test("matches numpy", arguments: ["sgd", "sgd_momentum", "sgd_momentum_dampening_wd", "sgd_nesterov", "adam", "adam_wd", "adam_amsgrad", "adamw"],
          [DType.float64, .float32])
    func matchesNumpy(name: String, dtype: DType) throws {
        let expected = try #require(Self.reference.cases[name], "fixture for \(name) missing")
        let got = trajectory(name, dtype: dtype, make: Self.maker(name))
        let tol = dtype == .float64 ? 1e-12 : 2e-6
        for (step, (e, g)) in zip(expected, got).enumerated() {
            for i in e.indices {
                #expect(Swift.abs(e[i] - g[i]) <= tol * Swift.max(1, Swift.abs(e[i])), "\(name) \(dtype) step \(step + 1) element \(i): \(g[i]) vs numpy \(e[i])")
            }
        }
        #expect(got.count == Self.reference.steps)
    }

    @Test func stateDictResumesBitExactly() throws {
        // Run 5 steps straight, or 2 steps + save + a fresh optimizer loading the state + 3 steps.
        func run(split: Bool) throws -> [Float] {
            let p = Tensor(shape: [19], scalars: (0..<19).map { Float($0) * 0.1 - 0.5 }).requiresGrad(true)
            var opt: any Optimizer = Adam([p], lr: 0.01, amsgrad: true)
            for t in 1...5 {
                if split && t == 3 {
                    let saved = opt.stateDict()
                    let fresh = Adam([p], lr: 0.5, amsgrad: true)   // lr restored from the state
                    try fresh.loadStateDict(saved)
                    opt = fresh
                }
                p.grad = Tensor(shape: [19], scalars: (0..<19).map { Float(Foundation.sin(Double(t + $0))) })
                opt.step()
            }
            return p.scalars(as: Float.self)
        }
        #expect(try run(split: false) == run(split: true))
    }

    @Test func loadingStateOfAnotherShapeIsRefused() throws {
        let a = Tensor.zeros([3], requiresGrad: true), b = Tensor.zeros([4], requiresGrad: true)
        let oa = Adam([a]); a.grad = Tensor.ones([3]); oa.step()
        let ob = Adam([b])
        #expect(throws: OptimError.self) { try ob.loadStateDict(oa.stateDict()) }
    }

    @Test func paramGroupsKeepTheirOwnRates() {
        let a = Tensor.ones([2], requiresGrad: true), b = Tensor.ones([2], requiresGrad: true)
        let opt = SGD(groups: [ParamGroup(params: [a], lr: 0.1), ParamGroup(params: [b], lr: 0.01)], lr: 1)
        a.grad = Tensor.ones([2]); b.grad = Tensor.ones([2])
        opt.step()
        #expect(a.scalars(as: Float.self) == [0.9, 0.9])
        #expect(b.scalars(as: Float.self) == [0.99, 0.99])
        opt.zeroGrad()
        #expect(a.grad == nil && b.grad == nil)
    }

    @Test func clippingByNormAndValue() {
        let a = Tensor.zeros([2], requiresGrad: true), b = Tensor.zeros([1], requiresGrad: true)
        a.grad = Tensor([3.0, 0.0]); b.grad = Tensor([4.0])
        let norm = GradClip.clipGradNorm([a, b], maxNorm: 1)
        #expect(Swift.abs(norm - 5) < 1e-6)
        let total = (a.grad!.pow(2).sum() + b.grad!.pow(2).sum()).sqrt().item()
        #expect(Swift.abs(total - 1) < 1e-5)
        a.grad = Tensor([3.0, -0.5])
        GradClip.clipGradValue([a], clipValue: 1)
        #expect(a.grad!.scalars(as: Float.self) == [1, -0.5])
    }
}
