// ferry's CUDA kernels: one text, compiled by NVRTC to a CUBIN on a GPU host and, for the mock
// driver, by the system C++ compiler under emulation.h (each kernel exported as emu_<name>).
// Rules: extern "C" names; every scalar parameter 8 bytes (i64 or double) or a struct below;
// no float atomics (results are bit-identical run to run); a kernel that calls __syncthreads is
// exported with EMU_EXPORT_SYNC so the emulator runs its threads as threads.
#ifndef FERRY_EMULATION
typedef long long i64;
typedef unsigned long long u64;
#define EMU_EXPORT(name)
#define EMU_EXPORT_SYNC(name)
#endif

#define FERRY_MAXD 8
// Shape of the iteration space (row-major) and one operand's strides in elements.
struct Dims { i64 nd; i64 size[FERRY_MAXD]; };
struct Strides { i64 s[FERRY_MAXD]; };

// dtype codes, as Swift's CUDADType: 0 float32, 1 float64, 2 int64, 3 bool (one byte)
#define GRID_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

__device__ __forceinline__ i64 strided_offset(i64 i, const Dims& d, const Strides& st) {
    i64 off = 0;
    for (int k = (int)d.nd - 1; k >= 0; --k) {
        i64 q = i % d.size[k];
        i /= d.size[k];
        off += q * st.s[k];
    }
    return off;
}

__device__ __forceinline__ bool is_nan(double v) { return v != v; }

// ---- conversions (PyTorch's rules as the CPU has them: non-finite -> int is 0, saturating) ----
__device__ __forceinline__ i64 double_to_i64(double v) {
    if (is_nan(v) || v - v != 0) return 0;
    if (v >= 9223372036854775807.0) return (i64)0x7fffffffffffffffLL;
    if (v <= -9223372036854775808.0) return (i64)(-0x7fffffffffffffffLL - 1);
    return (i64)v;
}
template <class D> struct Cast { template <class S> __device__ static D from(S v) { return (D)v; } };
template <> struct Cast<i64> {
    __device__ static i64 from(float v) { return double_to_i64((double)v); }
    __device__ static i64 from(double v) { return double_to_i64(v); }
    __device__ static i64 from(i64 v) { return v; }
    __device__ static i64 from(unsigned char v) { return v ? 1 : 0; }
};
template <> struct Cast<unsigned char> {
    template <class S> __device__ static unsigned char from(S v) { return v != 0 ? 1 : 0; }
    __device__ static unsigned char from(float v) { return (v != 0 || v != v) ? 1 : 0; }
    __device__ static unsigned char from(double v) { return (v != 0 || v != v) ? 1 : 0; }
};

template <class S, class D>
__device__ void convert_t(i64 n, const Dims& d, const S* src, const Strides& ss, D* dst, const Strides& ds) {
    GRID_LOOP(i, n) { dst[strided_offset(i, d, ds)] = Cast<D>::from(src[strided_offset(i, d, ss)]); }
}
template <class S>
__device__ void convert_from(i64 n, const Dims& d, const S* src, const Strides& ss, i64 ddt, void* dst, const Strides& ds) {
    switch (ddt) {
    case 0: convert_t(n, d, src, ss, (float*)dst, ds); break;
    case 1: convert_t(n, d, src, ss, (double*)dst, ds); break;
    case 2: convert_t(n, d, src, ss, (i64*)dst, ds); break;
    default: convert_t(n, d, src, ss, (unsigned char*)dst, ds); break;
    }
}
// dst (any layout) = src (any layout) converted; also the strided copy behind contiguous().
extern "C" __global__ void convert(i64 n, Dims d, i64 sdt, const void* src, Strides ss, i64 ddt, void* dst, Strides ds) {
    switch (sdt) {
    case 0: convert_from(n, d, (const float*)src, ss, ddt, dst, ds); break;
    case 1: convert_from(n, d, (const double*)src, ss, ddt, dst, ds); break;
    case 2: convert_from(n, d, (const i64*)src, ss, ddt, dst, ds); break;
    default: convert_from(n, d, (const unsigned char*)src, ss, ddt, dst, ds); break;
    }
}
EMU_EXPORT(convert)

