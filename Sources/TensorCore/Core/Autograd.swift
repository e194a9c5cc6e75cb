/// Whether operations are recorded for autograd. A task-local, so `noGrad { }` is a scope and
/// threads started inside it do not inherit it by accident.
public enum GradMode {
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording operations, like `with torch.no_grad():`.
@discardableResult
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

/// Async form of `noGrad`.
@discardableResult
public func noGrad<R>(_ body: () async throws -> R) async rethrows -> R {
    try await GradMode.$isEnabled.withValue(false) { try await body() }
}

/// One recorded operation: its differentiable inputs and the rule that maps the gradient of its
/// output to gradients of those inputs. The rule receives the output gradient as an argument and
/// never holds the output itself, so graphs have no retain cycles.
public final class Node: CustomStringConvertible {
    /// PyTorch's name for the backward function, e.g. `MulBackward0`.
    public let name: String
    /// The operands, nil where an operand does not require grad.
    var inputs: [Tensor?]
    var rule: ((Tensor) -> [Tensor?])?

    init(name: String, inputs: [Tensor?], rule: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.rule = rule
    }

    public var description: String { "<\(name)>" }

    /// Drops the saved tensors and edges (after a backward pass without `retainGraph`).
    func release() {
        rule = nil
        inputs = []
    }
}

extension Tensor {
    /// Attaches a node to `output` when grad mode is on and any operand requires grad.
    /// `rule` returns one gradient per operand (nil for operands that need none).
    @inline(__always)
    @discardableResult
    func recorded(_ name: String, _ operands: [Tensor], _ rule: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        var any = false
        for t in operands where t.requiresGradFlag { any = true; break }
        guard any, GradMode.isEnabled else { return self }
        gradFn = Node(name: name, inputs: operands.map { $0.requiresGradFlag ? $0 : nil }, rule: rule)
        requiresGradFlag = true
        return self
    }

    /// A tensor sharing this one's storage with no autograd history (`t.detach()`).
    public func detach() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
    }

    /// Computes gradients of this tensor with respect to the leaves that require grad, accumulating
    /// them into their `.grad`. A non-scalar output needs `gradient` (the vector in the
    /// vector-Jacobian product). The graph is freed afterwards unless `retainGraph`.
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) {
        guard requiresGradFlag else {
            shapeError("backward() on a tensor that does not require grad and has no grad_fn")
        }
        let seed: Tensor
        if let gradient {
            if gradient.shape != shape { shapeError("backward(gradient:): gradient shape \(gradient.shape) does not match output shape \(shape)") }
            seed = (gradient.dtype == dtype ? gradient : gradient.to(dtype)).to(device)
        } else {
            if numel != 1 { shapeError("backward() needs gradient: for a non-scalar output of shape \(shape) (grad can be implicitly created only for scalar outputs)") }
            seed = Tensor.ones(shape, dtype: dtype, device: device)
        }
        noGrad { Autograd.run(root: self, seed: seed, retainGraph: retainGraph) }
    }
}

enum Autograd {
    static func run(root: Tensor, seed: Tensor, retainGraph: Bool) {
        // Storages that someone besides the engine may hold: a gradient living in one of them is
        // copied before a leaf keeps it (the two operands of `a + b` get the same gradient object,
        // and optimizers or clipping later modify `.grad` in place).
        var shared: Set<ObjectIdentifier> = [ObjectIdentifier(seed.storage)]
        guard let rootNode = root.gradFn else {
            accumulate(into: root, seed, shared: &shared)
            return
        }
        // Topological order by iterative depth-first search.
        var order: [Node] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Node, Int)] = [(rootNode, 0)]
        visited.insert(ObjectIdentifier(rootNode))
        while !stack.isEmpty {
            let (node, next) = stack[stack.count - 1]
            if next < node.inputs.count {
                stack[stack.count - 1].1 = next + 1
                if let input = node.inputs[next], let child = input.gradFn, visited.insert(ObjectIdentifier(child)).inserted {
                    stack.append((child, 0))
                }
            } else {
                order.append(node)
                stack.removeLast()
            }
        }
        // Gradients waiting for each node's output; `owned` ones may be accumulated in place.
        var pending: [ObjectIdentifier: (grad: Tensor, owned: Bool)] = [ObjectIdentifier(rootNode): (seed, false)]
        for node in order.reversed() {
            guard let entry = pending.removeValue(forKey: ObjectIdentifier(node)) else { continue }
            guard let rule = node.rule else {
                shapeError("backward through \(node.name) a second time: its saved tensors were freed; pass retainGraph: true to the first backward")
            }
            shared.insert(ObjectIdentifier(entry.grad.storage))
            let grads = rule(entry.grad)
            for (i, input) in node.inputs.enumerated() {
                guard let input, i < grads.count, let g = grads[i] else { continue }
                if g.shape != input.shape {
                    shapeError("\(node.name) returned a gradient of shape \(g.shape) for an input of shape \(input.shape)")
                }
                if let child = input.gradFn {
                    let key = ObjectIdentifier(child)
                    if let existing = pending[key] {
                        if existing.owned && existing.grad.isContiguous && g.dtype == existing.grad.dtype {
                            existing.grad.addInPlace(g)
                        } else {
                            pending[key] = (existing.grad + g, true)
                        }
                    } else {
                        pending[key] = (g, false)
                    }
                } else if input.requiresGradFlag {
                    accumulate(into: input, g, shared: &shared)
                }
            }
            if !retainGraph { node.release() }
        }
    }

    /// Adds `g` to a leaf's `.grad`, taking `g` itself when nobody else can hold its storage.
    static func accumulate(into leaf: Tensor, _ g: Tensor, shared: inout Set<ObjectIdentifier>) {
        if let existing = leaf.grad {
            if existing.isContiguous && existing.storage !== g.storage && existing.dtype == g.dtype {
                existing.addInPlace(g)
            } else {
                leaf.grad = existing + g
            }
        } else if g.isContiguous && g.offset == 0 && g.numel * g.dtype.byteSize == g.storage.byteCount
                    && !shared.contains(ObjectIdentifier(g.storage)) {
            leaf.grad = g.detach()
            shared.insert(ObjectIdentifier(g.storage))
        } else {
            leaf.grad = g.clone()
        }
    }
}
