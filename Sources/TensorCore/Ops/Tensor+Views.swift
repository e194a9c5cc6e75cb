// Views share storage with their base (view, reshape where possible, squeeze, unsqueeze,
// transpose, permute, expand, narrow, basic indexing); the rest copy. Each op's backward rule
// sits beside it.

extension Tensor {
    /// A tensor sharing this storage with a new layout, recording `rule` for autograd.
    @inline(__always)
    func makeView(shape: [Int], strides: [Int], offset: Int, _ name: String, _ rule: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        let v = Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
        return v.recorded(name, [self], rule)
    }

    /// Resolves one `-1` in `shape` against `numel`, or stops with PyTorch's message.
    func inferShape(_ shape: [Int]) -> [Int] {
        var out = shape
        var inferIndex: Int? = nil
        var known = 1
        for (i, d) in shape.enumerated() {
            if d == -1 {
                if inferIndex != nil { shapeError("shape \(shape) is invalid: only one dimension can be inferred") }
                inferIndex = i
            } else if d < 0 {
                shapeError("shape \(shape) is invalid: negative dimension \(d)")
            } else {
                known *= d
            }
        }
        if let i = inferIndex {
            if known == 0 || numel % known != 0 { shapeError("shape \(shape) is invalid for \(numel) elements") }
            out[i] = numel / known
        } else if known != numel {
            shapeError("shape \(shape) is invalid for \(numel) elements")
        }
        return out
    }

