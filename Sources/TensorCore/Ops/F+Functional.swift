/// How a loss reduces over samples, as PyTorch's `reduction=`.
public enum Reduction: String, Sendable, CaseIterable {
    case mean, sum, none
}

extension F {
    public static func softmax(_ x: Tensor, dim: Int) -> Tensor { x.softmax(dim: dim) }
    public static func logSoftmax(_ x: Tensor, dim: Int) -> Tensor { x.logSoftmax(dim: dim) }
    public static func relu(_ x: Tensor) -> Tensor { x.relu() }
    public static func gelu(_ x: Tensor) -> Tensor { x.gelu() }
    public static func sigmoid(_ x: Tensor) -> Tensor { x.sigmoid() }
    public static func tanh(_ x: Tensor) -> Tensor { x.tanh() }

    /// `x @ weightᵀ + bias` in one GEMM.
    public static func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil) -> Tensor {
        Tensor.linear(x, weight: weight, bias: bias)
    }

    /// One-hot encoding of int64 class indices; `numClasses` defaults to max + 1 (as PyTorch).
    public static func oneHot(_ labels: Tensor, numClasses: Int? = nil) -> Tensor {
        if labels.dtype != .int64 { usageError("oneHot: class values must be int64, got \(labels.dtype)") }
        let values = labels.scalars(as: Int64.self)
        let c = numClasses ?? (values.max().map { Int($0) + 1 } ?? 0)
        var out = [Int64](repeating: 0, count: values.count * c)
        for (i, v) in values.enumerated() {
            if v < 0 || Int(v) >= c { usageError("oneHot: class value \(v) is out of range for \(c) classes") }
            out[i * c + Int(v)] = 1
        }
        return Tensor(shape: labels.shape + [c], scalars: out).to(labels.device)
    }

    /// Zeroes elements with probability `p` and scales the rest by 1/(1-p) when training.
    public static func dropout(_ x: Tensor, p: Double = 0.5, training: Bool = true) -> Tensor {
        if p < 0 || p > 1 { usageError("dropout: probability has to be between 0 and 1, but got \(p)") }
        if !training || p == 0 { return x }
        if p == 1 { return x * 0.0 }
        return x * bernoulliMask(x.shape, keep: 1 - p, dtype: x.dtype, device: x.device)
    }

    /// Zeroes whole channels of [N, C, H, W] with probability `p` (`dropout2d`).
    public static func dropout2d(_ x: Tensor, p: Double = 0.5, training: Bool = true) -> Tensor {
        if x.ndim != 4 && x.ndim != 3 { shapeError("dropout2d: expected a 3-d or 4-d input, got shape \(x.shape)") }
        if !training || p == 0 { return x }
        let maskShape = x.ndim == 4 ? [x.shape[0], x.shape[1], 1, 1] : [x.shape[0], 1, 1]
        return x * bernoulliMask(maskShape, keep: 1 - p, dtype: x.dtype, device: x.device)
    }

    /// A mask of 1/keep (kept) and 0 on `device`: on a CUDA device drawn there from the device
    /// generator, on the CPU from the global generator.
    static func bernoulliMask(_ shape: [Int], keep: Double, dtype: DType, device: Device) -> Tensor {
        if device != .cpu { return CUDARandom.bernoulliMask(shape, keep: keep, dtype: dtype, device: device) }
        return bernoulliMask(shape, keep: keep, dtype: dtype)
    }

    /// A mask of 1/keep (kept) and 0, drawn from the global generator.
    static func bernoulliMask(_ shape: [Int], keep: Double, dtype: DType) -> Tensor {
        let mask = Tensor(uninitialized: shape, dtype: dtype)
        let n = mask.numel
        let scale = keep > 0 ? 1 / keep : 0
        GlobalRandom.withGenerator { g in
            switch dtype {
            case .float32:
                let p = mask.pointer(Float.self), k = Float(keep), s = Float(scale)
                for i in 0..<n { p[i] = g.nextFloat() < k ? s : 0 }
            default:
                let p = mask.pointer(Double.self)
                for i in 0..<n { p[i] = g.nextDouble() < keep ? scale : 0 }
            }
        }
        return mask
    }

    static func reduce(_ loss: Tensor, _ reduction: Reduction) -> Tensor {
        switch reduction {
        case .mean: return loss.mean()
        case .sum: return loss.sum()
        case .none: return loss
        }
    }

    /// Mean squared error.
    public static func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
        if input.shape != target.shape { shapeError("mseLoss: input shape \(input.shape) and target shape \(target.shape) differ") }
        let d = input - target
        return reduce(d * d, reduction)
    }

    /// Binary cross entropy on logits, computed stably: Swift.max(x,0) - x·y + log(1 + e^{-|x|}),
    /// with optional per-element `weight` and per-class `posWeight`.
    public static func binaryCrossEntropyWithLogits(_ input: Tensor, _ target: Tensor, weight: Tensor? = nil,
                                                    posWeight: Tensor? = nil, reduction: Reduction = .mean) -> Tensor {
        if input.shape != target.shape { shapeError("binaryCrossEntropyWithLogits: input shape \(input.shape) and target shape \(target.shape) differ") }
        let y = target.to(input.dtype)
        let softplusNeg = (-input.abs()).exp().log1p() + (-input).clamp(min: 0)   // log(1 + e^{-x})
        var loss: Tensor
        if let posWeight {
            let lw = (posWeight - 1) * y + 1
            loss = (1 - y) * input + lw * softplusNeg
        } else {
            loss = (1 - y) * input + softplusNeg
        }
        if let weight { loss = loss * weight }
        return reduce(loss, reduction)
    }

    /// Negative log likelihood on log-probabilities [N, C] (or [N, C, d…]) with int64 class
    /// targets [N] (or [N, d…]); `ignoreIndex` targets contribute nothing.
    public static func nllLoss(_ input: Tensor, _ target: Tensor, weight: Tensor? = nil, ignoreIndex: Int = -100,
                               reduction: Reduction = .mean) -> Tensor {
        let (picked, w) = pickTargets(input, target, weight: weight, ignoreIndex: ignoreIndex, name: "nllLoss")
        let losses = -picked * w
        switch reduction {
        case .none: return losses
        case .sum: return losses.sum()
        case .mean: return losses.sum() / w.sum()
        }
    }

    /// The input's entries at the target classes and each sample's weight (0 where ignored).
    static func pickTargets(_ input: Tensor, _ target: Tensor, weight: Tensor?, ignoreIndex: Int, name: String) -> (Tensor, Tensor) {
        if input.ndim < 2 { shapeError("\(name): expected input [N, C] or [N, C, d...], got shape \(input.shape)") }
        if target.dtype != .int64 { usageError("\(name): expected int64 class indices as target, got \(target.dtype) (use .long())") }
        let expected = [input.shape[0]] + Array(input.shape.dropFirst(2))
        if target.shape != expected { shapeError("\(name): target shape \(target.shape) does not match input \(input.shape) (expected \(expected))") }
        let c = input.shape[1]
        if let weight, weight.shape != [c] { shapeError("\(name): weight must have shape [\(c)], got \(weight.shape)") }
        let ignored = target.eq(Double(ignoreIndex))
        let safe = Tensor.where(ignored, Tensor.zeros([], dtype: .int64), target)
        let tv = safe.scalars(as: Int64.self)
        if let bad = tv.first(where: { $0 < 0 || Int($0) >= c }) {
            shapeError("\(name): target \(bad) is out of bounds for \(c) classes")
        }
        let picked = input.gather(dim: 1, index: safe.unsqueeze(1)).squeeze(dim: 1)
        let keep = ignored.logicalNot().to(input.dtype)
        let w = weight.map { $0.to(input.dtype).indexSelect(dim: 0, index: safe.reshape([-1])).reshape(safe.shape) * keep } ?? keep
        return (picked, w)
    }

    /// Cross entropy between logits [N, C] (or [N, C, d…]) and int64 class targets, with
    /// log-softmax fused in; `labelSmoothing` mixes in the uniform distribution.
    /// Probability targets (float, same shape as the logits) are accepted too.
    public static func crossEntropy(_ input: Tensor, _ target: Tensor, weight: Tensor? = nil, ignoreIndex: Int = -100,
                                    reduction: Reduction = .mean, labelSmoothing: Double = 0) -> Tensor {
        if labelSmoothing < 0 || labelSmoothing > 1 { usageError("crossEntropy: labelSmoothing must be in [0, 1], got \(labelSmoothing)") }
        if target.dtype.isFloatingPoint {
            if target.shape != input.shape { shapeError("crossEntropy: probability targets must match the input shape \(input.shape), got \(target.shape)") }
            let c = Double(input.shape[1])
            let t = labelSmoothing > 0 ? target * (1 - labelSmoothing) + labelSmoothing / c : target
            var per = -(input.logSoftmax(dim: 1) * t)
            if let weight {
                var wshape = [Int](repeating: 1, count: input.ndim); wshape[1] = input.shape[1]
                per = per * weight.reshape(wshape)
            }
            let losses = per.sum(dim: 1)
            return reduce(losses, reduction)
        }
        if input.ndim == 2 && input.dtype == .float32 && weight == nil && labelSmoothing == 0 && !input.isCUDA {
            return FusedCrossEntropy.apply(input, target, ignoreIndex: ignoreIndex, reduction: reduction)
        }
        let logp = input.logSoftmax(dim: 1)
        let nll = nllLoss(logp, target, weight: weight, ignoreIndex: ignoreIndex, reduction: reduction)
        if labelSmoothing == 0 { return nll }
        let c = input.shape[1]
        let ignored = target.eq(Double(ignoreIndex))
        let keep = ignored.logicalNot().to(input.dtype)
        var smooth: Tensor
        if let weight {
            var wshape = [Int](repeating: 1, count: input.ndim); wshape[1] = c
            smooth = -(logp * weight.to(input.dtype).reshape(wshape)).sum(dim: 1)
        } else {
            smooth = -logp.sum(dim: 1)
        }
        smooth = smooth * keep
        let smoothReduced: Tensor
        switch reduction {
        case .none: smoothReduced = smooth
        case .sum: smoothReduced = smooth.sum()
        case .mean:
            let (_, w) = pickTargets(input.detach(), target, weight: weight, ignoreIndex: ignoreIndex, name: "crossEntropy")
            smoothReduced = smooth.sum() / w.sum()
        }
        return nll * (1 - labelSmoothing) + smoothReduced * (labelSmoothing / Double(c))
    }
}

