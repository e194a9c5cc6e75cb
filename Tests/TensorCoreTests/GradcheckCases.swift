import Testing
@testable import TensorCore

/// One registered gradcheck: the API op names it covers, its float64 inputs and the function of
/// them whose gradient is checked. `GradcheckCoverageTests` derives the covered op set from this table.
struct GradCase: Sendable, CustomTestStringConvertible {
    let name: String
    let ops: [String]
    let inputs: @Sendable () -> [Tensor]
    let f: @Sendable ([Tensor]) -> Tensor
    var eps = 1e-6
    var atol = 1e-5
    var rtol = 1e-4

    init(_ name: String, ops: [String], eps: Double = 1e-6, atol: Double = 1e-5, rtol: Double = 1e-4,
         inputs: @escaping @Sendable () -> [Tensor], _ f: @escaping @Sendable ([Tensor]) -> Tensor) {
        self.name = name; self.ops = ops; self.inputs = inputs; self.f = f
        self.eps = eps; self.atol = atol; self.rtol = rtol
    }

    var testDescription: String { name }
}

private func s(_ shape: [Int], _ seed: UInt64) -> Tensor { Inputs.signed(shape, seed: seed) }
private func u(_ shape: [Int], _ seed: UInt64, _ lo: Double = -1, _ hi: Double = 1) -> Tensor { Inputs.uniform(shape, seed: seed, lo: lo, hi: hi) }
private func d(_ shape: [Int], _ seed: UInt64) -> Tensor { Inputs.distinct(shape, seed: seed) }
private func long(_ values: [Int], shape: [Int]? = nil) -> Tensor { Tensor(shape: shape ?? [values.count], scalars: values) }

enum GradcheckCases {
    static let all: [GradCase] = arithmetic + unary + reductions + linearAlgebra + views + joinsAndIndexing + functional + losses

    // MARK: arithmetic with broadcasting

    static let arithmetic: [GradCase] = [
        GradCase("add [3,1]+[1,4]", ops: ["add"], inputs: { [u([3, 1], 1), u([1, 4], 2)] }) { $0[0] + $0[1] },
        GradCase("add [2,3]+[3] and scalars", ops: ["add"], inputs: { [u([2, 3], 3), u([3], 4)] }) { ($0[0] + $0[1]) + 1.5 + (2 + $0[1]) },
        GradCase("add a+a (same tensor twice)", ops: ["add"], inputs: { [u([4], 5)] }) { $0[0] + $0[0] },
        GradCase("sub [2,1,3]-[4,1] and scalars", ops: ["sub"], inputs: { [u([2, 1, 3], 6), u([4, 1], 7)] }) { ($0[0] - $0[1]) - 0.5 + (1 - $0[1]) },
        GradCase("mul [2,3]*[3]", ops: ["mul"], inputs: { [u([2, 3], 8), u([3], 9)] }) { $0[0] * $0[1] },
        GradCase("mul a*a and scalars", ops: ["mul"], inputs: { [u([5], 10)] }) { $0[0] * $0[0] * 3 + 10 * $0[0] },
        GradCase("mul by a 0-d tensor", ops: ["mul"], inputs: { [u([2, 3], 11), u([], 12)] }) { $0[0] * $0[1] },
        GradCase("div [3,1]/[1,4]", ops: ["div"], inputs: { [u([3, 1], 13), u([1, 4], 14, 0.5, 2)] }) { $0[0] / $0[1] },
        GradCase("div by and of scalars", ops: ["div"], inputs: { [u([2, 2], 15, 0.5, 2)] }) { $0[0] / 4 + 2 / $0[0] },
        GradCase("neg", ops: ["neg"], inputs: { [u([2, 3], 16)] }) { -$0[0] },
        GradCase("pow scalar 2, 3, 0.5, -1.5", ops: ["pow"], inputs: { [u([6], 17, 0.5, 2)] }) { x in
            x[0].pow(2) + x[0] ** 3 + x[0].pow(0.5) + x[0].pow(-1.5) + x[0] ** 1
        },
        GradCase("pow tensor exponent [2,3]**[3]", ops: ["pow"], inputs: { [u([2, 3], 18, 0.5, 2), u([3], 19, -2, 2)] }) { $0[0] ** $0[1] },
        GradCase("maximum with broadcasting", ops: ["maximum"], inputs: { [d([3, 4], 20), d([4], 21) * 1.03 + 0.01] }) { Tensor.maximum($0[0], $0[1]) },
        GradCase("minimum with broadcasting", ops: ["minimum"], inputs: { [d([3, 1], 22), d([1, 4], 23) * 0.97 + 0.02] }) { Tensor.minimum($0[0], $0[1]) },
        GradCase("where with broadcast condition", ops: ["where"], inputs: { [u([2, 3], 24), u([3], 25)] }) { x in
            Tensor.where(Tensor([[true, false, true], [false, false, true]]), x[0], x[1])
        },
        GradCase("where with a scalar branch", ops: ["where"], inputs: { [u([4], 26)] }) { x in
            Tensor.where(x[0].detach() .> 0, x[0], Tensor.zeros([], dtype: .float64))
        },
    ]

