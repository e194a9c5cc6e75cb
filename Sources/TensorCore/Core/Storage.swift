import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor's memory: one 64-byte-aligned host buffer, or a CUDA device buffer; shared by every
/// view of it. `Module.to(_:)` moves a storage between the two in place, so parameters keep
/// their identity.
public final class TensorStorage {
    /// The first byte on the host; for a CUDA storage a PROT_NONE page (host code never reads
    /// device memory: `Tensor.pointer` stops first).
    @exclusivity(unchecked) public internal(set) var raw: UnsafeMutableRawPointer
    public let byteCount: Int
    /// Whether the elements live on a CUDA device (`cuda` holds them).
    @exclusivity(unchecked) public internal(set) var isOnDevice = false
    @exclusivity(unchecked) var cuda: CUDABuffer?

    init(byteCount: Int) {
        self.byteCount = byteCount
        raw = BufferPool.allocate(byteCount)
    }

    /// A storage of `byteCount` bytes on a CUDA device.
    init(byteCount: Int, on context: CUDAContext) {
        self.byteCount = byteCount
        raw = TensorStorage.deviceGuard
        cuda = TensorStorage.deviceBuffer(byteCount, context)
        isOnDevice = true
    }

    static func deviceBuffer(_ byteCount: Int, _ context: CUDAContext) -> CUDABuffer {
        do {
            let p = try context.allocator.allocate(byteCount)
            return CUDABuffer(context: context, pointer: p, byteCount: CUDACachingAllocator.sizeClass(byteCount))
        } catch {
            usageError("\(error)")
        }
    }

    /// Where the elements are.
    public var device: Device { cuda.map { .cuda($0.context.index) } ?? .cpu }

    /// Moves the elements to `context`'s device (nil: to the host) in place.
    func move(to context: CUDAContext?) {
        if let context {
            if let c = cuda, c.context === context { return }
            let buffer = TensorStorage.deviceBuffer(byteCount, context)
            if let old = cuda {
                // Across devices (or drivers): through the host.
                let tmp = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 64)
                defer { tmp.deallocate() }
                old.context.driver.copyToHost(device: old.context.index, tmp, from: old.pointer, byteCount: byteCount)
                context.driver.copyToDevice(device: context.index, buffer.pointer, from: tmp, byteCount: byteCount)
            } else {
                context.driver.copyToDevice(device: context.index, buffer.pointer, from: raw, byteCount: byteCount)
                BufferPool.release(raw, byteCount: byteCount)
            }
            cuda = buffer
            raw = TensorStorage.deviceGuard
            isOnDevice = true
        } else {
            guard let old = cuda else { return }
            let host = BufferPool.allocate(byteCount)
            old.context.driver.copyToHost(device: old.context.index, host, from: old.pointer, byteCount: byteCount)
            raw = host
            cuda = nil
            isOnDevice = false
        }
    }

    /// One inaccessible page that every device storage's `raw` points at.
    nonisolated(unsafe) static let deviceGuard: UnsafeMutableRawPointer = {
        guard let p = mmap(nil, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("cannot map the device guard page")
        }
        return p
    }()

    deinit { if !isOnDevice { BufferPool.release(raw, byteCount: byteCount) } }
}

/// Reuses freed buffers of the same size: a training step allocates the same shapes every time,
/// and fresh large allocations from malloc come back as page-faulting mmaps.
enum BufferPool {
    private struct State {
        var free: [Int: [UInt]] = [:]     // rounded byte count -> addresses
        var cachedBytes = 0
    }
    private static let state = Mutex(State())
    /// Upper bound on cached, unused bytes.
    static let capacity = 2 << 30
    /// Small buffers come straight from malloc's own caches.
    static let minimumPooled = 4096

    @inline(__always) static func rounded(_ n: Int) -> Int { (Swift.max(n, 1) + 63) & ~63 }

    static func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer {
        let size = rounded(byteCount)
        if size >= minimumPooled {
            let reused: UInt? = state.withLock { s in
                guard var list = s.free[size], let p = list.popLast() else { return nil }
                s.free[size] = list
                s.cachedBytes -= size
                return p
            }
            if let reused, let p = UnsafeMutableRawPointer(bitPattern: reused) { return p }
        }
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, 64, size) == 0, let p else {
            fatalError("out of memory allocating \(size) bytes for a tensor")
        }
        return p
    }

    static func release(_ p: UnsafeMutableRawPointer, byteCount: Int) {
        let size = rounded(byteCount)
        if size >= minimumPooled {
            let kept = state.withLock { s -> Bool in
                guard s.cachedBytes + size <= capacity else { return false }
                s.free[size, default: []].append(UInt(bitPattern: p))
                s.cachedBytes += size
                return true
            }
            if kept { return }
        }
        free(p)
    }

    /// Returns every cached buffer to the system (like `torch.cuda.empty_cache` for the CPU).
    public static func emptyCache() {
        let all = state.withLock { s -> [UInt] in
            let list = s.free.values.flatMap { $0 }
            s.free = [:]; s.cachedBytes = 0
            return list
        }
        for a in all { free(UnsafeMutableRawPointer(bitPattern: a)) }
    }
}
