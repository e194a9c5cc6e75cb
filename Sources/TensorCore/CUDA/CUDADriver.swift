import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An address in a CUDA device's memory (`CUdeviceptr`). Never dereferenced by host code.
public typealias CUDADevicePointer = UInt64

/// One cuBLAS GEMM call in cuBLAS's own column-major terms (`cublasSgemm_v2`, `cublasDgemm_v2`,
/// `…StridedBatched` when `batch > 1`).
public struct CUDAGemmCall: Sendable {
    public var dtype: DType               // .float32 or .float64
    public var transA: Bool, transB: Bool
    public var m: Int, n: Int, k: Int
    public var alpha: Double, beta: Double
    public var a: CUDADevicePointer, lda: Int, strideA: Int
    public var b: CUDADevicePointer, ldb: Int, strideB: Int
    public var c: CUDADevicePointer, ldc: Int, strideC: Int
    public var batch: Int
    /// cuBLAS math mode TF32_TENSOR_OP (float32 only), as `Tensor.allowTF32`.
    public var allowTF32: Bool
}

/// The seam between the engine and a CUDA implementation: the real driver (libcuda + cuBLAS +
/// NVRTC, loaded by dlopen) or the mock that runs the same kernel text on the CPU. Device memory
/// is only ever touched through these calls.
///
/// Each device has one stream, non-blocking (it does not wait for the legacy default stream):
/// launches, GEMMs, device-to-device copies and asynchronous uploads are queued on it in call
/// order and may still run when the call returns. Calls that hand data to the host
/// (`copyToHost`, `synchronize`) wait for it first.
public protocol CUDADriver: AnyObject, Sendable {
    /// "mock" or "cuda 13.0 (libcuda.so.1, …)".
    var name: String { get }
    func deviceCount() -> Int
    func deviceName(_ device: Int) -> String
    /// Free and total bytes of a device's memory.
    func memoryInfo(device: Int) -> (free: Int, total: Int)
    /// A fresh device allocation, or nil when the device is out of memory.
    func allocate(device: Int, byteCount: Int) -> CUDADevicePointer?
    func free(device: Int, _ pointer: CUDADevicePointer)
    /// Copies from any host memory; `src` may be reused when the call returns.
    func copyToDevice(device: Int, _ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int)
    /// Waits for the device's stream, then copies: `dst` holds the elements when the call returns.
    func copyToHost(device: Int, _ dst: UnsafeMutableRawPointer, from src: CUDADevicePointer, byteCount: Int)
    func copyOnDevice(device: Int, _ dst: CUDADevicePointer, from src: CUDADevicePointer, byteCount: Int)
    /// Page-locked host memory (`cuMemAllocHost_v2`) for `copyToDeviceAsync`; nil when the driver
    /// cannot lock that much.
    func allocatePinned(device: Int, byteCount: Int) -> UnsafeMutableRawPointer?
    /// Frees pinned memory after the copies that read it.
    func freePinned(device: Int, _ pointer: UnsafeMutableRawPointer)
    /// Queues a copy from pinned memory on the device's stream (`cuMemcpyHtoDAsync_v2`) and returns
    /// at once: `src` must come from `allocatePinned` and stay unchanged until `synchronize(device:)`.
    func copyToDeviceAsync(device: Int, _ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int)
    /// `cuLaunchKernel` of a kernels.cu function over a 1-d grid: `params` as the driver takes
    /// them (one pointer per parameter, pointing at its value).
    func launch(device: Int, kernel: String, grid: Int, block: Int, params: UnsafeMutablePointer<UnsafeMutableRawPointer?>)
    func gemm(device: Int, _ call: CUDAGemmCall)
    /// Waits for the device's stream.
    func synchronize(device: Int)
}

/// Which driver CUDA tensors use: the task's (`withCUDADriver`), else the process's
/// (`FERRY_CUDA_DRIVER=mock` selects the mock, `none` no driver; otherwise libcuda.so.1 when it loads).
public enum CUDARuntime {
    @TaskLocal static var taskDriver: (any CUDADriver)?

    /// The process driver, or why there is none.
    static let processDriver: Result<any CUDADriver, TensorError> = {
        switch getenv("FERRY_CUDA_DRIVER").map({ String(cString: $0) }) ?? "" {
        case "mock": return .success(MockCUDADriver.shared)
        case "none": return .failure(.deviceUnavailable(device: "cuda", hint: "FERRY_CUDA_DRIVER=none turns CUDA off"))
        case "", "cuda", "system": return SystemCUDADriver.load().map { $0 as any CUDADriver }
        case let other:
            return .failure(.deviceUnavailable(device: "cuda", hint: "FERRY_CUDA_DRIVER=\(other): expected mock, none or cuda"))
        }
    }()

    /// The driver in effect here, or why there is none.
    public static var current: Result<any CUDADriver, TensorError> {
        if let d = taskDriver { return .success(d) }
        return processDriver
    }

    /// The driver for an op that needs one, or a stop that says why there is none.
    static func require(_ what: @autoclosure () -> String) -> any CUDADriver {
        switch current {
        case .success(let d): return d
        case .failure(let e): usageError("\(what()): CUDA is not available: \(e)")
        }
    }

    /// The context (allocator, stream) of `device` under the driver in effect.
    static func context(_ device: Int, for what: @autoclosure () -> String) -> CUDAContext {
        let driver = require(what())
        let count = driver.deviceCount()
        if device < 0 || device >= count {
            usageError("\(what()): cuda:\(device) does not exist (\(count) CUDA device(s) under the \(driver.name) driver)")
        }
        return CUDAContext.of(driver, device)
    }
}

/// Runs `body` with `driver` as the CUDA driver of this task (and tasks it creates), e.g.
/// `withCUDADriver(.mock) { … }` in a test.
public func withCUDADriver<R>(_ driver: any CUDADriver, _ body: () throws -> R) rethrows -> R {
    try CUDARuntime.$taskDriver.withValue(driver, operation: body)
}

/// The async form of `withCUDADriver`.
public func withCUDADriver<R>(_ driver: any CUDADriver, _ body: () async throws -> R) async rethrows -> R {
    try await CUDARuntime.$taskDriver.withValue(driver, operation: body)
}

extension CUDADriver where Self == MockCUDADriver {
    /// The process-wide CPU stand-in (see MockCUDADriver).
    public static var mock: MockCUDADriver { MockCUDADriver.shared }
}

/// One device under one driver: its caching allocator and pinned staging buffer. Contexts live as
/// long as the process.
final class CUDAContext: @unchecked Sendable {
    let driver: any CUDADriver
    let index: Int
    let allocator: CUDACachingAllocator
    let staging: CUDAStaging

    private init(driver: any CUDADriver, index: Int) {
        self.driver = driver
        self.index = index
        self.allocator = CUDACachingAllocator(driver: driver, device: index)
        self.staging = CUDAStaging(driver: driver, device: index)
    }

    private static let all = Mutex<[ContextKey: CUDAContext]>([:])
    private struct ContextKey: Hashable { let driver: ObjectIdentifier; let index: Int }

    static func of(_ driver: any CUDADriver, _ index: Int) -> CUDAContext {
        all.withLock { m in
            let key = ContextKey(driver: ObjectIdentifier(driver), index: index)
            if let c = m[key] { return c }
            let c = CUDAContext(driver: driver, index: index)
            m[key] = c
            return c
        }
    }
}
