import Synchronization
import System
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The real driver: libcuda.so.1 (driver API, versioned symbols, primary context), cuBLAS and
/// NVRTC by dlopen; kernels.cu compiled by NVRTC to a CUBIN for the device's exact sm_XY on first
/// use and cached in `$FERRY_HOME/cuda` by (source hash, NVRTC version, arch).
/// Each device's work goes on one stream created with CU_STREAM_NON_BLOCKING (launches, cuBLAS
/// through cublasSetStream_v2, async copies); reads to the host synchronise that stream.
/// It mirrors MockCUDADriver call for call; it has not run on a GPU in this repository's CI.
final class SystemCUDADriver: CUDADriver, @unchecked Sendable {
    typealias CUresult = Int32
    private let cuda: UnsafeMutableRawPointer
    let driverVersion: Int32
    private let count: Int
    private var contexts: [OpaquePointer?] = []
    /// Each device's non-blocking stream (CUstream), made with its context.
    private var streams: [OpaquePointer?] = []
    private let lock = Mutex(())
    private var modules: [Int: OpaquePointer] = [:]
    private var functions: [String: OpaquePointer] = [:]
    private var blas: [Int: OpaquePointer] = [:]
    private var libraries: (cublas: UnsafeMutableRawPointer, nvrtc: UnsafeMutableRawPointer)?

    var name: String { "cuda \(driverVersion / 1000).\(driverVersion % 1000 / 10) (libcuda.so.1)" }

    private init(handle: UnsafeMutableRawPointer, version: Int32, count: Int) {
        cuda = handle; driverVersion = version; self.count = count
        contexts = Array(repeating: nil, count: count)
        streams = Array(repeating: nil, count: count)
    }

