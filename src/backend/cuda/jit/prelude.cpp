// Device source that every kernel compile's CUDA path generates starts with: element types,
// 16-bit float conversions and one functor per EwOp with the CPU backend's semantics
// (backend/cpu/elementwise_ops.h; the same choices as device/ew_ops.cuh). No headers at all.
#include "backend/cuda/jit/nvrtc.h"

namespace ingot::cu {

const char* jit_ew_prelude() {
  // Compiled by NVRTC with --fmad=false: each step rounds like the unfused kernels and the CPU.
  return R"INGOT_JIT(
namespace ij {

typedef signed char i8;
typedef unsigned char u8;
typedef long long i64;
typedef unsigned long long u64;
// 16-bit floats travel as their bits; the math runs in float and rounds once per step.
struct f16 { unsigned short b; };
struct bf16 { unsigned short b; };

template <class A, class B> constexpr bool same = false;
template <class A> constexpr bool same<A, A> = true;
template <class T> constexpr bool is_half = same<T, f16> || same<T, bf16>;
template <class T> constexpr bool is_fp = same<T, float> || same<T, double>;  // compute floats
template <class T> constexpr bool is_bool = same<T, bool>;
template <class T> constexpr bool is_sint = same<T, i8> || same<T, int> || same<T, i64>;
template <class T> constexpr bool is_intlike = !is_fp<T> && !is_half<T>;  // ints and bool

template <bool C, class A, class B> struct cond_s { typedef A type; };
template <class A, class B> struct cond_s<false, A, B> { typedef B type; };
template <bool C, class A, class B> using cond_t = typename cond_s<C, A, B>::type;

// Signed integer math goes through the unsigned twin so that +, -, * wrap.
template <class T> struct wrap_s { typedef T type; };
template <> struct wrap_s<i8> { typedef u8 type; };
template <> struct wrap_s<int> { typedef unsigned type; };
template <> struct wrap_s<i64> { typedef u64 type; };
template <class T> using wrap_t = typename wrap_s<T>::type;
template <class T> using compute_t = cond_t<is_half<T>, float, T>;

// ---- 16-bit floats (round to nearest even, as core/half.h) ----

__device__ __forceinline__ float f16_to_float(unsigned short h) {
  const unsigned sign = (unsigned)(h & 0x8000u) << 16;
  const unsigned e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    if (m == 0) return __uint_as_float(sign);
    const float f = (float)m * (1.0f / 16777216.0f);
    return sign ? -f : f;
  }
  if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m << 13));
  return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
}
__device__ __forceinline__ unsigned short float_to_f16(float f) {
  const unsigned u = __float_as_uint(f);
  const unsigned sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);
  if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);
  if (a < 0x38800000u) {
    if (a < 0x33000000u) return (unsigned short)sign;
    const unsigned e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
    unsigned q = m >> shift;
    const unsigned rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return (unsigned short)(sign | q);
  }
  unsigned r = a - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return (unsigned short)(sign | (r >> 13));
}
__device__ __forceinline__ float bf16_to_float(unsigned short h) {
  return __uint_as_float((unsigned)h << 16);
}
__device__ __forceinline__ unsigned short float_to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}

/// Storage value to its compute type (16-bit floats widen exactly).
template <class T> __device__ __forceinline__ compute_t<T> to_c(T v) {
  if constexpr (same<T, f16>) return f16_to_float(v.b);
  else if constexpr (same<T, bf16>) return bf16_to_float(v.b);
  else return v;
}
/// Compute value back to storage type O (the op's output: its input type, or bool).
template <class O, class C> __device__ __forceinline__ O to_s(C v) {
  if constexpr (same<O, f16>) { O r; r.b = float_to_f16(v); return r; }
  else if constexpr (same<O, bf16>) { O r; r.b = float_to_bf16(v); return r; }
  else return static_cast<O>(v);
}

// ---- math on float and double (the accurate library functions) ----

#define IJ_MATH1(NAME, F32, F64) \
  __device__ __forceinline__ float NAME(float x) { return F32(x); } \
  __device__ __forceinline__ double NAME(double x) { return F64(x); }
