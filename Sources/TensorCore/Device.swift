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

    /// Whether a CUDA device is usable: the driver in effect (`withCUDADriver`, `FERRY_CUDA_DRIVER=mock`,
    /// else `libcuda.so.1`) loads and has at least one device.
    public static var isCUDAAvailable: Bool { cudaDeviceCount > 0 }

    /// What loading the CUDA driver said: available, or why not.
    public static var cudaDriverStatus: (available: Bool, detail: String) {
        switch CUDARuntime.current {
        case .success(let d): return (d.deviceCount() > 0, "\(d.deviceCount()) CUDA device(s) under the \(d.name) driver")
        case .failure(let e): return (false, "\(e)")
        }
    }
}
