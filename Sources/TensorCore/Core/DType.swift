/// Element types, as PyTorch names them. Booleans are stored one byte each.
public enum DType: Sendable, Equatable, Hashable, CustomStringConvertible {
    case float32, float64, int64, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32: return 4
        case .float64, .int64: return 8
        case .bool: return 1
        }
    }

    public var isFloatingPoint: Bool { self == .float32 || self == .float64 }

    public var description: String {
        switch self {
        case .float32: return "float32"
        case .float64: return "float64"
        case .int64: return "int64"
        case .bool: return "bool"
        }
    }

    /// PyTorch's type promotion for two operands (bool < int64 < float32 < float64).
    static func promote(_ a: DType, _ b: DType) -> DType {
        func rank(_ d: DType) -> Int {
            switch d { case .bool: return 0; case .int64: return 1; case .float32: return 2; case .float64: return 3 }
        }
        return rank(a) >= rank(b) ? a : b
    }
}

/// Swift scalar types that a tensor can hold, mapped to their dtype.
public protocol TensorScalar: Sendable {
    static var dtype: DType { get }
    init(fromDouble value: Double)
    var asDouble: Double { get }
}

extension Float: TensorScalar {
    public static var dtype: DType { .float32 }
    @inline(__always) public init(fromDouble value: Double) { self = Float(value) }
    @inline(__always) public var asDouble: Double { Double(self) }
}
extension Double: TensorScalar {
    public static var dtype: DType { .float64 }
    @inline(__always) public init(fromDouble value: Double) { self = value }
    @inline(__always) public var asDouble: Double { self }
}
extension Int64: TensorScalar {
    public static var dtype: DType { .int64 }
    @inline(__always) public init(fromDouble value: Double) {
        self = value.isFinite ? Int64(exactly: value.rounded(.towardZero)) ?? (value < 0 ? .min : .max) : 0
    }
    @inline(__always) public var asDouble: Double { Double(self) }
}
extension Bool: TensorScalar {
    public static var dtype: DType { .bool }
    @inline(__always) public init(fromDouble value: Double) { self = value != 0 }
    @inline(__always) public var asDouble: Double { self ? 1 : 0 }
}