// Fills a contiguous tensor: floats from fvalue, int64/bool from ivalue.
extern "C" __global__ void fill(i64 n, i64 dt, void* out, double fvalue, i64 ivalue) {
    GRID_LOOP(i, n) {
        switch (dt) {
        case 0: ((float*)out)[i] = (float)fvalue; break;
        case 1: ((double*)out)[i] = fvalue; break;
        case 2: ((i64*)out)[i] = ivalue; break;
        default: ((unsigned char*)out)[i] = ivalue != 0; break;
        }
    }
}
EMU_EXPORT(fill)

// ---- elementwise binary ----
// op: 0 add, 1 sub, 2 mul, 3 div, 4 maximum, 5 minimum, 6 pow, 7 relu backward (a = grad, b = x),
//     8 sigmoid backward (b = y), 9 tanh backward (b = y), 10 axpy (a + alpha * b)
__device__ __forceinline__ float fpow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double fpow(double a, double b) { return pow(a, b); }

template <class T> __device__ __forceinline__ T float_binop(i64 op, T a, T b, T alpha) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return (is_nan(a) || a > b) ? a : b;
    case 5: return (is_nan(a) || a < b) ? a : b;
    case 6: return fpow(a, b);
    case 7: return b > 0 ? a : (T)0;
    case 8: return a * b * ((T)1 - b);
    case 9: return a * ((T)1 - b * b);
    default: return a + alpha * b;
    }
}
__device__ __forceinline__ i64 int_binop(i64 op, i64 a, i64 b, i64 alpha) {
    u64 ua = (u64)a, ub = (u64)b;   // wrapping, as Swift's &+ &- &*
    switch (op) {
    case 0: return (i64)(ua + ub);
    case 1: return (i64)(ua - ub);
    case 2: return (i64)(ua * ub);
    case 4: return a > b ? a : b;
    case 5: return a < b ? a : b;
    case 6: { u64 r = 1, base = ua; for (i64 k = b; k > 0; k >>= 1) { if (k & 1) r *= base; base *= base; } return (i64)r; }
    default: return (i64)(ua + (u64)alpha * ub);
    }
}
template <class T>
__device__ void binary_float(i64 n, const Dims& d, i64 op, T* out, const T* a, const Strides& sa, const T* b, const Strides& sb, double alpha) {
    GRID_LOOP(i, n) { out[i] = float_binop<T>(op, a[strided_offset(i, d, sa)], b[strided_offset(i, d, sb)], (T)alpha); }
}
// out (contiguous) = a op b, both read through (broadcast) strides.
extern "C" __global__ void binary(i64 n, Dims d, i64 dt, i64 op, void* out, const void* a, Strides sa, const void* b, Strides sb, double alpha) {
    if (dt == 0) binary_float(n, d, op, (float*)out, (const float*)a, sa, (const float*)b, sb, alpha);
    else if (dt == 1) binary_float(n, d, op, (double*)out, (const double*)a, sa, (const double*)b, sb, alpha);
    else {
        i64* o = (i64*)out; const i64* pa = (const i64*)a; const i64* pb = (const i64*)b;
        GRID_LOOP(i, n) { o[i] = int_binop(op, pa[strided_offset(i, d, sa)], pb[strided_offset(i, d, sb)], (i64)alpha); }
    }
}
EMU_EXPORT(binary)

