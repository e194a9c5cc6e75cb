// Elementwise operations as small value types. Generic loops specialised on a kernel *type*
// inline its body into the innermost loop; a closure passed through a parallel region would
// stay an indirect call per element (measured: ~10x slower for add).

protocol UnaryKernel {
    associatedtype Input
    associatedtype Output
    func callAsFunction(_ x: Input) -> Output
}

protocol BinaryKernel {
    associatedtype Input
    associatedtype Output
    func callAsFunction(_ a: Input, _ b: Input) -> Output
}

/// Eight float32 lanes at a time.
protocol SIMDKernel {
    func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float>
}

protocol SIMDBinaryKernel {
    func callAsFunction(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float>
}

// MARK: binary arithmetic

struct AddK<T: Numeric>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a + b } }
struct SubK<T: Numeric>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a - b } }
struct MulK<T: Numeric>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a * b } }
struct DivK<T: FloatingPoint>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a / b } }
struct MaxK<T: FloatingPoint>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a.isNaN || a > b ? a : b } }
struct MinK<T: FloatingPoint>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a.isNaN || a < b ? a : b } }
struct WrapAddK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { a &+ b } }
struct WrapSubK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { a &- b } }
struct WrapMulK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { a &* b } }
struct IntMaxK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { Swift.max(a, b) } }
struct IntMinK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { Swift.min(a, b) } }
/// a + alpha·b
struct AxpyK<T: Numeric>: BinaryKernel {
    let alpha: T
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a + alpha * b }
}

// MARK: comparisons

struct EqK<T: Equatable>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a == b } }
struct NeK<T: Equatable>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a != b } }
struct LtK<T: Comparable>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a < b } }
struct LeK<T: Comparable>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a <= b } }
struct GtK<T: Comparable>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a > b } }
struct GeK<T: Comparable>: BinaryKernel { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a >= b } }
struct AndK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a && b } }
struct OrK: BinaryKernel { @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a || b } }

// MARK: unary

struct NegK<T: SignedNumeric>: UnaryKernel { @inline(__always) func callAsFunction(_ x: T) -> T { -x } }
struct ReluK<T: Comparable & Numeric>: UnaryKernel { @inline(__always) func callAsFunction(_ x: T) -> T { x > 0 ? x : 0 } }
struct AbsK<T: Comparable & SignedNumeric>: UnaryKernel { @inline(__always) func callAsFunction(_ x: T) -> T { x < 0 ? -x : x } }
struct SignK<T: Comparable & SignedNumeric>: UnaryKernel { @inline(__always) func callAsFunction(_ x: T) -> T { x > 0 ? 1 : (x < 0 ? -1 : 0) } }
struct ScaleK<T: Numeric>: UnaryKernel {
    let factor: T
    @inline(__always) func callAsFunction(_ x: T) -> T { x * factor }
}
struct ClampK<T: Comparable>: UnaryKernel {
    let lo: T, hi: T
    @inline(__always) func callAsFunction(_ x: T) -> T { x < lo ? lo : (x > hi ? hi : x) }
}
struct SqrtK<T: FloatingPoint>: UnaryKernel { @inline(__always) func callAsFunction(_ x: T) -> T { x.squareRoot() } }
struct SquareK<T: Numeric>: UnaryKernel { @inline(__always) func callAsFunction(_ x: T) -> T { x * x } }
struct NotK: UnaryKernel { @inline(__always) func callAsFunction(_ x: Bool) -> Bool { !x } }

// MARK: SIMD float32

struct ExpV: SIMDKernel { @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.exp(x) } }
struct LogV: SIMDKernel { @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.log(x) } }
struct TanhV: SIMDKernel { @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.tanh(x) } }
struct SigmoidV: SIMDKernel { @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.sigmoid(x) } }
struct GeluV: SIMDKernel { @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.gelu(x) } }
struct ErfV: SIMDKernel { @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.erf(x) } }
/// exp(x − shift), for softmax rows.
struct ShiftedExpV: SIMDKernel {
    let shift: SIMD8<Float>
    @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { VectorMath.exp(x - shift) }
}

/// g · [y > 0]
struct ReluBackwardV: SIMDBinaryKernel {
    @inline(__always) func callAsFunction(_ g: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { g.replacing(with: 0, where: y .<= 0) }
}
/// g · y(1 − y)
struct SigmoidBackwardV: SIMDBinaryKernel {
    @inline(__always) func callAsFunction(_ g: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { g * y * (1 - y) }
}
/// g · (1 − y²)
struct TanhBackwardV: SIMDBinaryKernel {
    @inline(__always) func callAsFunction(_ g: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { g * (1 - y * y) }
}
/// g · GELU′(x)
struct GeluBackwardV: SIMDBinaryKernel {
    @inline(__always) func callAsFunction(_ g: SIMD8<Float>, _ x: SIMD8<Float>) -> SIMD8<Float> { g * VectorMath.geluGrad(x) }
}
