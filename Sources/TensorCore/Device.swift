#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a tensor's storage lives. `.cuda(n)` is reached at run time through `dlopen` of the CUDA
/// driver, so one binary serves both kinds of host and the build never needs CUDA.
public enum Device: Equatable, Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let n): return "cuda:\(n)"
        }
    }

    /// Whether the CUDA driver (`libcuda.so.1`) loads and initialises on this machine.
    public static var isCUDAAvailable: Bool { cudaDriverStatus.available }

    /// What loading the CUDA driver said: available, or why not.
    public static var cudaDriverStatus: (available: Bool, detail: String) { cudaProbe }

    private static let cudaProbe: (available: Bool, detail: String) = {
        guard let handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "libcuda.so.1 not found"
            return (false, reason)
        }
        typealias CuInit = @convention(c) (UInt32) -> Int32
        typealias CuDeviceGetCount = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
        guard let initSym = dlsym(handle, "cuInit"), let countSym = dlsym(handle, "cuDeviceGetCount") else {
            return (false, "libcuda.so.1 lacks cuInit/cuDeviceGetCount")
        }
        let status = unsafeBitCast(initSym, to: CuInit.self)(0)
        guard status == 0 else { return (false, "cuInit failed with CUDA error \(status)") }
        var count: Int32 = 0
        _ = unsafeBitCast(countSym, to: CuDeviceGetCount.self)(&count)
        return (count > 0, "\(count) CUDA device(s)")
    }()
}
