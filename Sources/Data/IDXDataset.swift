import Foundation

/// An image classification set stored as a pair of IDX files (images `[N, rows, cols]` and labels `[N]`),
/// the layout of MNIST, Fashion-MNIST and EMNIST. Pixels become float32 `/ 255` (then `normalize`),
/// samples are `[1, rows, cols]`, so a loader yields `[B, 1, rows, cols]`.
public struct IDXDataset: Dataset {
    /// The images and labels in memory.
    public let data: TensorDataset

    /// Reads `images` and `labels` (each gzip'd or raw). `numClasses`, when given, bounds the labels.
    /// `transposed` swaps rows and columns of every image (EMNIST stores its images transposed).
    public init(images: URL, labels: URL, normalize: Normalize? = nil, numClasses: Int? = nil, transposed: Bool = false) throws {
        data = try loadIDXPair(images: images, labels: labels, normalize: normalize, numClasses: numClasses,
                               imageSize: nil, transposed: transposed)
    }

    public var count: Int { data.count }
    public var sampleShape: [Int] { data.sampleShape }
    public func example(at index: Int) -> Example { data.example(at: index) }
    public func fillBatch(indices: [Int], into batch: inout Batch) { data.fillBatch(indices: indices, into: &batch) }
}

/// Loads an IDX image/label pair into floats, mapping each byte through one 256-entry table
/// (scaling and normalisation in one lookup) as the image file inflates, chunk by chunk.
func loadIDXPair(images: URL, labels: URL, normalize: Normalize?, numClasses: Int?, imageSize: (rows: Int, columns: Int)?,
                 transposed: Bool) throws -> TensorDataset {
    if let normalize, normalize.mean.count != 1 || normalize.std.count != 1 {
        throw DataError.invalidArgument("Normalize: these images have 1 channel; give one mean and one std (got \(normalize.mean.count) and \(normalize.std.count))")
    }
    let labelBytes = try IDX.readLabels(labels)
    if let numClasses, let i = labelBytes.firstIndex(where: { Int($0) >= numClasses }) {
        throw DataError.invalidContent(path: labels.path, reason: "label \(i) is \(labelBytes[i]), expected 0..<\(numClasses) — the file is damaged or not a label file of this dataset")
    }

    let table = (normalize ?? Normalize(mean: 0, std: 1)).byteTable()
    var dims: [Int] = []
    var features: [Float] = []
    try IDX.stream(images, rank: 3, header: { header in
        dims = header.dimensions
        let (n, rows, columns) = (dims[0], dims[1], dims[2])
        if let imageSize, rows != imageSize.rows || columns != imageSize.columns {
            throw DataError.badDimensions(path: images.path, reason: "images are \(rows)×\(columns), expected \(imageSize.rows)×\(imageSize.columns)")
        }
        guard rows > 0, columns > 0 else {
            throw DataError.badDimensions(path: images.path, reason: "images are \(rows)×\(columns)")
        }
        guard labelBytes.count == n else {
            throw DataError.mismatchedFiles(path: images.path, otherPath: labels.path, reason: "\(n) images but \(labelBytes.count) labels")
        }
        // Every element is written below before anyone reads it (a short file throws), so skip zero-filling 188 MB.
        features = [Float](unsafeUninitializedCapacity: header.payload) { _, initialized in initialized = header.payload }
    }, payload: { offset, bytes in
        features.withUnsafeMutableBufferPointer { dst in
            table.withUnsafeBufferPointer { lut in
                guard let d = dst.baseAddress, let t = lut.baseAddress,
                      let s = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
                let o = d + offset
                for i in 0..<bytes.count { o[i] = t[Int(s[i])] }
            }
        }
    })
    let (rows, columns) = (dims[1], dims[2])
    if transposed {
        // Stored column-major: element (r, c) of the upright image sits at c * rows + r.
        let plane = rows * columns
        var scratch = [Float](repeating: 0, count: plane)
        features.withUnsafeMutableBufferPointer { all in
            guard let base = all.baseAddress else { return }
            for image in 0..<(all.count / max(plane, 1)) {
                let p = base + image * plane
                for r in 0..<rows { for c in 0..<columns { scratch[r * columns + c] = p[c * rows + r] } }
                scratch.withUnsafeBufferPointer { if let s = $0.baseAddress { p.update(from: s, count: plane) } }
            }
        }
    }
    return try TensorDataset(features: features, sampleShape: [1, rows, columns], labels: labelBytes.map { Int64($0) })
}
