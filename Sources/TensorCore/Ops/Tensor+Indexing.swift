/// One entry of a basic index: `t[0]`, `t[1...]`, `t[..<2, 1...]`, `t[.all, 0]`, `t[.newAxis]`.
public enum TensorIndex: Sendable {
    /// One position (negative counts from the end); the dimension is removed.
    case index(Int)
    /// A Python-style slice `start:end:step` (nil bounds are open; negatives count from the end).
    case slice(start: Int?, end: Int?, step: Int)
    /// `:` — the whole dimension (spelled `.all` at use sites).
    case whole
    /// `None` — inserts a dimension of size 1 (spelled `.newAxis`).
    case insertAxis
    /// `...` — as many whole dims as needed (spelled `.ellipsis`).
    case remaining
}

/// Anything usable inside `t[...]`: Int, Swift ranges, and `TensorIndex`.
public protocol TensorIndexConvertible {
    var tensorIndex: TensorIndex { get }
}

extension TensorIndex: TensorIndexConvertible { public var tensorIndex: TensorIndex { self } }
extension Int: TensorIndexConvertible { public var tensorIndex: TensorIndex { .index(self) } }
extension Range: TensorIndexConvertible where Bound == Int {
    public var tensorIndex: TensorIndex { .slice(start: lowerBound, end: upperBound, step: 1) }
}
extension ClosedRange: TensorIndexConvertible where Bound == Int {
    public var tensorIndex: TensorIndex { .slice(start: lowerBound, end: upperBound == -1 ? nil : upperBound + 1, step: 1) }
}
extension PartialRangeFrom: TensorIndexConvertible where Bound == Int {
    public var tensorIndex: TensorIndex { .slice(start: lowerBound, end: nil, step: 1) }
}
extension PartialRangeUpTo: TensorIndexConvertible where Bound == Int {
    public var tensorIndex: TensorIndex { .slice(start: nil, end: upperBound, step: 1) }
}
extension PartialRangeThrough: TensorIndexConvertible where Bound == Int {
    public var tensorIndex: TensorIndex { .slice(start: nil, end: upperBound == -1 ? nil : upperBound + 1, step: 1) }
}

extension TensorIndexConvertible where Self == TensorIndex {
    /// `:` — the whole dimension.
    public static var all: TensorIndex { .whole }
    /// `None` — a new dimension of size 1.
    public static var newAxis: TensorIndex { .insertAxis }
    /// `...`
    public static var ellipsis: TensorIndex { .remaining }
    /// `start:end:step`.
    public static func slice(_ start: Int?, _ end: Int?, step: Int = 1) -> TensorIndex { .slice(start: start, end: end, step: step) }
}

extension Tensor {
    /// Basic indexing and slicing, as in PyTorch; the result is a view.
    public subscript(_ indices: any TensorIndexConvertible...) -> Tensor {
        get { applying(indices.map(\.tensorIndex)) }
        set { noGrad { applying(indices.map(\.tensorIndex)).copy(from: newValue) } }
    }

    /// `t[range, stride: 2]`: a slice of the first dimension with a step (`t[0:4:2]`).
    public subscript(_ range: any TensorIndexConvertible, stride step: Int) -> Tensor {
        guard case .slice(let s, let e, _) = range.tensorIndex else {
            shapeError("t[_, stride:] needs a range, got \(range.tensorIndex)")
        }
        return applying([.slice(start: s, end: e, step: step)])
    }

    /// Applies basic indices in order, producing one strided view.
    func applying(_ indices: [TensorIndex]) -> Tensor {
        let consumed = indices.reduce(0) { n, i in
            switch i { case .index, .slice, .whole: return n + 1; default: return n }
        }
        if consumed > ndim { shapeError("too many indices for tensor of dimension \(ndim) (shape \(shape))") }
        if indices.filter({ if case .remaining = $0 { return true } else { return false } }).count > 1 {
            usageError("an index can only have a single ellipsis")
        }
        var newShape: [Int] = [], newStrides: [Int] = []
        var off = offset
        var d = 0
        for idx in indices {
            switch idx {
            case .index(let i):
                let size = shape[d]
                let p = i < 0 ? i + size : i
                if p < 0 || p >= size { shapeError("index \(i) is out of bounds for dimension \(d) with size \(size)") }
                off += p * strides[d]
                d += 1
            case .slice(let start, let end, let step):
                if step <= 0 { usageError("slice step must be positive, got \(step)") }
                let size = shape[d]
                func clampBound(_ b: Int?, _ def: Int) -> Int {
                    guard var v = b else { return def }
                    if v < 0 { v += size }
                    return Swift.min(Swift.max(v, 0), size)
                }
                let s = clampBound(start, 0), e = clampBound(end, size)
                let len = e > s ? (e - s + step - 1) / step : 0
                off += (len > 0 ? s : 0) * strides[d]
                newShape.append(len); newStrides.append(strides[d] * step)
                d += 1
            case .whole:
                newShape.append(shape[d]); newStrides.append(strides[d]); d += 1
            case .insertAxis:
                newShape.append(1); newStrides.append(1)
            case .remaining:
                let fill = ndim - consumed
                for _ in 0..<fill { newShape.append(shape[d]); newStrides.append(strides[d]); d += 1 }
            }
        }
        while d < ndim { newShape.append(shape[d]); newStrides.append(strides[d]); d += 1 }
        let inShape = shape
        return makeView(shape: newShape, strides: newStrides, offset: off, "SliceBackward0") { g in
            // The same indices applied to zeros of the input's shape receive g.
            let z = Tensor.zeros(inShape, dtype: g.dtype, device: g.device)
            noGrad { z.applying(indices).copy(from: g) }
            return [z]
        }
    }
}