    /// Strides for viewing this layout as `newShape` without copying, or nil when impossible
    /// (PyTorch's computeStride).
    func viewStrides(_ newShape: [Int]) -> [Int]? {
        if isContiguous { return Tensor.contiguousStrides(newShape) }
        if numel == 0 { return Tensor.contiguousStrides(newShape) }
        var newStrides = [Int](repeating: 0, count: newShape.count)
        var viewD = newShape.count - 1
        var chunkBaseStride = strides.last ?? 1
        var tensorNumel = 1
        var viewNumel = 1
        for tensorD in stride(from: ndim - 1, through: 0, by: -1) {
            tensorNumel *= shape[tensorD]
            if tensorD == 0 || (shape[tensorD - 1] != 1 && strides[tensorD - 1] != tensorNumel * chunkBaseStride) {
                while viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] == 1) {
                    newStrides[viewD] = viewNumel * chunkBaseStride
                    viewNumel *= newShape[viewD]
                    viewD -= 1
                }
                if viewNumel != tensorNumel { return nil }
                if tensorD > 0 {
                    chunkBaseStride = strides[tensorD - 1]
                    tensorNumel = 1
                    viewNumel = 1
                }
            }
        }
        if viewD != -1 { return nil }
        return newStrides
    }

    /// `t.view(shape)`: the same storage with a new shape; one dim may be -1.
    public func view(_ shape: [Int]) -> Tensor {
        let newShape = inferShape(shape)
        guard let st = viewStrides(newShape) else {
            shapeError("view size \(shape) is not compatible with input tensor's size \(self.shape) and stride \(strides) (at least one dimension spans across two contiguous subspaces); use reshape(...) instead")
        }
        let inShape = self.shape
        return makeView(shape: newShape, strides: st, offset: offset, "ViewBackward0") { g in [g.reshape(inShape)] }
    }
    public func view(_ shape: Int...) -> Tensor { view(shape) }

    /// `t.reshape(shape)`: a view when the layout allows, else a contiguous copy.
    public func reshape(_ shape: [Int]) -> Tensor {
        let newShape = inferShape(shape)
        if newShape == self.shape { return self }
        if viewStrides(newShape) != nil { return view(newShape) }
        return contiguous().view(newShape)
    }
    public func reshape(_ shape: Int...) -> Tensor { reshape(shape) }

    /// Flattens dims `startDim...endDim` into one.
    public func flatten(startDim: Int = 0, endDim: Int = -1) -> Tensor {
        if ndim == 0 { return reshape([1]) }
        let s = normalizeDim(startDim), e = normalizeDim(endDim)
        if s > e { shapeError("flatten: startDim \(startDim) comes after endDim \(endDim) for shape \(shape)") }
        if s == e { return self }
        let merged = shape[s...e].reduce(1, *)
        return reshape(Array(shape[..<s]) + [merged] + Array(shape[(e + 1)...]))
    }

    /// Removes every dimension of size 1.
    public func squeeze() -> Tensor {
        var newShape: [Int] = [], newStrides: [Int] = []
        for i in 0..<ndim where shape[i] != 1 { newShape.append(shape[i]); newStrides.append(strides[i]) }
        let inShape = shape
        return makeView(shape: newShape, strides: newStrides, offset: offset, "SqueezeBackward0") { g in [g.reshape(inShape)] }
    }

    /// Removes dimension `dim` if it has size 1 (else returns the tensor unchanged, as PyTorch does).
    public func squeeze(dim: Int) -> Tensor {
        let d = normalizeDim(dim)
        if ndim == 0 || shape[d] != 1 { return self }
        var newShape = shape, newStrides = strides
        newShape.remove(at: d); newStrides.remove(at: d)
        let inShape = shape
        return makeView(shape: newShape, strides: newStrides, offset: offset, "SqueezeBackward1") { g in [g.reshape(inShape)] }
    }

    /// Inserts a dimension of size 1 at `dim` (which may be `ndim`).
    public func unsqueeze(_ dim: Int) -> Tensor {
        let d = normalizeDim(dim, extra: 1)
        var newShape = shape, newStrides = strides
        let st = d < ndim ? strides[d] * shape[d] : 1
        newShape.insert(1, at: d); newStrides.insert(st, at: d)
        let inShape = shape
        return makeView(shape: newShape, strides: newStrides, offset: offset, "UnsqueezeBackward0") { g in [g.reshape(inShape)] }
    }

    /// Swaps two dimensions (a view).
    public func transpose(_ d0: Int, _ d1: Int) -> Tensor {
        let a = normalizeDim(d0), b = normalizeDim(d1)
        if a == b { return self }
        var newShape = shape, newStrides = strides
        newShape.swapAt(a, b); newStrides.swapAt(a, b)
        return makeView(shape: newShape, strides: newStrides, offset: offset, "TransposeBackward0") { g in [g.transpose(a, b)] }
    }

    /// The matrix transpose of a 2-d tensor (`t.T` reverses all dims, as PyTorch does).
    public var T: Tensor {
        if ndim < 2 { return self }
        return permute(Array((0..<ndim).reversed()))
    }

    /// Reorders dimensions (a view).
    public func permute(_ dims: [Int]) -> Tensor {
        if dims.count != ndim { shapeError("permute: \(dims) has \(dims.count) dims, the tensor has \(ndim) (shape \(shape))") }
        let order = dims.map { normalizeDim($0) }
        if Set(order).count != ndim { shapeError("permute: \(dims) repeats a dimension") }
        let newShape = order.map { shape[$0] }, newStrides = order.map { strides[$0] }
        var inverse = [Int](repeating: 0, count: ndim)
        for (i, d) in order.enumerated() { inverse[d] = i }
        return makeView(shape: newShape, strides: newStrides, offset: offset, "PermuteBackward0") { g in [g.permute(inverse)] }
    }
    public func permute(_ dims: Int...) -> Tensor { permute(dims) }

    /// Broadcasts to `shape` without copying (stride 0 along new or size-1 dims); -1 keeps a size.
    public func expand(_ shape: [Int]) -> Tensor {
        if shape.count < ndim { shapeError("expand: the target \(shape) has fewer dims than the tensor's shape \(self.shape)") }
        let lead = shape.count - ndim
        var newShape = shape, newStrides = [Int](repeating: 0, count: shape.count)
        for i in 0..<shape.count {
            if i < lead {
                if shape[i] < 0 { shapeError("expand: -1 is not allowed for a new leading dimension (target \(shape))") }
                continue
            }
            let own = self.shape[i - lead]
            let want = shape[i] == -1 ? own : shape[i]
            newShape[i] = want
            if own == want { newStrides[i] = strides[i - lead] }
            else if own == 1 { newStrides[i] = 0 }
            else { shapeError("expand: the size \(own) at dim \(i - lead) must match \(want) (shape \(self.shape) to \(shape))") }
        }
        if newShape == self.shape { return self }
        let inShape = self.shape
        return makeView(shape: newShape, strides: newStrides, offset: offset, "ExpandBackward0") { g in [g.sumTo(inShape)] }
    }
    public func expand(_ shape: Int...) -> Tensor { expand(shape) }

    /// Expands to another tensor's shape.
    public func expand(as other: Tensor) -> Tensor { expand(other.shape) }

    /// `length` elements along `dim` from `start` (a view).
    public func narrow(dim: Int, start: Int, length: Int) -> Tensor {
        let d = normalizeDim(dim)
        let s = start < 0 ? start + shape[d] : start
        if s < 0 || length < 0 || s + length > shape[d] {
            shapeError("narrow: start \(start) + length \(length) exceeds dimension \(d) of size \(shape[d]) (shape \(shape))")
        }
        var newShape = shape
        newShape[d] = length
        let inShape = shape
        return makeView(shape: newShape, strides: strides, offset: offset + s * strides[d], "NarrowBackward0") { g in
            let z = Tensor.zeros(inShape, dtype: g.dtype, device: g.device)
            z.narrow(dim: d, start: s, length: length).copy(from: g)
            return [z]
        }
    }

    /// The slice at `index` along `dim`, which is removed (a view).
    public func select(dim: Int, index: Int) -> Tensor {
        let d = normalizeDim(dim)
        let i = index < 0 ? index + shape[d] : index
        if i < 0 || i >= shape[d] { shapeError("index \(index) is out of bounds for dimension \(d) with size \(shape[d])") }
        var newShape = shape, newStrides = strides
        newShape.remove(at: d); newStrides.remove(at: d)
        let inShape = shape
        return makeView(shape: newShape, strides: newStrides, offset: offset + i * strides[d], "SelectBackward0") { g in
            let z = Tensor.zeros(inShape, dtype: g.dtype, device: g.device)
            z.select(dim: d, index: i).copy(from: g)
            return [z]
        }
    }

    /// Concatenates along `dim`; all other dims must match.
    public static func cat(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        let tensors = onOneDevice(tensors, "cat")
        guard let first = tensors.first else { shapeError("cat: expected a non-empty list of tensors") }
        let d = first.normalizeDim(dim)
        var dt = first.dtype
        for t in tensors {
            if t.ndim != first.ndim { shapeError("cat: tensors must have the same number of dims, got \(first.shape) and \(t.shape)") }
            for i in 0..<t.ndim where i != d && t.shape[i] != first.shape[i] {
                shapeError("cat: sizes must match except in dimension \(d): \(first.shape) vs \(t.shape) at dimension \(i)")
            }
            dt = DType.promote(dt, t.dtype)
        }
        var outShape = first.shape
        outShape[d] = tensors.reduce(0) { $0 + $1.shape[d] }
        let out = Tensor(uninitialized: outShape, dtype: dt, like: first)
        var start = 0
        var sizes: [Int] = []
        for t in tensors {
            let len = t.shape[d]
            sizes.append(len)
            if len > 0 { noGrad { out.narrow(dim: d, start: start, length: len).copy(from: t) } }
            start += len
        }
        let converted = tensors.map { $0.dtype == dt ? $0 : $0.to(dt) }
        return out.recorded("CatBackward0", converted) { g in
            var s = 0
            return sizes.map { len in
                defer { s += len }
                return g.narrow(dim: d, start: s, length: len)
            }
        }
    }

    /// Stacks along a new dimension `dim`; all shapes must be equal.
    public static func stack(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        guard let first = tensors.first else { shapeError("stack: expected a non-empty list of tensors") }
        for t in tensors where t.shape != first.shape {
            shapeError("stack expects each tensor to be equal size, but got \(first.shape) and \(t.shape)")
        }
        let d = first.normalizeDim(dim, extra: 1)
        return cat(tensors.map { $0.unsqueeze(d) }, dim: d)
    }

    /// Splits into pieces of `size` along `dim` (the last may be smaller); views.
    public func split(_ size: Int, dim: Int = 0) -> [Tensor] {
        let d = normalizeDim(dim)
        if size <= 0 { usageError("split: size must be positive, got \(size)") }
        var pieces: [Tensor] = []
        var start = 0
        repeat {
            let len = Swift.min(size, shape[d] - start)
            pieces.append(narrow(dim: d, start: start, length: len))
            start += len
        } while start < shape[d]
        return pieces
    }

    /// Splits into pieces of the given sizes along `dim`; views.
    public func split(sizes: [Int], dim: Int = 0) -> [Tensor] {
        let d = normalizeDim(dim)
        if sizes.reduce(0, +) != shape[d] { shapeError("split: sizes \(sizes) do not add up to \(shape[d]) (dimension \(d) of \(shape))") }
        var start = 0
        return sizes.map { len in defer { start += len }; return narrow(dim: d, start: start, length: len) }
    }

    /// Splits into `chunks` nearly equal pieces along `dim` (`torch.chunk`).
    public func chunk(_ chunks: Int, dim: Int = 0) -> [Tensor] {
        if chunks <= 0 { usageError("chunk: chunks must be positive, got \(chunks)") }
        let d = normalizeDim(dim)
        let size = (shape[d] + chunks - 1) / chunks
        return split(Swift.max(size, 1), dim: d)
    }

    /// Selects entries along `dim` at the int64 positions in the 1-d `index` (a copy).
    public func indexSelect(dim: Int, index: Tensor) -> Tensor {
        let d = normalizeDim(dim)
        if index.ndim > 1 || index.dtype != .int64 { usageError("indexSelect: index must be a 1-d int64 tensor, got \(index.dtype) of shape \(index.shape)") }
        let idx = index.scalars(as: Int64.self).map { i -> Int in
            let v = Int(i) < 0 ? Int(i) + shape[d] : Int(i)
            if v < 0 || v >= shape[d] { usageError("indexSelect: index \(i) is out of range for dimension \(d) of size \(shape[d])") }
            return v
        }
        var outShape = shape
        outShape[d] = idx.count
        if storage.isOnDevice {
            // A gather by the index broadcast over the other dims.
            let along = (0..<ndim).map { $0 == d ? idx.count : 1 }
            let full = Tensor(shape: [idx.count], scalars: idx.map { Int64($0) }).reshape(along).to(device).expand(outShape).contiguous()
            return gather(dim: d, index: full)
        }
        let src = contiguous()
        let out = Tensor(uninitialized: outShape, dtype: dtype)
        let outer = shape[..<d].reduce(1, *), inner = shape[(d + 1)...].reduce(1, *)
        let bytes = inner * dtype.byteSize
        let sp = src.storage.raw + src.offset * dtype.byteSize, op = out.storage.raw
        for o in 0..<outer {
            for (j, i) in idx.enumerated() {
                (op + ((o * idx.count + j) * bytes)).copyMemory(from: sp + ((o * shape[d] + i) * bytes), byteCount: bytes)
            }
        }
        let inShape = shape
        return out.recorded("IndexSelectBackward0", [self]) { g in
            [Tensor.indexAdd(into: Tensor.zeros(inShape, dtype: g.dtype, device: g.device), dim: d, index: idx, source: g)]
        }
    }

    /// Adds `source`'s slices along `dim` into `base` at positions `index` (in place, returns base).
    static func indexAdd(into base: Tensor, dim d: Int, index idx: [Int], source: Tensor) -> Tensor {
        let src = source.contiguous()
        let outer = base.shape[..<d].reduce(1, *), inner = base.shape[(d + 1)...].reduce(1, *)
        func run<T: Numeric>(_: T.Type) {
            let bp = base.pointer(T.self), sp = src.pointer(T.self)
            for o in 0..<outer {
                for (j, i) in idx.enumerated() {
                    let b = bp + (o * base.shape[d] + i) * inner, s = sp + (o * idx.count + j) * inner
                    for k in 0..<inner { b[k] += s[k] }
                }
            }
        }
        switch base.dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int64: run(Int64.self)
        case .bool: usageError("indexAdd on bool")
        }
        return base
    }

    /// `torch.gather`: out[i][j][k] = self[i][index[i][j][k]][k] for dim 1 (and likewise for others).
    public func gather(dim: Int, index: Tensor) -> Tensor {
        let d = normalizeDim(dim)
        if index.dtype != .int64 || index.ndim != ndim {
            usageError("gather: index must be an int64 tensor with \(ndim) dims, got \(index.dtype) of shape \(index.shape)")
        }
        for i in 0..<ndim where i != d && index.shape[i] > shape[i] {
            shapeError("gather: index shape \(index.shape) exceeds input shape \(shape) at dimension \(i)")
        }
        if storage.isOnDevice || index.storage.isOnDevice { return cudaGather(dim: d, index: index) }
        let idx = index.contiguous()
        let out = Tensor(uninitialized: index.shape, dtype: dtype)
        let ip = idx.pointer(Int64.self)
        let outStrides = Tensor.contiguousStrides(index.shape)
        let n = index.numel, dimSize = shape[d]
        func run<T>(_: T.Type) {
            let sp = pointer(T.self), op = out.pointer(T.self)
            for lin in 0..<n {
                var rem = lin, srcOffset = 0
                for k in 0..<ndim {
                    let c = rem / outStrides[k]
                    rem %= outStrides[k]
                    if k == d {
                        var v = Int(ip[lin])
                        if v < 0 { v += dimSize }
                        if v < 0 || v >= dimSize { shapeError("gather: index \(ip[lin]) is out of bounds for dimension \(d) with size \(dimSize)") }
                        srcOffset += v * strides[k]
                    } else {
                        srcOffset += c * strides[k]
                    }
                }
                op[lin] = sp[srcOffset]
            }
        }
        switch dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int64: run(Int64.self)
        case .bool: run(Bool.self)
        }
        let inShape = shape
        return out.recorded("GatherBackward0", [self]) { g in
            [Tensor.zeros(inShape, dtype: g.dtype, device: g.device).scatterAdd(dim: d, index: idx, source: g)]
        }
    }

    /// Adds `source` into a copy of this tensor at `index` along `dim` (`scatter_add`).
    public func scatterAdd(dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let d = normalizeDim(dim)
        if index.dtype != .int64 || index.ndim != ndim {
            // Read as raw Int64 otherwise: a float index would scatter to garbage positions.
            usageError("scatterAdd: index must be an int64 tensor with \(ndim) dims, got \(index.dtype) of shape \(index.shape)")
        }
        if index.shape != source.shape { shapeError("scatterAdd: index shape \(index.shape) must equal source shape \(source.shape)") }
        if storage.isOnDevice || index.storage.isOnDevice || source.storage.isOnDevice {
            return cudaScatterAdd(dim: d, index: index, source: source)
        }
        let out = clone().detach()
        let idx = index.contiguous(), src = source.to(dtype).contiguous()
        let ip = idx.pointer(Int64.self)
        let idxStrides = Tensor.contiguousStrides(index.shape)
        func run<T: Numeric>(_: T.Type) {
            let op = out.pointer(T.self), sp = src.pointer(T.self)
            for lin in 0..<index.numel {
                var rem = lin, dst = 0
                for k in 0..<ndim {
                    let c = rem / idxStrides[k]
                    rem %= idxStrides[k]
                    var v = k == d ? Int(ip[lin]) : c
                    if k == d && v < 0 { v += shape[d] }
                    if v < 0 || v >= shape[k] { shapeError("scatterAdd: index \(v) is out of bounds for dimension \(k) with size \(shape[k])") }
                    dst += v * out.strides[k]
                }
                op[dst] += sp[lin]
            }
        }
        switch dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int64: run(Int64.self)
        case .bool: usageError("scatterAdd on bool")
        }
        let source0 = source
        return out.recorded("ScatterAddBackward0", [self, source0]) { g in [g, g.gather(dim: d, index: idx)] }
    }
}
