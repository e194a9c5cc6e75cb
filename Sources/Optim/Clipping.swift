import TensorCore

/// Gradient clipping, in place on `.grad` (`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`).
public enum GradClip {
    /// Scales all gradients so their joint norm is at most `maxNorm`; returns the norm before
    /// clipping. `normType` may be `.infinity`.
    @discardableResult
    public static func clipGradNorm(_ parameters: [Tensor], maxNorm: Double, normType: Double = 2) -> Double {
        let grads = parameters.compactMap(\.grad)
        if grads.isEmpty { return 0 }
        var total = 0.0
        noGrad {
            if normType == .infinity {
                total = grads.map { $0.abs().max().item() }.max() ?? 0
            } else {
                var s = 0.0
                for g in grads { s += g.abs().pow(normType).sum().item() }
                total = Foundation_pow(s, 1 / normType)
            }
        }
        let coef = maxNorm / (total + 1e-6)
        if coef < 1 {
            for p in parameters {
                guard let g = p.grad else { continue }
                if !g.isContiguous { p.grad = g.contiguous() }
                p.grad?.scaleInPlace(by: coef)
            }
        }
        return total
    }

    /// Clamps every gradient element into [-clipValue, clipValue].
    public static func clipGradValue(_ parameters: [Tensor], clipValue: Double) {
        noGrad {
            for p in parameters {
                guard let g = p.grad else { continue }
                p.grad = g.clamp(min: -clipValue, max: clipValue)
            }
        }
    }
}
