#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

precedencegroup PowerPrecedence {
    higherThan: MultiplicationPrecedence
    associativity: right
}
/// `a ** 3`, as in Python: binds tighter than `*`.
infix operator ** : PowerPrecedence

// MARK: - binary arithmetic with broadcasting

enum ArithmeticOp { case add, sub, mul, div, maximum, minimum }

extension Tensor {
    /// The dtype a binary arithmetic op computes in (PyTorch's promotion; true division of
    /// integers gives float32; bool arithmetic computes in int64).
    static func arithmeticType(_ a: DType, _ b: DType, _ op: ArithmeticOp) -> DType {
        var dt = DType.promote(a, b)
        if dt == .bool { dt = .int64 }
        if op == .div && !dt.isFloatingPoint { dt = .float32 }
        return dt
    }

    /// PyTorch's result_type of two tensors: a 0-d operand decides the dtype only when its category
    /// (bool < integer < floating) is higher than the dimensioned operand's, so float32 [n] times a
    /// float64 0-d tensor stays float32 while int64 [n] times it becomes float64.
    static func resultType(_ a: Tensor, _ b: Tensor) -> DType {
        if (a.ndim == 0) == (b.ndim == 0) { return DType.promote(a.dtype, b.dtype) }
        let (dimensioned, zeroD) = a.ndim == 0 ? (b, a) : (a, b)
        func category(_ d: DType) -> Int { d == .bool ? 0 : (d == .int64 ? 1 : 2) }
        return category(zeroD.dtype) > category(dimensioned.dtype) ? zeroD.dtype : dimensioned.dtype
    }

    static func arithmetic(_ a: Tensor, _ b: Tensor, _ op: ArithmeticOp) -> Tensor {
        let (a, b) = onOneDevice(a, b, "\(op)")
        let promoted = resultType(a, b)
        if promoted == .bool && op != .div {
            // bool with bool stays bool in PyTorch: + is or, * is and (max/min likewise); - is refused.
            if op == .sub { usageError("subtraction of two bool tensors is not supported; use logicalNot() or convert with to(.int64)") }
            return arithmetic(a.to(.int64), b.to(.int64), op).to(.bool)
        }
        let dt = arithmeticType(promoted, promoted, op)
        let ca = a.to(dt), cb = b.to(dt)
        let out = Tensor(uninitialized: broadcastShapes(a.shape, b.shape), dtype: dt, like: ca)
        @inline(__always) func float<T: BinaryFloatingPoint>(_: T.Type) {
            switch op {
            case .add: Map.binary(ca, cb, out, AddK<T>())
            case .sub: Map.binary(ca, cb, out, SubK<T>())
            case .mul: Map.binary(ca, cb, out, MulK<T>())
            case .div: Map.binary(ca, cb, out, DivK<T>())
            case .maximum: Map.binary(ca, cb, out, MaxK<T>())
            case .minimum: Map.binary(ca, cb, out, MinK<T>())
            }
        }
        switch dt {
        case .float32: float(Float.self)
        case .float64: float(Double.self)
        case .int64:
            switch op {
            case .add: Map.binary(ca, cb, out, WrapAddK())
            case .sub: Map.binary(ca, cb, out, WrapSubK())
            case .mul: Map.binary(ca, cb, out, WrapMulK())
            case .div: usageError("unreachable: integer division computes in float")
            case .maximum: Map.binary(ca, cb, out, IntMaxK())
            case .minimum: Map.binary(ca, cb, out, IntMinK())
            }
        case .bool: usageError("unreachable: bool arithmetic computes in int64")
        }
        guard dt.isFloatingPoint else { return out }
        let needA = ca.requiresGradFlag, needB = cb.requiresGradFlag
        switch op {
        case .add:
            return out.recorded("AddBackward0", [ca, cb]) { g in
                [needA ? g.sumTo(ca.shape) : nil, needB ? g.sumTo(cb.shape) : nil]
            }
        case .sub:
            return out.recorded("SubBackward0", [ca, cb]) { g in
                [needA ? g.sumTo(ca.shape) : nil, needB ? (-g).sumTo(cb.shape) : nil]
            }
        case .mul:
            return out.recorded("MulBackward0", [ca, cb]) { g in
                [needA ? (g * cb).sumTo(ca.shape) : nil, needB ? (g * ca).sumTo(cb.shape) : nil]
            }
        case .div:
            return out.recorded("DivBackward0", [ca, cb]) { g in
                [needA ? (g / cb).sumTo(ca.shape) : nil, needB ? (-g * ca / (cb * cb)).sumTo(cb.shape) : nil]
            }
        case .maximum, .minimum:
            let name = op == .maximum ? "MaximumBackward0" : "MinimumBackward0"
            return out.recorded(name, [ca, cb]) { g in
                // Ties split the gradient evenly, as PyTorch does.
                let pickA = op == .maximum ? (ca .> cb) : (ca .< cb)
                let tie = ca.eq(cb)
                let wa = pickA.to(g.dtype) + tie.to(g.dtype) * 0.5
                let wb = 1 - wa
                return [needA ? (g * wa).sumTo(ca.shape) : nil, needB ? (g * wb).sumTo(cb.shape) : nil]
            }
        }
    }

