import TensorCore

/// One sample as plain values, so it can cross threads: features (row-major, `shape`) and a class label.
public struct Example: Sendable, Equatable {
    public var features: [Float]
    public var shape: [Int]
    public var label: Int64

    public init(features: [Float], shape: [Int], label: Int64) {
        self.features = features
        self.shape = shape
        self.label = label
    }
}

/// A batch as plain values (what the prefetch thread hands to the training thread):
/// `features` holds `count` samples of `sampleShape` back to back, `labels` one class each.
public struct Batch: Sendable, Equatable {
    public var features: [Float]
    public var labels: [Int64]
    public var sampleShape: [Int]

    /// A zero-filled batch for `count` samples of `sampleShape`, ready for `Dataset.fillBatch`.
    public init(count: Int, sampleShape: [Int]) {
        self.sampleShape = sampleShape
        features = [Float](repeating: 0, count: count * sampleShape.reduce(1, *))
        labels = [Int64](repeating: 0, count: count)
    }

    public init(features: [Float], labels: [Int64], sampleShape: [Int]) {
        self.features = features
        self.labels = labels
        self.sampleShape = sampleShape
    }

    /// The number of samples.
    public var count: Int { labels.count }
    /// The shape of the inputs tensor: `[count] + sampleShape`.
    public var shape: [Int] { [count] + sampleShape }

    /// The inputs (float32 `[B, ...]`) and labels (int64 `[B]`) as tensors, built on the calling thread.
    public func tensors() -> (inputs: Tensor, labels: Tensor) {
        (makeTensor(shape: shape, copying: features, dtype: .float32), makeTensor(shape: [count], copying: labels, dtype: .int64))
    }
}

/// A tensor holding a copy of `values`: one memcpy into a fresh buffer. (`Tensor(shape:scalars:)`
/// copies element by element through generic code, ~10× slower for a batch of images.)
func makeTensor<T: TensorScalar>(shape: [Int], copying values: [T], dtype: DType) -> Tensor {
    let t = Tensor.zeros(shape, dtype: dtype)
    t.withUnsafeMutableBufferPointer(as: T.self) { dst in
        values.withUnsafeBufferPointer { src in
            if let d = dst.baseAddress, let s = src.baseAddress { d.update(from: s, count: Swift.min(src.count, dst.count)) }
        }
    }
    return t
}

/// A collection of labelled samples of one fixed shape, like `torch.utils.data.Dataset` (map-style).
/// Sendable, so a `DataLoader` can build batches on its prefetch thread. Datasets load their data
/// when created (and throw then); reading a sample cannot fail.
public protocol Dataset: Sendable {
    /// The number of samples.
    var count: Int { get }
    /// The shape of one sample's features, e.g. `[1, 28, 28]`; every sample has this shape.
    var sampleShape: [Int] { get }
    /// The sample at `index` (`0..<count`).
    func example(at index: Int) -> Example
    /// Writes the samples at `indices` into `batch`, which arrives sized for them
    /// (`Batch(count: indices.count, sampleShape: sampleShape)`). In-memory datasets override this
    /// with straight copies; the default goes through `example(at:)`.
    func fillBatch(indices: [Int], into batch: inout Batch)
}

extension Dataset {
    public func fillBatch(indices: [Int], into batch: inout Batch) {
        let size = sampleShape.reduce(1, *)
        for (k, index) in indices.enumerated() {
            let e = example(at: index)
            if e.features.count != size {
                shapeError("\(type(of: self)).example(at: \(index)) has \(e.features.count) features, sampleShape \(sampleShape) needs \(size)")
            }
            batch.features.replaceSubrange((k * size)..<((k + 1) * size), with: e.features)
            batch.labels[k] = e.label
        }
    }

    /// `dataset[i]`, as in PyTorch.
    public subscript(index: Int) -> Example { example(at: index) }

    /// The number of features in one sample (the product of `sampleShape`).
    public var sampleSize: Int { sampleShape.reduce(1, *) }

    /// The samples at `indices` as one batch.
    public func batch(indices: [Int]) -> Batch {
        var b = Batch(count: indices.count, sampleShape: sampleShape)
        fillBatch(indices: indices, into: &b)
        return b
    }
}

/// Any dataset behind one concrete type, for code that picks a dataset at run time (a config's
/// `data_loader.type`): `DataLoader(AnyDataset(FashionMNIST(...)), batchSize: 64)`.
public struct AnyDataset: Dataset {
    private let box: any Dataset

    public init(_ dataset: some Dataset) {
        box = (dataset as? AnyDataset)?.box ?? dataset
    }

    /// The wrapped dataset.
    public var base: any Dataset { box }
    public var count: Int { box.count }
    public var sampleShape: [Int] { box.sampleShape }
    public func example(at index: Int) -> Example { box.example(at: index) }
    public func fillBatch(indices: [Int], into batch: inout Batch) { box.fillBatch(indices: indices, into: &batch) }
}
