import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor's memory: one 64-byte-aligned buffer, shared by every view of it.
public final class TensorStorage {
    /// The first byte.
    public let raw: UnsafeMutableRawPointer
    public let byteCount: Int

    init(byteCount: Int) {
        self.byteCount = byteCount
        raw = BufferPool.allocate(byteCount)
    }

    deinit { BufferPool.release(raw, byteCount: byteCount) }
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
