import TensorCore

/// PyTorch's default initialisations (`torch.nn.init`), drawing from the global generator.
public enum Init {
    /// `kaiming_uniform_(a=√5)` as Linear/Conv2d use it: bound = 1/√fan_in.
    public static func kaimingUniformDefault(_ t: Tensor, fanIn: Int) {
        let bound = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0
        t.uniformInPlace(low: -bound, high: bound)
    }

    /// `kaiming_uniform_(mode='fan_in', nonlinearity='relu')`: bound = √(6/fan_in).
    public static func kaimingUniform(_ t: Tensor, fanIn: Int, gain: Double = 2.0.squareRoot()) {
        let bound = gain * (3.0 / Double(Swift.max(fanIn, 1))).squareRoot()
        t.uniformInPlace(low: -bound, high: bound)
    }

    /// `xavier_uniform_`: bound = gain·√(6/(fan_in+fan_out)).
    public static func xavierUniform(_ t: Tensor, fanIn: Int, fanOut: Int, gain: Double = 1) {
        let bound = gain * (6.0 / Double(Swift.max(fanIn + fanOut, 1))).squareRoot()
        t.uniformInPlace(low: -bound, high: bound)
    }

    /// `normal_(mean, std)`.
    public static func normal(_ t: Tensor, mean: Double = 0, std: Double = 1) { t.normalInPlace(mean: mean, std: std) }

    /// Uniform in [-bound, bound].
    public static func uniform(_ t: Tensor, bound: Double) { t.uniformInPlace(low: -bound, high: bound) }
}

/// A fresh parameter: a float32 leaf that requires grad.
func parameter(_ shape: [Int]) -> Tensor {
    Tensor.zeros(shape, dtype: .float32, requiresGrad: true)
}
