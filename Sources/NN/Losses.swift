import TensorCore

/// A loss: a function of a prediction and a target.
public protocol Loss: AnyObject {
    func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor
}

/// `nn.CrossEntropyLoss` over logits and int64 class targets (log-softmax fused in).
public final class CrossEntropyLoss: Loss {
    public let weight: Tensor?
    public let ignoreIndex: Int
    public let reduction: Reduction
    public let labelSmoothing: Double
    public init(weight: Tensor? = nil, ignoreIndex: Int = -100, reduction: Reduction = .mean, labelSmoothing: Double = 0) {
        self.weight = weight; self.ignoreIndex = ignoreIndex; self.reduction = reduction; self.labelSmoothing = labelSmoothing
    }
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor {
        F.crossEntropy(input, target, weight: weight, ignoreIndex: ignoreIndex, reduction: reduction, labelSmoothing: labelSmoothing)
    }
}

/// `nn.NLLLoss` over log-probabilities.
public final class NLLLoss: Loss {
    public let weight: Tensor?
    public let ignoreIndex: Int
    public let reduction: Reduction
    public init(weight: Tensor? = nil, ignoreIndex: Int = -100, reduction: Reduction = .mean) {
        self.weight = weight; self.ignoreIndex = ignoreIndex; self.reduction = reduction
    }
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor {
        F.nllLoss(input, target, weight: weight, ignoreIndex: ignoreIndex, reduction: reduction)
    }
}

/// `nn.MSELoss`.
public final class MSELoss: Loss {
    public let reduction: Reduction
    public init(reduction: Reduction = .mean) { self.reduction = reduction }
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor { F.mseLoss(input, target, reduction: reduction) }
}

/// `nn.BCEWithLogitsLoss`.
public final class BCEWithLogitsLoss: Loss {
    public let weight: Tensor?
    public let posWeight: Tensor?
    public let reduction: Reduction
    public init(weight: Tensor? = nil, posWeight: Tensor? = nil, reduction: Reduction = .mean) {
        self.weight = weight; self.posWeight = posWeight; self.reduction = reduction
    }
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor {
        F.binaryCrossEntropyWithLogits(input, target, weight: weight, posWeight: posWeight, reduction: reduction)
    }
}
