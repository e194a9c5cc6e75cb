import Synchronization
import System
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A CPU stand-in for a CUDA GPU (like tinygrad's MOCKGPU), for machines without one: kernels.cu
/// compiled by the system C++ compiler under emulation.h into `$FERRY_HOME/cuda/mock-<hash>.so`
/// (built on first use, shared by tests and the CLI); cuBLAS answered by the CPU GEMM with the same
/// column-major arguments. Device memory is a reserved region mapped PROT_NONE except while a copy,
/// launch or GEMM runs, so host code that reads a device pointer by mistake faults. Counts every
/// launch and GEMM, so a test can tell a "GPU" op that quietly computed on the CPU.
public final class MockCUDADriver: CUDADriver, @unchecked Sendable {
    /// The process-wide mock (`FERRY_CUDA_DRIVER=mock`, `withCUDADriver(.mock)`): one device, 4 GiB.
    public static let shared = MockCUDADriver(devices: 1, memoryBytes: 4 << 30)

    public var name: String { "mock" }
    public let devices: Int
    /// Bytes each device may allocate (fixed at creation, to test out-of-memory).
    public let memoryBytes: Int

    private struct Heap {
        let base: UnsafeMutableRawPointer
        var blocks: [(offset: Int, size: Int)] = []      // live allocations, sorted by offset
        var highWater = 0
        var used = 0
    }
    private struct Counters { var launches: [String: Int] = [:]; var gemms = 0; var asyncCopies = 0 }
    private let heaps: Mutex<[Heap]>
    private let counters = Mutex(Counters())
    /// An upload queued on a device's stream, with a snapshot of its source to check that the host
    /// left the pinned memory alone until the copy ran.
    private struct PendingUpload {
        let dst: CUDADevicePointer, src: UInt, count: Int, snapshot: UInt    // addresses
        var source: UnsafeRawPointer { UnsafeRawPointer(bitPattern: src)! }
        var copy: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: snapshot)! }
    }
    private let pending = Mutex<[Int: [PendingUpload]]>([:])
    /// Pinned blocks handed out (address → size).
    private let pinned = Mutex<[UInt: Int]>([:])
    /// Launches run one at a time in the process: the emulator's grid state is global.
    private static let launchLock = Mutex(())

    /// A mock with `devices` devices of `memoryBytes` each.
    public init(devices: Int = 1, memoryBytes: Int = 1 << 30) {
        self.devices = devices
        self.memoryBytes = memoryBytes
        var hs: [Heap] = []
        for _ in 0..<devices {
            let p = mmap(nil, memoryBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let p, p != MAP_FAILED else { fatalError("mock CUDA: cannot reserve \(memoryBytes) bytes of address space") }
            hs.append(Heap(base: p))
        }
        heaps = Mutex(hs)
    }

    public func deviceCount() -> Int { devices }
    public func deviceName(_ device: Int) -> String { "ferry mock GPU (CPU stand-in)" }

    public func memoryInfo(device: Int) -> (free: Int, total: Int) {
        heaps.withLock { h in (memoryBytes - h[device].used, memoryBytes) }
    }

    public func allocate(device: Int, byteCount: Int) -> CUDADevicePointer? {
        let size = (Swift.max(byteCount, 1) + 255) & ~255
        return heaps.withLock { hs -> CUDADevicePointer? in
            var h = hs[device]
            defer { hs[device] = h }
            // First fit between live blocks.
            var at = 0, slot = h.blocks.count
            for (i, b) in h.blocks.enumerated() {
                if b.offset - at >= size { slot = i; break }
                at = b.offset + b.size
            }
            if at + size > memoryBytes { return nil }
            h.blocks.insert((at, size), at: slot)
            h.used += size
            h.highWater = Swift.max(h.highWater, at + size)
            return CUDADevicePointer(UInt(bitPattern: h.base + at))
        }
    }

    public func free(device: Int, _ pointer: CUDADevicePointer) {
        heaps.withLock { hs in
            let offset = Int(pointer) - Int(bitPattern: hs[device].base)
            guard let i = hs[device].blocks.firstIndex(where: { $0.offset == offset }) else {
                fatalError("mock CUDA: free of \(String(pointer, radix: 16)), which is not a live allocation on device \(device)")
            }
            hs[device].used -= hs[device].blocks[i].size
            hs[device].blocks.remove(at: i)
        }
    }

    /// Opens the device memory for the duration of `body` (under the launch lock). The stream runs
    /// in order: uploads queued before `body` run first.
    private func withDeviceMemory<R>(_ device: Int, _ body: () -> R) -> R {
        Self.launchLock.withLock { _ in
            let (base, length) = heaps.withLock { hs in (hs[device].base, (hs[device].highWater + 4095) & ~4095) }
            if length > 0 { mprotect(base, length, PROT_READ | PROT_WRITE) }
            defer { if length > 0 { mprotect(base, length, PROT_NONE) } }
            runPendingUploads(device)
            return body()
        }
    }

    /// The queued uploads of `device`, in order. A GPU may run them any time before the next
    /// synchronize; the mock runs them as late as it may, so a source rewritten before then is caught.
    private func runPendingUploads(_ device: Int) {
        let queue = pending.withLock { p in defer { p[device] = [] }; return p[device] ?? [] }
        for u in queue {
            defer { u.copy.deallocate() }
            if memcmp(u.source, u.copy, u.count) != 0 {
                usageError("mock CUDA: the pinned source of an asynchronous host-to-device copy (\(u.count) bytes at \(u.source)) changed before the copy ran; call synchronize(device:) before reusing the buffer")
            }
            address(u.dst).copyMemory(from: u.source, byteCount: u.count)
        }
    }

    public func allocatePinned(device: Int, byteCount: Int) -> UnsafeMutableRawPointer? {
        let p = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 4096)
        pinned.withLock { $0[UInt(bitPattern: p)] = byteCount }
        return p
    }

    public func freePinned(device: Int, _ pointer: UnsafeMutableRawPointer) {
        // Freeing pinned memory waits for the copies that read it (cuMemFreeHost synchronises).
        synchronize(device: device)
        guard pinned.withLock({ $0.removeValue(forKey: UInt(bitPattern: pointer)) }) != nil else {
            usageError("mock CUDA: freePinned of \(pointer), which allocatePinned did not return")
        }
        pointer.deallocate()
    }

    public func copyToDeviceAsync(device: Int, _ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int) {
        if byteCount == 0 { return }
        let at = UInt(bitPattern: src)
        let inPinned = pinned.withLock { blocks in blocks.contains { at >= $0.key && at + UInt(byteCount) <= $0.key + UInt($0.value) } }
        if !inPinned {
            usageError("mock CUDA: copyToDeviceAsync from \(src), which is not pinned memory from allocatePinned (pageable memory cannot be copied asynchronously)")
        }
        let snapshot = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 16)
        snapshot.copyMemory(from: src, byteCount: byteCount)
        counters.withLock { $0.asyncCopies += 1 }
        let upload = PendingUpload(dst: dst, src: UInt(bitPattern: src), count: byteCount, snapshot: UInt(bitPattern: snapshot))
        pending.withLock { $0[device, default: []].append(upload) }
    }

    private func address(_ p: CUDADevicePointer) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: UInt(p))!
    }

    public func copyToDevice(device: Int, _ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int) {
        if byteCount == 0 { return }
        withDeviceMemory(device) { address(dst).copyMemory(from: src, byteCount: byteCount) }
    }

    public func copyToHost(device: Int, _ dst: UnsafeMutableRawPointer, from src: CUDADevicePointer, byteCount: Int) {
        if byteCount == 0 { return }
        withDeviceMemory(device) { dst.copyMemory(from: address(src), byteCount: byteCount) }
    }

    public func copyOnDevice(device: Int, _ dst: CUDADevicePointer, from src: CUDADevicePointer, byteCount: Int) {
        if byteCount == 0 { return }
        withDeviceMemory(device) { address(dst).copyMemory(from: UnsafeRawPointer(address(src)), byteCount: byteCount) }
    }

    public func launch(device: Int, kernel: String, grid: Int, block: Int, params: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        let fn = MockKernelLibrary.function(kernel)
        counters.withLock { $0.launches[kernel, default: 0] += 1 }
        withDeviceMemory(device) { fn(UInt32(grid), 1, 1, UInt32(block), 1, 1, params) }
    }

    public func gemm(device: Int, _ g: CUDAGemmCall) {
        counters.withLock { $0.gemms += 1 }
        withDeviceMemory(device) {
            for b in 0..<g.batch {
                let eb = g.dtype.byteSize
                let a = address(g.a) + b * g.strideA * eb, bb = address(g.b) + b * g.strideB * eb, c = address(g.c) + b * g.strideC * eb
                if g.dtype == .float32 {
                    // Column-major C (m x n) = op(A) op(B) is row-major Cᵀ (n x m) = op(B)ᵀ op(A)ᵀ.
                    DNNL.sgemm(transA: g.transB, transB: g.transA, m: g.n, n: g.m, k: g.k, alpha: Float(g.alpha),
                               a: bb.assumingMemoryBound(to: Float.self), lda: g.ldb,
                               b: a.assumingMemoryBound(to: Float.self), ldb: g.lda,
                               beta: Float(g.beta), c: c.assumingMemoryBound(to: Float.self), ldc: g.ldc)
                } else {
                    Self.columnMajorGemm(g, a.assumingMemoryBound(to: Double.self), bb.assumingMemoryBound(to: Double.self),
                                         c.assumingMemoryBound(to: Double.self))
                }
            }
        }
    }

    /// cublasDgemm's definition, literally: C = alpha op(A) op(B) + beta C, column-major.
    static func columnMajorGemm(_ g: CUDAGemmCall, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ c: UnsafeMutablePointer<Double>) {
        for j in 0..<g.n {
            for i in 0..<g.m {
                var s = 0.0
                for p in 0..<g.k {
                    let av = g.transA ? a[p + i * g.lda] : a[i + p * g.lda]
                    let bv = g.transB ? b[j + p * g.ldb] : b[p + j * g.ldb]
                    s += av * bv
                }
                c[i + j * g.ldc] = g.alpha * s + (g.beta == 0 ? 0 : g.beta * c[i + j * g.ldc])
            }
        }
    }

    public func synchronize(device: Int) { withDeviceMemory(device) {} }

    /// Asynchronous uploads (copyToDeviceAsync) since this mock was created.
    public var asyncCopyCount: Int { counters.withLock { $0.asyncCopies } }

    /// Launches per kernel name since this mock was created.
    public var launchCounts: [String: Int] { counters.withLock { $0.launches } }
    /// All kernel launches plus cuBLAS calls.
    public var operationCount: Int { counters.withLock { $0.launches.values.reduce(0, +) + $0.gemms } }
    /// cuBLAS GEMM calls since this mock was created.
    public var gemmCount: Int { counters.withLock { $0.gemms } }
}

