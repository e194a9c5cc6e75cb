import System
import TensorCore

/// `torch.optim.Adam` (L2 weight decay added to the gradient, optional AMSGrad) and, with
/// `decoupled`, `AdamW` (weight decay applied to the parameter directly).
public class Adam: OptimizerBase, Optimizer {
    public let beta1, beta2, eps, weightDecay: Double
    public let amsgrad: Bool
    let decoupled: Bool

    public convenience init(_ params: [Tensor], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                            weightDecay: Double = 0, amsgrad: Bool = false) {
        self.init(groups: [ParamGroup(params: params, lr: lr)], lr: lr, betas: betas, eps: eps, weightDecay: weightDecay,
                      amsgrad: amsgrad, decoupled: false)
    }

    public convenience init(groups: [ParamGroup], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                            weightDecay: Double = 0, amsgrad: Bool = false) {
        self.init(groups: groups, lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad, decoupled: false)
    }

    init(groups: [ParamGroup], lr: Double, betas: (Double, Double), eps: Double, weightDecay: Double, amsgrad: Bool, decoupled: Bool) {
        if !(0..<1).contains(betas.0) || !(0..<1).contains(betas.1) {
            usageError(OptimError.invalidHyperparameter("betas must be in [0, 1), got (\(betas.0), \(betas.1))").description)
        }
        if eps < 0 { usageError(OptimError.invalidHyperparameter("eps must be >= 0, got \(eps)").description) }
        if weightDecay < 0 { usageError(OptimError.invalidHyperparameter("weight_decay must be >= 0, got \(weightDecay)").description) }
        beta1 = betas.0; beta2 = betas.1; self.eps = eps; self.weightDecay = weightDecay; self.amsgrad = amsgrad
        self.decoupled = decoupled
        super.init(groups: groups, defaultLR: lr)
    }

    public func step() {
        forEachParameter { group, i, p, grad in
            let lr = group.lr
            let b1 = option(group, "betas0", beta1), b2 = option(group, "betas1", beta2)
            let e = option(group, "eps", eps), wd = option(group, "weight_decay", weightDecay)
            steps[i] += 1
            let t = Double(steps[i])
            let m = buffer("exp_avg", i, like: p), v = buffer("exp_avg_sq", i, like: p)
            let vmax = amsgrad ? buffer("max_exp_avg_sq", i, like: p) : nil
            let bc1 = 1 - Foundation_pow(b1, t), bc2 = 1 - Foundation_pow(b2, t)
            let stepSize = lr / bc1, bc2Sqrt = bc2.squareRoot()
            if p.dtype == .float32 && p.isCUDA {
                CUDAOptimizerKernels.adamStep(p, grad: grad, expAvg: m, expAvgSq: v, maxExpAvgSq: vmax, beta1: b1, beta2: b2, eps: e,
                                              weightDecay: wd, lr: lr, stepSize: stepSize, invBiasCorrection2Sqrt: 1 / bc2Sqrt,
                                              decoupled: decoupled)
            } else if p.dtype == .float32 {
                let pp = SendablePointer(p.pointer(Float.self)), gp = SendablePointer(grad.pointer(Float.self))
                let mp = SendablePointer(m.pointer(Float.self)), vp = SendablePointer(v.pointer(Float.self))
                let xp = vmax.map { SendablePointer($0.pointer(Float.self)) }
                let b1f = Float(b1), b2f = Float(b2), ef = Float(e), wdf = Float(wd), lrf = Float(lr)
                let ss = Float(stepSize), inv = Float(1 / bc2Sqrt), dec = decoupled
                Threading.parallelFor(p.numel, grain: 65_536) { r in
                    var j = r.lowerBound
                    if xp == nil {
                        // The common case, eight lanes at a time (sqrt and divide stay vector instructions).
                        typealias V = SIMD8<Float>
                        let vb1 = V(repeating: b1f), vb2 = V(repeating: b2f), c1 = V(repeating: 1 - b1f), c2 = V(repeating: 1 - b2f)
                        let vss = V(repeating: ss), vinv = V(repeating: inv), veps = V(repeating: ef)
                        let decay = V(repeating: dec ? 1 - lrf * wdf : 1), l2 = V(repeating: dec ? 0 : wdf)
                        while j + 8 <= r.upperBound {
                            let praw = UnsafeMutableRawPointer(pp.p + j)
                            var pv = praw.loadUnaligned(as: V.self) * decay
                            let g = UnsafeRawPointer(gp.p + j).loadUnaligned(as: V.self) + l2 * pv
                            let mj = vb1 * UnsafeRawPointer(mp.p + j).loadUnaligned(as: V.self) + c1 * g
                            let vj = vb2 * UnsafeRawPointer(vp.p + j).loadUnaligned(as: V.self) + c2 * g * g
                            UnsafeMutableRawPointer(mp.p + j).storeBytes(of: mj, as: V.self)
                            UnsafeMutableRawPointer(vp.p + j).storeBytes(of: vj, as: V.self)
                            pv = pv - vss * mj / (VectorMath.sqrt(vj) * vinv + veps)
                            praw.storeBytes(of: pv, as: V.self)
                            j += 8
                        }
                    }
                    while j < r.upperBound {
                        var g = gp.p[j]
                        if wdf != 0 { if dec { pp.p[j] *= 1 - lrf * wdf } else { g += wdf * pp.p[j] } }
                        let mj = b1f * mp.p[j] + (1 - b1f) * g
                        let vj = b2f * vp.p[j] + (1 - b2f) * g * g
                        mp.p[j] = mj; vp.p[j] = vj
                        var vv = vj
                        if let xp { vv = Swift.max(xp.p[j], vj); xp.p[j] = vv }
                        pp.p[j] -= ss * mj / (vv.squareRoot() * inv + ef)
                        j += 1
                    }
                }
            } else {
                noGrad {
                    var g = grad
                    if wd != 0 {
                        if decoupled { p.copy(from: p * (1 - lr * wd)) } else { g = g + p * wd }
                    }
                    m.copy(from: m * b1 + g * (1 - b1))
                    v.copy(from: v * b2 + g * g * (1 - b2))
                    var vv = v
                    if let vmax { vmax.copy(from: Tensor.maximum(vmax, v)); vv = vmax }
                    p.copy(from: p - m / (vv.sqrt() / bc2Sqrt + e) * stepSize)
                }
            }
        }
    }
}

/// `torch.optim.AdamW`: Adam with decoupled weight decay (default 0.01).
public final class AdamW: Adam {
    public convenience init(_ params: [Tensor], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                            weightDecay: Double = 1e-2, amsgrad: Bool = false) {
        self.init(groups: [ParamGroup(params: params, lr: lr)], lr: lr, betas: betas, eps: eps, weightDecay: weightDecay,
                      amsgrad: amsgrad, decoupled: true)
    }

    public convenience init(groups: [ParamGroup], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                            weightDecay: Double = 1e-2, amsgrad: Bool = false) {
        self.init(groups: groups, lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad, decoupled: true)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func Foundation_pow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
