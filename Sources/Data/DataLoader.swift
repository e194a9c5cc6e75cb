import Dispatch
import Foundation
import Synchronization
import TensorCore

/// Batches of a dataset, like `torch.utils.data.DataLoader`: inputs float32 `[B] + sampleShape` and
/// labels int64 `[B]`. While the caller computes on one batch, a background thread builds the next
/// ones (`prefetch` of them) as plain `Batch` values; tensors are made on the caller's thread.
///
/// The shuffled order of an epoch is a pure function of `(seed, epoch)`. Each `for … in loader`
/// uses `epoch` and then advances it, so consecutive loops see fresh orders; set `epoch` to resume,
/// or iterate `batches(epoch:)` to leave it alone. Leaving a loop early stops the background thread.
public final class DataLoader<D: Dataset>: Sequence {
    public typealias Element = (Tensor, Tensor)

    public let dataset: D
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    /// Whether a last batch smaller than `batchSize` is dropped.
    public let dropLast: Bool
    /// How many batches the background thread may hold ready or in the making; 0 builds batches on the caller's thread.
    public let prefetch: Int
    /// The epoch the next `for … in loader` uses (each such loop advances it by one).
    public var epoch: Int = 0

    private let producers = ProducerCount()

    public init(_ dataset: D, batchSize: Int = 1, shuffle: Bool = false, seed: UInt64 = 0, dropLast: Bool = false,
                prefetch: Int = 2) {
        if batchSize < 1 { shapeError("DataLoader: batchSize must be at least 1, got \(batchSize)") }
        if prefetch < 0 { shapeError("DataLoader: prefetch must be 0 or more, got \(prefetch)") }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.prefetch = prefetch
    }

    /// The number of batches in an epoch.
    public var count: Int {
        // Rounded up without `count + batchSize - 1`, which overflows for a batch_size near Int.max.
        let n = dataset.count
        return dropLast || n % batchSize == 0 ? n / batchSize : n / batchSize + 1
    }

    public var underestimatedCount: Int { count }

    /// The order in which `epoch` visits the samples (the identity when not shuffling).
    public func indices(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var generator = Shuffle.generator(seed: seed, epoch: epoch)
        return Shuffle.permutation(dataset.count, using: &generator)
    }

    /// The sample indices of each batch of `epoch`.
    public func batchIndices(epoch: Int) -> [[Int]] {
        let order = indices(epoch: epoch)
        return (0..<count).map { b in Array(order[(b * batchSize)..<Swift.min((b + 1) * batchSize, order.count)]) }
    }

    /// The batches of `epoch`, without touching `epoch`.
    public func batches(epoch: Int) -> Epoch {
        Epoch(dataset: dataset, batches: batchIndices(epoch: epoch), prefetch: prefetch, producers: producers)
    }

    /// Starts the next epoch (and advances `epoch`).
    public func makeIterator() -> Iterator {
        defer { epoch += 1 }
        return batches(epoch: epoch).makeIterator()
    }

    /// The background threads this loader is running now (0 once every loop over it has ended or been left).
    public var activeProducerCount: Int { producers.value.load(ordering: .acquiring) }

    /// One epoch's batches, in order.
    public struct Epoch: Sequence {
        let dataset: D
        let batches: [[Int]]
        let prefetch: Int
        let producers: ProducerCount

        public var count: Int { batches.count }
        public var underestimatedCount: Int { batches.count }

        public func makeIterator() -> Iterator {
            if prefetch == 0 || batches.isEmpty {
                return Iterator(source: .inline(dataset: dataset, batches: batches))
            }
            return Iterator(source: .prefetching(Prefetcher(dataset: dataset, batches: batches, depth: prefetch, producers: producers)))
        }
    }

    public struct Iterator: IteratorProtocol {
        enum Source {
            case inline(dataset: D, batches: [[Int]])
            case prefetching(Prefetcher<D>)
        }
        let source: Source
        var position = 0

