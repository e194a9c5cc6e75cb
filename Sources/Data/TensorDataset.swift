import Foundation
import TensorCore

/// Samples held in memory: features as one row-major float buffer and one int64 label per sample,
/// like `torch.utils.data.TensorDataset(x, y)`. Copies of it share the buffer (copy-on-write).
public struct TensorDataset: Dataset {
    /// All features, sample after sample (`count * sampleSize` floats).
    public let features: [Float]
    /// One class label per sample.
    public let labels: [Int64]
    public let sampleShape: [Int]

    /// From features `[N, ...]` (any dtype, stored as float32) and labels `[N]` (int64, or integral floats).
    public init(features: Tensor, labels: Tensor) throws {
        guard features.ndim >= 1 else {
            throw DataError.invalidArgument("TensorDataset: features must have a sample dimension, got shape \(features.shape)")
        }
        guard labels.ndim == 1, labels.shape[0] == features.shape[0] else {
            throw DataError.invalidArgument("TensorDataset: labels must have shape [\(features.shape[0])] to match features \(features.shape), got \(labels.shape)")
        }
        let labelValues: [Int64]
        switch labels.dtype {
        case .int64:
            labelValues = labels.scalars(as: Int64.self)
        case .bool:
            labelValues = labels.scalars(as: Bool.self).map { $0 ? 1 : 0 }
        case .float32, .float64:
            let values = labels.scalars(as: Double.self)
            var out = [Int64]()
            out.reserveCapacity(values.count)
            for (i, v) in values.enumerated() {
                guard v.rounded() == v, abs(v) < 9.0e18 else {
                    throw DataError.invalidArgument("TensorDataset: label \(i) is \(v), not an integer class index")
                }
                out.append(Int64(v))
            }
            labelValues = out
        }
        try self.init(features: features.scalars(as: Float.self), sampleShape: Array(features.shape.dropFirst()), labels: labelValues)
    }

    /// From a flat feature buffer (`labels.count` samples of `sampleShape`) and labels.
    public init(features: [Float], sampleShape: [Int], labels: [Int64]) throws {
        guard !sampleShape.contains(where: { $0 < 0 }) else {
            throw DataError.invalidArgument("TensorDataset: negative dimension in sampleShape \(sampleShape)")
        }
        let size = sampleShape.reduce(1, *)
        guard features.count == labels.count * size else {
            throw DataError.invalidArgument("TensorDataset: \(labels.count) samples of \(sampleShape) need \(labels.count * size) features, got \(features.count)")
        }
        self.features = features
        self.labels = labels
        self.sampleShape = sampleShape
    }

    /// Reads arrays `features` and `labels` from an `.npz` archive (`np.savez(path, x=..., y=...)`).
    public init(npz url: URL, features featuresKey: String = "x", labels labelsKey: String = "y") throws {
        let arrays = try NPZ.read(url)
        func array(_ key: String) throws -> Tensor {
            guard let t = arrays[key] else {
                throw DataError.invalidContent(path: url.path, reason: "no array '\(key)' (the archive has: \(arrays.keys.sorted().joined(separator: ", ")))")
            }
            return t
        }
        let x = try array(featuresKey), y = try array(labelsKey)
        do { try self.init(features: x, labels: y) } catch let DataError.invalidArgument(message) {
            throw DataError.invalidContent(path: url.path, reason: message)
        }
    }

    /// Reads features and labels from two `.npy` files (`np.save`), through TensorCore's reader.
    public init(npyFeatures featuresURL: URL, npyLabels labelsURL: URL) throws {
        func load(_ url: URL) throws -> Tensor {
            guard FileManager.default.fileExists(atPath: url.path) else { throw DataError.fileNotFound(path: url.path, hint: "check the path") }
            do { return try Tensor(npyFile: url) } catch let TensorError.invalidFile(path, reason) {
                throw DataError.invalidContent(path: path, reason: reason)
            }
        }
        let x = try load(featuresURL), y = try load(labelsURL)
        do { try self.init(features: x, labels: y) } catch let DataError.invalidArgument(message) {
            throw DataError.mismatchedFiles(path: featuresURL.path, otherPath: labelsURL.path, reason: message)
        }
    }

    public var count: Int { labels.count }

    public func example(at index: Int) -> Example {
        let size = sampleSize
        return Example(features: Array(features[(index * size)..<((index + 1) * size)]), shape: sampleShape, label: labels[index])
    }

    public func fillBatch(indices: [Int], into batch: inout Batch) {
        let size = sampleSize
        features.withUnsafeBufferPointer { src in
            batch.features.withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                for (k, index) in indices.enumerated() {
                    precondition(index >= 0 && index < labels.count, "TensorDataset: index \(index) out of range 0..<\(labels.count)")
                    (d + k * size).update(from: s + index * size, count: size)
                }
            }
        }
        for (k, index) in indices.enumerated() { batch.labels[k] = labels[index] }
    }

    /// The same samples viewed with another sample shape of the same size (e.g. `[784]` for an MLP); no copy.
    public func reshaped(_ sampleShape: [Int]) throws -> TensorDataset {
        guard sampleShape.reduce(1, *) == sampleSize, !sampleShape.contains(where: { $0 < 0 }) else {
            throw DataError.invalidArgument("TensorDataset.reshaped: \(sampleShape) does not hold the \(sampleSize) features of \(self.sampleShape)")
        }
        return try TensorDataset(features: features, sampleShape: sampleShape, labels: labels)
    }

    /// The same samples with `normalize` applied to every feature once.
    public func normalized(_ normalize: Normalize) throws -> TensorDataset {
        var copy = features
        try normalize.apply(to: &copy, sampleShape: sampleShape)
        return try TensorDataset(features: copy, sampleShape: sampleShape, labels: labels)
    }

    /// All features as one tensor `[count] + sampleShape`, and the labels `[count]`.
    public func tensors() -> (features: Tensor, labels: Tensor) {
        (makeTensor(shape: [count] + sampleShape, copying: features, dtype: .float32), makeTensor(shape: [count], copying: labels, dtype: .int64))
    }
}
