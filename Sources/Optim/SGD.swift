import System
import TensorCore

/// `torch.optim.SGD` with momentum, dampening, Nesterov and L2 weight decay.
public final class SGD: OptimizerBase, Optimizer {
    public let momentum, dampening, weightDecay: Double
    public let nesterov: Bool

    public convenience init(_ params: [Tensor], lr: Double, momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0,
                nesterov: Bool = false) {
        self.init(groups: [ParamGroup(params: params, lr: lr)], lr: lr, momentum: momentum, dampening: dampening,
                      weightDecay: weightDecay, nesterov: nesterov)
    }

    public init(groups: [ParamGroup], lr: Double, momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0,
                nesterov: Bool = false) {
        if momentum < 0 { usageError(OptimError.invalidHyperparameter("momentum must be >= 0, got \(momentum)").description) }
        if weightDecay < 0 { usageError(OptimError.invalidHyperparameter("weight_decay must be >= 0, got \(weightDecay)").description) }
        if nesterov && (momentum <= 0 || dampening != 0) {
            shapeError(OptimError.invalidHyperparameter("Nesterov momentum requires a momentum and zero dampening").description)
        }
        self.momentum = momentum; self.dampening = dampening; self.weightDecay = weightDecay; self.nesterov = nesterov
        super.init(groups: groups, defaultLR: lr)
    }

    public func step() {
        forEachParameter { group, i, p, grad in
            let lr = group.lr
            let mom = option(group, "momentum", momentum), damp = option(group, "dampening", dampening)
            let wd = option(group, "weight_decay", weightDecay)
            let first = steps[i] == 0
            steps[i] += 1
            let buf = mom != 0 ? buffer("momentum_buffer", i, like: p) : nil
            if p.dtype == .float32 && p.isCUDA {
                CUDAOptimizerKernels.sgdStep(p, grad: grad, buffer: buf, lr: lr, momentum: mom, dampening: damp,
                                             weightDecay: wd, nesterov: nesterov, first: first)
            } else if p.dtype == .float32 {
                let n = p.numel
                let pp = SendablePointer(p.pointer(Float.self)), gp = SendablePointer(grad.pointer(Float.self))
                let bp = buf.map { SendablePointer($0.pointer(Float.self)) }
                let lrf = Float(lr), momf = Float(mom), dampf = Float(damp), wdf = Float(wd), nest = nesterov
                Threading.parallelFor(n, grain: 65_536) { r in
                    for j in r {
                        var d = gp.p[j]
                        if wdf != 0 { d += wdf * pp.p[j] }
                        if let bp {
                            let b = first ? d : momf * bp.p[j] + (1 - dampf) * d
                            bp.p[j] = b
                            d = nest ? d + momf * b : b
                        }
                        pp.p[j] -= lrf * d
                    }
                }
            } else {
                noGrad {
                    var d = grad
                    if wd != 0 { d = d + p * wd }
                    if let buf {
                        let b = first ? d : buf * mom + d * (1 - damp)
                        buf.copy(from: b)
                        d = nesterov ? d + buf * mom : buf
                    }
                    p.copy(from: p - d * lr)
                }
            }
        }
    }
}
