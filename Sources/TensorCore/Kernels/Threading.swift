import CDNNL
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One threading policy for the whole engine: oneDNN's OpenMP team and our own parallel kernels use
/// the same thread count, set from code (`omp_set_num_threads`), and our kernels run *on* that
/// OpenMP team through libgomp's `GOMP_parallel`, so the two never fight over cores.
public enum Threading {
    struct OpenMP: @unchecked Sendable {
        let setNumThreads: ferry_omp_set_num_threads_fn
        let threadNum: ferry_omp_get_thread_num_fn
        let numThreads: ferry_omp_get_num_threads_fn
        let parallel: ferry_gomp_parallel_fn
    }

    /// libgomp, found after oneDNN was opened (it pulls libgomp in) or on its own.
    static let openMP: OpenMP? = {
        _ = DNNL.isAvailable
        func symbol(_ name: String) -> UnsafeMutableRawPointer? {
            if let s = dlsym(defaultHandle, name) { return s }
            guard let h = dlopen("libgomp.so.1", RTLD_NOW | RTLD_GLOBAL) else { return nil }
            return dlsym(h, name)
        }
        guard let set = symbol("omp_set_num_threads"), let num = symbol("omp_get_thread_num"),
              let count = symbol("omp_get_num_threads"), let par = symbol("GOMP_parallel") else { return nil }
        return OpenMP(setNumThreads: unsafeBitCast(set, to: ferry_omp_set_num_threads_fn.self),
                      threadNum: unsafeBitCast(num, to: ferry_omp_get_thread_num_fn.self),
                      numThreads: unsafeBitCast(count, to: ferry_omp_get_num_threads_fn.self),
                      parallel: unsafeBitCast(par, to: ferry_gomp_parallel_fn.self))
    }()

    /// `RTLD_DEFAULT`: 0 on glibc, -2 on Darwin.
    private static var defaultHandle: UnsafeMutableRawPointer? {
        #if os(Linux)
        return nil
        #else
        return UnsafeMutableRawPointer(bitPattern: -2)
        #endif
    }

    private static let count = Atomic<Int>(0)   // 0 = not configured yet

    /// Threads used by GEMM and by our kernels. Defaults to `FERRY_NUM_THREADS` or the CPU count.
    public static var threadCount: Int {
        ensureConfigured()
        return count.load(ordering: .relaxed)
    }

    /// Sets the thread count for oneDNN and our kernels together (like `torch.set_num_threads`).
    public static func setThreadCount(_ n: Int) {
        let n = Swift.max(1, n)
        count.store(n, ordering: .relaxed)
        openMP?.setNumThreads(Int32(n))
    }

    @inline(__always)
    static func ensureConfigured() {
        if count.load(ordering: .relaxed) == 0 { setThreadCount(defaultThreadCount()) }
    }

    static func defaultThreadCount() -> Int {
        if let env = getenv("FERRY_NUM_THREADS"), let n = Int(String(cString: env)), n > 0 { return n }
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return Swift.max(1, Int(cpus))
    }

    /// Whether our kernels run on the OpenMP team (true when libgomp is present).
    public static var usesOpenMP: Bool { openMP != nil }

    /// Runs `body(range)` over `0..<n` split into contiguous chunks, one per thread, when `n` is at
    /// least `grain` per thread; otherwise runs it inline.
    @inline(__always)
    public static func parallelFor(_ n: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
        let threads = Swift.min(threadCount, n / Swift.max(grain, 1))
        if threads <= 1 { body(0..<n); return }
        run(threads: threads) { t, nt in
            let chunk = (n + nt - 1) / nt
            let lo = t * chunk, hi = Swift.min(n, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Runs `body(threadIndex, threadCount)` once on each of `threads` threads and waits.
    public static func run(threads: Int, _ body: (Int, Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let box = TaskBox(body: body)
            if let omp = openMP {
                withExtendedLifetime(box) {
                    omp.parallel({ data in
                        let box = Unmanaged<TaskBox>.fromOpaque(data!).takeUnretainedValue()
                        let omp = Threading.openMP!
                        box.body(Int(omp.threadNum()), Int(omp.numThreads()))
                    }, Unmanaged.passUnretained(box).toOpaque(), UInt32(threads), 0)
                }
            } else {
                DispatchQueue.concurrentPerform(iterations: threads) { t in box.body(t, threads) }
            }
        }
    }

    /// Carries a non-escaping closure to the worker threads of one synchronous parallel region.
    final class TaskBox: @unchecked Sendable {
        let body: (Int, Int) -> Void
        init(body: @escaping (Int, Int) -> Void) { self.body = body }
    }
}
