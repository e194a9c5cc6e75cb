import Synchronization
import TensorCore

/// `nn.Module`: a class with a `forward`. Its parameters, buffers and child modules are found by
/// reflection over its stored properties — no registration code:
/// - a `Tensor` that requires grad is a parameter, one that does not is a buffer (saved in the
///   state dict, e.g. BatchNorm's running statistics);
/// - a `Module` (or an optional, array or string-keyed dictionary of them) is a child.
/// State-dict keys are PyTorch's: property names in snake_case joined by dots (`fc1.weight`,
/// `features.0.bias`, `bn.running_mean`).
public protocol Module: AnyObject {
    func forward(_ x: Tensor) -> Tensor
    /// The direct children with their names. Reflection by default; `Sequential` names them 0, 1, ….
    func namedChildren() -> [(String, any Module)]
    /// The tensors this module itself owns (not its children's), with their names.
    func namedTensors() -> [(String, Tensor)]
}

extension Module {
    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x) }

    public func namedChildren() -> [(String, any Module)] { Reflection.children(of: self) }
    public func namedTensors() -> [(String, Tensor)] { Reflection.tensors(of: self) }

    /// Every (name, tensor) of this module and its descendants, parameters and buffers, in
    /// declaration order.
    public func namedStates() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        var seen = Set<ObjectIdentifier>()
        func walk(_ m: any Module, _ prefix: String) {
            for (name, t) in m.namedTensors() where seen.insert(ObjectIdentifier(t)).inserted {
                out.append((prefix + name, t))
            }
            for (name, child) in m.namedChildren() { walk(child, prefix + name + ".") }
        }
        walk(self, "")
        return out
    }

    /// `(name, parameter)` pairs: the tensors that require grad.
    public func namedParameters() -> [(String, Tensor)] { namedStates().filter { $0.1.requiresGrad } }
    /// The parameters, for an optimizer.
    public func parameters() -> [Tensor] { namedParameters().map(\.1) }
    /// `(name, buffer)` pairs: the tensors that do not require grad.
    public func namedBuffers() -> [(String, Tensor)] { namedStates().filter { !$0.1.requiresGrad } }

    /// Every module in the tree (this one first), with its dotted name.
    public func namedModules() -> [(String, any Module)] {
        var out: [(String, any Module)] = [("", self)]
        func walk(_ m: any Module, _ prefix: String) {
            for (name, child) in m.namedChildren() {
                let full = prefix.isEmpty ? name : prefix + "." + name
                out.append((full, child))
                walk(child, full)
            }
        }
        walk(self, "")
        return out
    }

    /// Parameters and buffers by PyTorch key (detached views of the live tensors).
    public func stateDict() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (k, v) in namedStates() { d[k] = v.detach() }
        return d
    }

    /// Copies values from `dict` into the live parameters and buffers. With `strict`, missing or
    /// unexpected keys are an error; a shape mismatch always is. Nothing is changed on error.
    public func loadStateDict(_ dict: [String: Tensor], strict: Bool = true) throws {
        let states = namedStates()
        let own = Dictionary(states.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        let missing = states.map(\.0).filter { dict[$0] == nil }
        let unexpected = dict.keys.filter { own[$0] == nil }.sorted()
        var mismatched: [NNError.ShapeMismatch] = []
        for (k, t) in states {
            if let v = dict[k], v.shape != t.shape { mismatched.append(.init(key: k, expected: t.shape, got: v.shape)) }
        }
        if !mismatched.isEmpty || (strict && (!missing.isEmpty || !unexpected.isEmpty)) {
            throw NNError.stateDictMismatch(missing: strict ? missing : [], unexpected: strict ? unexpected : [], shapeMismatches: mismatched)
        }
        noGrad {
            for (k, t) in states { if let v = dict[k] { t.copy(from: v) } }
        }
    }

    /// Whether this module is in training mode (the default) or evaluation mode.
    public var training: Bool { ModuleMode.isTraining(self) }

    /// Sets training mode on this module and all its descendants; returns self.
    @discardableResult
    public func train(_ mode: Bool = true) -> Self {
        for (_, m) in namedModules() { ModuleMode.set(m, training: mode) }
        return self
    }

    /// Evaluation mode (`model.eval()`): dropout off, batch norm uses running statistics.
    @discardableResult
    public func eval() -> Self { train(false) }

    /// Moves every parameter and buffer to `device` in place (`model.to(device)`): the tensors keep
    /// their identity, so an optimizer built before the move keeps working.
    @discardableResult
    public func to(_ device: Device) -> Self {
        for (_, t) in namedStates() { t.moveStorage(to: device) }
        return self
    }

    /// `model.cuda()`: `to(.cuda(device))`.
    @discardableResult
    public func cuda(_ device: Int = 0) -> Self { to(.cuda(device)) }

    /// `model.cpu()`: `to(.cpu)`.
    @discardableResult
    public func cpu() -> Self { to(.cpu) }

    /// Clears the gradients of every parameter.
    public func zeroGrad() { for p in parameters() { p.zeroGrad() } }

    /// The number of scalar parameters.
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.numel } }
}