    // MARK: unary math

    static let unary: [GradCase] = [
        GradCase("exp", ops: ["exp"], inputs: { [u([2, 3], 30, -2, 2)] }) { $0[0].exp() },
        GradCase("log", ops: ["log"], inputs: { [u([2, 3], 31, 0.2, 3)] }) { $0[0].log() },
        GradCase("sqrt", ops: ["sqrt"], inputs: { [u([2, 3], 32, 0.2, 3)] }) { $0[0].sqrt() },
        GradCase("abs", ops: ["abs"], inputs: { [s([2, 3], 33)] }) { $0[0].abs() },
        GradCase("relu", ops: ["relu", "F.relu"], inputs: { [s([2, 4], 34)] }) { $0[0].relu() + F.relu($0[0] * 2) },
        GradCase("sigmoid", ops: ["sigmoid", "F.sigmoid"], inputs: { [u([2, 3], 35, -4, 4)] }) { $0[0].sigmoid() + F.sigmoid($0[0] * 0.5) },
        GradCase("tanh", ops: ["tanh", "F.tanh"], inputs: { [u([2, 3], 36, -3, 3)] }) { $0[0].tanh() + F.tanh($0[0] * 0.5) },
        GradCase("gelu", ops: ["gelu", "F.gelu"], inputs: { [u([2, 4], 37, -4, 4)] }) { $0[0].gelu() + F.gelu($0[0] * 0.5) },
        GradCase("erf", ops: ["erf"], inputs: { [u([2, 3], 38, -2, 2)] }) { $0[0].erf() },
        GradCase("log1p", ops: ["log1p"], inputs: { [u([2, 3], 39, -0.5, 2)] }) { $0[0].log1p() },
        GradCase("clamp min and max", ops: ["clamp"], inputs: { [s([3, 4], 40)] }) { $0[0].clamp(min: -0.5, max: 0.55) },
        GradCase("clamp min only, max only", ops: ["clamp"], inputs: { [s([3, 4], 41)] }) { $0[0].clamp(min: 0.1) + $0[0].clamp(max: -0.15) },
        GradCase("to(float32) and back", ops: ["to"], eps: 1e-3, atol: 1e-4, rtol: 1e-3, inputs: { [u([2, 3], 42)] }) { x in
            (x[0].to(.float32) * 2).to(.float64)
        },
        GradCase("to(float64) of float64 is the identity", ops: ["to"], inputs: { [u([3], 43)] }) { $0[0].to(.float64) * 2 },
    ]

    // MARK: reductions