    /// A 0-d tensor holding `value` in the dtype PyTorch gives `tensor op python-scalar`.
    static func scalarOperand(_ value: Double, for t: Tensor) -> Tensor {
        let dt: DType = t.dtype.isFloatingPoint ? t.dtype : .float32
        return Tensor.full([], value: value, dtype: dt, device: t.device)
    }

    static func scalarOperand(_ value: Int, for t: Tensor) -> Tensor {
        let dt: DType = t.dtype == .bool ? .int64 : t.dtype
        return Tensor.full([], value: value, dtype: dt, device: t.device)
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { arithmetic(a, b, .add) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { arithmetic(a, b, .sub) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { arithmetic(a, b, .mul) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { arithmetic(a, b, .div) }

    public static func + (a: Tensor, b: Double) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .add) }
    public static func - (a: Tensor, b: Double) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .sub) }
    public static func * (a: Tensor, b: Double) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .mul) }
    public static func / (a: Tensor, b: Double) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .div) }
    public static func + (a: Double, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .add) }
    public static func - (a: Double, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .sub) }
    public static func * (a: Double, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .mul) }
    public static func / (a: Double, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .div) }

    public static func + (a: Tensor, b: Int) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .add) }
    public static func - (a: Tensor, b: Int) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .sub) }
    public static func * (a: Tensor, b: Int) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .mul) }
    public static func / (a: Tensor, b: Int) -> Tensor { arithmetic(a, scalarOperand(b, for: a), .div) }
    public static func + (a: Int, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .add) }
    public static func - (a: Int, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .sub) }
    public static func * (a: Int, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .mul) }
    public static func / (a: Int, b: Tensor) -> Tensor { arithmetic(scalarOperand(a, for: b), b, .div) }

    /// Elementwise maximum of two tensors (`torch.maximum`).
    public static func maximum(_ a: Tensor, _ b: Tensor) -> Tensor { arithmetic(a, b, .maximum) }
    /// Elementwise minimum of two tensors (`torch.minimum`).
    public static func minimum(_ a: Tensor, _ b: Tensor) -> Tensor { arithmetic(a, b, .minimum) }

    public static prefix func - (a: Tensor) -> Tensor { a.neg() }

    // MARK: - in place (not recorded)

    /// `self += alpha * other` in place, `other` broadcast to this shape. For gradients and
    /// optimizer state; never on a tensor autograd saved.
    public func addInPlace(_ other: Tensor, alpha: Double = 1) {
        if !isContiguous { shapeError("addInPlace needs a contiguous tensor, got strides \(strides) for shape \(shape)") }
        let src = Tensor.onOneDevice(self, other.to(dtype), "addInPlace").1
        _ = Tensor.broadcastShapes(shape, other.shape)
        if Tensor.broadcastShapes(shape, other.shape) != shape {
            shapeError("addInPlace: \(other.shape) cannot be broadcast to \(shape)")
        }
        @inline(__always) func run<T: BinaryFloatingPoint>(_: T.Type) {
            let a = T(alpha)
            if a == 1 { Map.binary(self, src, self, AddK<T>()) } else { Map.binary(self, src, self, AxpyK<T>(alpha: a)) }
        }
        switch dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int64:
            let a = Int64(alpha)
            Map.binary(self, src, self, AxpyK<Int64>(alpha: a))
        case .bool: usageError("addInPlace on a bool tensor")
        }
    }

    /// `self *= factor` in place (not recorded).
    public func scaleInPlace(by factor: Double) {
        if !isContiguous { shapeError("scaleInPlace needs a contiguous tensor") }
        switch dtype {
        case .float32: Map.unary(self, self, ScaleK<Float>(factor: Float(factor)))
        case .float64: Map.unary(self, self, ScaleK<Double>(factor: factor))
        case .int64: Map.unary(self, self, ScaleK<Int64>(factor: Int64(factor)))
        case .bool: usageError("scaleInPlace on a bool tensor")
        }
    }

    /// Sets every element to `value` in place (`fill_`), not recorded.
    public func fill(_ value: Double) {
        let src = Tensor.full([], value: value, dtype: dtype)
        copy(from: src)
    }
}

