// Device functors of the elementwise ops (NAME##Op for primitive NAME), op for op the CPU's
// backend/cpu/elementwise_ops.h, and AsType's conversion. Self-contained device code (only the
// CUDA half headers, own type traits) so that compile's NVRTC path can include it unchanged.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ingot::cu::ew {

// ---- minimal traits (no <type_traits>: NVRTC has no standard library by default) ----

template <typename A, typename B>
inline constexpr bool same_v = false;
template <typename A>
inline constexpr bool same_v<A, A> = true;

template <bool C, typename A, typename B>
struct cond_type {
  using type = A;
};
template <typename A, typename B>
struct cond_type<false, A, B> {
  using type = B;
};
template <bool C, typename A, typename B>
using cond_t = typename cond_type<C, A, B>::type;

/// Signedness and the unsigned twin of integer types: signed +, -, * go through the twin so
/// that they wrap instead of overflowing (as on the CPU).
template <typename T>
struct int_info {
  static constexpr bool is_signed = false;
  using wrap = T;
};
#define INGOT_CU_EW_SIGNED(S, U)            \
  template <>                               \
  struct int_info<S> {                      \
    static constexpr bool is_signed = true; \
    using wrap = U;                         \
  };
INGOT_CU_EW_SIGNED(signed char, unsigned char)
INGOT_CU_EW_SIGNED(short, unsigned short)
INGOT_CU_EW_SIGNED(int, unsigned int)
INGOT_CU_EW_SIGNED(long, unsigned long)
INGOT_CU_EW_SIGNED(long long, unsigned long long)
#undef INGOT_CU_EW_SIGNED
template <typename T>
using wrap_t = typename int_info<T>::wrap;
template <typename T>
inline constexpr bool is_signed_v = int_info<T>::is_signed;

template <typename T>
inline constexpr bool is_half_v = same_v<T, __half> || same_v<T, __nv_bfloat16>;
/// Floating compute types (16-bit floats compute in float).
template <typename T>
inline constexpr bool is_float_v = same_v<T, float> || same_v<T, double>;
template <typename T>
inline constexpr bool is_bool_v = same_v<T, bool>;
/// Integer storage types other than bool.
template <typename T>
inline constexpr bool is_int_v = !is_float_v<T> && !is_half_v<T> && !is_bool_v<T>;

/// Type the math runs in: float for 16-bit floats, else the storage type.
template <typename T>
using compute_t = cond_t<is_half_v<T>, float, T>;