IJ_MATH1(m_fabs, fabsf, fabs)
IJ_MATH1(m_floor, floorf, floor)
IJ_MATH1(m_ceil, ceilf, ceil)
IJ_MATH1(m_rint, rintf, rint)
IJ_MATH1(m_exp, expf, exp)
IJ_MATH1(m_expm1, expm1f, expm1)
IJ_MATH1(m_log, logf, log)
IJ_MATH1(m_log1p, log1pf, log1p)
IJ_MATH1(m_sqrt, sqrtf, sqrt)
IJ_MATH1(m_sin, sinf, sin)
IJ_MATH1(m_cos, cosf, cos)
IJ_MATH1(m_tanh, tanhf, tanh)
IJ_MATH1(m_erf, erff, erf)
#undef IJ_MATH1
__device__ __forceinline__ float m_fmod(float a, float b) { return fmodf(a, b); }
__device__ __forceinline__ double m_fmod(double a, double b) { return fmod(a, b); }
__device__ __forceinline__ float m_copysign(float a, float b) { return copysignf(a, b); }
__device__ __forceinline__ double m_copysign(double a, double b) { return copysign(a, b); }
__device__ __forceinline__ bool m_isnan(float x) {
  return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u;
}
__device__ __forceinline__ bool m_isnan(double x) {
  return (__double_as_longlong(x) & 0x7fffffffffffffffLL) > 0x7ff0000000000000LL;
}
__device__ __forceinline__ bool m_isinf(float x) {
  return (__float_as_uint(x) & 0x7fffffffu) == 0x7f800000u;
}
__device__ __forceinline__ bool m_isinf(double x) {
  return (__double_as_longlong(x) & 0x7fffffffffffffffLL) == 0x7ff0000000000000LL;
}

// ---- unary functors (T is the compute type) ----

#define IJ_FN template <class T> __device__ __forceinline__
struct AbsOp {
  IJ_FN T operator()(T x) const {
    if constexpr (is_fp<T>) return m_fabs(x);
    else if constexpr (is_sint<T>) return x < 0 ? T(wrap_t<T>(0) - wrap_t<T>(x)) : x;
    else return x;
  }
};
struct NegativeOp {
  IJ_FN T operator()(T x) const {
    if constexpr (is_fp<T>) return -x;
    else return T(wrap_t<T>(0) - wrap_t<T>(x));
  }
};
struct SignOp {
  IJ_FN T operator()(T x) const {
    if constexpr (is_fp<T>) {
      if (m_isnan(x)) return x;
      return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    } else if constexpr (is_sint<T>) {
      return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    } else {
      return x > 0 ? T(1) : T(0);
    }
  }
};
struct FloorOp { IJ_FN T operator()(T x) const { return m_floor(x); } };
struct CeilOp { IJ_FN T operator()(T x) const { return m_ceil(x); } };
struct RoundOp { IJ_FN T operator()(T x) const { return m_rint(x); } };  // half to even
struct SquareOp {
  IJ_FN T operator()(T x) const {
    if constexpr (is_bool<T>) return x;
    else return T(wrap_t<T>(x) * wrap_t<T>(x));
  }
};
struct ReciprocalOp { IJ_FN T operator()(T x) const { return T(1) / x; } };
struct ExpOp { IJ_FN T operator()(T x) const { return m_exp(x); } };
struct Expm1Op { IJ_FN T operator()(T x) const { return m_expm1(x); } };
struct LogOp { IJ_FN T operator()(T x) const { return m_log(x); } };
struct Log1pOp { IJ_FN T operator()(T x) const { return m_log1p(x); } };
struct SqrtOp { IJ_FN T operator()(T x) const { return m_sqrt(x); } };
struct RsqrtOp { IJ_FN T operator()(T x) const { return T(1) / m_sqrt(x); } };
struct SinOp { IJ_FN T operator()(T x) const { return m_sin(x); } };
struct CosOp { IJ_FN T operator()(T x) const { return m_cos(x); } };
struct TanhOp { IJ_FN T operator()(T x) const { return m_tanh(x); } };
struct SigmoidOp { IJ_FN T operator()(T x) const { return T(1) / (T(1) + m_exp(-x)); } };
struct ErfOp { IJ_FN T operator()(T x) const { return m_erf(x); } };
struct SiluOp { IJ_FN T operator()(T x) const { return x / (T(1) + m_exp(-x)); } };
// gelu and gelu_tanh run in double also for float: in float the rounding of the erfc/exp
// argument would be amplified. 0.5 x erfc(-x / sqrt2): no cancellation for negative x.
struct GeluOp {
  IJ_FN T operator()(T x) const {
    const double w = x;
    return static_cast<T>(0.5 * w * erfc(w * -0.70710678118654752440));
  }
};
// x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
struct GeluTanhOp {
  IJ_FN T operator()(T x) const {
    const double w = x;
    const double u = 0.79788456080286535588 * (w + 0.044715 * w * w * w);
    return static_cast<T>(w / (1.0 + exp(-2.0 * u)));
  }
};
struct LogicalNotOp { __device__ __forceinline__ bool operator()(bool x) const { return !x; } };
struct IsNanOp { IJ_FN bool operator()(T x) const { return m_isnan(x); } };
struct IsInfOp { IJ_FN bool operator()(T x) const { return m_isinf(x); } };