/// kernels.cu compiled for the CPU, loaded once per process.
enum MockKernelLibrary {
    typealias Kernel = @convention(c) (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> Void

    nonisolated(unsafe) private static let library: Result<UnsafeMutableRawPointer, TensorError> = build()
    private static let symbols = Mutex<[String: Kernel]>([:])

    static func function(_ name: String) -> Kernel {
        if let k = symbols.withLock({ $0[name] }) { return k }
        let handle: UnsafeMutableRawPointer
        switch library {
        case .success(let h): handle = h
        case .failure(let e): usageError("mock CUDA: \(e)")
        }
        guard let sym = dlsym(handle, "emu_\(name)") else { usageError("mock CUDA: kernels.cu has no kernel \(name) (emu_\(name))") }
        let k = unsafeBitCast(sym, to: Kernel.self)
        symbols.withLock { $0[name] = k }
        return k
    }

    /// FNV-1a of the texts and flags: the shared object's name.
    static var sourceHash: String {
        var h: UInt64 = 0xcbf29ce484222325
        for byte in (CUDAKernelSource.kernels + "\u{0}" + CUDAKernelSource.emulationHeader + "\u{0}" + flags.joined(separator: " ")).utf8 {
            h = (h ^ UInt64(byte)) &* 0x100000001b3
        }
        return String(h, radix: 16)
    }

    static let flags = ["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread"]

    /// `$FERRY_HOME/cuda` (default ~/.ferry/cuda).
    static var cacheDirectory: String {
        if let h = getenv("FERRY_HOME").map({ String(cString: $0) }), !h.isEmpty { return h + "/cuda" }
        let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
        return home + "/.ferry/cuda"
    }

    static var libraryPath: String { cacheDirectory + "/mock-\(sourceHash).so" }

    private static func build() -> Result<UnsafeMutableRawPointer, TensorError> {
        let path = libraryPath
        if access(path, R_OK) != 0 {
            if let e = compile(to: path, extraFlags: []) { return .failure(e) }
        }
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            return .failure(.libraryUnavailable(name: "the mock CUDA kernels", tried: [path], hint: why))
        }
        return .success(h)
    }