/// Storage value to its compute type (16-bit floats widen exactly).
template <typename C, typename T>
__device__ __forceinline__ C to_compute(T v) {
  if constexpr (same_v<T, __half>)
    return __half2float(v);
  else if constexpr (same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else
    return v;
}
/// Compute value (float for 16-bit floats) back to storage, rounding to nearest even once.
template <typename O, typename C>
__device__ __forceinline__ O from_compute(C v) {
  if constexpr (same_v<O, __half>)
    return __float2half_rn(v);
  else if constexpr (same_v<O, __nv_bfloat16>)
    return __float2bfloat16_rn(v);
  else
    return v;
}

// ---- math overloads (accurate library functions; float and double) ----

#define INGOT_CU_EW_MATH(NAME, F32, F64)             \
  __device__ __forceinline__ float NAME(float x) {   \
    return F32(x);                                   \
  }                                                  \
  __device__ __forceinline__ double NAME(double x) { \
    return F64(x);                                   \
  }
INGOT_CU_EW_MATH(m_fabs, ::fabsf, ::fabs)
INGOT_CU_EW_MATH(m_floor, ::floorf, ::floor)
INGOT_CU_EW_MATH(m_ceil, ::ceilf, ::ceil)
INGOT_CU_EW_MATH(m_rint, ::rintf, ::rint)
INGOT_CU_EW_MATH(m_exp, ::expf, ::exp)
INGOT_CU_EW_MATH(m_expm1, ::expm1f, ::expm1)
INGOT_CU_EW_MATH(m_log, ::logf, ::log)
INGOT_CU_EW_MATH(m_log1p, ::log1pf, ::log1p)
INGOT_CU_EW_MATH(m_sqrt, ::sqrtf, ::sqrt)
INGOT_CU_EW_MATH(m_sin, ::sinf, ::sin)
INGOT_CU_EW_MATH(m_cos, ::cosf, ::cos)
INGOT_CU_EW_MATH(m_tanh, ::tanhf, ::tanh)
INGOT_CU_EW_MATH(m_erf, ::erff, ::erf)
#undef INGOT_CU_EW_MATH
__device__ __forceinline__ float m_fmod(float a, float b) {
  return ::fmodf(a, b);
}
__device__ __forceinline__ double m_fmod(double a, double b) {
  return ::fmod(a, b);
}
__device__ __forceinline__ float m_copysign(float a, float b) {
  return ::copysignf(a, b);
}
__device__ __forceinline__ double m_copysign(double a, double b) {
  return ::copysign(a, b);
}

template <typename T>
__device__ __forceinline__ bool m_isnan(T x) {
  return x != x;
}
__device__ __forceinline__ bool m_isinf(float x) {
  return ::fabsf(x) == __int_as_float(0x7f800000);
}
__device__ __forceinline__ bool m_isinf(double x) {
  return ::fabs(x) == __longlong_as_double(0x7ff0000000000000LL);
}

/// Which compute types an op accepts (as the CPU's EwAccepts).
enum class Accepts { any, no_bool, floats, bools };
template <Accepts A, typename T>
inline constexpr bool accepts_v = A == Accepts::any || (A == Accepts::no_bool && !is_bool_v<T>) ||
                                  (A == Accepts::floats && is_float_v<T>) ||
                                  (A == Accepts::bools && is_bool_v<T>);

#define INGOT_CU_EW_TRAITS(ACCEPTS, BOOL_OUT)          \
  static constexpr Accepts accepts = Accepts::ACCEPTS; \
  static constexpr bool bool_out = BOOL_OUT;
#define INGOT_CU_EW_FN  \
  template <typename T> \
  __device__ __forceinline__

// ---- unary (T is the compute type) ----

struct AbsOp {
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T x) const {
    if constexpr (is_float_v<T>)
      return m_fabs(x);
    else if constexpr (is_signed_v<T>)
      return x < 0 ? T(-wrap_t<T>(x)) : x;
    else
      return x;
  }
};
struct NegativeOp {
  INGOT_CU_EW_TRAITS(no_bool, false)
  INGOT_CU_EW_FN T operator()(T x) const {
    if constexpr (is_float_v<T>)
      return -x;
    else
      return T(wrap_t<T>(0) - wrap_t<T>(x));
  }
};
struct SignOp {
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T x) const {
    if constexpr (is_float_v<T>) {
      if (m_isnan(x)) return x;
      return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    } else if constexpr (is_signed_v<T>) {
      return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    } else {
      return x > 0 ? T(1) : T(0);
    }
  }
};
struct FloorOp {
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T x) const { return m_floor(x); }
};
struct CeilOp {
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T x) const { return m_ceil(x); }
};
struct RoundOp {  // half to even
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T x) const { return m_rint(x); }
};
struct SquareOp {
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T x) const {
    if constexpr (is_bool_v<T>)
      return x;
    else
      return T(wrap_t<T>(x) * wrap_t<T>(x));
  }
};
struct ReciprocalOp {
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T x) const { return T(1) / x; }
};
#define INGOT_CU_EW_MATH_OP(NAME, EXPR)                     \
  struct NAME {                                             \
    INGOT_CU_EW_TRAITS(floats, false)                       \
    INGOT_CU_EW_FN T operator()(T x) const { return EXPR; } \
  };
INGOT_CU_EW_MATH_OP(ExpOp, m_exp(x))
INGOT_CU_EW_MATH_OP(Expm1Op, m_expm1(x))
INGOT_CU_EW_MATH_OP(LogOp, m_log(x))
INGOT_CU_EW_MATH_OP(Log1pOp, m_log1p(x))
INGOT_CU_EW_MATH_OP(SqrtOp, m_sqrt(x))
// Two correctly rounded steps, like the CPU (rsqrtf would differ in the last bit).
INGOT_CU_EW_MATH_OP(RsqrtOp, T(1) / m_sqrt(x))
INGOT_CU_EW_MATH_OP(SinOp, m_sin(x))
INGOT_CU_EW_MATH_OP(CosOp, m_cos(x))
INGOT_CU_EW_MATH_OP(TanhOp, m_tanh(x))
INGOT_CU_EW_MATH_OP(SigmoidOp, T(1) / (T(1) + m_exp(-x)))
INGOT_CU_EW_MATH_OP(ErfOp, m_erf(x))
INGOT_CU_EW_MATH_OP(SiluOp, x / (T(1) + m_exp(-x)))
#undef INGOT_CU_EW_MATH_OP

