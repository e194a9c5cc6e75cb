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
/// (scaling and normalisation in one lookup), straight from the inflated file.
func loadIDXPair(images: URL, labels: URL, normalize: Normalize?, numClasses: Int?, imageSize: (rows: Int, columns: Int)?,
                 transposed: Bool) throws -> TensorDataset {
    if let normalize, normalize.mean.count != 1 || normalize.std.count != 1 {
        throw DataError.invalidArgument("Normalize: these images have 1 channel; give one mean and one std (got \(normalize.mean.count) and \(normalize.std.count))")
    }
    let labelData = try IDX.readFile(labels)
    let (labelDims, labelOffset) = try IDX.parse(labelData, name: labels.path, rank: 1)
    let imageData = try IDX.readFile(images)
    let (imageDims, imageOffset) = try IDX.parse(imageData, name: images.path, rank: 3)
    let (n, rows, columns) = (imageDims[0], imageDims[1], imageDims[2])
    if let imageSize, rows != imageSize.rows || columns != imageSize.columns {
        throw DataError.badDimensions(path: images.path, reason: "images are \(rows)×\(columns), expected \(imageSize.rows)×\(imageSize.columns)")
    }
    guard rows > 0, columns > 0 else {
        throw DataError.badDimensions(path: images.path, reason: "images are \(rows)×\(columns)")
    }
    guard labelDims[0] == n else {
        throw DataError.mismatchedFiles(path: images.path, otherPath: labels.path, reason: "\(n) images but \(labelDims[0]) labels")
    }

    var labelValues = [Int64](repeating: 0, count: n)
    try labelData.withUnsafeBytes { raw in
        for i in 0..<n {
            let v = raw[labelOffset + i]
            if let numClasses, Int(v) >= numClasses {
                throw DataError.invalidContent(path: labels.path, reason: "label \(i) is \(v), expected 0..<\(numClasses) — the file is damaged or not a label file of this dataset")
            }
            labelValues[i] = Int64(v)
        }
    }

    let table = (normalize ?? Normalize(mean: 0, std: 1)).byteTable()
    let plane = rows * columns
    var features = [Float](repeating: 0, count: n * plane)
    imageData.withUnsafeBytes { raw in
        guard let src = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let pixels = src + imageOffset
        table.withUnsafeBufferPointer { lut in
            features.withUnsafeMutableBufferPointer { dst in
                guard let d = dst.baseAddress, let t = lut.baseAddress else { return }
                if transposed {
                    for img in 0..<n {
                        let s = pixels + img * plane, o = d + img * plane
                        // Stored column-major: element (r, c) of the upright image sits at c * rows + r.
                        for r in 0..<rows { for c in 0..<columns { o[r * columns + c] = t[Int(s[c * rows + r])] } }
                    }
                } else {
                    for i in 0..<(n * plane) { d[i] = t[Int(pixels[i])] }
                }
            }
        }
    }
    return try TensorDataset(features: features, sampleShape: [1, rows, columns], labels: labelValues)
}