/// Training flags live beside the modules (a protocol cannot add stored properties), keyed by
/// identity and checked against a weak reference so a reused address never inherits a flag.
enum ModuleMode {
    final class WeakModule: @unchecked Sendable {   // only compared by identity, under the lock
        weak var module: AnyObject?
        init(_ m: AnyObject) { module = m }
    }
    static let table = Mutex<[ObjectIdentifier: (WeakModule, Bool)]>([:])

    static func isTraining(_ m: AnyObject) -> Bool {
        table.withLock { t in
            guard let (ref, flag) = t[ObjectIdentifier(m)], ref.module === m else { return true }
            return flag
        }
    }

    static func set(_ m: AnyObject, training: Bool) {
        table.withLock { t in
            if t.count > 4096 { t = t.filter { $0.value.0.module != nil } }
            t[ObjectIdentifier(m)] = (WeakModule(m), training)
        }
    }
}

/// Finds tensors and child modules among stored properties.
enum Reflection {
    /// Every labelled stored property of `m` (its key as PyTorch spells it), superclasses' first,
    /// in declaration order.
    static func storedProperties(of m: AnyObject) -> [(label: String, value: Any)] {
        var mirror: Mirror? = Mirror(reflecting: m)
        var levels: [Mirror] = []
        while let mm = mirror { levels.insert(mm, at: 0); mirror = mm.superclassMirror }
        return levels.flatMap { level in level.children.compactMap { child in child.label.map { (key($0), child.value) } } }
    }

    static func children(of m: AnyObject) -> [(String, any Module)] {
        var out: [(String, any Module)] = []
        for (label, value) in storedProperties(of: m) { collectModules(value, name: label, into: &out) }
        return out
    }

    static func collectModules(_ value: Any, name: String, into out: inout [(String, any Module)]) {
        if let m = value as? any Module { out.append((name, m)); return }
        if let list = value as? [any Module] {
            for (i, m) in list.enumerated() { out.append((name + "." + String(i), m)) }
            return
        }
        if let dict = value as? [String: any Module] {
            for k in dict.keys.sorted() { out.append((name + "." + k, dict[k]!)) }
            return
        }
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional, let some = mirror.children.first { collectModules(some.value, name: name, into: &out) }
    }

    static func tensors(of m: AnyObject) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (label, value) in storedProperties(of: m) {
            if let t = value as? Tensor { out.append((label, t)); continue }
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional, let some = mirror.children.first, let t = some.value as? Tensor {
                out.append((label, t))
            }
        }
        return out
    }

    /// A Swift property name as PyTorch spells it: `runningMean` → `running_mean`; a leading
    /// underscore (property wrappers, private storage) is dropped.
    static func key(_ label: String) -> String {
        var name = Substring(label)
        while name.first == "_" { name = name.dropFirst() }
        var out = ""
        for ch in name {
            if ch.isUppercase {
                if !out.isEmpty { out.append("_") }
                out.append(contentsOf: ch.lowercased())
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

/// Errors of the NN module.
public enum NNError: Error, CustomStringConvertible, Equatable {
    public struct ShapeMismatch: Equatable, Sendable {
        public let key: String
        public let expected: [Int]
        public let got: [Int]
    }
    case stateDictMismatch(missing: [String], unexpected: [String], shapeMismatches: [ShapeMismatch])

    public var description: String {
        switch self {
        case .stateDictMismatch(let missing, let unexpected, let shapes):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
            for s in shapes { parts.append("size mismatch for \(s.key): the checkpoint has \(s.got), the model has \(s.expected)") }
            return "error loading the state dict: " + parts.joined(separator: "; ")
                + " — check that the checkpoint was saved from the same architecture, or pass strict: false to load the matching part"
        }
    }
}
