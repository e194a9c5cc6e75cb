import TensorCore

/// The samples of `dataset` at `indices`, in that order, like `torch.utils.data.Subset`.
public struct Subset<Base: Dataset>: Dataset {
    public let dataset: Base
    public let indices: [Int]

    /// Every index must lie in `0..<dataset.count`.
    public init(_ dataset: Base, indices: [Int]) {
        if let bad = indices.first(where: { $0 < 0 || $0 >= dataset.count }) {
            usageError("Subset: index \(bad) is out of range for a dataset of \(dataset.count) samples")
        }
        self.dataset = dataset
        self.indices = indices
    }

    public var count: Int { indices.count }
    public var sampleShape: [Int] { dataset.sampleShape }
    public func example(at index: Int) -> Example { dataset.example(at: indices[index]) }
    public func fillBatch(indices batchIndices: [Int], into batch: inout Batch) {
        dataset.fillBatch(indices: batchIndices.map { indices[$0] }, into: &batch)
    }
}

/// Splits `dataset` into disjoint random subsets of the given sizes, which must add up to its
/// count (`torch.utils.data.random_split`). The same seed gives the same split.
public func randomSplit<D: Dataset>(_ dataset: D, lengths: [Int], seed: UInt64) throws -> [Subset<D>] {
    guard !lengths.contains(where: { $0 < 0 }), lengths.reduce(0, +) == dataset.count else {
        throw DataError.invalidArgument("randomSplit: lengths \(lengths) must be non-negative and add up to the dataset's \(dataset.count) samples")
    }
    var generator = Xoshiro256(seed: seed)
    let order = Shuffle.permutation(dataset.count, using: &generator)
    var subsets: [Subset<D>] = []
    var start = 0
    for length in lengths {
        subsets.append(Subset(dataset, indices: Array(order[start..<(start + length)])))
        start += length
    }
    return subsets
}

/// Splits `dataset` by fractions that add up to 1 (e.g. `[0.8, 0.2]`). Each part gets
/// `floor(fraction * count)` samples and the remainder goes one by one to the first parts, as PyTorch does.
public func randomSplit<D: Dataset>(_ dataset: D, fractions: [Double], seed: UInt64) throws -> [Subset<D>] {
    let total = fractions.reduce(0, +)
    guard !fractions.isEmpty, !fractions.contains(where: { $0 < 0 || !$0.isFinite }), abs(total - 1) < 1e-6 else {
        throw DataError.invalidArgument("randomSplit: fractions \(fractions) must be non-negative and add up to 1")
    }
    var lengths = fractions.map { Int(($0 * Double(dataset.count)).rounded(.down)) }
    var remainder = dataset.count - lengths.reduce(0, +)
    var i = 0
    while remainder > 0 {
        lengths[i % lengths.count] += 1
        remainder -= 1
        i += 1
    }
    return try randomSplit(dataset, lengths: lengths, seed: seed)
}

/// Reproducible permutations: Fisher–Yates over our own bounded draw, so an order depends only on
/// the seed, never on the standard library's sampling code.
enum Shuffle {
    static func permutation(_ n: Int, using generator: inout Xoshiro256) -> [Int] {
        var order = Array(0..<n)
        guard n > 1 else { return order }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(uniform(below: UInt64(i + 1), using: &generator))
            order.swapAt(i, j)
        }
        return order
    }

    /// A uniform integer in `0..<bound` (Lemire's multiply-and-reject).
    static func uniform(below bound: UInt64, using generator: inout Xoshiro256) -> UInt64 {
        var product = generator.next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = generator.next().multipliedFullWidth(by: bound)
            }
        }
        return product.high
    }

    /// The generator for one epoch: a pure function of (seed, epoch).
    static func generator(seed: UInt64, epoch: Int) -> Xoshiro256 {
        // splitmix64 of the seed spreads nearby seeds apart before the epoch is added.
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Xoshiro256(seed: z &+ UInt64(bitPattern: Int64(epoch)))
    }
}