// MARK: - unary math

extension Tensor {
    /// Applies a float-only unary function; integer inputs are converted to float32 first.
    @inline(__always)
    func floatUnary<K: SIMDKernel>(_ name: String, simd: K?, f32: (Float) -> Float, f64: (Double) -> Double) -> Tensor {
        let x = dtype.isFloatingPoint ? self : to(.float32)
        if x.storage.isOnDevice, let code = Tensor.cudaUnaryCodes[name] { return CUDAOps.unary(x, op: code) }
        switch x.dtype {
        case .float32:
            if let simd { return Map.simd(x, simd) }
            let out = Tensor(uninitialized: x.shape, dtype: .float32)
            Map.unary(x, out, Float.self, Float.self, f32)
            return out
        default:
            let out = Tensor(uninitialized: x.shape, dtype: .float64)
            Map.unary(x, out, Double.self, Double.self, f64)
            return out
        }
    }

    /// kernels.cu `unary` codes of the float functions `floatUnary` applies.
    static let cudaUnaryCodes: [String: Int] = ["exp": 1, "log": 2, "sigmoid": 6, "tanh": 7, "gelu": 8, "erf": 13, "log1p": 16]

    public func neg() -> Tensor {
        let out = Tensor(uninitialized: shape, dtype: dtype == .bool ? .int64 : dtype, like: self)
        switch dtype {
        case .float32: Map.unary(self, out, NegK<Float>())
        case .float64: Map.unary(self, out, NegK<Double>())
        case .int64: if isCUDA { CUDAOps.unary(self, out, op: 0) } else { Map.unary(self, out, Int64.self, Int64.self) { 0 &- $0 } }
        case .bool: usageError("negation of a bool tensor is not supported; use logicalNot()")
        }
        return out.recorded("NegBackward0", [self]) { g in [-g] }
    }

    public func exp() -> Tensor {
        let out = floatUnary("exp", simd: ExpV(), f32: { Foundation_expf($0) }, f64: { Foundation_exp($0) })
        let saved = out.detach()
        return out.recorded("ExpBackward0", [self]) { g in [g * saved] }
    }

    public func log() -> Tensor {
        let out = floatUnary("log", simd: LogV(), f32: { Foundation_logf($0) }, f64: { Foundation_log($0) })
        let x = self
        return out.recorded("LogBackward0", [self]) { g in [g / x] }
    }

    public func sqrt() -> Tensor {
        // Scalar Float.squareRoot() is the exact vsqrtps once the loop vectorises.
        let x = dtype.isFloatingPoint ? self : to(.float32)
        let out = Tensor(uninitialized: x.shape, dtype: x.dtype, like: x)
        if x.dtype == .float32 { Map.unary(x, out, SqrtK<Float>()) } else { Map.unary(x, out, SqrtK<Double>()) }
        let saved = out.detach()
        return out.recorded("SqrtBackward0", [self]) { g in [g / (2 * saved)] }
    }

    public func abs() -> Tensor {
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        switch dtype {
        case .float32: Map.unary(self, out, AbsK<Float>())
        case .float64: Map.unary(self, out, AbsK<Double>())
        case .int64: if isCUDA { CUDAOps.unary(self, out, op: 4) } else { Map.unary(self, out, Int64.self, Int64.self) { $0 < 0 ? 0 &- $0 : $0 } }
        case .bool: if isCUDA { CUDAOps.convert(self, into: out) } else { Map.unary(self, out, Bool.self, Bool.self) { $0 } }
        }
        let x = self
        return out.recorded("AbsBackward0", [self]) { g in [g * x.sign()] }
    }

