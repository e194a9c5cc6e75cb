import Synchronization

/// A device allocation owned by one storage; returned to its context's cache when released.
final class CUDABuffer {
    let context: CUDAContext
    let pointer: CUDADevicePointer
    let byteCount: Int      // the size class

    init(context: CUDAContext, pointer: CUDADevicePointer, byteCount: Int) {
        self.context = context; self.pointer = pointer; self.byteCount = byteCount
    }

    deinit { context.allocator.release(pointer, sizeClass: byteCount) }
}

/// What the caching allocator of one device holds (`torch.cuda.memory_stats`, in short).
public struct CUDAMemoryStats: Sendable, Equatable, CustomStringConvertible {
    /// Bytes held by live tensors (size classes), now and at most.
    public var allocatedBytes = 0, peakAllocatedBytes = 0
    /// Bytes freed by tensors and kept for reuse.
    public var cachedBytes = 0
    /// Driver allocations, requests answered from the cache, out-of-memory retries.
    public var driverAllocations = 0, cacheHits = 0, oomRetries = 0

    public var description: String {
        "allocated \(allocatedBytes) B (peak \(peakAllocatedBytes) B), cached \(cachedBytes) B, \(driverAllocations) driver allocations, \(cacheHits) cache hits, \(oomRetries) out-of-memory retries"
    }
}

/// Size-classed caching allocator: a training step allocates the same sizes every time, and
/// `cuMemAlloc`/`cuMemFree` synchronise the device. On out-of-memory the cache is freed and the
/// allocation retried once.
final class CUDACachingAllocator: @unchecked Sendable {
    let driver: any CUDADriver
    let device: Int
    fileprivate struct State {
        var free: [Int: [CUDADevicePointer]] = [:]
        var stats = CUDAMemoryStats()
    }
    private let state = Mutex(State())

    init(driver: any CUDADriver, device: Int) { self.driver = driver; self.device = device }

    /// 512-byte steps up to 1 MiB, then 2 MiB steps.
    static func sizeClass(_ n: Int) -> Int {
        let n = Swift.max(n, 1)
        if n <= 1 << 20 { return (n + 511) & ~511 }
        return (n + (2 << 20) - 1) & ~((2 << 20) - 1)
    }

    func allocate(_ byteCount: Int) throws(TensorError) -> CUDADevicePointer {
        let size = Self.sizeClass(byteCount)
        let cached = state.withLock { s -> CUDADevicePointer? in
            guard var list = s.free[size], let p = list.popLast() else { return nil }
            s.free[size] = list
            s.stats.cachedBytes -= size
            s.stats.cacheHits += 1
            s.note(allocated: size)
            return p
        }
        if let cached { return cached }
        if let p = driver.allocate(device: device, byteCount: size) { return fresh(p, size) }
        // Out of memory: give the cache back to the driver and try once more.
        let cachedBefore = state.withLock { $0.stats.cachedBytes }
        state.withLock { $0.stats.oomRetries += 1 }
        emptyCache()
        if let p = driver.allocate(device: device, byteCount: size) { return fresh(p, size) }
        let info = driver.memoryInfo(device: device)
        throw TensorError.cudaOutOfMemory(device: "cuda:\(device)", requested: byteCount, free: info.free, cached: cachedBefore)
    }

    private func fresh(_ p: CUDADevicePointer, _ size: Int) -> CUDADevicePointer {
        state.withLock { s in s.stats.driverAllocations += 1; s.note(allocated: size) }
        return p
    }

    func release(_ p: CUDADevicePointer, sizeClass size: Int) {
        state.withLock { s in
            s.free[size, default: []].append(p)
            s.stats.cachedBytes += size
            s.stats.allocatedBytes -= size
        }
    }

    func emptyCache() {
        let all = state.withLock { s -> [CUDADevicePointer] in
            let list = s.free.values.flatMap { $0 }
            s.free = [:]; s.stats.cachedBytes = 0
            return list
        }
        if !all.isEmpty { driver.synchronize(device: device) }   // no queued kernel still uses them
        for p in all { driver.free(device: device, p) }
    }

    var stats: CUDAMemoryStats { state.withLock { $0.stats } }
}

private extension CUDACachingAllocator.State {
    mutating func note(allocated size: Int) {
        stats.allocatedBytes += size
        stats.peakAllocatedBytes = Swift.max(stats.peakAllocatedBytes, stats.allocatedBytes)
    }
}

/// The caching allocator of the CUDA driver in effect (`torch.cuda.empty_cache`, `memory_stats`).
public enum CUDAMemory {
    /// Returns the cached, unused device memory of `device` to the driver.
    public static func emptyCache(device: Int = 0) {
        CUDARuntime.context(device, for: "CUDAMemory.emptyCache").allocator.emptyCache()
    }

    /// The allocator's counters for `device`.
    public static func stats(device: Int = 0) -> CUDAMemoryStats {
        CUDARuntime.context(device, for: "CUDAMemory.stats").allocator.stats
    }

    /// Allocates `byteCount` bytes on `device` through the caching allocator (what a tensor
    /// creation does), throwing when the device stays out of memory after a retry.
    public static func allocateBuffer(byteCount: Int, device: Int = 0) throws(TensorError) -> CUDADeviceBuffer {
        let ctx = CUDARuntime.context(device, for: "CUDAMemory.allocateBuffer")
        let p = try ctx.allocator.allocate(byteCount)
        return CUDADeviceBuffer(CUDABuffer(context: ctx, pointer: p, byteCount: CUDACachingAllocator.sizeClass(byteCount)))
    }
}

/// An opaque device allocation handed out by `CUDAMemory.allocateBuffer`; freed into the cache
/// when the last reference goes.
public struct CUDADeviceBuffer {
    let buffer: CUDABuffer
    init(_ b: CUDABuffer) { buffer = b }
    public var byteCount: Int { buffer.byteCount }
}