// ---- comparisons and logic -> bool ----
// op: 0 eq, 1 ne, 2 lt, 3 le, 4 gt, 5 ge, 6 and, 7 or
template <class T> __device__ __forceinline__ unsigned char compare_op(i64 op, T a, T b) {
    switch (op) {
    case 0: return a == b;
    case 1: return a != b;
    case 2: return a < b;
    case 3: return a <= b;
    case 4: return a > b;
    case 5: return a >= b;
    case 6: return (a != 0) && (b != 0);
    default: return (a != 0) || (b != 0);
    }
}
template <class T>
__device__ void compare_t(i64 n, const Dims& d, i64 op, unsigned char* out, const T* a, const Strides& sa, const T* b, const Strides& sb) {
    GRID_LOOP(i, n) { out[i] = compare_op<T>(op, a[strided_offset(i, d, sa)], b[strided_offset(i, d, sb)]); }
}
extern "C" __global__ void compare(i64 n, Dims d, i64 dt, i64 op, void* out, const void* a, Strides sa, const void* b, Strides sb) {
    unsigned char* o = (unsigned char*)out;
    switch (dt) {
    case 0: compare_t(n, d, op, o, (const float*)a, sa, (const float*)b, sb); break;
    case 1: compare_t(n, d, op, o, (const double*)a, sa, (const double*)b, sb); break;
    case 2: compare_t(n, d, op, o, (const i64*)a, sa, (const i64*)b, sb); break;
    default: compare_t(n, d, op, o, (const unsigned char*)a, sa, (const unsigned char*)b, sb); break;
    }
}
EMU_EXPORT(compare)

// ---- elementwise unary ----
// op: 0 neg, 1 exp, 2 log, 3 sqrt, 4 abs, 5 relu, 6 sigmoid, 7 tanh, 8 gelu, 9 sign, 10 square,
//     11 scale (p0 * x), 12 clamp (to [p0, p1]; a NaN bound is absent), 13 erf, 14 logical not,
//     15 gelu backward (x; times grad by the caller), 16 log1p, 17 integer power p0 (int64)
__device__ __forceinline__ float f_exp(float x) { return expf(x); }
__device__ __forceinline__ double f_exp(double x) { return exp(x); }
__device__ __forceinline__ float f_log(float x) { return logf(x); }
__device__ __forceinline__ double f_log(double x) { return log(x); }
__device__ __forceinline__ float f_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double f_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float f_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double f_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float f_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double f_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float f_erf(float x) { return erff(x); }
__device__ __forceinline__ double f_erf(double x) { return erf(x); }

template <class T> __device__ __forceinline__ T float_unop(i64 op, T x, T p0, T p1) {
    switch (op) {
    case 0: return -x;
    case 1: return f_exp(x);
    case 2: return f_log(x);
    case 3: return f_sqrt(x);
    case 4: return x < 0 ? -x : x;
    case 5: return x > 0 ? x : (T)0;
    case 6: return (T)1 / ((T)1 + f_exp(-x));
    case 7: return f_tanh(x);
    case 8: return (T)0.5 * x * ((T)1 + f_erf(x * (T)0.70710678118654752440));
    case 9: return x > 0 ? (T)1 : (x < 0 ? (T)-1 : (T)0);
    case 10: return x * x;
    case 11: return p0 * x;
    case 12: { T r = x; if (!is_nan(p0) && r < p0) r = p0; if (!is_nan(p1) && r > p1) r = p1; return r; }
    case 13: return f_erf(x);
    case 16: return f_log1p(x);
    default: {
        T cdf = (T)0.5 * ((T)1 + f_erf(x * (T)0.70710678118654752440));
        T pdf = f_exp((T)-0.5 * x * x) * (T)0.39894228040143267794;
        return cdf + x * pdf;
    }
    }
}
__device__ __forceinline__ i64 int_unop(i64 op, i64 x, i64 p0, i64 p1, int has0, int has1) {
    switch (op) {
    case 0: return (i64)(0 - (u64)x);
    case 4: return x < 0 ? (i64)(0 - (u64)x) : x;
    case 5: return x > 0 ? x : 0;
    case 9: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case 10: return (i64)((u64)x * (u64)x);
    case 11: return (i64)((u64)p0 * (u64)x);
    case 17: { u64 r = 1; for (i64 k = 0; k < p0; ++k) r *= (u64)x; return (i64)r; }
    default: { i64 r = x; if (has0 && r < p0) r = p0; if (has1 && r > p1) r = p1; return r; }
    }
}
template <class T>
__device__ void unary_float(i64 n, const Dims& d, i64 op, T* out, const T* a, const Strides& sa, double p0, double p1) {
    GRID_LOOP(i, n) { out[i] = float_unop<T>(op, a[strided_offset(i, d, sa)], (T)p0, (T)p1); }
}
extern "C" __global__ void unary(i64 n, Dims d, i64 dt, i64 op, void* out, const void* a, Strides sa, double p0, double p1) {
    if (dt == 0) unary_float(n, d, op, (float*)out, (const float*)a, sa, p0, p1);
    else if (dt == 1) unary_float(n, d, op, (double*)out, (const double*)a, sa, p0, p1);
    else if (dt == 2) {
        i64* o = (i64*)out; const i64* pa = (const i64*)a;
        int has0 = !is_nan(p0), has1 = !is_nan(p1);
        i64 q0 = has0 ? double_to_i64(p0) : 0, q1 = has1 ? double_to_i64(p1) : 0;
        GRID_LOOP(i, n) { o[i] = int_unop(op, pa[strided_offset(i, d, sa)], q0, q1, has0, has1); }
    } else {
        unsigned char* o = (unsigned char*)out; const unsigned char* pa = (const unsigned char*)a;
        GRID_LOOP(i, n) { o[i] = pa[strided_offset(i, d, sa)] ? 0 : 1; }
    }
}
EMU_EXPORT(unary)