        /// The next batch as plain values (what `next()` turns into tensors).
        public mutating func nextBatch() -> Batch? {
            switch source {
            case .inline(let dataset, let batches):
                guard position < batches.count else { return nil }
                defer { position += 1 }
                return dataset.batch(indices: batches[position])
            case .prefetching(let prefetcher):
                return prefetcher.next()
            }
        }

        public mutating func next() -> (Tensor, Tensor)? {
            guard let batch = nextBatch() else { return nil }
            let (x, y) = batch.tensors()
            return (x, y)
        }
    }
}

/// How many producer threads a loader has running (shared with those threads).
final class ProducerCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Runs one epoch's batch building on a background thread and hands the batches over in order.
/// Owned by one iterator; when that iterator goes away (the loop ended or was left) it stops the
/// thread and waits for it, so no thread outlives its loop.
final class Prefetcher<D: Dataset> {
    private let channel: BatchChannel

    init(dataset: D, batches: [[Int]], depth: Int, producers: ProducerCount) {
        let channel = BatchChannel(depth: depth)
        self.channel = channel
        let sampleShape = dataset.sampleShape
        producers.value.add(1, ordering: .acquiringAndReleasing)
        let thread = Thread {
            for indices in batches {
                guard channel.waitForSlot() else { break }
                var batch = Batch(count: indices.count, sampleShape: sampleShape)
                dataset.fillBatch(indices: indices, into: &batch)
                guard channel.put(batch) else { break }
            }
            channel.finish()
            producers.value.subtract(1, ordering: .acquiringAndReleasing)
            channel.markExited()
        }
        thread.name = "ferry.DataLoader"
        thread.start()
    }

    func next() -> Batch? { channel.take() }

    deinit {
        channel.cancel()
        channel.waitUntilExited()
    }
}

/// A bounded, in-order queue of batches between one producer thread and one consumer, with
/// cancellation. Sendable without `@unchecked`: its state sits in a `Mutex`, and blocking is done
/// with semaphores (which are Sendable).
final class BatchChannel: Sendable {
    private struct State {
        var queue: [Batch] = []
        var head = 0
        var finished = false
        var cancelled = false
    }
    private let state = Mutex(State())
    /// Free places for batches ready or in the making.
    private let slots = DispatchSemaphore(value: 0)
    /// Batches (or the end) ready to take.
    private let items = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)

    init(depth: Int) {
        // Start at 0 and signal up: libdispatch traps when a semaphore is freed below its initial value.
        for _ in 0..<depth { slots.signal() }
    }

    /// Producer: waits for room for one more batch; false when the consumer has gone.
    func waitForSlot() -> Bool {
        slots.wait()
        return !state.withLock { $0.cancelled }
    }

    /// Producer: hands over a batch; false when the consumer has gone.
    func put(_ batch: Batch) -> Bool {
        let accepted = state.withLock { s -> Bool in
            guard !s.cancelled else { return false }
            s.queue.append(batch)
            return true
        }
        if accepted { items.signal() }
        return accepted
    }

    /// Producer: no more batches.
    func finish() {
        state.withLock { $0.finished = true }
        items.signal()
    }

    func markExited() { exited.signal() }

    /// Consumer: the next batch, or nil at the end.
    func take() -> Batch? {
        items.wait()
        let batch = state.withLock { s -> Batch? in
            guard s.head < s.queue.count else { return nil }
            let b = s.queue[s.head]
            s.head += 1
            if s.head > 16 && s.head * 2 > s.queue.count {       // drop taken batches now and then
                s.queue.removeFirst(s.head)
                s.head = 0
            }
            return b
        }
        if batch != nil {
            slots.signal()
        } else {
            items.signal()      // leave the end visible to any later call
        }
        return batch
    }

    /// Consumer: stop the producer (it finishes the batch in hand at most).
    func cancel() {
        state.withLock { $0.cancelled = true }
        slots.signal()
    }

    func waitUntilExited() { exited.wait() }
}