// gelu and gelu_tanh run in double (also for float and 16-bit floats, as on the CPU: in float
// the rounding of the erfc/exp argument is amplified). __dmul_rn/__dadd_rn keep nvcc from
// contracting into FMAs, which would round differently from the CPU.
// 0.5 x erfc(-x / sqrt2) = 0.5 x (1 + erf(x / sqrt2)) without cancellation for negative x.
struct GeluOp {
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T x) const {
    const double w = x;
    return static_cast<T>(
        __dmul_rn(__dmul_rn(0.5, w), ::erfc(__dmul_rn(w, -0.70710678118654752440))));
  }
};
// x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3) = 0.5 x (1 + tanh(u)).
struct GeluTanhOp {
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T x) const {
    const double w = x;
    const double cube = __dmul_rn(__dmul_rn(__dmul_rn(0.044715, w), w), w);
    const double u = __dmul_rn(0.79788456080286535588, __dadd_rn(w, cube));
    return static_cast<T>(w / (1.0 + ::exp(__dmul_rn(-2.0, u))));
  }
};

/// gelu_tanh of a 16-bit float (widened to float) rounded to the 16-bit type S: the same bits
/// as from_compute<S>(GeluTanhOp{}(x)) (the double formula rounded to float, then to S), in
/// float where that is provably so. The float formula's relative error is at most
/// (|a| * 4.2e-7 + 4e-7) for the exp argument a (rounded constants and products, no
/// cancellation since x and 0.044715 x^3 share a sign, expf within 2 ulps, the division);
/// eps doubles that. When every value within eps of the float result rounds to the same S,
/// the double result (inside that interval) rounds to it too, since rounding is monotonic;
/// otherwise (near an S rounding boundary, about 0.5% of inputs, or an overflowed exp or a
/// result below the normal floats) the double formula decides.
template <typename S>
__device__ __forceinline__ S gelu_tanh_round(float x) {
  const float a = -1.5957691216057308f * (x + 0.044715f * x * x * x);
  const float e = ::expf(a);
  const float y = x / (1.0f + e);
  const float ay = ::fabsf(y);
  if (e <= 3.0e38f && ay >= 1.17549435e-38f) {
    const float d = ay * (1.0e-6f * (::fabsf(a) + 1.0f));
    const S lo = from_compute<S>(y - d), hi = from_compute<S>(y + d);
    if constexpr (same_v<S, __half>) {
      if (__half_as_ushort(lo) == __half_as_ushort(hi)) return lo;
    } else {
      if (__bfloat16_as_ushort(lo) == __bfloat16_as_ushort(hi)) return lo;
    }
  }
  return from_compute<S>(GeluTanhOp{}(x));
}

/// gelu_tanh of x (in T's compute type) rounded to T: gelu_tanh_round for 16-bit T, the
/// compute-type formula otherwise.
template <typename T, typename C>
__device__ __forceinline__ T gelu_tanh_to(C x) {
  if constexpr (is_half_v<T>)
    return gelu_tanh_round<T>(x);
  else
    return from_compute<T>(GeluTanhOp{}(x));
}

struct LogicalNotOp {
  INGOT_CU_EW_TRAITS(bools, false)
  __device__ __forceinline__ bool operator()(bool x) const { return !x; }
};
struct IsNanOp {
  INGOT_CU_EW_TRAITS(floats, true)
  INGOT_CU_EW_FN bool operator()(T x) const { return m_isnan(x); }
};
struct IsInfOp {
  INGOT_CU_EW_TRAITS(floats, true)
  INGOT_CU_EW_FN bool operator()(T x) const { return m_isinf(x); }
};

// ---- binary ----

