import CDNNL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// oneDNN, opened with `dlopen` at first use so that a host without libdnnl still runs ferry's
/// runner side (agent, jobs, tunnels). GEMM goes through `dnnl_sgemm`, which picks its kernels by
/// CPU itself (unlike Debian's OpenBLAS 0.3.21, which silently falls back on unknown CPUs).
public enum DNNL {
    /// Resolved entry points. C function pointers are plain values; sharing them is safe.
    struct Library: @unchecked Sendable {
        let sgemm: ferry_dnnl_sgemm_fn
        let version: ferry_dnnl_version_fn
        let effectiveISA: ferry_dnnl_get_effective_cpu_isa_fn?
    }

    /// Library names tried in order; `FERRY_DNNL_LIBRARY` names an explicit path first.
    static var candidateNames: [String] {
        var names = ["libdnnl.so.2", "libdnnl.so.3", "libdnnl.so", "libdnnl.dylib"]
        if let explicit = getenv("FERRY_DNNL_LIBRARY") { names.insert(String(cString: explicit), at: 0) }
        return names
    }

    static let library: Result<Library, TensorError> = load()

    private static func load() -> Result<Library, TensorError> {
        // libgomp reads its wait policy once, when it loads (oneDNN pulls it in). Its default spins
        // ~300k iterations at every barrier, which on a shared or oversubscribed machine burns the
        // core a descheduled teammate needs; a short spin keeps back-to-back regions fast without that.
        if getenv("GOMP_SPINCOUNT") == nil && getenv("OMP_WAIT_POLICY") == nil { setenv("GOMP_SPINCOUNT", "20000", 0) }
        var tried: [String] = []
        for name in candidateNames {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) else {
                if let err = dlerror() { tried.append(String(cString: err)) } else { tried.append(name) }
                continue
            }
            guard let sgemm = dlsym(handle, "dnnl_sgemm"), let version = dlsym(handle, "dnnl_version") else {
                tried.append("\(name): no dnnl_sgemm/dnnl_version symbol")
                continue
            }
            let isa = dlsym(handle, "dnnl_get_effective_cpu_isa")
            return .success(Library(
                sgemm: unsafeBitCast(sgemm, to: ferry_dnnl_sgemm_fn.self),
                version: unsafeBitCast(version, to: ferry_dnnl_version_fn.self),
                effectiveISA: isa.map { unsafeBitCast($0, to: ferry_dnnl_get_effective_cpu_isa_fn.self) }))
        }
        return .failure(.libraryUnavailable(name: "oneDNN (libdnnl)", tried: tried,
                                            hint: "install Debian's libdnnl2 (apt-get install libdnnl2), or set FERRY_DNNL_LIBRARY to its path"))
    }

    /// Whether libdnnl could be opened on this machine.
    public static var isAvailable: Bool { if case .success = library { return true } else { return false } }

    /// The loaded library, or the error that says how to get it.
    static func require() -> Library {
        switch library {
        case .success(let lib): return lib
        case .failure(let error): fatalError("\(error)")
        }
    }

    /// oneDNN's version as "major.minor.patch", or the reason it is unavailable.
    public static func versionString() throws -> String {
        let lib = try library.get()
        guard let v = lib.version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    /// The instruction set oneDNN dispatches its kernels to on this CPU (e.g. "avx2").
    public static func effectiveISA() throws -> String {
        let lib = try library.get()
        guard let isa = lib.effectiveISA?() else { return "unknown" }
        switch isa {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx512_mic: return "avx512_mic"
        case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        case dnnl_cpu_isa_all: return "all"
        default: return "isa-0x\(String(isa.rawValue, radix: 16))"
        }
    }

    /// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, with op(X) = X or Xᵀ.
    /// `lda`, `ldb`, `ldc` are row strides in elements, as in `dnnl_sgemm`.
    @inline(__always)
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        Threading.ensureConfigured()
        let status = require().sgemm(transA ? 84 /* T */ : 78 /* N */, transB ? 84 : 78,
                                     dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha,
                                     a, dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc))
        if status != dnnl_success {
            fatalError("dnnl_sgemm failed with status \(status.rawValue) for m=\(m) n=\(n) k=\(k) lda=\(lda) ldb=\(ldb) ldc=\(ldc)")
        }
    }
}
