/// `(x - mean) / std`, per channel (the first sample dimension) or for all features alike,
/// like `torchvision.transforms.Normalize`. Applied once to a dataset's buffer, not per batch.
public struct Normalize: Sendable, Equatable {
    public let mean: [Float]
    public let std: [Float]

    /// The same mean and standard deviation for every feature.
    public init(mean: Float, std: Float) {
        self.mean = [mean]
        self.std = [std]
    }

    /// One mean and standard deviation per channel (the first dimension of a sample).
    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// Fashion-MNIST's training-set statistics of pixels scaled to [0, 1].
    public static let fashionMNIST = Normalize(mean: 0.2860, std: 0.3530)
    /// MNIST's training-set statistics of pixels scaled to [0, 1] (the usual 0.1307 / 0.3081).
    public static let mnist = Normalize(mean: 0.1307, std: 0.3081)

    /// Normalises `features` (samples of `sampleShape`, back to back) in place.
    public func apply(to features: inout [Float], sampleShape: [Int]) throws {
        guard mean.count == std.count, !mean.isEmpty else {
            throw DataError.invalidArgument("Normalize: \(mean.count) means and \(std.count) standard deviations; give one of each per channel")
        }
        let channels = mean.count
        let size = sampleShape.reduce(1, *)
        if channels > 1 {
            guard let first = sampleShape.first, first == channels else {
                throw DataError.invalidArgument("Normalize: \(channels) means for samples of shape \(sampleShape); the first dimension must be \(channels) channels")
            }
        }
        let plane = channels > 1 ? size / channels : max(size, 1)
        features.withUnsafeMutableBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            var start = 0
            var channel = 0
            while start < buf.count {
                let end = min(start + plane, buf.count)
                let m = mean[channel], s = std[channel]
                // Subtract, then divide, in the order torchvision does, so values agree to the bit.
                for i in start..<end { p[i] = (p[i] - m) / s }
                start = end
                channel = (channel + 1) % channels
            }
        }
    }

    /// A 256-entry table mapping a byte `b` to `normalised(b / 255)`, for datasets stored as bytes.
    func byteTable() -> [Float] {
        (0..<256).map { b in
            let x = Float(b) / 255
            return (x - mean[0]) / std[0]
        }
    }
}
