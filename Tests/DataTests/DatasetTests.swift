import Foundation
import Testing
import TensorCore
import Data

struct DatasetTests {
    @Test func tensorDatasetFromTensors() throws {
        let x = Tensor(shape: [3, 2, 2], scalars: (0..<12).map { Int64($0) })       // int64 features become float32
        let y = Tensor(shape: [3], scalars: [Double](arrayLiteral: 2, 0, 1))          // integral floats are labels
        let ds = try TensorDataset(features: x, labels: y)
        #expect(ds.count == 3 && ds.sampleShape == [2, 2])
        #expect(ds[2] == Example(features: [8, 9, 10, 11], shape: [2, 2], label: 1))
        let (fx, fy) = ds.tensors()
        #expect(fx.shape == [3, 2, 2] && fx.dtype == .float32 && fy.scalars(as: Int64.self) == [2, 0, 1])
        #expect(try ds.reshaped([4]).sampleShape == [4])
        #expect(dataError { try ds.reshaped([5]) } != nil)

        guard case .invalidArgument(let m)? = dataError({ try TensorDataset(features: x, labels: Tensor(shape: [2], scalars: [Int64](arrayLiteral: 0, 1))) }) else {
            Issue.record("expected invalidArgument"); return
        }
        #expect(m.contains("[3]"))
        #expect(dataError { try TensorDataset(features: x, labels: Tensor(shape: [3], scalars: [Float](arrayLiteral: 0.5, 1, 2))) } != nil)
        #expect(dataError { try TensorDataset(features: [1, 2, 3], sampleShape: [2], labels: [0, 1]) } != nil)
    }

    @Test func defaultFillBatchGoesThroughExamples() {
        // IndexDataset implements only example(at:).
        let batch = IndexDataset(count: 10).batch(indices: [7, 2])
        #expect(batch == Batch(features: [7, -7, 2, -2], labels: [7, 2], sampleShape: [2]))
        let (x, y) = batch.tensors()
        #expect(x.shape == [2, 2] && y.shape == [2])
    }

    @Test func anyDatasetForwardsToItsBase() throws {
        let base = try TensorDataset(features: [1, 2, 3, 4, 5, 6], sampleShape: [2], labels: [4, 5, 6])
        let any = AnyDataset(Subset(base, indices: [2, 0]))
        #expect(any.count == 2 && any.sampleShape == [2])
        #expect(any[0] == Example(features: [5, 6], shape: [2], label: 6))
        #expect(any.batch(indices: [1, 0]) == Batch(features: [1, 2, 5, 6], labels: [4, 6], sampleShape: [2]))
        #expect(AnyDataset(any).base is Subset<TensorDataset>)          // no box in a box
        #expect(labelsOf(DataLoader(any, batchSize: 1)) == [6, 4])
    }

    @Test func subsetMapsIndices() throws {
        let base = try TensorDataset(features: (0..<10).map(Float.init), sampleShape: [1], labels: (0..<10).map(Int64.init))
        let subset = Subset(base, indices: [9, 3, 5])
        #expect(subset.count == 3 && subset.sampleShape == [1])
        #expect(subset[1] == Example(features: [3], shape: [1], label: 3))
        #expect(subset.batch(indices: [2, 0]) == Batch(features: [5, 9], labels: [5, 9], sampleShape: [1]))
        #expect(labelsOf(DataLoader(subset, batchSize: 2)) == [9, 3, 5])
        // A subset of a subset.
        #expect(Subset(subset, indices: [2])[0].label == 5)
    }

    @Test func randomSplitIsSeededAndDisjoint() throws {
        let ds = IndexDataset(count: 100)
        let parts = try randomSplit(ds, lengths: [70, 20, 10], seed: 1)
        #expect(parts.map(\.count) == [70, 20, 10])
        let all = parts.flatMap(\.indices)
        #expect(all.sorted() == Array(0..<100))                                 // disjoint, and covering everything
        #expect(Set(parts[0].indices).isDisjoint(with: parts[1].indices))
        #expect(try randomSplit(ds, lengths: [70, 20, 10], seed: 1).map(\.indices) == parts.map(\.indices))
        #expect(try randomSplit(ds, lengths: [70, 20, 10], seed: 2).map(\.indices) != parts.map(\.indices))
        #expect(parts[0].indices != Array(0..<70))

        #expect(try randomSplit(IndexDataset(count: 10), fractions: [0.8, 0.2], seed: 0).map(\.count) == [8, 2])
        #expect(try randomSplit(IndexDataset(count: 11), fractions: [0.5, 0.5], seed: 0).map(\.count) == [6, 5])
        #expect(try randomSplit(IndexDataset(count: 10), fractions: [1 / 3.0, 1 / 3.0, 1 / 3.0], seed: 0).map(\.count) == [4, 3, 3])
        guard case .invalidArgument? = dataError({ try randomSplit(ds, lengths: [50, 40], seed: 0) }) else {
            Issue.record("expected invalidArgument"); return
        }
        #expect(dataError { try randomSplit(ds, fractions: [0.5, 0.6], seed: 0) } != nil)
        #expect(dataError { try randomSplit(ds, lengths: [120, -20], seed: 0) } != nil)
    }

    @Test func normalizePerChannelAndOverall() throws {
        var features: [Float] = [1, 2, 3, 4, 10, 20, 30, 40]        // one sample [2, 2, 2]: channel 0 then channel 1
        try Normalize(mean: [1, 10], std: [2, 10]).apply(to: &features, sampleShape: [2, 2, 2])
        #expect(features == [0, 0.5, 1, 1.5, 0, 1, 2, 3])
        var flat: [Float] = [1, 3]
        try Normalize(mean: 1, std: 2).apply(to: &flat, sampleShape: [1])
        #expect(flat == [0, 1])
        var wrong: [Float] = [1, 2, 3]
        guard case .invalidArgument? = dataError({ try Normalize(mean: [0, 0], std: [1, 1]).apply(to: &wrong, sampleShape: [3]) }) else {
            Issue.record("expected invalidArgument"); return
        }
        let ds = try TensorDataset(features: [1, 3, 5, 7], sampleShape: [2], labels: [0, 1])
        #expect(try ds.normalized(Normalize(mean: 1, std: 2)).features == [0, 1, 2, 3])
    }
}

func labelsOf<D: Dataset>(_ loader: DataLoader<D>) -> [Int64] {
    loader.flatMap { $0.1.scalars(as: Int64.self) }
}