    /// libcuda.so.1 loaded and initialised, with at least one device; or why not.
    static func load() -> Result<SystemCUDADriver, TensorError> {
        guard let h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(.deviceUnavailable(device: "cuda", hint: "no CUDA driver (libcuda.so.1: \(why)); run on a GPU host, or set FERRY_CUDA_DRIVER=mock for the CPU stand-in"))
        }
        typealias F1 = @convention(c) (UInt32) -> CUresult
        typealias FI = @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
        guard let i = dlsym(h, "cuInit"), let v = dlsym(h, "cuDriverGetVersion"), let c = dlsym(h, "cuDeviceGetCount") else {
            return .failure(.deviceUnavailable(device: "cuda", hint: "libcuda.so.1 lacks cuInit/cuDriverGetVersion/cuDeviceGetCount"))
        }
        let st = unsafeBitCast(i, to: F1.self)(0)
        if st != 0 { return .failure(.deviceUnavailable(device: "cuda", hint: "cuInit failed with CUDA error \(st)")) }
        var version: Int32 = 0, n: Int32 = 0
        _ = unsafeBitCast(v, to: FI.self)(&version)
        _ = unsafeBitCast(c, to: FI.self)(&n)
        if n <= 0 { return .failure(.deviceUnavailable(device: "cuda", hint: "the CUDA driver reports no devices")) }
        // Every entry point this driver calls, by its versioned name (CUDA 13's cuda.h maps the
        // plain names onto these): a driver that lacks one is refused here, not mid-training.
        let missing = requiredSymbols.filter { dlsym(h, $0) == nil }
        if !missing.isEmpty {
            return .failure(.deviceUnavailable(device: "cuda", hint: "libcuda.so.1 (driver \(version)) lacks \(missing.joined(separator: ", ")); update the NVIDIA driver"))
        }
        return .success(SystemCUDADriver(handle: h, version: version, count: Int(n)))
    }

    static let requiredSymbols = ["cuDeviceGet", "cuDevicePrimaryCtxRetain", "cuCtxSetCurrent", "cuDeviceGetName", "cuMemGetInfo_v2",
                                  "cuMemAlloc_v2", "cuMemFree_v2", "cuMemAllocHost_v2", "cuMemFreeHost",
                                  "cuStreamCreate", "cuStreamSynchronize",
                                  "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2",
                                  "cuDeviceGetAttribute", "cuModuleLoadData", "cuModuleGetFunction", "cuLaunchKernel"]

    private func sym<T>(_ lib: UnsafeMutableRawPointer, _ name: String, _: T.Type) -> T {
        guard let s = dlsym(lib, name) else { usageError("CUDA: symbol \(name) not found") }
        return unsafeBitCast(s, to: T.self)
    }

    private func check(_ r: CUresult, _ call: String) {
        if r != 0 { usageError("CUDA: \(call) failed with error \(r)") }
    }

    /// The primary context of `device`, current on this thread (every thread that calls the driver);
    /// returns the device's stream, created non-blocking with the context.
    @discardableResult
    private func makeCurrent(_ device: Int) -> OpaquePointer? {
        typealias Get = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> CUresult
        typealias Retain = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32) -> CUresult
        typealias SetCurrent = @convention(c) (OpaquePointer?) -> CUresult
        typealias StreamCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UInt32) -> CUresult
        let (ctx, stream): (OpaquePointer?, OpaquePointer?) = lock.withLock { _ in
            if let c = contexts[device] { return (c, streams[device]) }
            var dev: Int32 = 0
            check(sym(cuda, "cuDeviceGet", Get.self)(&dev, Int32(device)), "cuDeviceGet")
            var c: OpaquePointer?
            check(sym(cuda, "cuDevicePrimaryCtxRetain", Retain.self)(&c, dev), "cuDevicePrimaryCtxRetain")
            check(sym(cuda, "cuCtxSetCurrent", SetCurrent.self)(c), "cuCtxSetCurrent")
            var s: OpaquePointer?
            check(sym(cuda, "cuStreamCreate", StreamCreate.self)(&s, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate")
            contexts[device] = c
            streams[device] = s
            return (c, s)
        }
        check(sym(cuda, "cuCtxSetCurrent", SetCurrent.self)(ctx), "cuCtxSetCurrent")
        return stream
    }

    private func streamSynchronize(_ stream: OpaquePointer?) {
        typealias F = @convention(c) (OpaquePointer?) -> CUresult
        check(sym(cuda, "cuStreamSynchronize", F.self)(stream), "cuStreamSynchronize")
    }

    func deviceCount() -> Int { count }

    func deviceName(_ device: Int) -> String {
        typealias F = @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> CUresult
        var buf = [CChar](repeating: 0, count: 256)
        _ = sym(cuda, "cuDeviceGetName", F.self)(&buf, 256, Int32(device))
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func memoryInfo(device: Int) -> (free: Int, total: Int) {
        makeCurrent(device)
        typealias F = @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> CUresult
        var f = 0, t = 0
        check(sym(cuda, "cuMemGetInfo_v2", F.self)(&f, &t), "cuMemGetInfo_v2")
        return (f, t)
    }

    func allocate(device: Int, byteCount: Int) -> CUDADevicePointer? {
        makeCurrent(device)
        typealias F = @convention(c) (UnsafeMutablePointer<UInt64>, Int) -> CUresult
        var p: UInt64 = 0
        let r = sym(cuda, "cuMemAlloc_v2", F.self)(&p, byteCount)
        if r == 2 /* CUDA_ERROR_OUT_OF_MEMORY */ { return nil }
        check(r, "cuMemAlloc_v2(\(byteCount))")
        return p
    }

    func free(device: Int, _ pointer: CUDADevicePointer) {
        makeCurrent(device)
        typealias F = @convention(c) (UInt64) -> CUresult
        check(sym(cuda, "cuMemFree_v2", F.self)(pointer), "cuMemFree_v2")
    }

    private typealias HtoDAsync = @convention(c) (UInt64, UnsafeRawPointer, Int, OpaquePointer?) -> CUresult

    /// From pageable memory: queued on the stream, then waited for, so `src` is free on return.
    func copyToDevice(device: Int, _ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int) {
        let stream = makeCurrent(device)
        check(sym(cuda, "cuMemcpyHtoDAsync_v2", HtoDAsync.self)(dst, src, byteCount, stream), "cuMemcpyHtoDAsync_v2")
        streamSynchronize(stream)
    }

    func copyToDeviceAsync(device: Int, _ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int) {
        let stream = makeCurrent(device)
        check(sym(cuda, "cuMemcpyHtoDAsync_v2", HtoDAsync.self)(dst, src, byteCount, stream), "cuMemcpyHtoDAsync_v2")
    }

    func copyToHost(device: Int, _ dst: UnsafeMutableRawPointer, from src: CUDADevicePointer, byteCount: Int) {
        let stream = makeCurrent(device)
        typealias F = @convention(c) (UnsafeMutableRawPointer, UInt64, Int, OpaquePointer?) -> CUresult
        check(sym(cuda, "cuMemcpyDtoHAsync_v2", F.self)(dst, src, byteCount, stream), "cuMemcpyDtoHAsync_v2")
        streamSynchronize(stream)
    }

    func copyOnDevice(device: Int, _ dst: CUDADevicePointer, from src: CUDADevicePointer, byteCount: Int) {
        let stream = makeCurrent(device)
        typealias F = @convention(c) (UInt64, UInt64, Int, OpaquePointer?) -> CUresult
        check(sym(cuda, "cuMemcpyDtoDAsync_v2", F.self)(dst, src, byteCount, stream), "cuMemcpyDtoDAsync_v2")
    }

    func allocatePinned(device: Int, byteCount: Int) -> UnsafeMutableRawPointer? {
        makeCurrent(device)
        typealias F = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int) -> CUresult
        var p: UnsafeMutableRawPointer?
        return sym(cuda, "cuMemAllocHost_v2", F.self)(&p, byteCount) == 0 ? p : nil
    }

    func freePinned(device: Int, _ pointer: UnsafeMutableRawPointer) {
        synchronize(device: device)
        typealias F = @convention(c) (UnsafeMutableRawPointer) -> CUresult
        check(sym(cuda, "cuMemFreeHost", F.self)(pointer), "cuMemFreeHost")
    }

    func synchronize(device: Int) {
        streamSynchronize(makeCurrent(device))
    }

    // MARK: libraries

    /// cuBLAS and NVRTC of the family the driver supports (CUDA 13 from driver 13000 on, else 12).
    private func requireLibraries() -> (cublas: UnsafeMutableRawPointer, nvrtc: UnsafeMutableRawPointer) {
        lock.withLock { _ in
            if let l = libraries { return l }
            let family = driverVersion >= 13000 ? 13 : 12
            let dirs = CUDALibrarySearch.directories()
            func open(_ soname: String) -> UnsafeMutableRawPointer {
                var tried: [String] = []
                if let h = dlopen(soname, RTLD_NOW | RTLD_GLOBAL) { return h }
                tried.append("\(soname) (loader cache)")
                for d in dirs {
                    let p = d + "/" + soname
                    if let h = dlopen(p, RTLD_NOW | RTLD_GLOBAL) { return h }
                    tried.append(p)
                }
                let pkg = family == 13 ? "nvidia-cublas nvidia-cuda-nvrtc" : "nvidia-cublas-cu12 nvidia-cuda-nvrtc-cu12"
                usageError(TensorError.libraryUnavailable(name: soname, tried: tried,
                    hint: "install it with: python3 -m pip install --target \"$FERRY_HOME/cuda\" \(pkg)").description)
            }
            let l = (open("libcublas.so.\(family)"), open("libnvrtc.so.\(family)"))
            libraries = l
            return l
        }
    }

    private func computeCapability(_ device: Int) -> Int {
        typealias F = @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> CUresult
        var major: Int32 = 0, minor: Int32 = 0
        check(sym(cuda, "cuDeviceGetAttribute", F.self)(&major, 75, Int32(device)), "cuDeviceGetAttribute(major)")
        check(sym(cuda, "cuDeviceGetAttribute", F.self)(&minor, 76, Int32(device)), "cuDeviceGetAttribute(minor)")
        return Int(major * 10 + minor)
    }

    /// The module of kernels.cu for `device`, from the on-disk CUBIN cache or NVRTC.
    private func module(_ device: Int) -> OpaquePointer {
        if let m = lock.withLock({ _ in modules[device] }) { return m }
        let nvrtc = requireLibraries().nvrtc
        let arch = computeCapability(device)
        let cubin = NVRTC(library: nvrtc).cubin(source: CUDAKernelSource.kernels, arch: arch)
        typealias Load = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UnsafeRawPointer) -> CUresult
        var m: OpaquePointer?
        cubin.withUnsafeBytes { check(sym(cuda, "cuModuleLoadData", Load.self)(&m, $0.baseAddress!), "cuModuleLoadData") }
        lock.withLock { _ in modules[device] = m }
        return m!
    }

    func launch(device: Int, kernel: String, grid: Int, block: Int, params: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        let stream = makeCurrent(device)
        let key = "\(device)/\(kernel)"
        var f = lock.withLock { _ in functions[key] }
        if f == nil {
            typealias Get = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, OpaquePointer, UnsafePointer<CChar>) -> CUresult
            var fn: OpaquePointer?
            check(sym(cuda, "cuModuleGetFunction", Get.self)(&fn, module(device), kernel), "cuModuleGetFunction(\(kernel))")
            lock.withLock { _ in functions[key] = fn }
            f = fn
        }
        typealias Launch = @convention(c) (OpaquePointer, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                                           OpaquePointer?, UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> CUresult
        check(sym(cuda, "cuLaunchKernel", Launch.self)(f!, UInt32(grid), 1, 1, UInt32(block), 1, 1, 0, stream, params, nil), "cuLaunchKernel(\(kernel))")
    }

    func gemm(device: Int, _ g: CUDAGemmCall) {
        let stream = makeCurrent(device)
        let lib = requireLibraries().cublas
        let handle: OpaquePointer = lock.withLock { _ in
            if let h = blas[device] { return h }
            typealias Create = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
            var h: OpaquePointer?
            let st = sym(lib, "cublasCreate_v2", Create.self)(&h)
            if st != 0 { usageError("cuBLAS: cublasCreate_v2 failed with status \(st)") }
            blas[device] = h
            return h!
        }
        // The handle's work goes on the device's stream (a cheap call; also right after a handle is made).
        typealias SetStream = @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32
        let ss = sym(lib, "cublasSetStream_v2", SetStream.self)(handle, stream)
        if ss != 0 { usageError("cuBLAS: cublasSetStream_v2 failed with status \(ss)") }
        typealias Mode = @convention(c) (OpaquePointer, Int32) -> Int32
        _ = sym(lib, "cublasSetMathMode", Mode.self)(handle, g.allowTF32 && g.dtype == .float32 ? 3 : 0)
        let ta: Int32 = g.transA ? 1 : 0, tb: Int32 = g.transB ? 1 : 0
        var st: Int32
        if g.dtype == .float32 {
            var alpha = Float(g.alpha), beta = Float(g.beta)
            typealias S = @convention(c) (OpaquePointer, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Float>, UInt64, Int32, Int64,
                                          UInt64, Int32, Int64, UnsafePointer<Float>, UInt64, Int32, Int64, Int32) -> Int32
            st = sym(lib, "cublasSgemmStridedBatched", S.self)(handle, ta, tb, Int32(g.m), Int32(g.n), Int32(g.k), &alpha,
                g.a, Int32(g.lda), Int64(g.strideA), g.b, Int32(g.ldb), Int64(g.strideB), &beta, g.c, Int32(g.ldc), Int64(g.strideC), Int32(g.batch))
        } else {
            var alpha = g.alpha, beta = g.beta
            typealias D = @convention(c) (OpaquePointer, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Double>, UInt64, Int32, Int64,
                                          UInt64, Int32, Int64, UnsafePointer<Double>, UInt64, Int32, Int64, Int32) -> Int32
            st = sym(lib, "cublasDgemmStridedBatched", D.self)(handle, ta, tb, Int32(g.m), Int32(g.n), Int32(g.k), &alpha,
                g.a, Int32(g.lda), Int64(g.strideA), g.b, Int32(g.ldb), Int64(g.strideB), &beta, g.c, Int32(g.ldc), Int64(g.strideC), Int32(g.batch))
        }
        if st != 0 { usageError("cuBLAS: GEMM (\(g.dtype), m=\(g.m) n=\(g.n) k=\(g.k) batch=\(g.batch)) failed with status \(st)") }
    }
}

