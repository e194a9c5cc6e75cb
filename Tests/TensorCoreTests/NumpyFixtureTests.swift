import Foundation
import Testing
@testable import TensorCore

/// Forward results against numpy: inputs and float64-computed references come from
/// scripts/fixtures/make_tensorcore_fixtures.py (committed .npy files in Fixtures/). TensorCore
/// computes in float32, so tolerances are float32 ones.
@Suite struct NumpyFixtureTests {
    struct MissingFixture: Error, CustomStringConvertible {
        let name: String
        var description: String { "Fixtures/\(name).npy is missing: run python3 scripts/fixtures/make_tensorcore_fixtures.py" }
    }

    static func fixture(_ name: String) throws -> Tensor {
        guard let url = Bundle.module.url(forResource: name, withExtension: "npy", subdirectory: "Fixtures") else {
            throw MissingFixture(name: name)
        }
        return try Tensor(npyFile: url)
    }

    /// Every element within atol + rtol·|want|; the message names the worst element.
    static func expectClose(_ got: Tensor, _ wantName: String, rtol: Double = 1e-5, atol: Double = 1e-6,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
        let want = try fixture(wantName)
        #expect(got.shape == want.shape, "\(wantName): shape \(got.shape), numpy \(want.shape)", sourceLocation: sourceLocation)
        guard got.shape == want.shape else { return }
        let g = got.scalars(as: Double.self), w = want.scalars(as: Double.self)
        var worst = (excess: 0.0, index: 0)
        for i in 0..<g.count {
            let excess = g[i] == w[i] ? 0 : Swift.abs(g[i] - w[i]) / (atol + rtol * Swift.abs(w[i]))
            if !(excess <= worst.excess) { worst = (excess.isNaN ? .infinity : excess, i) }
        }
        #expect(worst.excess <= 1, "\(wantName): element \(worst.index) is \(g[worst.index]), numpy says \(w[worst.index]) (rtol \(rtol), atol \(atol))",
                sourceLocation: sourceLocation)
    }

    @Test func elementwiseWithBroadcasting() throws {
        let a = try Self.fixture("ew_a"), b = try Self.fixture("ew_b"), c = try Self.fixture("ew_c")
        #expect(a.dtype == .float32 && b.shape == [4] && c.shape == [3, 1])
        try Self.expectClose(a + b, "ew_add_a_b")
        try Self.expectClose(a - c, "ew_sub_a_c")
        try Self.expectClose(c * b, "ew_mul_c_b")
        try Self.expectClose(a / (b.abs() + 0.5), "ew_div_a_absb")
        try Self.expectClose(Tensor.maximum(a, c), "ew_maximum_a_c")
        try Self.expectClose(a.abs().pow(1.7), "ew_pow_absa_1p7", rtol: 1e-5, atol: 1e-6)
        try Self.expectClose(2.5 * a - 1, "ew_affine")
    }

    @Test func unaryMath() throws {
        let x = try Self.fixture("un_x")
        try Self.expectClose(x.exp(), "un_exp", rtol: 3e-7 * 4)
        try Self.expectClose((x.abs() + 0.01).log(), "un_log_abs", rtol: 1e-6, atol: 1e-7)
        try Self.expectClose(x.tanh(), "un_tanh", rtol: 1e-6, atol: 1e-7)
        try Self.expectClose(x.sigmoid(), "un_sigmoid", rtol: 1e-6, atol: 1e-7)
        try Self.expectClose(x.gelu(), "un_gelu", rtol: 1e-6, atol: 1e-6)
        try Self.expectClose(x.erf(), "un_erf", rtol: 1e-6, atol: 1e-7)
        try Self.expectClose(x.abs().sqrt(), "un_sqrt_abs", rtol: 1e-7)
        try Self.expectClose(x.relu(), "un_relu", rtol: 0, atol: 0)
        try Self.expectClose(x.clamp(min: -1, max: 2), "un_clamp", rtol: 0, atol: 0)
    }

    @Test func softmaxAndLogSoftmax() throws {
        let s = try Self.fixture("sm_x")
        try Self.expectClose(s.softmax(dim: 1), "sm_softmax_dim1")
        try Self.expectClose(F.softmax(s, dim: 0), "sm_softmax_dim0")
        try Self.expectClose(s.logSoftmax(dim: 1), "sm_logsoftmax_dim1")
        try Self.expectClose(s.logSoftmax(dim: 0), "sm_logsoftmax_dim0")
    }

    @Test func reductions() throws {
        let r = try Self.fixture("red_x")
        try Self.expectClose(r.sum(dim: 1), "red_sum_dim1", atol: 1e-5)
        try Self.expectClose(r.sum(dims: [0, 2]), "red_sum_dims02", atol: 1e-5)
        try Self.expectClose(r.mean(dim: 2, keepDim: true), "red_mean_dim2_keep", atol: 1e-6)
        try Self.expectClose(r.mean(), "red_mean_all", atol: 1e-6)
        try Self.expectClose(r.var(dim: 1), "red_var_dim1", rtol: 1e-5, atol: 1e-6)
        try Self.expectClose(r.var(correction: 0), "red_var_all_ddof0", rtol: 1e-5)
        try Self.expectClose(r.std(dim: 0), "red_std_dim0", rtol: 1e-5, atol: 1e-6)
        try Self.expectClose(r.std(dims: [1, 2], keepDim: true), "red_std_dims12_keep", rtol: 1e-5)
        try Self.expectClose(r.max(dim: 1).values, "red_max_dim1", rtol: 0, atol: 0)
        let argmax = r.argmax(dim: 2), argmin = r.argmin(dim: 0)
        #expect(argmax.dtype == .int64 && argmin.dtype == .int64)
        try Self.expectClose(argmax, "red_argmax_dim2", rtol: 0, atol: 0)
        try Self.expectClose(argmin, "red_argmin_dim0", rtol: 0, atol: 0)
        try Self.expectClose(r.logsumexp(dim: 2), "red_logsumexp_dim2", rtol: 1e-6)
    }

    @Test func matmulAndBmm() throws {
        try Self.expectClose(try Self.fixture("mm_a").mm(try Self.fixture("mm_b")), "mm_out", atol: 1e-5)
        try Self.expectClose(try Self.fixture("mm_a").matmul(try Self.fixture("mm_b")), "mm_out", atol: 1e-5)
        try Self.expectClose(try Self.fixture("bmm_a").bmm(try Self.fixture("bmm_b")), "bmm_out", atol: 1e-5)
        try Self.expectClose(try Self.fixture("matmul_bc_a").matmul(try Self.fixture("matmul_bc_b")), "matmul_bc_out", atol: 1e-5)
        // The same through float64 agrees more tightly (the generic kernel).
        try Self.expectClose(try Self.fixture("mm_a").double().mm(try Self.fixture("mm_b").double()), "mm_out", rtol: 1e-6, atol: 1e-7)
    }

    @Test func conv2d() throws {
        let x = try Self.fixture("conv_x"), w = try Self.fixture("conv_w"), b = try Self.fixture("conv_b")
        try Self.expectClose(F.conv2d(x, w), "conv_plain", atol: 1e-5)
        try Self.expectClose(F.conv2d(x, w, b, stride: 2, padding: 1), "conv_s2_p1_bias", atol: 1e-5)
        try Self.expectClose(F.conv2d(x, w, b, stride: 1, padding: 2, dilation: 2), "conv_p2_d2_bias", atol: 1e-5)
        try Self.expectClose(F.conv2d(x, w, b, stride: (2, 1), padding: (1, 2), dilation: (1, 2)), "conv_s21_p12_d12_bias", atol: 1e-5)
        // float64 goes through the generic kernel.
        try Self.expectClose(F.conv2d(x.double(), w.double(), b.double(), stride: 2, padding: 1), "conv_s2_p1_bias", rtol: 1e-6, atol: 1e-7)
    }

    @Test func pooling() throws {
        let x = try Self.fixture("pool_x")
        try Self.expectClose(F.maxPool2d(x, kernelSize: 2), "maxpool_k2", rtol: 0, atol: 0)
        try Self.expectClose(F.maxPool2d(x, kernelSize: 3, stride: 2, padding: 1), "maxpool_k3_s2_p1", rtol: 0, atol: 0)
        try Self.expectClose(F.maxPool2d(x, kernelSize: 2, stride: 1, dilation: 2), "maxpool_k2_s1_d2", rtol: 0, atol: 0)
        try Self.expectClose(F.avgPool2d(x, kernelSize: 2), "avgpool_k2")
        try Self.expectClose(F.avgPool2d(x, kernelSize: 3, stride: 2, padding: 1), "avgpool_k3_s2_p1")
        try Self.expectClose(F.avgPool2d(x.double(), kernelSize: 3, stride: 2, padding: 1), "avgpool_k3_s2_p1", rtol: 1e-7)
    }

    @Test func crossEntropyWithLabelSmoothing() throws {
        let logits = try Self.fixture("ce_logits"), target = try Self.fixture("ce_target"), weight = try Self.fixture("ce_weight")
        #expect(target.dtype == .int64)
        try Self.expectClose(F.crossEntropy(logits, target), "ce_plain")                     // the fused float32 path
        try Self.expectClose(F.crossEntropy(logits.double(), target), "ce_plain", rtol: 1e-6)  // the generic path
        try Self.expectClose(F.crossEntropy(logits, target, labelSmoothing: 0.1), "ce_smooth0p1")
        try Self.expectClose(F.crossEntropy(logits, target, weight: weight, labelSmoothing: 0.2), "ce_smooth0p2_weight")
        try Self.expectClose(F.crossEntropy(logits, target, reduction: .none, labelSmoothing: 0.1), "ce_smooth0p1_none")
        try Self.expectClose(F.crossEntropy(logits, target, reduction: .sum, labelSmoothing: 0.3), "ce_smooth0p3_sum")
    }

    @Test func aWrongAnswerIsCaught() throws {
        let a = try Self.fixture("ew_a"), b = try Self.fixture("ew_b")
        withKnownIssue("a - b is not a + b") { try Self.expectClose(a - b, "ew_add_a_b") }
        withKnownIssue("a missing fixture is an error") { _ = try Self.fixture("no_such_fixture") }
    }
}