    /// -1, 0 or 1 per element (`torch.sign`).
    public func sign() -> Tensor {
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        switch dtype {
        case .float32: Map.unary(self, out, SignK<Float>())
        case .float64: Map.unary(self, out, SignK<Double>())
        case .int64: if isCUDA { CUDAOps.unary(self, out, op: 9) } else { Map.unary(self, out, Int64.self, Int64.self) { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) } }
        case .bool: if isCUDA { CUDAOps.convert(self, into: out) } else { Map.unary(self, out, Bool.self, Bool.self) { $0 } }
        }
        return out
    }

    public func relu() -> Tensor {
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        switch dtype {
        case .float32: Map.unary(self, out, ReluK<Float>())
        case .float64: Map.unary(self, out, ReluK<Double>())
        case .int64: Map.unary(self, out, ReluK<Int64>())
        case .bool: usageError("relu of a bool tensor")
        }
        let saved = out.detach()
        return out.recorded("ReluBackward0", [self]) { g in [Tensor.reluBackward(g, output: saved)] }
    }

    /// g * (y > 0), fused.
    static func reluBackward(_ g: Tensor, output y: Tensor) -> Tensor {
        if g.dtype == .float32 && y.dtype == .float32 && g.shape == y.shape {
            return Map.simd2(g, y, ReluBackwardV())
        }
        return g * (y .> 0).to(g.dtype)
    }

    public func sigmoid() -> Tensor {
        let out = floatUnary("sigmoid", simd: SigmoidV(), f32: { 1 / (1 + Foundation_expf(-$0)) }, f64: { 1 / (1 + Foundation_exp(-$0)) })
        let saved = out.detach()
        return out.recorded("SigmoidBackward0", [self]) { g in
            if g.dtype == .float32 && g.shape == saved.shape { return [Map.simd2(g, saved, SigmoidBackwardV())] }
            return [g * saved * (1 - saved)]
        }
    }

    public func tanh() -> Tensor {
        let out = floatUnary("tanh", simd: TanhV(), f32: { Foundation_tanhf($0) }, f64: { Foundation_tanh($0) })
        let saved = out.detach()
        return out.recorded("TanhBackward0", [self]) { g in
            if g.dtype == .float32 && g.shape == saved.shape { return [Map.simd2(g, saved, TanhBackwardV())] }
            return [g * (1 - saved * saved)]
        }
    }

    /// GELU with the exact erf form (PyTorch's default `approximate='none'`).
    public func gelu() -> Tensor {
        let out = floatUnary("gelu", simd: GeluV(),
                             f32: { 0.5 * $0 * (1 + Foundation_erff($0 * 0.70710678118654752)) },
                             f64: { 0.5 * $0 * (1 + Foundation_erf($0 * 0.70710678118654752)) })
        let x = self
        return out.recorded("GeluBackward0", [self]) { g in
            if g.dtype == .float32 && x.dtype == .float32 && g.shape == x.shape {
                return [Map.simd2(g, x, GeluBackwardV())]
            }
            let xf = x.to(g.dtype)
            let cdf = 0.5 * (1 + (xf * 0.70710678118654752).erf())
            let pdf = (-0.5 * xf * xf).exp() * 0.3989422804014327
            return [g * (cdf + xf * pdf)]
        }
    }

    /// The error function, elementwise.
    public func erf() -> Tensor {
        let out = floatUnary("erf", simd: ErfV(), f32: { Foundation_erff($0) }, f64: { Foundation_erf($0) })
        let x = self
        return out.recorded("ErfBackward0", [self]) { g in
            [g * (-(x.to(g.dtype) * x.to(g.dtype))).exp() * 1.1283791670955126]
        }
    }

    /// Clamps into `[min, max]`; either bound may be nil. The gradient passes where not clamped.
    public func clamp(min lo: Double? = nil, max hi: Double? = nil) -> Tensor {
        // An integer tensor clamped to a fractional bound is float32 in PyTorch; truncating the bound
        // to an integer gave a silently different answer (clamp([0], min: 0.5) was 0, not 0.5).
        if dtype == .int64, [lo, hi].contains(where: { $0.map { $0 != $0.rounded() } ?? false }) {
            return to(.float32).clamp(min: lo, max: hi)
        }
        let out = Tensor(uninitialized: shape, dtype: dtype, like: self)
        switch dtype {
        case .float32:
            Map.unary(self, out, ClampK<Float>(lo: Float(lo ?? -.infinity), hi: Float(hi ?? .infinity)))
        case .float64:
            Map.unary(self, out, ClampK<Double>(lo: lo ?? -.infinity, hi: hi ?? .infinity))
        case .int64:
            Map.unary(self, out, ClampK<Int64>(lo: lo.map { Int64($0) } ?? .min, hi: hi.map { Int64($0) } ?? .max))
        case .bool: usageError("clamp of a bool tensor")
        }
        let x = self
        return out.recorded("ClampBackward1", [self]) { g in
            var mask = Tensor.ones(x.shape, dtype: .bool, device: x.device)
            if let lo { mask = mask.logicalAnd(x .>= lo) }
            if let hi { mask = mask.logicalAnd(x .<= hi) }
            return [g * mask.to(g.dtype)]
        }
    }

    /// `x ** exponent` elementwise. An integer tensor with an integral exponent stays integral.
    public func pow(_ exponent: Double) -> Tensor {
        if dtype == .int64 || dtype == .bool, exponent >= 0, exponent == exponent.rounded(), exponent < 64 {
            let e = Int(exponent)
            let out = Tensor(uninitialized: shape, dtype: .int64, like: self)
            let x = to(.int64)
            if x.isCUDA { CUDAOps.unary(x, out, op: 17, Double(e)); return out }
            Map.unary(x, out, Int64.self, Int64.self) { v in
                var r: Int64 = 1
                for _ in 0..<e { r = r &* v }
                return r
            }
            return out
        }
        let x = dtype.isFloatingPoint ? self : to(.float32)
        let out = Tensor(uninitialized: shape, dtype: x.dtype, like: x)
        if x.storage.isOnDevice {
            if exponent == 2 { CUDAOps.unary(x, out, op: 10) }
            else { CUDAOps.binary(x, Tensor.full([], value: exponent, dtype: x.dtype, device: x.device), out, op: 6) }
        } else if x.dtype == .float32 {
            let ef = Float(exponent)
            if exponent == 2 { Map.unary(x, out, SquareK<Float>()) }
            else if exponent == 3 { Map.unary(x, out, Float.self, Float.self) { $0 * $0 * $0 } }
            else if exponent == 0.5 { Map.unary(x, out, Float.self, Float.self) { $0.squareRoot() } }
            else { Map.unary(x, out, Float.self, Float.self) { Foundation_powf($0, ef) } }
        } else {
            Map.unary(x, out, Double.self, Double.self) { Foundation_pow($0, exponent) }
        }
        return out.recorded("PowBackward0", [x]) { g in
            if exponent == 0 { return [Tensor.zeros(like: g)] }
            if exponent == 2 { return [g * x * 2] }
            return [g * exponent * x.pow(exponent - 1)]
        }
    }

    /// `x ** e` elementwise with a tensor exponent (broadcasting).
    public func pow(_ exponent: Tensor) -> Tensor {
        if !dtype.isFloatingPoint && !exponent.dtype.isFloatingPoint {
            // int ** int stays int64, as in PyTorch (which also rejects negative exponents).
            let (x, e) = Tensor.onOneDevice(to(.int64), exponent.to(.int64), "pow")
            if let p = e.scalars(as: Int64.self).first(where: { $0 < 0 }) {
                usageError("pow: integers to negative integer powers are not allowed (exponent \(p)); convert to float first")
            }
            let out = Tensor(uninitialized: Tensor.broadcastShapes(shape, exponent.shape), dtype: .int64, like: x)
            if x.isCUDA || e.isCUDA { CUDAOps.binary(x, e, out, op: 6); return out }
            Map.binary(x, e, out, Int64.self, Int64.self) { base, power in
                var r: Int64 = 1, b = base, k = power
                while k > 0 { if k & 1 == 1 { r = r &* b }; b = b &* b; k >>= 1 }
                return r
            }
            return out
        }
        let (base, exponent) = Tensor.onOneDevice(self, exponent, "pow")
        let promoted = Tensor.resultType(base, exponent)
        let dt = Tensor.arithmeticType(promoted, promoted, .div)
        let x = base.to(dt), e = exponent.to(dt)
        let out = Tensor(uninitialized: Tensor.broadcastShapes(shape, exponent.shape), dtype: dt, like: x)
        if x.storage.isOnDevice { CUDAOps.binary(x, e, out, op: 6) }
        else if dt == .float32 { Map.binary(x, e, out, Float.self, Float.self) { Foundation_powf($0, $1) } }
        else { Map.binary(x, e, out, Double.self, Double.self) { Foundation_pow($0, $1) } }
        let saved = out.detach()
        let needX = x.requiresGradFlag, needE = e.requiresGradFlag
        return out.recorded("PowBackward1", [x, e]) { g in
            [needX ? (g * e * x.pow(e - 1)).sumTo(x.shape) : nil,
             needE ? (g * saved * x.log()).sumTo(e.shape) : nil]
        }
    }

    public static func ** (a: Tensor, b: Double) -> Tensor { a.pow(b) }
    public static func ** (a: Tensor, b: Int) -> Tensor { a.pow(Double(b)) }
    public static func ** (a: Tensor, b: Tensor) -> Tensor { a.pow(b) }
}