/// NVRTC: kernels.cu to a CUBIN for sm_XY, cached on disk.
struct NVRTC {
    let library: UnsafeMutableRawPointer

    private func sym<T>(_ name: String, _: T.Type) -> T {
        guard let s = dlsym(library, name) else { usageError("NVRTC: symbol \(name) not found") }
        return unsafeBitCast(s, to: T.self)
    }

    var version: (Int32, Int32) {
        typealias F = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
        var a: Int32 = 0, b: Int32 = 0
        _ = sym("nvrtcVersion", F.self)(&a, &b)
        return (a, b)
    }

    func cubin(source: String, arch: Int) -> [UInt8] {
        let v = version
        let cache = MockKernelLibrary.cacheDirectory + "/kernels-\(MockKernelLibrary.sourceHash)-nvrtc\(v.0).\(v.1)-sm_\(arch).cubin"
        if let f = fopen(cache, "r") {
            defer { fclose(f) }
            var bytes: [UInt8] = [], buf = [UInt8](repeating: 0, count: 1 << 16)
            while true { let n = fread(&buf, 1, buf.count, f); if n <= 0 { break }; bytes += buf[0..<n] }
            if !bytes.isEmpty { return bytes }
        }
        typealias Create = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
        typealias Compile = @convention(c) (OpaquePointer, Int32, UnsafePointer<UnsafePointer<CChar>?>) -> Int32
        typealias Size = @convention(c) (OpaquePointer, UnsafeMutablePointer<Int>) -> Int32
        typealias Get = @convention(c) (OpaquePointer, UnsafeMutablePointer<CChar>) -> Int32
        typealias Destroy = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
        var prog: OpaquePointer?
        _ = sym("nvrtcCreateProgram", Create.self)(&prog, source, "kernels.cu", 0, nil, nil)
        defer { _ = sym("nvrtcDestroyProgram", Destroy.self)(&prog) }
        let options = ["--gpu-architecture=sm_\(arch)", "-default-device", "--std=c++17"]
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { Glibc.free($0) } }
        let st = cOptions.map { UnsafePointer($0) }.withUnsafeBufferPointer {
            sym("nvrtcCompileProgram", Compile.self)(prog!, Int32(options.count), $0.baseAddress!)
        }
        if st != 0 {
            var n = 0
            _ = sym("nvrtcGetProgramLogSize", Size.self)(prog!, &n)
            var log = [CChar](repeating: 0, count: n + 1)
            _ = sym("nvrtcGetProgramLog", Get.self)(prog!, &log)
            usageError("NVRTC could not compile kernels.cu for sm_\(arch): \(String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        var n = 0
        _ = sym("nvrtcGetCUBINSize", Size.self)(prog!, &n)
        var bin = [CChar](repeating: 0, count: n)
        _ = sym("nvrtcGetCUBIN", Get.self)(prog!, &bin)
        let bytes = bin.map { UInt8(bitPattern: $0) }
        try? AtomicFile.write(bytes, to: cache)
        return bytes
    }
}

/// Where cuBLAS and NVRTC may live on a GPU host, in the order they are tried after the loader cache.
public enum CUDALibrarySearch {
    public static func directories() -> [String] {
        var dirs: [String] = []
        let env = { (k: String) in getenv(k).map { String(cString: $0) } }
        if let d = env("FERRY_CUDA_LIB_DIR"), !d.isEmpty { dirs.append(d) }
        dirs.append("/usr/local/cuda/lib64")
        // nvidia/*/lib under the site-packages of every python3 on PATH (PyTorch's wheels).
        for p in (env("PATH") ?? "").split(separator: ":") where access("\(p)/python3", X_OK) == 0 {
            let prefix = String(p).hasSuffix("/bin") ? String(p.dropLast(4)) : String(p)
            for lib in ["lib", "lib64"] {
                for site in listDirectory("\(prefix)/\(lib)").filter({ $0.hasPrefix("python3") }) {
                    let nvidia = "\(prefix)/\(lib)/\(site)/site-packages/nvidia"
                    for sub in listDirectory(nvidia).sorted() { dirs.append("\(nvidia)/\(sub)/lib") }
                }
            }
        }
        let home = env("FERRY_HOME").flatMap { $0.isEmpty ? nil : $0 } ?? ((env("HOME") ?? "/tmp") + "/.ferry")
        dirs.append(home + "/cuda")
        for sub in listDirectory(home + "/cuda/nvidia").sorted() { dirs.append(home + "/cuda/nvidia/\(sub)/lib") }
        var seen = Set<String>()
        return dirs.filter { seen.insert($0).inserted }
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

extension CUDALibrarySearch {
    /// Where `soname` would load from: the first search directory that has it, or "loader cache"
    /// when only the dynamic loader finds it; nil when nowhere.
    public static func locate(_ soname: String) -> String? {
        for d in directories() where access(d + "/" + soname, R_OK) == 0 { return d + "/" + soname }
        if let h = dlopen(soname, RTLD_LAZY | RTLD_LOCAL) { dlclose(h); return "\(soname) (loader cache)" }
        return nil
    }

    /// The cuBLAS and NVRTC sonames of the family a driver version needs (CUDA 13 from 13000 on).
    public static func requiredLibraries(driverVersion: Int) -> (sonames: [String], install: String) {
        driverVersion >= 13000
            ? (["libcublas.so.13", "libnvrtc.so.13"], "python3 -m pip install --target \"$FERRY_HOME/cuda\" nvidia-cublas nvidia-cuda-nvrtc")
            : (["libcublas.so.12", "libnvrtc.so.12"], "python3 -m pip install --target \"$FERRY_HOME/cuda\" nvidia-cublas-cu12 nvidia-cuda-nvrtc-cu12")
    }
}

extension CUDARuntime {
    /// What `ferry doctor` shows: the driver, each device with its memory, and for the real driver
    /// where cuBLAS and NVRTC load from (or the one command that installs them).
    public static func report() -> (available: Bool, lines: [String], missingLibraries: String?) {
        let driver: any CUDADriver
        switch current {
        case .success(let d): driver = d
        case .failure(let e): return (false, ["\(e)"], nil)
        }
        var lines = ["driver: \(driver.name)"]
        for i in 0..<driver.deviceCount() {
            let mem = driver.memoryInfo(device: i)
            lines.append(String(format: "cuda:%d %@, %.1f GiB (%.1f GiB free)", i, driver.deviceName(i),
                                Double(mem.total) / 1_073_741_824, Double(mem.free) / 1_073_741_824))
        }
        guard let system = driver as? SystemCUDADriver else { return (true, lines, nil) }
        let need = CUDALibrarySearch.requiredLibraries(driverVersion: Int(system.driverVersion))
        var missing = false
        for name in need.sonames {
            if let at = CUDALibrarySearch.locate(name) { lines.append("\(name): \(at)") } else { lines.append("\(name): not found"); missing = true }
        }
        return (true, lines, missing ? need.install : nil)
    }
}