struct AddOp {
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_bool_v<T>)
      return a || b;
    else if constexpr (is_float_v<T>)
      return a + b;
    else
      return T(wrap_t<T>(a) + wrap_t<T>(b));
  }
};
struct SubtractOp {
  INGOT_CU_EW_TRAITS(no_bool, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_float_v<T>)
      return a - b;
    else
      return T(wrap_t<T>(a) - wrap_t<T>(b));
  }
};
struct MultiplyOp {
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_bool_v<T>)
      return a && b;
    else if constexpr (is_float_v<T>)
      return a * b;
    else
      return T(wrap_t<T>(a) * wrap_t<T>(b));
  }
};
struct DivideOp {
  INGOT_CU_EW_TRAITS(floats, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const { return a / b; }
};
/// Python floor division; integers: x // 0 = 0, MIN // -1 wraps to MIN. Floats follow NumPy's
/// divmod (exact remainder via fmod, then a corrected quotient).
struct FloorDivideOp {
  INGOT_CU_EW_TRAITS(no_bool, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) {
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
      if constexpr (is_signed_v<T>) {
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
/// Python %: the result takes the divisor's sign; integers: x % 0 = 0.
struct RemainderOp {
  INGOT_CU_EW_TRAITS(no_bool, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) {
      T mod = m_fmod(a, b);
      if (mod != 0) {
        if ((b < 0) != (mod < 0)) mod += b;
      } else {
        mod = m_copysign(T(0), b);
      }
      return mod;
    } else {
      if (b == 0) return T(0);
      if constexpr (is_signed_v<T>) {
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
/// Floats: pow (float's in double, rounded once: CUDA's powf is up to 4 ulps off where the
/// CPU's is within 1). Integers: exact with wrapping; a negative exponent gives the truncated
/// 1 / a^-b (0 unless |a| == 1).
struct PowerOp {
  INGOT_CU_EW_TRAITS(no_bool, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (same_v<T, float>) {
      return static_cast<float>(::pow(static_cast<double>(a), static_cast<double>(b)));
    } else if constexpr (same_v<T, double>) {
      return ::pow(a, b);
    } else {
      if constexpr (is_signed_v<T>) {
        if (b < 0) {
          if (a == 1) return T(1);
          if (a == -1) return (b & 1) ? T(-1) : T(1);
          return T(0);
        }
      }
      using U = cond_t<(sizeof(T) > 4), unsigned long long, unsigned int>;
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
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_float_v<T>)
      return (a > b || m_isnan(a)) ? a : b;
    else
      return a > b ? a : b;
  }
};
struct MinimumOp {
  INGOT_CU_EW_TRAITS(any, false)
  INGOT_CU_EW_FN T operator()(T a, T b) const {
    if constexpr (is_float_v<T>)
      return (a < b || m_isnan(a)) ? a : b;
    else
      return a < b ? a : b;
  }
};
#define INGOT_CU_EW_CMP(NAME, OP)                                     \
  struct NAME {                                                       \
    INGOT_CU_EW_TRAITS(any, true)                                     \
    INGOT_CU_EW_FN bool operator()(T a, T b) const { return a OP b; } \
  };
INGOT_CU_EW_CMP(EqualOp, ==)
INGOT_CU_EW_CMP(NotEqualOp, !=)
INGOT_CU_EW_CMP(LessOp, <)
INGOT_CU_EW_CMP(LessEqualOp, <=)
INGOT_CU_EW_CMP(GreaterOp, >)
INGOT_CU_EW_CMP(GreaterEqualOp, >=)
#undef INGOT_CU_EW_CMP
struct LogicalAndOp {
  INGOT_CU_EW_TRAITS(bools, false)
  __device__ __forceinline__ bool operator()(bool a, bool b) const { return a && b; }
};
struct LogicalOrOp {
  INGOT_CU_EW_TRAITS(bools, false)
  __device__ __forceinline__ bool operator()(bool a, bool b) const { return a || b; }
};
#undef INGOT_CU_EW_FN
#undef INGOT_CU_EW_TRAITS

/// cond ? a : b on storage values.
struct WhereOp {
  template <typename T>
  __device__ __forceinline__ T operator()(bool c, T a, T b) const {
    return c ? a : b;
  }
};

// ---- conversion (AsType) ----

/// Rounds a double to float with round-to-odd, so that a second rounding to a 16-bit float
/// gives the correctly rounded result (no double-rounding error).
__device__ __forceinline__ float round_to_odd_float(double d) {
  const float f = __double2float_rn(d);
  if (static_cast<double>(f) == d || m_isnan(f) || m_isinf(f)) return f;
  unsigned int u = __float_as_uint(f);
  if (::fabs(static_cast<double>(f)) > ::fabs(d)) --u;  // truncate toward zero
  return __uint_as_float(u | 1u);
}

/// Converts a storage value to storage type D exactly as the CPU's cpu::convert: 16-bit floats
/// round to nearest even (from float64 and integers through a round-to-odd float); float to
/// integer truncates, NaN gives 0, values beyond int64 saturate, then wrap modulo 2^bits; to
/// bool is `v != 0`.
template <typename D, typename S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (same_v<D, S>) {
    return v;
  } else if constexpr (same_v<D, bool>) {
    if constexpr (is_half_v<S>)
      return to_compute<float>(v) != 0.0f;
    else
      return v != S(0);
  } else if constexpr (is_half_v<D>) {
    if constexpr (is_half_v<S> || same_v<S, float>)
      return from_compute<D>(to_compute<float>(v));
    else
      return from_compute<D>(round_to_odd_float(static_cast<double>(v)));
  } else if constexpr (is_int_v<D> && (is_half_v<S> || is_float_v<S>)) {
    const double x = static_cast<double>(to_compute<compute_t<S>>(v));
    if (m_isnan(x)) return D(0);
    long long i;
    if (x >= 9223372036854775807.0)
      i = 9223372036854775807LL;
    else if (x <= -9223372036854775808.0)
      i = -9223372036854775807LL - 1;
    else
      i = static_cast<long long>(x);
    return static_cast<D>(i);
  } else {
    // Integer or bool to anything but 16-bit floats and bool; float <-> double.
    return static_cast<D>(to_compute<compute_t<S>>(v));
  }
}

}  // namespace ingot::cu::ew
