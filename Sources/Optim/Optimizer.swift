import TensorCore

/// A group of parameters sharing hyper-parameters (`param_groups` in PyTorch).
public struct ParamGroup {
    public var params: [Tensor]
    public var lr: Double
    /// The learning rate schedulers start from (`initial_lr`).
    public var initialLR: Double
    /// Per-group overrides of the optimizer's other hyper-parameters, by PyTorch name
    /// (`weight_decay`, `momentum`, `betas0`, `betas1`, `eps`, …).
    public var options: [String: Double]

    public init(params: [Tensor], lr: Double? = nil, options: [String: Double] = [:]) {
        self.params = params
        self.lr = lr ?? .nan
        self.initialLR = lr ?? .nan
        self.options = options
    }
}

/// Errors of the Optim module.
public enum OptimError: Error, CustomStringConvertible, Equatable {
    case invalidHyperparameter(String)
    case stateMismatch(String)

    public var description: String {
        switch self {
        case .invalidHyperparameter(let m): return "invalid optimizer setting: \(m)"
        case .stateMismatch(let m): return "cannot load optimizer state: \(m) — was it saved from the same model and optimizer?"
        }
    }
}

/// `torch.optim.Optimizer`: updates its parameters in place from their `.grad`.
public protocol Optimizer: AnyObject {
    var paramGroups: [ParamGroup] { get set }
    /// One update of every parameter that has a gradient.
    func step()
    /// Per-parameter state and step counts as tensors, keyed `state.<i>.<name>` with `i` the
    /// parameter's position across groups, plus `param_groups.<g>.lr`.
    func stateDict() -> [String: Tensor]
    func loadStateDict(_ dict: [String: Tensor]) throws
}

extension Optimizer {
    /// Clears every parameter's gradient (`set_to_none=True`, PyTorch's default).
    public func zeroGrad() {
        for g in paramGroups { for p in g.params { p.zeroGrad() } }
    }

    /// The current learning rate of the first group.
    public var lr: Double {
        get { paramGroups.first?.lr ?? 0 }
        set { for i in paramGroups.indices { paramGroups[i].lr = newValue } }
    }

    /// All parameters in group order.
    public var allParameters: [Tensor] { paramGroups.flatMap(\.params) }
}

/// Shared bookkeeping: named per-parameter state tensors and a step count per parameter.
public class OptimizerBase {
    public var paramGroups: [ParamGroup]
    /// state[parameter index][name]
    var state: [[String: Tensor]]
    var steps: [Int]

    init(groups: [ParamGroup], defaultLR: Double) {
        var gs = groups
        for i in gs.indices {
            if gs[i].lr.isNaN { gs[i].lr = defaultLR; gs[i].initialLR = defaultLR }
            if gs[i].lr < 0 { usageError(OptimError.invalidHyperparameter("lr must be >= 0, got \(gs[i].lr)").description) }
            for p in gs[i].params where !p.dtype.isFloatingPoint || !p.isContiguous {
                usageError(OptimError.invalidHyperparameter("parameters must be contiguous floating tensors, got \(p.dtype) \(p.shape)").description)
            }
        }
        paramGroups = gs
        let n = gs.reduce(0) { $0 + $1.params.count }
        state = Array(repeating: [:], count: n)
        steps = Array(repeating: 0, count: n)
    }

    /// Visits (group, parameter index, parameter, grad) for parameters that have a gradient.
    func forEachParameter(_ body: (ParamGroup, Int, Tensor, Tensor) -> Void) {
        var index = 0
        for g in paramGroups {
            for p in g.params {
                if let grad = p.grad {
                    if grad.shape != p.shape { shapeError("optimizer: gradient shape \(grad.shape) does not match parameter \(p.shape)") }
                    body(g, index, p, grad.dtype == p.dtype && grad.isContiguous ? grad : grad.to(p.dtype).contiguous())
                }
                index += 1
            }
        }
    }

    /// A zero tensor like `p`, created once per state name.
    func buffer(_ name: String, _ index: Int, like p: Tensor) -> Tensor {
        if let t = state[index][name] {
            if t.device != p.device { t.moveStorage(to: p.device) }   // state loaded or made before Module.to
            return t
        }
        let t = Tensor.zeros(p.shape, dtype: p.dtype, device: p.device)
        state[index][name] = t
        return t
    }

    public func stateDict() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (i, s) in state.enumerated() {
            for (k, v) in s { d["state.\(i).\(k)"] = v.cpu().clone().detach() }
            if steps[i] > 0 { d["state.\(i).step"] = Tensor.full([], value: Double(steps[i]), dtype: .float64) }
        }
        for (g, group) in paramGroups.enumerated() {
            d["param_groups.\(g).lr"] = Tensor.full([], value: group.lr, dtype: .float64)
            d["param_groups.\(g).initial_lr"] = Tensor.full([], value: group.initialLR, dtype: .float64)
        }
        return d
    }

    public func loadStateDict(_ dict: [String: Tensor]) throws {
        let params = paramGroups.flatMap(\.params)
        var newState = Array(repeating: [String: Tensor](), count: params.count)
        var newSteps = Array(repeating: 0, count: params.count)
        var newLR = paramGroups.map(\.lr), newInitial = paramGroups.map(\.initialLR)
        for (key, value) in dict {
            let parts = key.split(separator: ".").map(String.init)
            // A state dict comes from a file: indices, scalars and counts are checked, never trusted.
            func scalar() throws -> Double {
                guard value.numel == 1 else { throw OptimError.stateMismatch("\(key) has shape \(value.shape), expected a scalar") }
                return value.item()
            }
            if parts.count == 3 && parts[0] == "state", let i = Int(parts[1]) {
                guard i >= 0, i < params.count else { throw OptimError.stateMismatch("state for parameter \(i), but the optimizer has \(params.count)") }
                if parts[2] == "step" {
                    let step = try scalar()
                    guard step >= 0, step <= 9_007_199_254_740_992, step.rounded() == step else {
                        throw OptimError.stateMismatch("\(key) is \(step), expected a whole number of steps >= 0")
                    }
                    newSteps[i] = Int(step)
                    continue
                }
                guard value.shape == params[i].shape else {
                    throw OptimError.stateMismatch("\(key) has shape \(value.shape), parameter \(i) has \(params[i].shape)")
                }
                newState[i][parts[2]] = value.to(params[i].dtype).clone().detach()
            } else if parts.count == 3 && parts[0] == "param_groups", let g = Int(parts[1]) {
                guard g >= 0, g < paramGroups.count else { throw OptimError.stateMismatch("param group \(g), but the optimizer has \(paramGroups.count)") }
                if parts[2] == "lr" || parts[2] == "initial_lr" {
                    let lr = try scalar()
                    guard lr >= 0, lr.isFinite else { throw OptimError.stateMismatch("\(key) is \(lr), expected a learning rate >= 0") }
                    if parts[2] == "lr" { newLR[g] = lr } else { newInitial[g] = lr }
                }
            }
        }
        state = newState
        steps = newSteps
        for g in paramGroups.indices { paramGroups[g].lr = newLR[g]; paramGroups[g].initialLR = newInitial[g] }
    }

    func option(_ g: ParamGroup, _ name: String, _ fallback: Double) -> Double { g.options[name] ?? fallback }
}

