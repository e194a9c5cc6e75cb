import Foundation
import Synchronization
import Testing
import TensorCore
import Data

/// Sample i has features [i, -i] (shape [2]) and label i, so every batch shows which samples it holds.
struct IndexDataset: Dataset {
    let count: Int
    var sampleShape: [Int] { [2] }
    func example(at index: Int) -> Example { Example(features: [Float(index), -Float(index)], shape: [2], label: Int64(index)) }
}

final class CallCount: Sendable {
    let value = Atomic<Int>(0)
}

/// An IndexDataset whose batch building takes `delay` seconds (as decoding or augmenting would).
struct SlowDataset: Dataset {
    let count: Int
    let delay: TimeInterval
    let calls = CallCount()
    var sampleShape: [Int] { [2] }
    func example(at index: Int) -> Example { IndexDataset(count: count).example(at: index) }
    func fillBatch(indices: [Int], into batch: inout Batch) {
        calls.value.add(1, ordering: .relaxed)
        Thread.sleep(forTimeInterval: delay)
        for (k, i) in indices.enumerated() {
            batch.features[2 * k] = Float(i)
            batch.features[2 * k + 1] = -Float(i)
            batch.labels[k] = Int64(i)
        }
    }
}

private func labels<S: Sequence>(_ batches: S) -> [[Int64]] where S.Element == (Tensor, Tensor) {
    batches.map { $0.1.scalars(as: Int64.self) }
}

struct DataLoaderTests {
    @Test(arguments: [0, 1, 2, 4])
    func batchShapesAndLastPartialBatch(prefetch: Int) {
        let loader = DataLoader(IndexDataset(count: 10), batchSize: 4, prefetch: prefetch)
        #expect(loader.count == 3)
        var shapes: [[Int]] = []
        var seen: [Int64] = []
        for (x, y) in loader {
            shapes.append(x.shape)
            #expect(x.dtype == .float32 && y.dtype == .int64)
            #expect(y.shape == [x.shape[0]])
            let features = x.scalars(as: Float.self), ys = y.scalars(as: Int64.self)
            for (k, label) in ys.enumerated() {
                #expect(features[2 * k] == Float(label) && features[2 * k + 1] == -Float(label))
            }
            seen += ys
        }
        #expect(shapes == [[4, 2], [4, 2], [2, 2]])
        #expect(seen == Array(0..<10))
    }

    @Test func dropLastDropsThePartialBatch() {
        let loader = DataLoader(IndexDataset(count: 10), batchSize: 4, dropLast: true)
        #expect(loader.count == 2)
        #expect(labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]])
        #expect(DataLoader(IndexDataset(count: 8), batchSize: 4, dropLast: true).count == 2)
        #expect(DataLoader(IndexDataset(count: 3), batchSize: 4, dropLast: true).map { $0 }.isEmpty)
        #expect(DataLoader(IndexDataset(count: 0), batchSize: 4).map { $0 }.isEmpty)
    }

    @Test func shuffleOrderIsAFunctionOfSeedAndEpoch() {
        let n = 1000
        let a = DataLoader(IndexDataset(count: n), batchSize: 32, shuffle: true, seed: 42)
        let b = DataLoader(IndexDataset(count: n), batchSize: 32, shuffle: true, seed: 42)
        let other = DataLoader(IndexDataset(count: n), batchSize: 32, shuffle: true, seed: 43)
        for epoch in 0..<5 {
            let order = a.indices(epoch: epoch)
            #expect(order == b.indices(epoch: epoch))                    // same seed and epoch: same order
            #expect(order.sorted() == Array(0..<n))                      // every index exactly once
            #expect(order != Array(0..<n))
            #expect(order != a.indices(epoch: epoch + 1))                // another epoch: another order
            #expect(order != other.indices(epoch: epoch))                // another seed: another order
        }
        #expect(DataLoader(IndexDataset(count: n), batchSize: 32).indices(epoch: 3) == Array(0..<n))
    }