// out = cond ? a : b; elemBytes 1, 4 or 8 (the selection moves bits, whatever the dtype).
template <class T>
__device__ void where_t(i64 n, const Dims& d, T* out, const unsigned char* c, const Strides& sc, const T* a, const Strides& sa, const T* b, const Strides& sb) {
    GRID_LOOP(i, n) { out[i] = c[strided_offset(i, d, sc)] ? a[strided_offset(i, d, sa)] : b[strided_offset(i, d, sb)]; }
}
extern "C" __global__ void where_select(i64 n, Dims d, i64 elemBytes, void* out, const void* c, Strides sc, const void* a, Strides sa, const void* b, Strides sb) {
    const unsigned char* pc = (const unsigned char*)c;
    if (elemBytes == 8) where_t(n, d, (u64*)out, pc, sc, (const u64*)a, sa, (const u64*)b, sb);
    else if (elemBytes == 4) where_t(n, d, (unsigned*)out, pc, sc, (const unsigned*)a, sa, (const unsigned*)b, sb);
    else where_t(n, d, (unsigned char*)out, pc, sc, (const unsigned char*)a, sa, (const unsigned char*)b, sb);
}
EMU_EXPORT(where_select)

// ---- reductions over the middle axis of a contiguous [outer, count, inner] layout ----
// One thread per output, a sequential loop: deterministic (no atomics), float32 summed in double.
// op: 0 sum, 1 max (values + first index; NaN wins), 2 min. Bool input sums as int64.
template <class T, class A>
__device__ void reduce_sum_t(i64 outer, i64 count, i64 inner, const T* src, A* out) {
    GRID_LOOP(i, outer * inner) {
        i64 o = i / inner, j = i % inner;
        const T* p = src + o * count * inner + j;
        A acc = 0;
        for (i64 r = 0; r < count; ++r) acc += (A)p[r * inner];
        out[i] = acc;
    }
}
template <class T>
__device__ void reduce_extreme_t(i64 outer, i64 count, i64 inner, int isMax, const T* src, T* values, i64* indices) {
    GRID_LOOP(i, outer * inner) {
        i64 o = i / inner, j = i % inner;
        const T* p = src + o * count * inner + j;
        T best = p[0]; i64 bi = 0;
        if (!is_nan((double)best)) {
            for (i64 r = 1; r < count; ++r) {
                T v = p[r * inner];
                if (is_nan((double)v)) { best = v; bi = r; break; }
                if (isMax ? v > best : v < best) { best = v; bi = r; }
            }
        }
        values[i] = best; indices[i] = bi;
    }
}
extern "C" __global__ void reduce(i64 outer, i64 count, i64 inner, i64 dt, i64 op, const void* src, void* out, void* indices) {
    if (op == 0) {
        switch (dt) {
        case 0: {
            float* o = (float*)out; const float* s = (const float*)src;
            GRID_LOOP(i, outer * inner) {
                i64 q = i / inner, j = i % inner;
                double acc = 0;
                for (i64 r = 0; r < count; ++r) acc += (double)s[q * count * inner + r * inner + j];
                o[i] = (float)acc;
            }
            break;
        }
        case 1: reduce_sum_t(outer, count, inner, (const double*)src, (double*)out); break;
        case 2: reduce_sum_t(outer, count, inner, (const i64*)src, (i64*)out); break;
        default: reduce_sum_t(outer, count, inner, (const unsigned char*)src, (i64*)out); break;
        }
    } else {
        int isMax = op == 1;
        switch (dt) {
        case 0: reduce_extreme_t(outer, count, inner, isMax, (const float*)src, (float*)out, (i64*)indices); break;
        case 1: reduce_extreme_t(outer, count, inner, isMax, (const double*)src, (double*)out, (i64*)indices); break;
        default: reduce_extreme_t(outer, count, inner, isMax, (const i64*)src, (i64*)out, (i64*)indices); break;
        }
    }
}
EMU_EXPORT(reduce)

