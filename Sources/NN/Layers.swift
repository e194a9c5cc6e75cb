import TensorCore

/// `nn.Linear(in, out)`: y = x Wᵀ + b, weight [out, in], kaiming-uniform initialised.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let inFeatures: Int
    public let outFeatures: Int

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = parameter([outFeatures, inFeatures])
        Init.kaimingUniformDefault(weight, fanIn: inFeatures)
        if bias {
            let b = parameter([outFeatures])
            Init.kaimingUniformDefault(b, fanIn: inFeatures)
            self.bias = b
        } else {
            self.bias = nil
        }
    }

    public func forward(_ x: Tensor) -> Tensor { F.linear(x, weight, bias) }
}

/// `nn.Conv2d(in, out, kernelSize)` with stride, padding and dilation (groups = 1).
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let inChannels, outChannels: Int
    public let kernelSize: (Int, Int)
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    public let dilation: (Int, Int)

    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            dilation: Int = 1, bias: Bool = true) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), dilation: (dilation, dilation), bias: bias)
    }

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), bias: Bool = true) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelSize = kernelSize; self.stride = stride; self.padding = padding; self.dilation = dilation
        let fanIn = inChannels * kernelSize.0 * kernelSize.1
        weight = parameter([outChannels, inChannels, kernelSize.0, kernelSize.1])
        Init.kaimingUniformDefault(weight, fanIn: fanIn)
        if bias {
            let b = parameter([outChannels])
            Init.kaimingUniformDefault(b, fanIn: fanIn)
            self.bias = b
        } else {
            self.bias = nil
        }
    }

    public func forward(_ x: Tensor) -> Tensor {
        F.conv2d(x, weight, bias, stride: stride, padding: padding, dilation: dilation)
    }
}

/// `nn.MaxPool2d(kernelSize, stride = kernelSize, padding)`.
public final class MaxPool2d: Module {
    public let kernelSize: Int, stride: Int, padding: Int, dilation: Int
    public init(_ kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding; self.dilation = dilation
    }
    public func forward(_ x: Tensor) -> Tensor { F.maxPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation) }
}

/// `nn.AvgPool2d(kernelSize, stride = kernelSize, padding)`.
public final class AvgPool2d: Module {
    public let kernelSize: Int, stride: Int, padding: Int
    public init(_ kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding
    }
    public func forward(_ x: Tensor) -> Tensor { F.avgPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding) }
}

/// `nn.Flatten(startDim = 1, endDim = -1)`.
public final class Flatten: Module {
    public let startDim: Int, endDim: Int
    public init(startDim: Int = 1, endDim: Int = -1) { self.startDim = startDim; self.endDim = endDim }
    public func forward(_ x: Tensor) -> Tensor { x.flatten(startDim: startDim, endDim: endDim) }
}

/// `nn.Dropout(p)`: active in training mode only.
public final class Dropout: Module {
    public let p: Double
    public init(_ p: Double = 0.5) { self.p = p }
    public func forward(_ x: Tensor) -> Tensor { F.dropout(x, p: p, training: training) }
}

/// `nn.Dropout2d(p)`: drops whole channels in training mode.
public final class Dropout2d: Module {
    public let p: Double
    public init(_ p: Double = 0.5) { self.p = p }
    public func forward(_ x: Tensor) -> Tensor { F.dropout2d(x, p: p, training: training) }
}

public final class ReLU: Module {
    public init() {}
    public func forward(_ x: Tensor) -> Tensor { x.relu() }
}

public final class GELU: Module {
    public init() {}
    public func forward(_ x: Tensor) -> Tensor { x.gelu() }
}

public final class Tanh: Module {
    public init() {}
    public func forward(_ x: Tensor) -> Tensor { x.tanh() }
}

public final class Sigmoid: Module {
    public init() {}
    public func forward(_ x: Tensor) -> Tensor { x.sigmoid() }
}

/// `nn.Softmax(dim)`.
public final class Softmax: Module {
    public let dim: Int
    public init(dim: Int) { self.dim = dim }
    public func forward(_ x: Tensor) -> Tensor { x.softmax(dim: dim) }
}

/// `nn.LogSoftmax(dim)`.
public final class LogSoftmax: Module {
    public let dim: Int
    public init(dim: Int) { self.dim = dim }
    public func forward(_ x: Tensor) -> Tensor { x.logSoftmax(dim: dim) }
}

/// `nn.Identity()`.
public final class Identity: Module {
    public init() {}
    public func forward(_ x: Tensor) -> Tensor { x }
}