    static let reductions: [GradCase] = [
        GradCase("sum all", ops: ["sum"], inputs: { [u([2, 3], 50)] }) { $0[0].sum() },
        GradCase("sum dim keepDim", ops: ["sum"], inputs: { [u([2, 3, 4], 51)] }) { x in
            x[0].sum(dim: 1, keepDim: true) + x[0].sum(dim: 2).unsqueeze(2) + x[0].sum(dims: [0, 2], keepDim: true)
        },
        GradCase("sum over dims of a transposed view", ops: ["sum", "transpose"], inputs: { [u([3, 4, 2], 52)] }) { x in
            x[0].transpose(0, 2).sum(dims: [1, 2])
        },
        GradCase("mean all and over dims", ops: ["mean"], inputs: { [u([2, 3, 4], 53)] }) { x in
            x[0].mean() + x[0].mean(dim: 1, keepDim: true) + x[0].mean(dims: [0, 2]).reshape(1, 3, 1)
        },
        GradCase("var over dims, keepDim, correction 0 and 1", ops: ["var"], inputs: { [u([3, 4], 54)] }) { x in
            x[0].var(dim: 0) + x[0].var(dim: 1, keepDim: true) + x[0].var(dims: [0, 1], correction: 0) + x[0].var()
        },
        GradCase("std over dims, keepDim", ops: ["std"], inputs: { [u([3, 4], 55)] }) { x in
            x[0].std(dim: 1, keepDim: true) + x[0].std(dim: 0) + x[0].std() + x[0].std(dims: [0, 1], correction: 0)
        },
        GradCase("max(dim:) values, keepDim", ops: ["max"], inputs: { [d([3, 4, 2], 56)] }) { x in
            x[0].max(dim: 1).values + x[0].max(dim: 1, keepDim: true).values.squeeze(dim: 1) * 2
        },
        GradCase("min(dim:) values on a transposed view", ops: ["min", "transpose"], inputs: { [d([3, 4], 57)] }) { x in
            x[0].transpose(0, 1).min(dim: 1).values + x[0].min(dim: -1, keepDim: true).values.sum()
        },
        GradCase("max() and min() overall", ops: ["max", "min"], inputs: { [d([3, 4], 58)] }) { x in
            x[0].max() * 2 + x[0].min()
        },
        // At a tie the central difference of max() is 1/2 for each tied element: PyTorch's shared gradient.
        GradCase("max() with ties shares the gradient", ops: ["max"], inputs: { [Tensor([1.0, 3.0, 3.0, 2.0], dtype: .float64)] }) { x in
            x[0].max()
        },
        GradCase("logsumexp", ops: ["logsumexp"], inputs: { [u([3, 4], 59, -3, 3)] }) { x in
            x[0].logsumexp(dim: 1).unsqueeze(1) + x[0].logsumexp(dim: 0, keepDim: true)
        },
        GradCase("amax over dims", ops: ["amax"], inputs: { [d([2, 3, 4], 60)] }) { $0[0].amax(dims: [0, 2]) },
        GradCase("softmax dim 0 and 1", ops: ["softmax"], inputs: { [u([3, 4], 61, -2, 2)] }) { x in
            x[0].softmax(dim: 0) * 1.5 + x[0].softmax(dim: 1)
        },
        GradCase("softmax of a 3-d middle dim", ops: ["softmax", "F.softmax"], inputs: { [u([2, 3, 4], 62, -2, 2)] }) { x in
            F.softmax(x[0], dim: 1)
        },
        GradCase("softmax and logSoftmax of a 0-d tensor", ops: ["softmax", "logSoftmax"], inputs: { [u([], 64)] }) { x in
            x[0].softmax(dim: 0) * x[0] + x[0].logSoftmax(dim: -1)
        },
        GradCase("logSoftmax", ops: ["logSoftmax", "F.logSoftmax"], inputs: { [u([3, 5], 63, -3, 3)] }) { x in
            x[0].logSoftmax(dim: 1) + F.logSoftmax(x[0], dim: 0)
        },
    ]

    // MARK: linear algebra