// MARK: - comparisons and selection

extension Tensor {
    enum Comparison { case eq, ne, lt, le, gt, ge }

    static func compare(_ a: Tensor, _ b: Tensor, _ op: Comparison) -> Tensor {
        let (a, b) = onOneDevice(a, b, "\(op)")
        let dt = DType.promote(a.dtype, b.dtype)
        let ca = a.to(dt).detach(), cb = b.to(dt).detach()
        let out = Tensor(uninitialized: broadcastShapes(a.shape, b.shape), dtype: .bool, like: ca)
        @inline(__always) func run<T: Comparable>(_: T.Type) {
            switch op {
            case .eq: Map.binary(ca, cb, out, EqK<T>())
            case .ne: Map.binary(ca, cb, out, NeK<T>())
            case .lt: Map.binary(ca, cb, out, LtK<T>())
            case .le: Map.binary(ca, cb, out, LeK<T>())
            case .gt: Map.binary(ca, cb, out, GtK<T>())
            case .ge: Map.binary(ca, cb, out, GeK<T>())
            }
        }
        switch dt {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int64: run(Int64.self)
        case .bool:
            let ia = ca.to(.int64), ib = cb.to(.int64)
            return compare(ia, ib, op)
        }
        return out
    }

    static func scalarLike(_ v: Double, _ t: Tensor) -> Tensor {
        Tensor.full([], value: v, dtype: t.dtype.isFloatingPoint ? t.dtype : (v == v.rounded() ? .int64 : .float64), device: t.device)
    }

