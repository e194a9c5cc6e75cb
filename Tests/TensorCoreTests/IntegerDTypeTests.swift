import Testing
@testable import TensorCore

/// int64 stays int64 through every op PyTorch keeps integral, with exact values (no detour through
/// float that would round large integers); int / int is true division in float32; comparisons are bool.
@Suite struct IntegerDTypeTests {
    let a = Tensor([[3, -5, 7], [10, 0, -2]])        // int64 [2, 3]
    let b = Tensor([2, 4, -3])                       // int64 [3]

    func expectInt64(_ t: Tensor, _ values: [Int64], shape: [Int]? = nil, _ what: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(t.dtype == .int64, "\(what): dtype \(t.dtype)", sourceLocation: sourceLocation)
        if let shape { #expect(t.shape == shape, "\(what): shape \(t.shape)", sourceLocation: sourceLocation) }
        #expect(t.scalars(as: Int64.self) == values, "\(what)", sourceLocation: sourceLocation)
    }

    @Test func arithmeticStaysIntegral() {
        expectInt64(a + b, [5, -1, 4, 12, 4, -5], "a + b")
        expectInt64(a - b, [1, -9, 10, 8, -4, 1], "a - b")
        expectInt64(a * b, [6, -20, -21, 20, 0, 6], "a * b")
        expectInt64(a + 1, [4, -4, 8, 11, 1, -1], "a + 1")
        expectInt64(10 * b, [20, 40, -30], "10 * b")
        expectInt64(2 - b, [0, -2, 5], "2 - b")
        expectInt64(-b, [-2, -4, 3], "-b")
        expectInt64(a.abs(), [3, 5, 7, 10, 0, 2], "abs")
        expectInt64(a.relu(), [3, 0, 7, 10, 0, 0], "relu")
        expectInt64(a.sign(), [1, -1, 1, 1, 0, -1], "sign")
        expectInt64(a.clamp(min: -1, max: 5), [3, -1, 5, 5, 0, -1], "clamp")
        expectInt64(Tensor.maximum(a, b), [3, 4, 7, 10, 4, -2], "maximum")
        expectInt64(Tensor.minimum(a, b), [2, -5, -3, 2, 0, -3], "minimum")
    }

    @Test func powWithIntegralExponentStaysIntegral() {
        expectInt64(b.pow(2), [4, 16, 9], "b.pow(2)")
        expectInt64(b ** 3, [8, 64, -27], "b ** 3")
        expectInt64(b ** 0, [1, 1, 1], "b ** 0")
        // Tensor exponent: int ** int is int64 in PyTorch.
        expectInt64(b.pow(Tensor([3, 2, 1])), [8, 16, -3], "b.pow(int tensor)")
        expectInt64(b ** Tensor(2), [4, 16, 9], "b ** int 0-d tensor")
        // A fractional exponent, or a float exponent tensor, gives float32.
        #expect(b.abs().pow(0.5).dtype == .float32)
        #expect(b.pow(Tensor([1.0, 2.0, 0.0])).dtype == .float32)
    }

    @Test func reductionsStayIntegral() {
        expectInt64(a.sum(), [13], shape: [], "sum()")
        expectInt64(a.sum(dim: 0), [13, -5, 5], "sum(dim: 0)")
        expectInt64(a.sum(dim: 1, keepDim: true), [5, 8], shape: [2, 1], "sum(dim: 1, keepDim)")
        expectInt64(a.max(), [10], shape: [], "max()")
        expectInt64(a.min(), [-5], shape: [], "min()")
        let (values, indices) = a.max(dim: 1)
        expectInt64(values, [7, 10], "max(dim: 1).values")
        expectInt64(indices, [2, 0], "max(dim: 1).indices")
        expectInt64(a.min(dim: 0).values, [3, -5, -2], "min(dim: 0).values")
        expectInt64(a.argmax(), [3], shape: [], "argmax()")
        expectInt64(a.argmin(dim: 1), [1, 2], "argmin(dim: 1)")
        expectInt64(Tensor([true, false, true]).sum(), [2], "bool sum")
    }

    @Test func viewsAndJoinsStayIntegral() {
        expectInt64(a.T, [3, 10, -5, 0, 7, -2], shape: [3, 2], "T")
        expectInt64(a.transpose(0, 1).contiguous(), [3, 10, -5, 0, 7, -2], "transpose.contiguous")
        expectInt64(a.view(3, 2), [3, -5, 7, 10, 0, -2], shape: [3, 2], "view")
        expectInt64(a.reshape(-1), [3, -5, 7, 10, 0, -2], "reshape")
        expectInt64(a.flatten(), [3, -5, 7, 10, 0, -2], "flatten")
        expectInt64(a.unsqueeze(0).squeeze(), [3, -5, 7, 10, 0, -2], shape: [2, 3], "unsqueeze/squeeze")
        expectInt64(a.permute(1, 0)[0], [3, 10], "permute + index")
        expectInt64(b.expand(2, 3), [2, 4, -3, 2, 4, -3], "expand")
        expectInt64(a[.all, 1...], [-5, 7, 0, -2], "slice")
        expectInt64(a.narrow(dim: 1, start: 1, length: 1), [-5, 0], "narrow")
        expectInt64(Tensor.cat([a, b.unsqueeze(0)], dim: 0), [3, -5, 7, 10, 0, -2, 2, 4, -3], shape: [3, 3], "cat")
        expectInt64(Tensor.stack([b, b], dim: 1), [2, 2, 4, 4, -3, -3], shape: [3, 2], "stack")
        expectInt64(a.split(2, dim: 1)[1], [7, -2], "split")
        expectInt64(a.chunk(2, dim: 0)[1], [10, 0, -2], "chunk")
        expectInt64(a.indexSelect(dim: 1, index: Tensor([2, 0])), [7, 3, -2, 10], "indexSelect")
        expectInt64(a.gather(dim: 1, index: Tensor([[1], [2]])), [-5, -2], "gather")
        expectInt64(Tensor.zeros([2, 3], dtype: .int64).scatterAdd(dim: 1, index: Tensor([[0, 0], [2, 1]]), source: Tensor([[4, 5], [6, 7]])),
                    [9, 0, 0, 0, 7, 6], "scatterAdd")
        expectInt64(Tensor.where(a .> 0, a, b), [3, 4, 7, 10, 4, -3], "where")
        expectInt64(a.clone(), [3, -5, 7, 10, 0, -2], "clone")
    }

    @Test func matrixProductsOfIntsStayIntegral() {
        let m = Tensor.arange(6).reshape(2, 3)
        expectInt64(m.mm(m.T), [5, 14, 14, 50], "mm")
        expectInt64(m.matmul(m.T), [5, 14, 14, 50], "matmul 2-d")
        expectInt64(m.matmul(Tensor([1, 0, -1])), [-2, -2], "matmul 2-d @ 1-d")
        expectInt64(Tensor([1, 2]).matmul(m), [6, 9, 12], "matmul 1-d @ 2-d")
        expectInt64(Tensor.arange(4).dot(Tensor.arange(4)), [14], shape: [], "dot")
        expectInt64(m.unsqueeze(0).bmm(m.T.unsqueeze(0)), [5, 14, 14, 50], shape: [1, 2, 2], "bmm")
        expectInt64(Tensor.arange(12).reshape(2, 2, 3).matmul(m.T), [5, 14, 14, 50, 23, 86, 32, 122], shape: [2, 2, 2], "matmul 3-d @ 2-d")
    }

    @Test func largeIntegersAreExact() {
        // 2^53 + 1 is not a Double: a detour through floating point would round it.
        let big: Int64 = 9_007_199_254_740_993
        expectInt64(Tensor([9_007_199_254_740_993]), [big], "literal")
        expectInt64(Tensor(shape: [1], scalars: [big]), [big], "shape:scalars:")
        expectInt64(Tensor([9_007_199_254_740_993]) + 2, [big + 2], "tensor + Int")
        expectInt64(Tensor([1]) + 9_007_199_254_740_992, [big], "tensor + large Int")
        expectInt64(Tensor.full([1], value: 9_007_199_254_740_993), [big], "full(value: Int)")
        expectInt64(Tensor([9_007_199_254_740_993, 1]).sum(), [big + 1], "sum")
        expectInt64(Tensor([9_007_199_254_740_993, 1]).max(), [big], "max")
        expectInt64(Tensor([9_223_372_036_854_775_807, 1]).max(), [Int64.max], "max of Int64.max")
        expectInt64(Tensor([9_007_199_254_740_993]).T.contiguous(), [big], "copy")
    }

    @Test func trueDivisionAndComparisons() {
        let q = Tensor([7, -7, 1]) / Tensor([2, 2, 3])
        #expect(q.dtype == .float32)
        #expect(q.scalars(as: Float.self) == [3.5, -3.5, Float(1) / 3])
        #expect((Tensor([7]) / 2).dtype == .float32 && (Tensor([7]) / 2).item() == 3.5)
        #expect((7 / Tensor([2])).item() == 3.5)
        #expect((Tensor([7]) * 2.5).dtype == .float32)
        #expect((Tensor([7]) + Tensor([0.5], dtype: .float64)).dtype == .float64)
        let c = a .> 0
        #expect(c.dtype == .bool && c.scalars(as: Bool.self) == [true, false, true, true, false, false])
        #expect(a.eq(Tensor([3, 0, 7])).dtype == .bool)
        #expect((a .<= 0).scalars(as: Bool.self) == [false, true, false, false, true, true])
        #expect((b .== Tensor([2.0, 4.5, -3.0])).scalars(as: Bool.self) == [true, false, true])
        #expect((b .> 1.5).scalars(as: Bool.self) == [true, true, false])
        #expect(a.ne(a).scalars(as: Bool.self).allSatisfy { !$0 })
    }

    @Test func clampToAFractionalBoundIsFloat() {
        let c = Tensor([0, 3, -2]).clamp(min: 0.5)
        #expect(c.dtype == .float32 && c.scalars(as: Float.self) == [0.5, 3, 0.5])
        #expect(Tensor([0, 3, -2]).clamp(max: 2.5).scalars(as: Float.self) == [0, 2.5, -2])
        expectInt64(Tensor([0, 3, -2]).clamp(min: 1.0, max: 2.0), [1, 2, 1], "integral Double bounds keep int64")
    }

    /// PyTorch's result_type: a 0-d operand decides the dtype only when its category is higher.
    @Test func zeroDimOperandsPromoteLikePyTorch() {
        let f32 = Tensor([1.0, 2.0]), i64 = Tensor([1, 2]), b = Tensor([true, false])
        let d0 = Tensor(2.0, dtype: .float64), f0 = Tensor(2.0), i0 = Tensor(2)
        #expect((f32 * d0).dtype == .float32, "float32 [n] * float64 0-d")
        #expect((d0 + f32).dtype == .float32)
        #expect((i64 + d0).dtype == .float64, "int64 [n] + float64 0-d")
        #expect((i64 * f0).dtype == .float32)
        #expect((b + i0).dtype == .int64)
        #expect((f32.double() * f0).dtype == .float64, "float64 [n] * float32 0-d")
        #expect((d0 * f0).dtype == .float64, "two 0-d tensors promote normally")
        #expect((f32 + Tensor([1.0], dtype: .float64)).dtype == .float64, "two dimensioned tensors promote normally")
        #expect((f32 ** d0).dtype == .float32 && (i64 ** f0).dtype == .float32)
        #expect(Tensor.where(b, f32, d0).dtype == .float32)
        #expect(Tensor.maximum(f32, d0).dtype == .float32)
        #expect((i64 / i0).dtype == .float32)
        // The gradient of the 0-d float64 operand comes back in its own dtype.
        let w = Tensor(3.0, dtype: .float64, requiresGrad: true), x = Tensor([1.0, 2.0], requiresGrad: true)
        (x * w).sum().backward()
        #expect(w.grad?.dtype == .float64 && w.grad?.item() == 3)
        #expect(x.grad?.dtype == .float32 && x.grad?.scalars(as: Float.self) == [3, 3])
    }

    @Test func boolWithBoolStaysBool() {
        let p = Tensor([true, true, false, false]), q = Tensor([true, false, true, false])
        #expect((p + q).dtype == .bool && (p + q).scalars(as: Bool.self) == [true, true, true, false], "+ is or")
        #expect((p * q).scalars(as: Bool.self) == [true, false, false, false], "* is and")
        #expect(Tensor.maximum(p, q).scalars(as: Bool.self) == [true, true, true, false])
        #expect((p / q).dtype == .float32)
        #expect((p + 1).dtype == .int64 && (p + 1).scalars(as: Int64.self) == [2, 2, 1, 1])
        #expect((p * Tensor([2, 3, 4, 5])).scalars(as: Int64.self) == [2, 3, 0, 0])
    }

    @Test func creationDTypes() {
        #expect(Tensor.arange(5).dtype == .int64)
        #expect(Tensor.full([2], value: 7).dtype == .int64)
        #expect(Tensor.randint(5, shape: [3]).dtype == .int64)
        #expect(Tensor(7).dtype == .int64)
        #expect(Tensor.zeros(like: a).dtype == .int64 && Tensor.ones(like: a).dtype == .int64)
        #expect(F.oneHot(Tensor([0, 2])).dtype == .int64)
    }
}
