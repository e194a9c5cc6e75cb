/// The kernels.cu operation behind each CPU element kernel type, so `Map` sends a device
/// operand to the same operation on the GPU.
struct CUDAMapOp {
    enum Kernel { case unary, binary, compare }
    var kernel: Kernel
    var code: Int
    var p0: Double = .nan, p1: Double = .nan
}

protocol CUDAMapped { var cudaOp: CUDAMapOp { get } }

@inline(never) func cudaParameter(_ v: Any) -> Double {
    switch v {
    case let f as Float: return Double(f)
    case let d as Double: return d
    case let i as Int64: return Double(i)
    default: return .nan
    }
}

extension NegK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 0) } }
extension AbsK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 4) } }
extension ReluK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 5) } }
extension SignK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 9) } }
extension SquareK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 10) } }
extension ScaleK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 11, p0: cudaParameter(factor)) } }
extension ClampK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 12, p0: cudaParameter(lo), p1: cudaParameter(hi)) } }
extension SqrtK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 3) } }
extension NotK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 14) } }

extension AddK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 0) } }
extension SubK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 1) } }
extension MulK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 2) } }
extension DivK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 3) } }
extension MaxK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 4) } }
extension MinK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 5) } }
extension WrapAddK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 0) } }
extension WrapSubK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 1) } }
extension WrapMulK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 2) } }
extension IntMaxK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 4) } }
extension IntMinK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 5) } }
extension AxpyK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 10, p0: cudaParameter(alpha)) } }

extension EqK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 0) } }
extension NeK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 1) } }
extension LtK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 2) } }
extension LeK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 3) } }
extension GtK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 4) } }
extension GeK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 5) } }
extension AndK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 6) } }
extension OrK: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .compare, code: 7) } }

extension ExpV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 1) } }
extension LogV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 2) } }
extension SigmoidV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 6) } }
extension TanhV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 7) } }
extension GeluV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 8) } }
extension ErfV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .unary, code: 13) } }
extension ReluBackwardV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 7) } }
extension SigmoidBackwardV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 8) } }
extension TanhBackwardV: CUDAMapped { var cudaOp: CUDAMapOp { .init(kernel: .binary, code: 9) } }

extension CUDAOps {
    @inline(never)
    static func noKernel(_ out: Tensor) -> Never {
        usageError("an element operation on \(out.device) with no CUDA kernel yet (int64/bool corner case); call .cpu() first")
    }

    /// `Map`'s device path: the element kernel `f` applied by its kernels.cu counterpart.
    @inline(never)
    static func mapped(_ f: Any, _ operands: [Tensor], into out: Tensor) {
        if f is GeluBackwardV {
            // g * gelu'(x)
            let d = unary(operands[1].contiguous(), op: 15)
            binary(operands[0], d, out, op: 2)
            return
        }
        guard let m = (f as? CUDAMapped)?.cudaOp else {
            usageError("\(type(of: f)) on \(out.device): this element operation has no CUDA kernel yet; call .cpu() first")
        }
        switch m.kernel {
        case .unary: unary(operands[0], out, op: m.code, m.p0, m.p1)
        case .binary: binary(operands[0], operands[1], out, op: m.code, alpha: m.p0)
        case .compare: compare(operands[0], operands[1], out, op: m.code)
        }
    }
}