/// log-softmax + NLL in one pass over [N, C] float32 logits: the forward saves one log-sum-exp per
/// row; the backward writes softmax − onehot, scaled, without materialising log-probabilities.
enum FusedCrossEntropy {
    static func apply(_ input: Tensor, _ target: Tensor, ignoreIndex: Int, reduction: Reduction) -> Tensor {
        let n = input.shape[0], c = input.shape[1]
        if target.dtype != .int64 { usageError("crossEntropy: expected int64 class indices as target, got \(target.dtype) (use .long())") }
        if target.shape != [n] { shapeError("crossEntropy: target shape \(target.shape) does not match input \(input.shape) (expected [\(n)])") }
        let x = noGrad { input.contiguous() }.detach()
        let t = target.contiguous()
        let tp = t.pointer(Int64.self)
        for i in 0..<n where Int(tp[i]) != ignoreIndex && (tp[i] < 0 || Int(tp[i]) >= c) {
            shapeError("crossEntropy: target \(tp[i]) is out of bounds for \(c) classes")
        }
        let lse = Tensor(uninitialized: [n], dtype: .float32)
        let losses = Tensor(uninitialized: [n], dtype: .float32)
        let xp = SendablePointer(x.pointer(Float.self)), lp = SendablePointer(lse.pointer(Float.self)), op = SendablePointer(losses.pointer(Float.self))
        let tps = SendablePointer(tp)
        Threading.parallelFor(n, grain: Swift.max(1, 16_384 / Swift.max(c, 1))) { r in
            for i in r {
                let row = xp.p + i * c
                var m = -Float.infinity
                for j in 0..<c where row[j] > m || row[j].isNaN { m = row[j] }
                var s: Float = 0
                for j in 0..<c { s += Foundation_expf(row[j] - m) }
                let l = m + Foundation_logf(s)
                lp.p[i] = l
                let y = Int(tps.p[i])
                op.p[i] = y == ignoreIndex ? 0 : l - row[y]
            }
        }
        var valid = 0
        for i in 0..<n where Int(tp[i]) != ignoreIndex { valid += 1 }
        let out: Tensor
        switch reduction {
        case .none: out = losses
        case .sum: out = losses.sum()
        case .mean: out = losses.sum() / Double(valid == 0 ? 0 : valid) * (valid == 0 ? .nan : 1)
        }
        let count = valid
        return out.recorded("CrossEntropyBackward0", [input]) { g in
            // The raw pointers below point into these; the closure must keep them alive.
            let (x, lse, t) = (x, lse, t)
            defer { withExtendedLifetime((x, lse, t)) {} }
            let grad = Tensor(uninitialized: [n, c], dtype: .float32)
            let gp = SendablePointer(grad.pointer(Float.self))
            let gvals = g.to(.float32).contiguous()
            let gv = SendablePointer(gvals.pointer(Float.self))
            Threading.parallelFor(n, grain: Swift.max(1, 16_384 / Swift.max(c, 1))) { r in
                for i in r {
                    let y = Int(tps.p[i])
                    let dst = gp.p + i * c
                    if y == ignoreIndex { for j in 0..<c { dst[j] = 0 }; continue }
                    let scale: Float
                    switch reduction {
                    case .none: scale = gv.p[i]
                    case .sum: scale = gv.p[0]
                    case .mean: scale = gv.p[0] / Float(count)
                    }
                    let row = xp.p + i * c, l = lp.p[i]
                    for j in 0..<c { dst[j] = Foundation_expf(row[j] - l) * scale }
                    dst[y] -= scale
                }
            }
            // The pointers above point into these tensors: capturing them keeps them alive until
            // the graph is freed (the caller may have dropped the target and the contiguous copy).
            withExtendedLifetime((x, t, lse)) {}
            return [grad]
        }
    }
}

extension Tensor {
    /// log(1 + x), accurate for small x.
    public func log1p() -> Tensor {
        let out = floatUnary("log1p", simd: nil as ExpV?, f32: { Foundation_log1pf($0) }, f64: { Foundation_log1p($0) })
        let x = self
        return out.recorded("Log1PBackward0", [self]) { g in [g / (x + 1)] }
    }
}

#if canImport(Glibc)
import System
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func Foundation_log1pf(_ x: Float) -> Float { log1pf(x) }
@inline(__always) func Foundation_log1p(_ x: Double) -> Double { log1p(x) }
