import TensorCore

/// Why a layer cannot take an input of some shape, worded for a person: the config check reports it
/// at the layer's JSON path (`Linear expects 784 input features, layers[0] gives 100`).
public struct LayerShapeError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The layers' output-shape rules and parameter counts, written once beside the layers. Shapes are
/// batch first with the batch as -1 (`[-1, 1, 28, 28]`); `source` names where the input comes
/// from in messages (`the input`, `layers[3]`). The window arithmetic is TensorCore's
/// `WindowGeometry`, which the convolution and pooling kernels size their outputs with.
public enum LayerShapes {
    public typealias Outcome = Result<[Int], LayerShapeError>

    /// `[?, 1, 28, 28]` → `[1, 28, 28]`: one sample's shape, as messages show it.
    public static func describe(_ shape: [Int]) -> String {
        "[" + shape.dropFirst().map { $0 < 0 ? "?" : String($0) }.joined(separator: ", ") + "]"
    }

    /// The product of `values`, or nil when it overflows `Int`.
    public static func product(_ values: [Int]) -> Int? {
        var product = 1
        for v in values {
            let (next, overflow) = product.multipliedReportingOverflow(by: v)
            if overflow { return nil }
            product = next
        }
        return product
    }

    static func sum(_ x: Int?, _ y: Int) -> Int? {
        guard let x else { return nil }
        let (s, o) = x.addingReportingOverflow(y)
        return o ? nil : s
    }

    // MARK: - Rules

    /// `nn.Linear(in, out)`: the last dimension becomes `outFeatures`.
    public static func linear(_ s: [Int], inFeatures: Int, outFeatures: Int, source: String) -> Outcome {
        guard s.count >= 2 else { return .failure(LayerShapeError("Linear expects inputs with a feature dimension, \(source) gives \(describe(s))")) }
        let last = s[s.count - 1]
        if last != inFeatures {
            let hint = s.count > 2 ? " (its output is \(describe(s)); put a Flatten before the Linear)" : ""
            return .failure(LayerShapeError("Linear expects \(inFeatures) input features, \(source) gives \(last)\(hint)"))
        }
        return .success(Array(s.dropLast()) + [outFeatures])
    }

    /// `nn.Conv2d`: [N, C, H, W] → [N, outChannels, H', W'] by PyTorch's output-size formula.
    public static func conv2d(_ s: [Int], inChannels: Int, outChannels: Int, kernel k: (Int, Int), stride st: (Int, Int),
                              padding p: (Int, Int), dilation d: (Int, Int), source: String) -> Outcome {
        guard s.count == 4 else {
            return .failure(LayerShapeError("Conv2d expects [channels, height, width] inputs, \(source) gives \(describe(s))"))
        }
        if s[1] != inChannels { return .failure(LayerShapeError("Conv2d expects \(inChannels) input channels, \(source) gives \(s[1])")) }
        guard let h = WindowGeometry.outputSize(s[2], kernel: k.0, stride: st.0, padding: p.0, dilation: d.0),
              let w = WindowGeometry.outputSize(s[3], kernel: k.1, stride: st.1, padding: p.1, dilation: d.1) else {
            return .failure(LayerShapeError("Conv2d's kernel_size \(k.0)×\(k.1), padding \(p.0)×\(p.1) and dilation \(d.0)×\(d.1) overflow integer arithmetic; use sizes that fit the \(s[2])×\(s[3]) input"))
        }
        guard h >= 1, w >= 1 else {
            return .failure(LayerShapeError("Conv2d's \(k.0)×\(k.1) kernel does not fit the \(s[2])×\(s[3]) input from \(source)"))
        }
        return .success([s[0], outChannels, h, w])
    }

    /// `nn.MaxPool2d` / `nn.AvgPool2d` (`layer` names which): square windows, stride defaulting to the kernel.
    public static func pool2d(_ layer: String, _ s: [Int], kernel k: Int, stride: Int?, padding p: Int, dilation d: Int,
                              source: String) -> Outcome {
        guard s.count == 4 else { return .failure(LayerShapeError("\(layer) expects [channels, height, width] inputs, \(source) gives \(describe(s))")) }
        guard p <= k / 2 else { return .failure(LayerShapeError("\(layer)'s padding \(p) is more than half its kernel_size \(k)")) }
        let st = stride ?? k
        guard let h = WindowGeometry.outputSize(s[2], kernel: k, stride: st, padding: p, dilation: d),
              let w = WindowGeometry.outputSize(s[3], kernel: k, stride: st, padding: p, dilation: d) else {
            return .failure(LayerShapeError("\(layer)'s kernel_size \(k), padding \(p) and dilation \(d) overflow integer arithmetic; use sizes that fit the \(s[2])×\(s[3]) input"))
        }
        guard h >= 1, w >= 1 else {
            return .failure(LayerShapeError("\(layer)'s \(k)×\(k) window does not fit the \(s[2])×\(s[3]) input from \(source)"))
        }
        return .success([s[0], s[1], h, w])
    }