    @Test func iterationFollowsTheOrderAndAdvancesTheEpoch() {
        let loader = DataLoader(IndexDataset(count: 50), batchSize: 8, shuffle: true, seed: 7)
        #expect(loader.epoch == 0)
        let first = labels(loader)            // a plain loop: epoch 0
        #expect(loader.epoch == 1)
        let second = labels(loader)           // the next loop: epoch 1
        #expect(loader.epoch == 2)
        #expect(first.flatMap { $0 }.map(Int.init) == loader.indices(epoch: 0))
        #expect(second.flatMap { $0 }.map(Int.init) == loader.indices(epoch: 1))
        #expect(first != second)
        #expect(first.map(\.count) == [8, 8, 8, 8, 8, 8, 2])
        // batches(epoch:) replays an epoch without moving the counter; setting epoch resumes there.
        #expect(labels(loader.batches(epoch: 0)) == first)
        #expect(loader.epoch == 2)
        loader.epoch = 0
        #expect(labels(loader) == first)
        // Prefetching or not, the batches are the same.
        let inline = DataLoader(IndexDataset(count: 50), batchSize: 8, shuffle: true, seed: 7, prefetch: 0)
        #expect(labels(inline) == first)
        #expect(loader.batchIndices(epoch: 1).map { $0.map(Int64.init) } == second)
    }

    /// Building a batch takes 5 ms and "computing" on it takes 5 ms: with the next batch built in the
    /// background an epoch takes about the larger (N × 5 ms), not the sum (N × 10 ms).
    @Test(.timeLimit(.minutes(1)))
    func prefetchOverlapsBatchBuildingWithCompute() {
        let batches = 40, step = 0.005
        let sum = Double(batches) * 2 * step
        func epochSeconds(prefetch: Int) -> Double {
            let loader = DataLoader(SlowDataset(count: batches * 4, delay: step), batchSize: 4, prefetch: prefetch)
            let start = Date()
            var n = 0
            for (x, _) in loader {
                #expect(x.shape == [4, 2])
                Thread.sleep(forTimeInterval: step)
                n += 1
            }
            #expect(n == batches)
            return Date().timeIntervalSince(start)
        }
        // Without prefetch the sleeps add up, whatever the machine does: the measure can tell the two apart.
        #expect(epochSeconds(prefetch: 0) >= sum)
        // Sleeps only ever run long, so a slow moment can push an overlapped epoch up but never a serial
        // one down: retrying a noisy measurement cannot hide a loader that does not overlap.
        var attempts: [Double] = []
        for _ in 0..<3 {
            attempts.append(epochSeconds(prefetch: 2))
            if attempts.last! < 0.75 * sum { break }
        }
        #expect(attempts.min()! < 0.75 * sum, "epochs took \(attempts) s; the serial sum is \(sum) s")
    }

    @Test(.timeLimit(.minutes(1)))
    func breakingOutStopsTheProducer() {
        let dataset = SlowDataset(count: 400, delay: 0.002)
        let loader = DataLoader(dataset, batchSize: 4, prefetch: 3)
        for _ in 0..<20 {
            let before = dataset.calls.value.load(ordering: .relaxed)
            var taken = 0
            for _ in loader {
                taken += 1
                if taken == 3 { break }
            }
            // The loop's iterator is gone: its thread has been stopped and waited for.
            #expect(loader.activeProducerCount == 0)
            let built = dataset.calls.value.load(ordering: .relaxed) - before
            #expect(built >= 3 && built <= 3 + 3 + 1)
        }
        let settled = dataset.calls.value.load(ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.05)
        #expect(dataset.calls.value.load(ordering: .relaxed) == settled)      // nothing builds batches any more
        // An iterator dropped before its first batch, and one run to the end, both leave nothing behind.
        _ = loader.makeIterator()
        #expect(loader.activeProducerCount == 0)
        #expect(labels(loader).count == 100)
        #expect(loader.activeProducerCount == 0)
    }

    @Test func producerIsRunningWhileALoopIsOpen() {
        let loader = DataLoader(SlowDataset(count: 40, delay: 0.001), batchSize: 4)
        var iterator = loader.makeIterator()
        _ = iterator.next()
        #expect(loader.activeProducerCount == 1)
        while iterator.next() != nil {}
        #expect(iterator.next() == nil)                // the end stays the end
        Thread.sleep(forTimeInterval: 0.01)
        #expect(loader.activeProducerCount == 0)
    }

    @Test func nextBatchGivesSendableValues() {
        let loader = DataLoader(IndexDataset(count: 5), batchSize: 2)
        var iterator = loader.batches(epoch: 0).makeIterator()
        let batch = iterator.nextBatch()
        #expect(batch == Batch(features: [0, 0, 1, -1], labels: [0, 1], sampleShape: [2]))
        #expect(batch?.shape == [2, 2])
    }
}