    /// Elementwise equality (`torch.eq`), a bool tensor.
    public func eq(_ other: Tensor) -> Tensor { Tensor.compare(self, other, .eq) }
    public func eq(_ other: Double) -> Tensor { Tensor.compare(self, Tensor.scalarLike(other, self), .eq) }
    public func ne(_ other: Tensor) -> Tensor { Tensor.compare(self, other, .ne) }
    public func lt(_ other: Tensor) -> Tensor { Tensor.compare(self, other, .lt) }
    public func le(_ other: Tensor) -> Tensor { Tensor.compare(self, other, .le) }
    public func gt(_ other: Tensor) -> Tensor { Tensor.compare(self, other, .gt) }
    public func ge(_ other: Tensor) -> Tensor { Tensor.compare(self, other, .ge) }

    public static func .== (a: Tensor, b: Tensor) -> Tensor { compare(a, b, .eq) }
    public static func .!= (a: Tensor, b: Tensor) -> Tensor { compare(a, b, .ne) }
    public static func .< (a: Tensor, b: Tensor) -> Tensor { compare(a, b, .lt) }
    public static func .<= (a: Tensor, b: Tensor) -> Tensor { compare(a, b, .le) }
    public static func .> (a: Tensor, b: Tensor) -> Tensor { compare(a, b, .gt) }
    public static func .>= (a: Tensor, b: Tensor) -> Tensor { compare(a, b, .ge) }
    public static func .== (a: Tensor, b: Double) -> Tensor { compare(a, scalarLike(b, a), .eq) }
    public static func .!= (a: Tensor, b: Double) -> Tensor { compare(a, scalarLike(b, a), .ne) }
    public static func .< (a: Tensor, b: Double) -> Tensor { compare(a, scalarLike(b, a), .lt) }
    public static func .<= (a: Tensor, b: Double) -> Tensor { compare(a, scalarLike(b, a), .le) }
    public static func .> (a: Tensor, b: Double) -> Tensor { compare(a, scalarLike(b, a), .gt) }
    public static func .>= (a: Tensor, b: Double) -> Tensor { compare(a, scalarLike(b, a), .ge) }

