import Testing
@testable import TensorCore

/// One element where the analytic and the numeric gradient disagree.
struct GradcheckMismatch: CustomStringConvertible {
    let input: Int
    let element: Int
    let analytic: Double
    let numeric: Double
    var description: String { "input \(input) element \(element): analytic \(analytic), numeric \(numeric)" }
}

/// Finite-difference gradient check in float64, as `torch.autograd.gradcheck`: the analytic
/// gradients come from one backward of `(f(x) * w).sum()` with fixed random weights `w`, the
/// numeric ones from central differences `(L(x + eps) - L(x - eps)) / 2eps` of that same scalar,
/// element by element. Inputs must be float64; `f` is evaluated on fresh leaves that require grad.
/// Records an issue naming the worst element and returns the mismatches (empty when it passes).
@discardableResult
func gradcheck(_ f: ([Tensor]) -> Tensor, inputs: [Tensor], eps: Double = 1e-6, atol: Double = 1e-5, rtol: Double = 1e-4,
               weightSeed: UInt64 = 0x6AD, sourceLocation: SourceLocation = #_sourceLocation) -> [GradcheckMismatch] {
    for (i, x) in inputs.enumerated() where x.dtype != .float64 {
        Issue.record("gradcheck: input \(i) is \(x.dtype); gradcheck needs float64 inputs", sourceLocation: sourceLocation)
        return []
    }
    // Fresh contiguous leaves, so perturbing them in place cannot touch the caller's tensors.
    let leaves = inputs.map { Tensor(shape: $0.shape, scalars: $0.scalars(as: Double.self), requiresGrad: true) }
    let out = f(leaves)
    if out.dtype != .float64 {
        Issue.record("gradcheck: f returned \(out.dtype), expected float64", sourceLocation: sourceLocation)
        return []
    }
    if !out.requiresGrad || out.gradFn == nil {
        Issue.record("gradcheck: f's output has no grad_fn: the op recorded nothing for autograd", sourceLocation: sourceLocation)
        return []
    }
    // Weights in [-1, -0.25] ∪ [0.25, 1]: every output element counts, with its own sign and scale.
    let weights: Tensor = GlobalRandom.withSeed(weightSeed) {
        let u = Tensor.rand(out.shape, dtype: .float64)
        let sign = Tensor.rand(out.shape, dtype: .float64) .> 0.5
        let magnitude = u * 0.75 + 0.25
        return Tensor.where(sign, magnitude, -magnitude)
    }
    (out * weights).sum().backward()

    func loss() -> Double { noGrad { (f(leaves) * weights).sum().item() } }
    var mismatches: [GradcheckMismatch] = []
    var worst: (excess: Double, mismatch: GradcheckMismatch)? = nil
    for (i, leaf) in leaves.enumerated() {
        let analytic: [Double]
        if let g = leaf.grad {
            if g.shape != leaf.shape || g.dtype != .float64 {
                Issue.record("gradcheck: input \(i) of shape \(leaf.shape) got a \(g.dtype) gradient of shape \(g.shape)",
                             sourceLocation: sourceLocation)
                return []
            }
            analytic = g.scalars(as: Double.self)
        } else {
            analytic = [Double](repeating: 0, count: leaf.numel)   // no path to this input: the numeric grad must be 0 too
        }
        let p = leaf.pointer(Double.self)
        for j in 0..<leaf.numel {
            let original = p[j]
            p[j] = original + eps
            let plus = loss()
            p[j] = original - eps
            let minus = loss()
            p[j] = original
            let numeric = (plus - minus) / (2 * eps)
            let tolerance = atol + rtol * Swift.abs(numeric)
            let error = Swift.abs(analytic[j] - numeric)
            if !(error <= tolerance) {
                let m = GradcheckMismatch(input: i, element: j, analytic: analytic[j], numeric: numeric)
                mismatches.append(m)
                let excess = error.isNaN ? .infinity : error / tolerance
                if worst == nil || excess > worst!.excess { worst = (excess, m) }
            }
        }
    }
    if let worst {
        Issue.record("gradcheck failed at \(mismatches.count) element(s); worst: \(worst.mismatch) (atol \(atol), rtol \(rtol))",
                     sourceLocation: sourceLocation)
    }
    return mismatches
}

/// Deterministic float64 test inputs.
enum Inputs {
    /// Values with magnitude in [0.2, 1] and random sign: away from the kinks of abs, relu, clamp at 0.
    static func signed(_ shape: [Int], seed: UInt64) -> Tensor {
        GlobalRandom.withSeed(seed) {
            let u = Tensor.rand(shape, dtype: .float64) * 0.8 + 0.2
            let s = Tensor.rand(shape, dtype: .float64) .> 0.5
            return Tensor.where(s, u, -u)
        }
    }

    /// Values in [lo, hi).
    static func uniform(_ shape: [Int], seed: UInt64, lo: Double = -1, hi: Double = 1) -> Tensor {
        GlobalRandom.withSeed(seed) { Tensor.rand(shape, dtype: .float64) * (hi - lo) + lo }
    }

    /// A random permutation of evenly spaced values (spacing 0.1): no ties, so max/min/maxPool
    /// have a unique winner that a perturbation of 1e-6 cannot change.
    static func distinct(_ shape: [Int], seed: UInt64) -> Tensor {
        let n = shape.reduce(1, *)
        let order = GlobalRandom.withSeed(seed) { Tensor.randperm(n) }.scalars(as: Int64.self)
        let values = order.map { Double($0) * 0.1 - Double(n) * 0.05 }
        return Tensor(shape: shape, scalars: values)
    }

    /// int64 indices in 0..<high.
    static func indices(_ shape: [Int], high: Int, seed: UInt64) -> Tensor {
        GlobalRandom.withSeed(seed) { Tensor.randint(high, shape: shape) }
    }
}
