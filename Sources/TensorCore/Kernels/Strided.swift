/// Iteration over broadcast, strided operands: dims are collapsed where every operand is
/// contiguous across them, and the innermost run is handed to a kernel with its strides, so the
/// common cases (all contiguous, a scalar, a broadcast row) reach a tight loop.
struct StridedPlan {
    /// Collapsed shape (outer dims first); empty means one element.
    var shape: [Int]
    /// Per operand, strides in elements for `shape`.
    var strides: [[Int]]

    init(shape: [Int], strides operandStrides: [[Int]]) {
        var dims: [Int] = []
        var st: [[Int]] = Array(repeating: [], count: operandStrides.count)
        for d in 0..<shape.count where shape[d] != 1 {
            if let last = dims.indices.last {
                // Merge with the previous dim when every operand steps through both as one.
                var mergeable = true
                for k in 0..<operandStrides.count where st[k][last] != operandStrides[k][d] * shape[d] { mergeable = false; break }
                if mergeable {
                    dims[last] *= shape[d]
                    for k in 0..<operandStrides.count { st[k][last] = operandStrides[k][d] }
                    continue
                }
            }
            dims.append(shape[d])
            for k in 0..<operandStrides.count { st[k].append(operandStrides[k][d]) }
        }
        self.shape = dims
        self.strides = st
    }

    var count: Int { shape.reduce(1, *) }
    var inner: Int { shape.last ?? 1 }
    /// Runs of the innermost dim (0 for an empty tensor, whose innermost size may be 0).
    var outerCount: Int { shape.isEmpty ? 1 : (inner == 0 ? 0 : count / inner) }

    /// Calls `body(offsets, innerCount, innerStrides)` for each run of the innermost dim, over the
    /// outer indices in `range`. Offsets are in elements from each operand's base.
    @inline(__always)
    func forEachRun(outer range: Range<Int>, _ body: (UnsafePointer<Int>, Int, UnsafePointer<Int>) -> Void) {
        if range.isEmpty { return }   // also keeps an empty tensor's zero-size dims out of the odometer
        let k = strides.count
        let nd = shape.count
        withUnsafeTemporaryAllocation(of: Int.self, capacity: k * 2 + Swift.max(nd, 1)) { buf in
            let offsets = buf.baseAddress!
            let innerStrides = offsets + k
            let index = innerStrides + k
            for j in 0..<k { innerStrides[j] = nd == 0 ? 0 : strides[j][nd - 1] }
            if nd <= 1 {
                for j in 0..<k { offsets[j] = 0 }
                if !range.isEmpty { body(offsets, nd == 0 ? 1 : shape[0], innerStrides) }
                return
            }
            // Multi-index of the first outer position.
            var rem = range.lowerBound
            for d in stride(from: nd - 2, through: 0, by: -1) {
                index[d] = rem % shape[d]
                rem /= shape[d]
            }
            for j in 0..<k {
                var o = 0
                for d in 0..<(nd - 1) { o += index[d] * strides[j][d] }
                offsets[j] = o
            }
            let innerCount = shape[nd - 1]
            for _ in range {
                body(offsets, innerCount, innerStrides)
                // Advance the odometer over the outer dims.
                var d = nd - 2
                while d >= 0 {
                    index[d] += 1
                    for j in 0..<k { offsets[j] += strides[j][d] }
                    if index[d] < shape[d] { break }
                    for j in 0..<k { offsets[j] -= strides[j][d] * shape[d] }
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// Runs over every run, in parallel over outer indices when the work is large.
    @inline(__always)
    func parallelRuns(grain: Int = 32_768, _ body: (UnsafePointer<Int>, Int, UnsafePointer<Int>) -> Void) {
        let outer = outerCount
        let inner = self.inner
        if count < grain * 2 {
            forEachRun(outer: 0..<outer, body)
            return
        }
        if shape.count == 1 {
            // One long run: split it.
            let k = strides.count
            Threading.parallelFor(inner, grain: grain) { r in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * k) { buf in
                    let offsets = buf.baseAddress!, innerStrides = offsets + k
                    for j in 0..<k { innerStrides[j] = strides[j][0]; offsets[j] = r.lowerBound * strides[j][0] }
                    body(offsets, r.count, innerStrides)
                }
            }
            return
        }
        let perThread = Swift.max(1, grain / Swift.max(inner, 1))
        Threading.parallelFor(outer, grain: perThread) { r in forEachRun(outer: r, body) }
    }
}