// ---- binary functors ----

struct AddOp {
  IJ_FN T operator()(T a, T b) const {
    if constexpr (is_bool<T>) return a || b;
    else return T(wrap_t<T>(a) + wrap_t<T>(b));
  }
};
struct SubtractOp {
  IJ_FN T operator()(T a, T b) const { return T(wrap_t<T>(a) - wrap_t<T>(b)); }
};
struct MultiplyOp {
  IJ_FN T operator()(T a, T b) const {
    if constexpr (is_bool<T>) return a && b;
    else return T(wrap_t<T>(a) * wrap_t<T>(b));
  }
};
struct DivideOp { IJ_FN T operator()(T a, T b) const { return a / b; } };
// Python floor division; integers: x // 0 = 0, MIN // -1 wraps to MIN. Floats: NumPy's divmod.
struct FloorDivideOp {
  IJ_FN T operator()(T a, T b) const {
    if constexpr (is_fp<T>) {
      if (b == 0) return a / b;
      T mod = m_fmod(a, b);
      T div = (a - mod) / b;
      if (mod != 0 && ((b < 0) != (mod < 0))) div -= T(1);
      if (div == 0) return m_copysign(T(0), a / b);
      T fl = m_floor(div);
      if (div - fl > T(0.5)) fl += T(1);
      return fl;
    } else {
      if (b == 0) return T(0);
      if constexpr (is_sint<T>) {
        if (b == T(-1)) return T(wrap_t<T>(0) - wrap_t<T>(a));
        T q = T(a / b);
        if (T(a % b) != 0 && ((a < 0) != (b < 0))) q = T(q - 1);
        return q;
      } else {
        return T(a / b);
      }
    }
  }
};
// Python %: the result takes the divisor's sign; integers: x % 0 = 0.
struct RemainderOp {
  IJ_FN T operator()(T a, T b) const {
    if constexpr (is_fp<T>) {
      T mod = m_fmod(a, b);
      if (mod != 0) {
        if ((b < 0) != (mod < 0)) mod += b;
      } else {
        mod = m_copysign(T(0), b);
      }
      return mod;
    } else {
      if (b == 0) return T(0);
      if constexpr (is_sint<T>) {
        if (b == T(-1)) return T(0);
        T r = T(a % b);
        if (r != 0 && ((r < 0) != (b < 0))) r = T(r + b);
        return r;
      } else {
        return T(a % b);
      }
    }
  }
};
// Float pow in double, rounded once (powf is up to a few ulps off where the CPU's is within
// one). Integers: exact with wrapping; a negative exponent truncates 1 / a^-b.
struct PowerOp {
  IJ_FN T operator()(T a, T b) const {
    if constexpr (same<T, float>) {
      return static_cast<float>(pow(static_cast<double>(a), static_cast<double>(b)));
    } else if constexpr (same<T, double>) {
      return pow(a, b);
    } else {
      if constexpr (is_sint<T>) {
        if (b < 0) {
          if (a == 1) return T(1);
          if (a == -1) return (b & 1) ? T(-1) : T(1);
          return T(0);
        }
      }
      typedef cond_t<(sizeof(T) > 4), u64, unsigned> U;
      U base = U(wrap_t<T>(a)), r = 1;
      for (T e = b; e > 0; e = T(e >> 1)) {
        if (e & 1) r *= base;
        base *= base;
      }
      return T(static_cast<wrap_t<T>>(r));
    }
  }
};
struct MaximumOp {  // NaN propagates
  IJ_FN T operator()(T a, T b) const {
    if constexpr (is_fp<T>) return (a > b || m_isnan(a)) ? a : b;
    else return a > b ? a : b;
  }
};
struct MinimumOp {
  IJ_FN T operator()(T a, T b) const {
    if constexpr (is_fp<T>) return (a < b || m_isnan(a)) ? a : b;
    else return a < b ? a : b;
  }
};
struct EqualOp { IJ_FN bool operator()(T a, T b) const { return a == b; } };
struct NotEqualOp { IJ_FN bool operator()(T a, T b) const { return a != b; } };
struct LessOp { IJ_FN bool operator()(T a, T b) const { return a < b; } };
struct LessEqualOp { IJ_FN bool operator()(T a, T b) const { return a <= b; } };
struct GreaterOp { IJ_FN bool operator()(T a, T b) const { return a > b; } };
struct GreaterEqualOp { IJ_FN bool operator()(T a, T b) const { return a >= b; } };
struct LogicalAndOp {
  __device__ __forceinline__ bool operator()(bool a, bool b) const { return a && b; }
};
struct LogicalOrOp {
  __device__ __forceinline__ bool operator()(bool a, bool b) const { return a || b; }
};
#undef IJ_FN

