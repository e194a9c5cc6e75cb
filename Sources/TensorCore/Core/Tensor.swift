/// An n-dimensional array with autograd, like `torch.Tensor`: a view (shape, strides, offset) over a
/// shared `TensorStorage`. A final class, so a tensor has identity (a parameter, its `.grad`).
/// Not Sendable: threads exchange `[Float]` + shape, never tensors.
public final class Tensor {
    public let storage: TensorStorage
    public let shape: [Int]
    /// Strides in elements (not bytes), as `torch.Tensor.stride()`.
    public let strides: [Int]
    /// Offset of the first element in `storage`, in elements.
    public let offset: Int
    public let dtype: DType
    /// Where the elements are (`.cpu` or `.cuda(n)`); `Module.to(_:)` may move them in place.
    public var device: Device { storage.isOnDevice ? storage.device : .cpu }
    /// Whether the elements are laid out row-major without gaps from `offset`.
    public let isContiguous: Bool

    var requiresGradFlag: Bool
    /// The accumulated gradient of a leaf after `backward()`.
    public var grad: Tensor?
    /// The node that produced this tensor, or nil for a leaf.
    public internal(set) var gradFn: Node?

    /// The number of elements.
    public let numel: Int

    init(storage: TensorStorage, shape: [Int], strides: [Int], offset: Int, dtype: DType) {
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
        self.requiresGradFlag = false
        var n = 1
        for d in shape { n *= d }
        self.numel = n
        self.isContiguous = Tensor.contiguousCheck(shape: shape, strides: strides)
    }

    /// A fresh, uninitialised, contiguous tensor.
    init(uninitialized shape: [Int], dtype: DType) {
        var n = 1
        for d in shape { n *= d }
        self.storage = TensorStorage(byteCount: n * dtype.byteSize)
        self.shape = shape
        self.strides = Tensor.contiguousStrides(shape)
        self.offset = 0
        self.dtype = dtype
        self.requiresGradFlag = false
        self.numel = n
        self.isContiguous = true
    }

    /// A tensor of `shape` holding `scalars` in row-major order; the dtype follows the Swift type
    /// (Float → float32, Double → float64, Int64 → int64, Bool → bool).
    public convenience init<T: TensorScalar>(shape: [Int], scalars: [T], requiresGrad: Bool = false) {
        let n = shape.reduce(1, *)
        if shape.contains(where: { $0 < 0 }) { shapeError("Tensor(shape:scalars:): negative dimension in shape \(shape)") }
        if n != scalars.count { shapeError("Tensor(shape:scalars:): shape \(shape) holds \(n) elements, got \(scalars.count) scalars") }
        self.init(uninitialized: shape, dtype: T.dtype)
        // A byte copy: this init is generic and called unspecialised from other modules.
        scalars.withUnsafeBytes { src in
            if let base = src.baseAddress { storage.raw.copyMemory(from: base, byteCount: n * MemoryLayout<T>.stride) }
        }
        if requiresGrad { self.requiresGrad = true }
    }

    /// Convenience for runtime `Int` arrays, which become int64.
    public convenience init(shape: [Int], scalars: [Int], requiresGrad: Bool = false) {
        self.init(shape: shape, scalars: scalars.map { Int64($0) }, requiresGrad: requiresGrad)
    }

    /// A scalar (0-d) tensor.
    public convenience init<T: TensorScalar>(scalar: T, requiresGrad: Bool = false) {
        self.init(shape: [], scalars: [scalar], requiresGrad: requiresGrad)
    }

    // MARK: properties

    public var ndim: Int { shape.count }
    /// `t.size(d)`; negative `d` counts from the end.
    public func size(_ d: Int) -> Int { shape[normalizeDim(d)] }

    /// Whether autograd records operations on this tensor. Settable on leaves only.
    public var requiresGrad: Bool {
        get { requiresGradFlag }
        set {
            if gradFn != nil && !newValue {
                usageError("requiresGrad can only be cleared on a leaf tensor; use detach() instead")
            }
            if newValue && !dtype.isFloatingPoint {
                usageError("only floating point tensors can require gradients, got \(dtype)")
            }
            requiresGradFlag = newValue
        }
    }

    /// `t.requires_grad_(flag)`: sets the flag on a leaf and returns the tensor.
    @discardableResult
    public func requiresGrad(_ flag: Bool) -> Tensor {
        requiresGrad = flag
        return self
    }

    /// A leaf is a tensor no recorded operation produced.
    public var isLeaf: Bool { gradFn == nil }

    /// Clears the accumulated gradient.
    public func zeroGrad() { grad = nil }

    // MARK: raw access

    /// Typed pointer to the first element of this view. The caller respects `strides`.
    @inline(__always)
    public func pointer<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
        if storage.isOnDevice { hostAccessOnDevice() }
        return (storage.raw + offset * dtype.byteSize).assumingMemoryBound(to: T.self)
    }

    /// Calls `body` with the elements of a contiguous float tensor (copied first when not contiguous).
    public func withUnsafeBufferPointer<T: TensorScalar, R>(as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        let c = (dtype == T.dtype ? self : to(T.dtype)).contiguous()
        if c.storage.isOnDevice { return try noGrad { c.movedCopy(to: .cpu) }.withUnsafeBufferPointer(as: T.self, body) }
        return try body(UnsafeBufferPointer(start: c.pointer(T.self), count: c.numel))
    }

    /// Calls `body` with the writable elements of this tensor, which must be contiguous and of type T.
    /// This is how optimizers update parameters in place.
    public func withUnsafeMutableBufferPointer<T: TensorScalar, R>(as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        if dtype != T.dtype { usageError("withUnsafeMutableBufferPointer(as: \(T.self)) on a \(dtype) tensor") }
        if !isContiguous { shapeError("withUnsafeMutableBufferPointer needs a contiguous tensor; call contiguous() first") }
        return try body(UnsafeMutableBufferPointer(start: pointer(T.self), count: numel))
    }

    @inline(never)
    func hostAccessOnDevice() -> Never {
        usageError("host access (pointer()) to a tensor on \(device): its elements are in device memory; this operation has no CUDA kernel yet — call .cpu() first, or use the CUDA ops")
    }

    // MARK: layout helpers

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= Swift.max(shape[i], 1)
        }
        return strides
    }

    static func contiguousCheck(shape: [Int], strides: [Int]) -> Bool {
        var expected = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            if shape[i] == 1 { continue }
            if strides[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }

    /// `d` in `-ndim..<ndim` → `0..<ndim`, or a stop naming the shape.
    @inline(__always)
    func normalizeDim(_ d: Int, extra: Int = 0) -> Int {
        let n = ndim + extra
        // A 0-d tensor accepts dims 0 and -1, as in PyTorch (the range is computed for one dim).
        let r = d < 0 ? d + Swift.max(n, 1) : d
        if r < 0 || r >= Swift.max(n, 1) { shapeError("dimension \(d) is out of range for a tensor of shape \(shape) (expected -\(Swift.max(n, 1))...\(Swift.max(n, 1) - 1))") }
        return r
    }
}

/// Stops on misuse that a program cannot recover from (mismatched shapes, bad dims), keeping its
/// message in release builds (unlike `precondition`).
@inline(never)
public func shapeError(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError(message(), file: file, line: line)
}

/// Misuse of the engine API that is not about shapes (a dtype, a device, gradients on a non-leaf):
/// fatal like a shape error — ops do not throw, as PyTorch's raise — with its own name so callers
/// and readers can tell the two apart.
public func usageError(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError(message(), file: file, line: line)
}