/// `nn.Sequential(...)`: applies its layers in order; its children are named 0, 1, ….
public final class Sequential: Module {
    public let layers: [any Module]
    public init(_ layers: any Module...) { self.layers = layers }
    public init(layers: [any Module]) { self.layers = layers }

    public func forward(_ x: Tensor) -> Tensor {
        var h = x
        for layer in layers { h = layer.forward(h) }
        return h
    }

    public func namedChildren() -> [(String, any Module)] { layers.enumerated().map { (String($0.offset), $0.element) } }
    public func namedTensors() -> [(String, Tensor)] { [] }

    public subscript(_ i: Int) -> any Module { layers[i] }
    public var count: Int { layers.count }
}

/// `nn.Embedding(num, dim)`: rows of a [num, dim] table, N(0, 1) initialised.
public final class Embedding: Module {
    public let weight: Tensor
    public let paddingIndex: Int?
    public init(_ numEmbeddings: Int, _ embeddingDim: Int, paddingIndex: Int? = nil) {
        weight = parameter([numEmbeddings, embeddingDim])
        Init.normal(weight)
        self.paddingIndex = paddingIndex
        if let p = paddingIndex { noGrad { weight[p].fill(0) } }
    }
    public func forward(_ x: Tensor) -> Tensor { F.embedding(x, weight, paddingIndex: paddingIndex) }
}

/// `nn.LayerNorm(normalizedShape)`: normalises over the trailing dims, with affine weight and bias.
public final class LayerNorm: Module {
    public let weight: Tensor?
    public let bias: Tensor?
    public let normalizedShape: [Int]
    public let eps: Double
    public init(_ normalizedShape: [Int], eps: Double = 1e-5, elementwiseAffine: Bool = true) {
        self.normalizedShape = normalizedShape
        self.eps = eps
        if elementwiseAffine {
            weight = Tensor.ones(normalizedShape, requiresGrad: true)
            bias = Tensor.zeros(normalizedShape, requiresGrad: true)
        } else {
            weight = nil; bias = nil
        }
    }
    public convenience init(_ size: Int, eps: Double = 1e-5) { self.init([size], eps: eps) }
    public func forward(_ x: Tensor) -> Tensor { F.layerNorm(x, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps) }
}

/// Batch normalisation over the channel dim (1): running statistics in eval mode, batch
/// statistics (and a running update) in training mode.
public class BatchNormBase: Module {
    public let weight: Tensor?
    public let bias: Tensor?
    public let runningMean: Tensor
    public let runningVar: Tensor
    public let numBatchesTracked: Tensor
    public let eps: Double
    public let momentum: Double
    let expectedDims: Set<Int>
    let layerName: String

    init(_ numFeatures: Int, eps: Double, momentum: Double, affine: Bool, dims: Set<Int>, name: String) {
        self.eps = eps; self.momentum = momentum
        expectedDims = dims; layerName = name
        weight = affine ? Tensor.ones([numFeatures], requiresGrad: true) : nil
        bias = affine ? Tensor.zeros([numFeatures], requiresGrad: true) : nil
        runningMean = Tensor.zeros([numFeatures])
        runningVar = Tensor.ones([numFeatures])
        numBatchesTracked = Tensor.zeros([], dtype: .int64)
    }

    public func forward(_ x: Tensor) -> Tensor {
        if !expectedDims.contains(x.ndim) {
            shapeError("\(layerName): expected \(expectedDims.sorted().map { "\($0)-d" }.joined(separator: " or ")) input, got shape \(x.shape)")
        }
        let isTraining = training
        if isTraining { noGrad { numBatchesTracked.copy(from: numBatchesTracked + 1) } }
        return F.batchNorm(x, runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias,
                           training: isTraining, momentum: momentum, eps: eps)
    }
}

/// `nn.BatchNorm1d(features)` for [N, C] or [N, C, L].
public final class BatchNorm1d: BatchNormBase {
    public init(_ numFeatures: Int, eps: Double = 1e-5, momentum: Double = 0.1, affine: Bool = true) {
        super.init(numFeatures, eps: eps, momentum: momentum, affine: affine, dims: [2, 3], name: "BatchNorm1d")
    }
}

/// `nn.BatchNorm2d(channels)` for [N, C, H, W].
public final class BatchNorm2d: BatchNormBase {
    public init(_ numFeatures: Int, eps: Double = 1e-5, momentum: Double = 0.1, affine: Bool = true) {
        super.init(numFeatures, eps: eps, momentum: momentum, affine: affine, dims: [4], name: "BatchNorm2d")
    }
}
