import TensorCore

extension F {
    /// Batch normalisation over dim 1 of [N, C, ...]. In training, batch statistics normalise and
    /// the running ones are updated (unbiased variance), as PyTorch does.
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                                 training: Bool, momentum: Double = 0.1, eps: Double = 1e-5) -> Tensor {
        if x.ndim < 2 { shapeError("batchNorm: expected at least 2 dims [N, C, ...], got shape \(x.shape)") }
        let c = x.shape[1]
        var statShape = [Int](repeating: 1, count: x.ndim); statShape[1] = c
        let dims = [0] + Array(2..<x.ndim)
        let mean: Tensor, variance: Tensor
        if training {
            let n = dims.map { x.shape[$0] }.reduce(1, *)
            if n <= 1 { shapeError("batchNorm: expected more than 1 value per channel when training, got input shape \(x.shape)") }
            mean = x.mean(dims: dims, keepDim: true)
            variance = x.var(dims: dims, correction: 0, keepDim: true)
            if let runningMean, let runningVar {
                noGrad {
                    let m = mean.detach().reshape([c]), v = variance.detach().reshape([c]) * (Double(n) / Double(n - 1))
                    runningMean.copy(from: runningMean * (1 - momentum) + m * momentum)
                    runningVar.copy(from: runningVar * (1 - momentum) + v * momentum)
                }
            }
        } else {
            guard let runningMean, let runningVar else { shapeError("batchNorm: running statistics are needed in eval mode") }
            mean = runningMean.reshape(statShape)
            variance = runningVar.reshape(statShape)
        }
        var y = (x - mean) / (variance + eps).sqrt()
        if let weight { y = y * weight.reshape(statShape) }
        if let bias { y = y + bias.reshape(statShape) }
        return y
    }

    /// Layer normalisation over the trailing `normalizedShape` dims.
    public static func layerNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil, eps: Double = 1e-5) -> Tensor {
        let k = normalizedShape.count
        if x.ndim < k || Array(x.shape.suffix(k)) != normalizedShape {
            shapeError("layerNorm: normalized shape \(normalizedShape) does not match the trailing dims of input \(x.shape)")
        }
        let dims = Array((x.ndim - k)..<x.ndim)
        let mean = x.mean(dims: dims, keepDim: true)
        let variance = x.var(dims: dims, correction: 0, keepDim: true)
        var y = (x - mean) / (variance + eps).sqrt()
        if let weight { y = y * weight }
        if let bias { y = y + bias }
        return y
    }

    /// Rows of `weight` at int64 `indices` (any shape) → indices.shape + [dim].
    public static func embedding(_ indices: Tensor, _ weight: Tensor, paddingIndex: Int? = nil) -> Tensor {
        if indices.dtype != .int64 { usageError("embedding: indices must be int64, got \(indices.dtype)") }
        let rows = weight.indexSelect(dim: 0, index: indices.reshape([-1]))
        var out = rows.reshape(indices.shape + [weight.shape[1]])
        if let p = paddingIndex {
            // The padding row receives no gradient.
            let keep = indices.ne(Tensor.full([], value: p)).to(weight.dtype).unsqueeze(-1)
            out = out * keep + (out * (1 - keep)).detach()
        }
        return out
    }
}