    /// Compiles kernels.cu under emulation.h into `output` (written to a temporary name, then
    /// renamed, so processes building at once never load a half-written file). nil on success.
    static func compile(to output: String, extraFlags: [String]) -> TensorError? {
        let dir = cacheDirectory
        let work = dir + "/build-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        do throws(SystemError) {
            try AtomicFile.makeDirectories(work)
            try AtomicFile.write(Array(CUDAKernelSource.kernels.utf8), to: work + "/kernels.cu")
            try AtomicFile.write(Array(CUDAKernelSource.emulationHeader.utf8), to: work + "/emulation.h")
        } catch {
            return .invalidFile(path: work, reason: "cannot write the mock CUDA kernel sources: \(error)")
        }
        defer {
            unlink(work + "/kernels.cu"); unlink(work + "/emulation.h"); unlink(work + "/errors.txt"); unlink(work + "/out.so"); rmdir(work)
        }
        let cxx = getenv("CXX").map { String(cString: $0) } ?? "g++"
        let args = [cxx] + flags + extraFlags + ["-include", work + "/emulation.h", "-x", "c++", work + "/kernels.cu", "-o", work + "/out.so"]
        let status: Int32
        do throws(SystemError) {
            let pid = try Spawn.start(args, stdout: .file(work + "/errors.txt", append: false), stderr: .sameAs(1))
            status = Spawn.wait(pid)
        } catch {
            return .libraryUnavailable(name: "a C++ compiler for the mock CUDA kernels", tried: [cxx], hint: "install g++ (apt-get install g++) or set CXX: \(error)")
        }
        if status != 0 {
            let errors = (try? String(contentsOfFileAt: work + "/errors.txt")) ?? ""
            return .invalidArgument("mock CUDA: \(args.joined(separator: " ")) failed (status \(status)):\n\(errors.prefix(4000))")
        }
        if rename(work + "/out.so", output) != 0 {
            return .invalidFile(path: output, reason: "cannot install the mock CUDA kernels (errno \(errno))")
        }
        return nil
    }
}

extension String {
    /// A small file's text (compiler messages).
    init(contentsOfFileAt path: String) throws {
        guard let f = fopen(path, "r") else { throw TensorError.invalidFile(path: path, reason: "cannot open") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