// A long float32 sum, first stage: each block sums a grid-strided share into partials[blockIdx.x]
// by a shared-memory tree (blockDim.x a power of two, at most 256). The second stage is `reduce`.
extern "C" __global__ void sum_partials_f32(i64 n, const float* src, double* partials) {
    __shared__ double acc[256];
    double s = 0;
    GRID_LOOP(i, n) { s += (double)src[i]; }
    acc[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) acc[threadIdx.x] += acc[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = acc[0];
}
EMU_EXPORT_SYNC(sum_partials_f32)

// Row-wise softmax / log-softmax of a contiguous [rows, n] tensor, one thread per row.
template <class T>
__device__ void softmax_t(i64 rows, i64 n, int isLog, const T* src, T* dst) {
    GRID_LOOP(row, rows) {
        const T* s = src + row * n; T* o = dst + row * n;
        T m = -f_exp((T)1000);   // -inf
        for (i64 i = 0; i < n; ++i) if (s[i] > m || is_nan(s[i])) m = s[i];
        if (m == -f_exp((T)1000)) m = 0;
        double sum = 0;
        for (i64 i = 0; i < n; ++i) sum += (double)f_exp(s[i] - m);
        if (isLog) { T ls = (T)f_log((T)sum) + m; for (i64 i = 0; i < n; ++i) o[i] = s[i] - ls; }
        else { T inv = (T)(1.0 / sum); for (i64 i = 0; i < n; ++i) o[i] = f_exp(s[i] - m) * inv; }
    }
}
extern "C" __global__ void softmax_rows(i64 rows, i64 n, i64 dt, i64 isLog, const void* src, void* dst) {
    if (dt == 0) softmax_t(rows, n, (int)isLog, (const float*)src, (float*)dst);
    else softmax_t(rows, n, (int)isLog, (const double*)src, (double*)dst);
}
EMU_EXPORT(softmax_rows)

// Batched int64 matrix product: out[b] (m x n, contiguous) = a[b] (m x k) @ b[b] (k x n), strided.
extern "C" __global__ void matmul_i64(i64 batch, i64 m, i64 n, i64 k, const i64* a, i64 abs_, i64 as0, i64 as1,
                                      const i64* b, i64 bbs, i64 bs0, i64 bs1, i64* out) {
    GRID_LOOP(i, batch * m * n) {
        i64 bi = i / (m * n), r = (i / n) % m, c = i % n;
        u64 acc = 0;
        for (i64 p = 0; p < k; ++p) acc += (u64)a[bi * abs_ + r * as0 + p * as1] * (u64)b[bi * bbs + p * bs0 + c * bs1];
        out[i] = (i64)acc;
    }
}
EMU_EXPORT(matmul_i64)

// Gathers along one dim of contiguous [outer, size, inner] source by an int64 index of
// [outer, count, inner] (strided by idxStrides within [outer, count, inner]): torch.gather /
// index_select / nll's pick. Indices are checked on the host before the launch.
template <class T>
__device__ void gather_t(i64 outer, i64 size, i64 count, i64 inner, const T* src, const i64* index, i64 io, i64 ic, i64 ii, T* out) {
    GRID_LOOP(i, outer * count * inner) {
        i64 o = i / (count * inner), c = (i / inner) % count, j = i % inner;
        i64 k = index[o * io + c * ic + j * ii];
        out[i] = src[(o * size + k) * inner + j];
    }
}
extern "C" __global__ void gather(i64 outer, i64 size, i64 count, i64 inner, i64 elemBytes, const void* src,
                                  const i64* index, i64 io, i64 ic, i64 ii, void* out) {
    if (elemBytes == 8) gather_t(outer, size, count, inner, (const u64*)src, index, io, ic, ii, (u64*)out);
    else if (elemBytes == 4) gather_t(outer, size, count, inner, (const unsigned*)src, index, io, ic, ii, (unsigned*)out);
    else gather_t(outer, size, count, inner, (const unsigned char*)src, index, io, ic, ii, (unsigned char*)out);
}
EMU_EXPORT(gather)

// The transpose of gather, deterministic: out [outer, size, inner] (float, zeroed by the caller)
// gets, for each of its elements, the sum of the sources whose index points at it, in order.
template <class T>
__device__ void scatter_add_t(i64 outer, i64 size, i64 count, i64 inner, const T* src, const i64* index, i64 io, i64 ic, i64 ii, T* out) {
    GRID_LOOP(i, outer * size * inner) {
        i64 o = i / (size * inner), k = (i / inner) % size, j = i % inner;
        T acc = out[i];
        for (i64 c = 0; c < count; ++c)
            if (index[o * io + c * ic + j * ii] == k) acc += src[(o * count + c) * inner + j];
        out[i] = acc;
    }
}
extern "C" __global__ void scatter_add(i64 outer, i64 size, i64 count, i64 inner, i64 dt, const void* src,
                                       const i64* index, i64 io, i64 ic, i64 ii, void* out) {
    if (dt == 0) scatter_add_t(outer, size, count, inner, (const float*)src, index, io, ic, ii, (float*)out);
    else scatter_add_t(outer, size, count, inner, (const double*)src, index, io, ic, ii, (double*)out);
}
EMU_EXPORT(scatter_add)

// ---- optimizers, float32 in place ----
extern "C" __global__ void sgd_step_f32(i64 n, float* p, const float* g, float* buf, double lr, double mom,
                                        double damp, double wd, i64 nesterov, i64 first) {
    GRID_LOOP(j, n) {
        float d = g[j];
        if (wd != 0) d += (float)wd * p[j];
        if (buf) {
            float b = first ? d : (float)mom * buf[j] + (1 - (float)damp) * d;
            buf[j] = b;
            d = nesterov ? d + (float)mom * b : b;
        }
        p[j] -= (float)lr * d;
    }
}
EMU_EXPORT(sgd_step_f32)

extern "C" __global__ void adam_step_f32(i64 n, float* p, const float* g, float* m, float* v, float* vmax,
                                         double b1, double b2, double eps, double wd, double lr, double stepSize,
                                         double invBc2Sqrt, i64 decoupled) {
    GRID_LOOP(j, n) {
        float gj = g[j];
        float wdf = (float)wd, lrf = (float)lr, b1f = (float)b1, b2f = (float)b2;
        if (wdf != 0) { if (decoupled) p[j] *= 1 - lrf * wdf; else gj += wdf * p[j]; }
        float mj = b1f * m[j] + (1 - b1f) * gj;
        float vj = b2f * v[j] + (1 - b2f) * gj * gj;
        m[j] = mj; v[j] = vj;
        float vv = vj;
        if (vmax) { vv = vmax[j] > vj ? vmax[j] : vj; vmax[j] = vv; }
        p[j] -= (float)stepSize * mj / (sqrtf(vv) * (float)invBc2Sqrt + (float)eps);
    }
}
EMU_EXPORT(adam_step_f32)

// ---- convolution and pooling windows: im2col and its transpose ----
// Geometry as one struct: C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, outH, outW.
struct Window { i64 C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow; };

// x [N, C, H, W] (contiguous) -> col [N, C*kh*kw, outH*outW]; outside the input reads `pad`.
template <class T>
__device__ void im2col_t(i64 total, const Window& g, const T* x, T* col, T pad) {
    const i64 L = g.oh * g.ow, K = g.C * g.kh * g.kw;
    GRID_LOOP(i, total) {
        i64 l = i % L, r = (i / L) % K, img = i / (L * K);
        i64 c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
        i64 y = (l / g.ow) * g.sh - g.ph + ki * g.dh, xx = (l % g.ow) * g.sw - g.pw + kj * g.dw;
        col[i] = (y >= 0 && y < g.H && xx >= 0 && xx < g.W) ? x[((img * g.C + c) * g.H + y) * g.W + xx] : pad;
    }
}
extern "C" __global__ void im2col(i64 total, Window g, i64 dt, const void* x, void* col, double pad) {
    if (dt == 0) im2col_t(total, g, (const float*)x, (float*)col, (float)pad);
    else im2col_t(total, g, (const double*)x, (double*)col, pad);
}
EMU_EXPORT(im2col)

// The transpose: dx [N, C, H, W] = the sum of the columns each input element was copied to,
// gathered per input element in a fixed order (deterministic, no atomics).
template <class T>
__device__ void col2im_t(i64 total, const Window& g, const T* col, T* x) {
    const i64 L = g.oh * g.ow, K = g.C * g.kh * g.kw;
    GRID_LOOP(i, total) {
        i64 xx = i % g.W, y = (i / g.W) % g.H, c = (i / (g.W * g.H)) % g.C, img = i / (g.W * g.H * g.C);
        T acc = 0;
        for (i64 ki = 0; ki < g.kh; ++ki) {
            i64 ty = y + g.ph - ki * g.dh;
            if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
            for (i64 kj = 0; kj < g.kw; ++kj) {
                i64 tx = xx + g.pw - kj * g.dw;
                if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
                acc += col[(img * K + (c * g.kh + ki) * g.kw + kj) * L + (ty / g.sh) * g.ow + tx / g.sw];
            }
        }
        x[i] = acc;
    }
}
extern "C" __global__ void col2im(i64 total, Window g, i64 dt, const void* col, void* x) {
    if (dt == 0) col2im_t(total, g, (const float*)col, (float*)x);
    else col2im_t(total, g, (const double*)col, (double*)x);
}
EMU_EXPORT(col2im)

// ---- Philox4x32-10 (Salmon et al., SC'11; curand's and PyTorch's CUDA generator) ----
// Block j of a draw is philox(counter = (offset + j) as two words, subsequence as two words;
// key = the seed as two words): four 32-bit words, a pure function of its inputs, so every
// element's value is fixed by (seed, offset, its index) whatever the grid. Swift's Philox4x32 is
// the same function (a known-answer test checks both).
struct PhiloxWords { unsigned w[4]; };
__device__ __forceinline__ PhiloxWords philox4x32_10(u64 counter, u64 subsequence, u64 seed) {
    unsigned x0 = (unsigned)counter, x1 = (unsigned)(counter >> 32), x2 = (unsigned)subsequence, x3 = (unsigned)(subsequence >> 32);
    unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        u64 p0 = (u64)0xD2511F53u * x0, p1 = (u64)0xCD9E8D57u * x2;
        unsigned y0 = (unsigned)(p1 >> 32) ^ x1 ^ k0, y1 = (unsigned)p1, y2 = (unsigned)(p0 >> 32) ^ x3 ^ k1, y3 = (unsigned)p0;
        x0 = y0; x1 = y1; x2 = y2; x3 = y3;
    }
    PhiloxWords r; r.w[0] = x0; r.w[1] = x1; r.w[2] = x2; r.w[3] = x3;
    return r;
}
// A float in [0, 1) from 24 bits, a double from 53 bits (two words, the first high).
__device__ __forceinline__ float philox_unit_f32(unsigned w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }
__device__ __forceinline__ double philox_unit_f64(unsigned hi, unsigned lo) {
    return (double)((((u64)hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
}
// Box-Muller on a pair of uniforms, u1 in (0, 1]: two standard normals.
__device__ __forceinline__ void box_muller(double u1, double u2, double* z0, double* z1) {
    double r = sqrt(-2.0 * log(u1)), t = 6.283185307179586 * u2;
    *z0 = r * cos(t); *z1 = r * sin(t);
}
// Values per block: 4 for float32 (and raw words), 2 for float64 and int64 draws.
// kind: 0 uniform in [p0, p1); 1 normal (mean p0, std p1); 2 Bernoulli mask (p0 = keep probability,
// p1 = the kept value, 0 otherwise); 3 int64 in [low, low + range) (the high word of a 64x64 product);
// 4 the raw 32-bit words as int64 (known-answer tests).
extern "C" __global__ void philox_fill(i64 n, i64 kind, i64 dt, void* out, u64 seed, u64 offset, u64 subsequence,
                                       double p0, double p1, i64 low, u64 range) {
    const i64 per = (dt == 0 || kind == 4) ? 4 : 2;
    GRID_LOOP(j, (n + per - 1) / per) {
        PhiloxWords r = philox4x32_10(offset + (u64)j, subsequence, seed);
        double v[4];
        if (kind == 4) {
            for (int s = 0; s < 4; ++s) v[s] = 0;
        } else if (per == 4) {
            if (kind == 1) {
                box_muller(1.0 - (double)philox_unit_f32(r.w[0]), (double)philox_unit_f32(r.w[1]), &v[0], &v[1]);
                box_muller(1.0 - (double)philox_unit_f32(r.w[2]), (double)philox_unit_f32(r.w[3]), &v[2], &v[3]);
            } else {
                for (int s = 0; s < 4; ++s) v[s] = (double)philox_unit_f32(r.w[s]);
            }
        } else if (kind == 1) {
            box_muller(1.0 - philox_unit_f64(r.w[0], r.w[1]), philox_unit_f64(r.w[2], r.w[3]), &v[0], &v[1]);
        } else {
            v[0] = philox_unit_f64(r.w[0], r.w[1]); v[1] = philox_unit_f64(r.w[2], r.w[3]);
        }
        for (i64 s = 0; s < per; ++s) {
            i64 i = j * per + s;
            if (i >= n) break;
            if (kind == 4) { ((i64*)out)[i] = (i64)r.w[s]; continue; }
            if (kind == 3) {
                u64 word = ((u64)r.w[2 * s] << 32) | r.w[2 * s + 1];
                ((i64*)out)[i] = low + (i64)__umul64hi(word, range);
                continue;
            }
            if (dt == 0) {
                float u = (float)v[s], x;
                if (kind == 0) x = (float)p0 + (float)(p1 - p0) * u;
                else if (kind == 1) x = (float)(p0 + p1 * v[s]);
                else x = u < (float)p0 ? (float)p1 : 0.0f;
                ((float*)out)[i] = x;
            } else {
                double x;
                if (kind == 0) x = p0 + (p1 - p0) * v[s];
                else if (kind == 1) x = p0 + p1 * v[s];
                else x = v[s] < p0 ? p1 : 0.0;
                ((double*)out)[i] = x;
            }
        }
    }
}
EMU_EXPORT(philox_fill)
