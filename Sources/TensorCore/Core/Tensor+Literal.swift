/// A nested literal of any depth: `Tensor([[3, 5], [10, 5]])` is int64, `Tensor([0.5, 0.7])`
/// float32 and `Tensor([true, false])` bool, as `torch.tensor` infers them.
public indirect enum TensorLiteral: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, Sendable {
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case array([TensorLiteral])

    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .float(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: TensorLiteral...) { self = .array(elements) }

    /// Shape, flattened values (as Double, and as Int64 so that integers beyond 2^53 stay exact) and
    /// the inferred dtype; stops on ragged nesting.
    func flatten() -> (shape: [Int], values: [Double], ints: [Int64], dtype: DType) {
        var values: [Double] = []
        var ints: [Int64] = []
        var kind = DType.bool
        var sawScalar = false
        func walk(_ lit: TensorLiteral, depth: Int, shape: inout [Int]?) -> [Int] {
            switch lit {
            case .int(let v): values.append(Double(v)); ints.append(v); kind = DType.promote(kind, .int64); sawScalar = true; return []
            case .float(let v): values.append(v); ints.append(Int64(fromDouble: v)); kind = DType.promote(kind, .float32); sawScalar = true; return []
            case .bool(let v): values.append(v ? 1 : 0); ints.append(v ? 1 : 0); sawScalar = true; return []
            case .array(let items):
                var inner: [Int]? = nil
                for item in items {
                    var dummy: [Int]? = nil
                    let s = walk(item, depth: depth + 1, shape: &dummy)
                    if let inner, inner != s { shapeError("Tensor literal is ragged: a row of shape \(s) beside one of shape \(inner)") }
                    inner = s
                }
                return [items.count] + (inner ?? [])
            }
        }
        var none: [Int]? = nil
        let shape = walk(self, depth: 0, shape: &none)
        if !sawScalar { kind = .float32 }   // `Tensor([])` is an empty float tensor, as in PyTorch
        return (shape, values, ints, kind)
    }
}

extension Tensor {
    /// The literal initialiser, the only unlabelled one: nested literals of any depth, dtype
    /// inferred as PyTorch does (ints → int64, any float → float32) unless `dtype` is given.
    public convenience init(_ literal: TensorLiteral, dtype: DType? = nil, requiresGrad: Bool = false) {
        let (shape, values, ints, inferred) = literal.flatten()
        let dt = dtype ?? inferred
        self.init(uninitialized: shape, dtype: dt)
        let n = values.count
        switch dt {
        case .float32: let p = pointer(Float.self); for i in 0..<n { p[i] = Float(values[i]) }
        case .float64: let p = pointer(Double.self); for i in 0..<n { p[i] = values[i] }
        case .int64: let p = pointer(Int64.self); for i in 0..<n { p[i] = ints[i] }
        case .bool: let p = pointer(Bool.self); for i in 0..<n { p[i] = values[i] != 0 }
        }
        if requiresGrad { self.requiresGrad = true }
    }
}