/// Op on storage values: widen, compute, round once into the output's storage type.
template <class Op, class T, class O> __device__ __forceinline__ O un(T x) {
  return to_s<O>(Op()(to_c(x)));
}
template <class Op, class T, class O> __device__ __forceinline__ O bin(T a, T b) {
  return to_s<O>(Op()(to_c(a), to_c(b)));
}

// ---- AsType ----

/// Double to float with round-to-odd, so that rounding on to a 16-bit float is correct.
__device__ __forceinline__ float round_to_odd_float(double d) {
  const float f = __double2float_rn(d);
  if (static_cast<double>(f) == d || m_isnan(f) || m_isinf(f)) return f;
  unsigned u = __float_as_uint(f);
  if (fabs(static_cast<double>(f)) > fabs(d)) --u;  // truncate toward zero
  return __uint_as_float(u | 1u);
}
/// cpu::convert: 16-bit floats round to nearest even (from float64 and integers through a
/// round-to-odd float); float to integer truncates, NaN gives 0, beyond int64 saturates, then
/// wraps modulo 2^bits; to bool is v != 0.
template <class D, class S> __device__ __forceinline__ D convert(S v) {
  if constexpr (same<D, S>) {
    return v;
  } else if constexpr (is_bool<D>) {
    if constexpr (is_half<S>) return to_c(v) != 0.0f;
    else return v != S(0);
  } else if constexpr (is_half<D>) {
    if constexpr (is_half<S> || same<S, float>) return to_s<D>(to_c(v));
    else return to_s<D>(round_to_odd_float(static_cast<double>(v)));
  } else if constexpr (is_intlike<D> && !is_intlike<S>) {
    const double x = static_cast<double>(to_c(v));
    if (x != x) return D(0);
    i64 i;
    if (x >= 9223372036854775807.0) i = 0x7fffffffffffffffLL;
    else if (x <= -9223372036854775808.0) i = -0x7fffffffffffffffLL - 1;
    else i = static_cast<i64>(x);
    return static_cast<D>(i);
  } else {
    return static_cast<D>(to_c(v));
  }
}

// ---- strided loads ----

/// Collapsed layout of one strided input: U the unsigned index type, S the signed offset type.
template <int N, class U, class S> struct Lay {
  U shape[N];
  S strides[N];
};
template <int N, class U, class S>
__device__ __forceinline__ S offset(U i, const Lay<N, U, S>& l) {
  S off = 0;
#pragma unroll
  for (int d = N - 1; d > 0; --d) {
    const U q = i / l.shape[d];
    off += static_cast<S>(i - q * l.shape[d]) * l.strides[d];
    i = q;
  }
  return off + static_cast<S>(i) * l.strides[0];
}

}  // namespace ij
)INGOT_JIT";
}

}  // namespace ingot::cu