    /// Elementwise logical and of two bool tensors.
    public func logicalAnd(_ other: Tensor) -> Tensor {
        let (a, b) = Tensor.onOneDevice(self, other, "logicalAnd")
        let out = Tensor(uninitialized: Tensor.broadcastShapes(shape, other.shape), dtype: .bool, like: a)
        Map.binary(a.to(.bool), b.to(.bool), out, AndK())
        return out
    }

    /// Elementwise logical or of two bool tensors.
    public func logicalOr(_ other: Tensor) -> Tensor {
        let (a, b) = Tensor.onOneDevice(self, other, "logicalOr")
        let out = Tensor(uninitialized: Tensor.broadcastShapes(shape, other.shape), dtype: .bool, like: a)
        Map.binary(a.to(.bool), b.to(.bool), out, OrK())
        return out
    }

    /// Elementwise logical not.
    public func logicalNot() -> Tensor {
        let out = Tensor(uninitialized: shape, dtype: .bool, like: self)
        Map.unary(to(.bool), out, NotK())
        return out
    }

    /// `torch.where(cond, a, b)`: elements of `a` where `cond`, else of `b`, broadcasting all three.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let ops = onOneDevice([condition, a, b], "where")
        let condition = ops[0], a = ops[1], b = ops[2]
        let dt = resultType(a, b)
        let ca = a.to(dt), cb = b.to(dt), cond = condition.to(.bool)
        let shape = broadcastShapes(broadcastShapes(cond.shape, a.shape), b.shape)
        let out = Tensor(uninitialized: shape, dtype: dt, like: ca)
        switch dt {
        case .float32: Map.select(cond, ca, cb, out, Float.self)
        case .float64: Map.select(cond, ca, cb, out, Double.self)
        case .int64: Map.select(cond, ca, cb, out, Int64.self)
        case .bool: Map.select(cond, ca, cb, out, Bool.self)
        }
        let needA = ca.requiresGradFlag, needB = cb.requiresGradFlag
        return out.recorded("WhereBackward0", [ca, cb]) { g in
            let zero = Tensor.zeros([], dtype: g.dtype, device: g.device)
            return [needA ? Tensor.where(cond, g, zero).sumTo(ca.shape) : nil,
                    needB ? Tensor.where(cond, zero, g).sumTo(cb.shape) : nil]
        }
    }

    /// Whether every element is within `atol + rtol * |other|` of `other` (`torch.allclose`).
    public func allClose(_ other: Tensor, rtol: Double = 1e-5, atol: Double = 1e-8) -> Bool {
        let a = scalars(as: Double.self), b = other.expand(shape).scalars(as: Double.self)
        if shape != Tensor.broadcastShapes(shape, other.shape) { return false }
        for i in 0..<a.count {
            if a[i].isNaN || b[i].isNaN { return false }
            if Swift.abs(a[i] - b[i]) > atol + rtol * Swift.abs(b[i]) { return false }
        }
        return true
    }
}

// libm, under names that do not collide with Tensor's methods.
@inline(__always) func Foundation_expf(_ x: Float) -> Float { expf(x) }
@inline(__always) func Foundation_exp(_ x: Double) -> Double { exp(x) }
@inline(__always) func Foundation_logf(_ x: Float) -> Float { logf(x) }
@inline(__always) func Foundation_log(_ x: Double) -> Double { log(x) }
@inline(__always) func Foundation_tanhf(_ x: Float) -> Float { tanhf(x) }
@inline(__always) func Foundation_tanh(_ x: Double) -> Double { tanh(x) }
@inline(__always) func Foundation_erff(_ x: Float) -> Float { erff(x) }
@inline(__always) func Foundation_erf(_ x: Double) -> Double { erf(x) }
@inline(__always) func Foundation_powf(_ x: Float, _ y: Float) -> Float { powf(x, y) }
@inline(__always) func Foundation_pow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