    /// `nn.Flatten(start_dim, end_dim)`: the dims from start to end merged (a -1 among them stays -1).
    public static func flatten(_ s: [Int], startDim: Int, endDim: Int, source: String) -> Outcome {
        let n = s.count
        let start = startDim < 0 ? startDim + n : startDim
        let end = endDim < 0 ? endDim + n : endDim
        guard (0..<n).contains(start), (0..<n).contains(end), start <= end else {
            return .failure(LayerShapeError("Flatten's start_dim \(startDim) and end_dim \(endDim) do not fit the \(n)-d input (batch included) from \(source)"))
        }
        var merged = -1
        if !s[start...end].contains(where: { $0 < 0 }) {
            guard let p = product(Array(s[start...end])) else {
                return .failure(LayerShapeError("Flatten merges \(describe(s)) from \(source) into more elements than an integer holds"))
            }
            merged = p
        }
        return .success(Array(s[..<start]) + [merged] + Array(s[(end + 1)...]))
    }

    /// `nn.Dropout2d`: whole channels of [C, H, W] (or [C, L]) samples; the shape is kept.
    public static func dropout2d(_ s: [Int], source: String) -> Outcome {
        s.count == 4 || s.count == 3 ? .success(s)
            : .failure(LayerShapeError("Dropout2d expects [channels, height, width] inputs, \(source) gives \(describe(s))"))
    }

    /// `nn.BatchNorm1d` (`dims` [2, 3]) and `nn.BatchNorm2d` ([4]): features in dim 1; the shape is kept.
    public static func batchNorm(_ layer: String, _ s: [Int], numFeatures n: Int, dims: Set<Int>, source: String) -> Outcome {
        guard dims.contains(s.count) else {
            let expects = dims == [4] ? "[channels, height, width]" : "[features] or [channels, length]"
            return .failure(LayerShapeError("\(layer) expects \(expects) inputs, \(source) gives \(describe(s))"))
        }
        if s[1] != n { return .failure(LayerShapeError("\(layer) expects \(n) features, \(source) gives \(s[1])")) }
        return .success(s)
    }

    /// `nn.LayerNorm(normalized_shape)`: the last dims must equal it; the shape is kept.
    public static func layerNorm(_ s: [Int], normalizedShape ns: [Int], source: String) -> Outcome {
        guard s.count > ns.count, Array(s.suffix(ns.count)) == ns else {
            return .failure(LayerShapeError("LayerNorm normalises over the last dims \(ns), \(source) gives \(describe(s))"))
        }
        return .success(s)
    }

    /// `nn.Softmax(dim)` / `nn.LogSoftmax(dim)`: `dim` must name a dimension; the shape is kept.
    public static func alongDim(_ layer: String, _ s: [Int], dim: Int, source: String) -> Outcome {
        guard dim >= -s.count, dim < s.count else {
            return .failure(LayerShapeError("\(layer)'s dim \(dim) is out of range for the \(s.count)-d input (batch included) from \(source)"))
        }
        return .success(s)
    }

    // MARK: - Parameter counts (what building allocates; nil when the count overflows `Int`)

    public static func linearParameters(inFeatures: Int, outFeatures: Int, bias: Bool) -> Int? {
        sum(product([inFeatures, outFeatures]), bias ? outFeatures : 0)
    }

    public static func conv2dParameters(inChannels: Int, outChannels: Int, kernel: (Int, Int), bias: Bool) -> Int? {
        sum(product([outChannels, inChannels, kernel.0, kernel.1]), bias ? outChannels : 0)
    }

    /// Weight, bias, running mean and running variance: four values a feature.
    public static func batchNormValues(numFeatures: Int) -> Int? { product([numFeatures, 4]) }

    /// Weight and bias over the normalised shape.
    public static func layerNormParameters(normalizedShape: [Int]) -> Int? { product(normalizedShape + [2]) }
}