    static let linearAlgebra: [GradCase] = [
        GradCase("mm", ops: ["mm"], inputs: { [u([2, 3], 70), u([3, 4], 71)] }) { $0[0].mm($0[1]) },
        GradCase("mm of transposed views", ops: ["mm", "T"], inputs: { [u([3, 2], 72), u([4, 3], 73)] }) { $0[0].T.mm($0[1].T) },
        GradCase("dot", ops: ["dot"], inputs: { [u([5], 74), u([5], 75)] }) { $0[0].dot($0[1]) },
        GradCase("bmm", ops: ["bmm"], inputs: { [u([2, 3, 4], 76), u([2, 4, 2], 77)] }) { $0[0].bmm($0[1]) },
        GradCase("matmul 1-d @ 1-d", ops: ["matmul"], inputs: { [u([4], 78), u([4], 79)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 2-d @ 2-d", ops: ["matmul"], inputs: { [u([2, 3], 80), u([3, 2], 81)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 1-d @ 2-d", ops: ["matmul"], inputs: { [u([3], 82), u([3, 2], 83)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 2-d @ 1-d", ops: ["matmul"], inputs: { [u([2, 3], 84), u([3], 85)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 3-d @ 1-d", ops: ["matmul"], inputs: { [u([2, 2, 3], 86), u([3], 87)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 3-d @ 2-d", ops: ["matmul"], inputs: { [u([2, 2, 3], 88), u([3, 2], 89)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 1-d @ 3-d", ops: ["matmul"], inputs: { [u([3], 90), u([2, 3, 2], 91)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 2-d @ 3-d", ops: ["matmul"], inputs: { [u([2, 3], 92), u([2, 3, 2], 93)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul batch broadcast [2,1,2,3] @ [3,3,2]", ops: ["matmul"], inputs: { [u([2, 1, 2, 3], 94), u([3, 3, 2], 95)] }) { $0[0].matmul($0[1]) },
        GradCase("matmul 4-d @ 4-d", ops: ["matmul"], inputs: { [u([1, 2, 2, 3], 96), u([2, 1, 3, 2], 97)] }) { $0[0].matmul($0[1]) },
        GradCase("F.linear with bias", ops: ["F.linear"], inputs: { [u([3, 4], 98), u([2, 4], 99), u([2], 100)] }) { F.linear($0[0], $0[1], $0[2]) },
        GradCase("F.linear without bias", ops: ["F.linear"], inputs: { [u([3, 4], 101), u([2, 4], 102)] }) { F.linear($0[0], $0[1]) },
        GradCase("F.linear of a 3-d input", ops: ["F.linear"], inputs: { [u([2, 2, 4], 103), u([3, 4], 104), u([3], 105)] }) { F.linear($0[0], $0[1], $0[2]) },
    ]

    // MARK: views

    static let views: [GradCase] = [
        GradCase("view", ops: ["view"], inputs: { [u([2, 6], 110)] }) { $0[0].view(3, 4) * Tensor.arange(4).to(.float64) },
        GradCase("view of a transposed tensor via reshape (copies)", ops: ["reshape", "transpose"], inputs: { [u([3, 4], 111)] }) { x in
            x[0].transpose(0, 1).reshape(2, 6) * Tensor.arange(6).to(.float64)
        },
        GradCase("reshape with -1", ops: ["reshape"], inputs: { [u([2, 3, 2], 112)] }) { $0[0].reshape(-1, 3) },
        GradCase("flatten, flatten(startDim: 1)", ops: ["flatten"], inputs: { [u([2, 3, 2], 113)] }) { x in
            x[0].flatten() + x[0].flatten(startDim: 1).flatten() * 2
        },
        GradCase("squeeze, squeeze(dim:), unsqueeze", ops: ["squeeze", "unsqueeze"], inputs: { [u([2, 1, 3], 114)] }) { x in
            x[0].squeeze().unsqueeze(0) + x[0].squeeze(dim: 1).unsqueeze(2).transpose(1, 2)
        },
        GradCase("transpose", ops: ["transpose"], inputs: { [u([2, 3, 4], 115)] }) { $0[0].transpose(0, 2) },
        GradCase("T", ops: ["T"], inputs: { [u([2, 3], 116)] }) { $0[0].T },
        GradCase("permute", ops: ["permute"], inputs: { [u([2, 3, 4], 117)] }) { $0[0].permute(2, 0, 1) },
        GradCase("expand", ops: ["expand"], inputs: { [u([3, 1], 118)] }) { $0[0].expand(2, 3, 4) * u([2, 3, 4], 119) },
        GradCase("contiguous of a transposed view", ops: ["contiguous"], inputs: { [u([3, 4], 120)] }) { x in
            x[0].transpose(0, 1).contiguous().view(-1) * Tensor.arange(12).to(.float64)
        },
        GradCase("clone", ops: ["clone"], inputs: { [u([3], 121)] }) { $0[0].clone() * 3 },
        GradCase("narrow", ops: ["narrow"], inputs: { [u([4, 5], 122)] }) { $0[0].narrow(dim: 1, start: 1, length: 3) },
        GradCase("select", ops: ["select"], inputs: { [u([3, 4], 123)] }) { $0[0].select(dim: 1, index: -1) },
        GradCase("subscript ranges t[1...], t[..<2, 1...]", ops: ["subscript"], inputs: { [u([3, 3], 124)] }) { x in
            x[0][1...].sum(dim: 0) + x[0][..<2, 1...].sum(dim: 1).sum()
        },
        GradCase("subscript integers t[0], t[0, 1], t[.all, 0]", ops: ["subscript"], inputs: { [u([3, 4], 125)] }) { x in
            x[0][0] * x[0][0, 1] + x[0][.all, 0].sum()
        },
        GradCase("subscript with steps", ops: ["subscript"], inputs: { [u([7, 3], 126)] }) { x in
            x[0][0..<4, stride: 2] + x[0][TensorIndex.slice(1, nil, step: 3), .all][..<2]
        },
        GradCase("indexing into a non-contiguous view", ops: ["subscript", "permute"], inputs: { [u([3, 4, 2], 127)] }) { x in
            x[0].permute(2, 0, 1)[1, .all, TensorIndex.slice(nil, nil, step: 2)]
        },
        GradCase("subscript newAxis and ellipsis", ops: ["subscript"], inputs: { [u([2, 3, 4], 128)] }) { x in
            x[0][.ellipsis, 1][.newAxis] * 2
        },
    ]

    // MARK: joins and indexing

    static let joinsAndIndexing: [GradCase] = [
        GradCase("cat dim 0 and 1", ops: ["cat"], inputs: { [u([2, 3], 130), u([1, 3], 131), u([2, 2], 132)] }) { x in
            Tensor.cat([x[0], x[1]], dim: 0).sum(dim: 1) * Tensor.cat([x[0], x[2]], dim: 1).sum()
        },
        GradCase("stack", ops: ["stack"], inputs: { [u([2, 3], 133), u([2, 3], 134)] }) { x in
            Tensor.stack([x[0], x[1]], dim: 1) + Tensor.stack([x[1], x[0]], dim: 0).transpose(0, 1)
        },
        GradCase("split, split(sizes:), chunk", ops: ["split", "chunk"], inputs: { [u([5, 4], 135)] }) { x in
            let parts = x[0].split(2, dim: 0)
            let sized = x[0].split(sizes: [1, 3], dim: 1)
            let chunks = x[0].chunk(3, dim: 1)
            return parts[0].sum() * parts[2].sum() + sized[1].sum(dim: 1) * chunks[1].sum()
        },
        GradCase("indexSelect with repeats", ops: ["indexSelect"], inputs: { [u([4, 3], 136)] }) { x in
            x[0].indexSelect(dim: 0, index: long([3, 0, 3, 1])) + x[0].indexSelect(dim: 1, index: long([2, 2, 0]))
        },
        GradCase("gather", ops: ["gather"], inputs: { [u([3, 4], 137)] }) { x in
            x[0].gather(dim: 1, index: long([0, 3, 3, 1, 2, 2, 0, 0], shape: [2, 4]))
        },
        GradCase("gather on a transposed view", ops: ["gather", "transpose"], inputs: { [u([4, 3], 138)] }) { x in
            x[0].T.gather(dim: 0, index: long([2, 0, 1, 1, 2, 2], shape: [2, 3]))
        },
        GradCase("scatterAdd (self and source)", ops: ["scatterAdd"], inputs: { [u([3, 4], 139), u([3, 2], 140)] }) { x in
            x[0].scatterAdd(dim: 1, index: long([0, 0, 3, 1, 2, 2], shape: [3, 2]), source: x[1])
        },
    ]

    // MARK: F functions

    static let functional: [GradCase] = [
        GradCase("conv2d plain", ops: ["F.conv2d"], inputs: { [u([2, 2, 5, 5], 150), u([3, 2, 3, 3], 151)] }) { F.conv2d($0[0], $0[1]) },
        GradCase("conv2d stride 2, padding 1, bias", ops: ["F.conv2d"], inputs: { [u([1, 2, 5, 6], 152), u([2, 2, 3, 3], 153), u([2], 154)] }) { x in
            F.conv2d(x[0], x[1], x[2], stride: 2, padding: 1)
        },
        GradCase("conv2d dilation 2, padding 2, bias", ops: ["F.conv2d"], inputs: { [u([1, 1, 6, 6], 155), u([2, 1, 3, 2], 156), u([2], 157)] }) { x in
            F.conv2d(x[0], x[1], x[2], stride: 1, padding: 2, dilation: 2)
        },
        GradCase("conv2d asymmetric stride/padding/dilation", ops: ["F.conv2d"], inputs: { [u([2, 2, 6, 5], 158), u([2, 2, 2, 3], 159), u([2], 160)] }) { x in
            F.conv2d(x[0], x[1], x[2], stride: (2, 1), padding: (1, 2), dilation: (2, 1))
        },
        GradCase("conv2d 1x1", ops: ["F.conv2d"], inputs: { [u([2, 3, 3, 3], 161), u([2, 3, 1, 1], 162)] }) { F.conv2d($0[0], $0[1]) },
        GradCase("maxPool2d", ops: ["F.maxPool2d"], inputs: { [d([2, 2, 4, 4], 163)] }) { F.maxPool2d($0[0], kernelSize: 2) },
        GradCase("maxPool2d stride 1, padding 1 (overlapping windows)", ops: ["F.maxPool2d"], inputs: { [d([1, 2, 5, 5], 164)] }) { x in
            F.maxPool2d(x[0], kernelSize: 3, stride: 1, padding: 1)
        },
        GradCase("maxPool2d dilation 2", ops: ["F.maxPool2d"], inputs: { [d([1, 1, 7, 7], 165)] }) { x in
            F.maxPool2d(x[0], kernelSize: 2, stride: 2, dilation: 2)
        },
        GradCase("avgPool2d", ops: ["F.avgPool2d"], inputs: { [u([2, 2, 4, 4], 166)] }) { F.avgPool2d($0[0], kernelSize: 2) },
        GradCase("avgPool2d stride 2, padding 1", ops: ["F.avgPool2d"], inputs: { [u([1, 2, 5, 5], 167)] }) { x in
            F.avgPool2d(x[0], kernelSize: 3, stride: 2, padding: 1)
        },
        GradCase("dropout p=0 is the identity", ops: ["F.dropout"], inputs: { [u([3, 4], 168)] }) { x in
            let y = F.dropout(x[0], p: 0) * 2
            return y + F.dropout(x[0], p: 0.5, training: false)
        },
        GradCase("dropout p=0.3 with a fixed seed", ops: ["F.dropout"], inputs: { [u([4, 5], 169)] }) { x in
            GlobalRandom.withSeed(1234) { F.dropout(x[0], p: 0.3) }
        },
        GradCase("dropout2d with a fixed seed", ops: ["F.dropout2d"], inputs: { [u([2, 4, 2, 2], 170)] }) { x in
            GlobalRandom.withSeed(99) { F.dropout2d(x[0], p: 0.5) }
        },
    ]

    // MARK: losses

    static let losses: [GradCase] = [
        GradCase("crossEntropy class targets", ops: ["F.crossEntropy"], inputs: { [u([4, 5], 180, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([1, 0, 4, 2]))
        },
        GradCase("crossEntropy ignoreIndex", ops: ["F.crossEntropy"], inputs: { [u([4, 3], 181, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([1, 0, 2, 7]), ignoreIndex: 7) + F.crossEntropy(x[0], long([0, 1, -100, 2]))
        },
        GradCase("crossEntropy weight", ops: ["F.crossEntropy"], inputs: { [u([4, 3], 182, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([1, 0, 2, 2]), weight: Tensor([0.2, 1.0, 3.0], dtype: .float64))
        },
        GradCase("crossEntropy labelSmoothing", ops: ["F.crossEntropy"], inputs: { [u([4, 3], 183, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([1, 0, 2, 2]), labelSmoothing: 0.2)
        },
        GradCase("crossEntropy weight + ignoreIndex + labelSmoothing", ops: ["F.crossEntropy"], inputs: { [u([5, 3], 184, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([1, 0, -100, 2, 2]), weight: Tensor([0.5, 2.0, 1.0], dtype: .float64), labelSmoothing: 0.1)
        },
        GradCase("crossEntropy reductions sum and none", ops: ["F.crossEntropy"], inputs: { [u([3, 4], 185, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([3, 1, 0]), reduction: .sum)
                + F.crossEntropy(x[0], long([2, 2, 0]), reduction: .none, labelSmoothing: 0.3).sum()
        },
        GradCase("crossEntropy [N, C, d] input", ops: ["F.crossEntropy"], inputs: { [u([2, 3, 2], 186, -2, 2)] }) { x in
            F.crossEntropy(x[0], long([0, 2, 1, 1], shape: [2, 2]))
        },
        GradCase("crossEntropy probability targets", ops: ["F.crossEntropy"], inputs: { [u([3, 4], 187, -2, 2), u([3, 4], 188, 0, 1)] }) { x in
            F.crossEntropy(x[0], x[1].softmax(dim: 1))
        },
        GradCase("crossEntropy probability targets + labelSmoothing + weight", ops: ["F.crossEntropy"],
                 inputs: { [u([3, 4], 189, -2, 2)] }) { x in
            let target = Tensor([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype: .float64)
            return F.crossEntropy(x[0], target, weight: Tensor([1.0, 0.5, 2.0, 1.5], dtype: .float64), labelSmoothing: 0.2)
        },
        GradCase("nllLoss", ops: ["F.nllLoss"], inputs: { [u([4, 3], 190, -3, -0.1)] }) { x in
            F.nllLoss(x[0], long([2, 0, 1, 1])) + F.nllLoss(x[0], long([0, 0, -100, 1]), reduction: .sum)
        },
        GradCase("nllLoss weight + ignoreIndex", ops: ["F.nllLoss"], inputs: { [u([4, 3], 191, -3, -0.1)] }) { x in
            F.nllLoss(x[0], long([2, 0, 1, 5]), weight: Tensor([0.3, 1.0, 2.0], dtype: .float64), ignoreIndex: 5)
        },
        GradCase("mseLoss", ops: ["F.mseLoss"], inputs: { [u([3, 4], 192), u([3, 4], 193)] }) { x in
            F.mseLoss(x[0], x[1]) + F.mseLoss(x[0], x[1], reduction: .sum) + F.mseLoss(x[1], x[0], reduction: .none).sum(dim: 0).sum()
        },
        GradCase("binaryCrossEntropyWithLogits", ops: ["F.binaryCrossEntropyWithLogits"], inputs: { [u([3, 4], 194, -3, 3), u([3, 4], 195, 0, 1)] }) { x in
            F.binaryCrossEntropyWithLogits(x[0], x[1])
        },
        GradCase("binaryCrossEntropyWithLogits weight + posWeight", ops: ["F.binaryCrossEntropyWithLogits"],
                 inputs: { [u([3, 4], 196, -3, 3), u([3, 4], 197, 0, 1)] }) { x in
            F.binaryCrossEntropyWithLogits(x[0], x[1], weight: Tensor([[0.5], [1.0], [2.0]], dtype: .float64),
                                           posWeight: Tensor([1.0, 2.0, 0.5, 3.0], dtype: .float64), reduction: .sum)
        },
    ]
}

@Suite struct GradcheckTests {
    @Test("finite-difference gradcheck", arguments: GradcheckCases.all)
    func gradcheckCase(_ c: GradCase) {
        gradcheck(c.f, inputs: c.inputs(), eps: c.eps, atol: c.atol, rtol: c.rtol)
    }

    /// The helper itself must be able to fail: a deliberately wrong backward rule is caught.
    @Test func gradcheckCatchesAWrongGradient() {
        let broken: ([Tensor]) -> Tensor = { x in
            // y = x * x, but its gradient flows as if y were 3x (the detached product hides x*x).
            (x[0].detach() * x[0].detach()) + (x[0] * 3 - (x[0] * 3).detach())
        }
        var count = 0
        withKnownIssue("the wrong gradient must be reported") {
            count = gradcheck(broken, inputs: [Inputs.uniform([4], seed: 1)]).count
        }
        #expect(count == 4)
    }
}
