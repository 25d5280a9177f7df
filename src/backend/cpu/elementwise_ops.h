// Scalar functors of every elementwise op (NAME##Op for primitive NAME) and the value
// conversion of AsType. Shared by the CPU kernels and compile's fused loops. Functors run in
// the compute type (float for 16-bit floats); integer +,-,* wrap (no signed-overflow UB) and
// integer division by zero gives 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/cast.h"
#include "core/half.h"

namespace ingot::cpu {

/// Type the math runs in: float for 16-bit floats, else the storage type.
template <typename T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;
/// Unsigned twin of a signed integer so that +, -, * wrap instead of overflowing.
template <typename T, bool = std::is_integral_v<T>&& std::is_signed_v<T>>
struct wrap_type {
  using type = T;
};
template <typename T>
struct wrap_type<T, true> {
  using type = std::make_unsigned_t<T>;
};
template <typename T>
using wrap_t = typename wrap_type<T>::type;

template <typename T>
inline constexpr bool is_float_v = std::is_floating_point_v<T>;  // compute types only
template <typename T>
inline constexpr bool is_bool_v = std::is_same_v<T, bool>;

/// Which compute types an op accepts.
enum class EwAccepts { any, no_bool, floats, bools };

template <EwAccepts A, typename T>
inline constexpr bool accepts_v = A == EwAccepts::any ||
                                  (A == EwAccepts::no_bool && !is_bool_v<T>) ||
                                  (A == EwAccepts::floats && is_float_v<T>) ||
                                  (A == EwAccepts::bools && is_bool_v<T>);

#define INGOT_EW_TRAITS(ACCEPTS, BOOL_OUT)                 \
  static constexpr EwAccepts accepts = EwAccepts::ACCEPTS; \
  static constexpr bool bool_out = BOOL_OUT;

// ---- unary ----

struct AbsOp {
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T x) const {
    if constexpr (is_float_v<T>)
      return std::fabs(x);
    else if constexpr (std::is_signed_v<T>)
      return x < 0 ? T(-wrap_t<T>(x)) : x;
    else
      return x;
  }
};
struct NegativeOp {
  INGOT_EW_TRAITS(no_bool, false)
  template <typename T>
  T operator()(T x) const {
    if constexpr (is_float_v<T>)
      return -x;
    else
      return T(wrap_t<T>(0) - wrap_t<T>(x));
  }
};
struct SignOp {
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T x) const {
    if constexpr (is_float_v<T>) {
      if (std::isnan(x)) return x;
      return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    } else if constexpr (std::is_signed_v<T>) {
      return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    } else {
      return x > 0 ? T(1) : T(0);
    }
  }
};
struct FloorOp {
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T x) const {
    return std::floor(x);
  }
};
struct CeilOp {
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T x) const {
    return std::ceil(x);
  }
};
struct RoundOp {  // half to even (the default rounding mode)
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T x) const {
    return std::nearbyint(x);
  }
};
struct SquareOp {
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T x) const {
    if constexpr (is_bool_v<T>)
      return x;
    else
      return T(wrap_t<T>(x) * wrap_t<T>(x));
  }
};
struct ReciprocalOp {
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T x) const {
    return T(1) / x;
  }
};
#define INGOT_EW_MATH(NAME, EXPR)  \
  struct NAME {                    \
    INGOT_EW_TRAITS(floats, false) \
    template <typename T>          \
    T operator()(T x) const {      \
      return EXPR;                 \
    }                              \
  };
INGOT_EW_MATH(ExpOp, std::exp(x))
INGOT_EW_MATH(Expm1Op, std::expm1(x))
INGOT_EW_MATH(LogOp, std::log(x))
INGOT_EW_MATH(Log1pOp, std::log1p(x))
INGOT_EW_MATH(SqrtOp, std::sqrt(x))
INGOT_EW_MATH(RsqrtOp, T(1) / std::sqrt(x))
INGOT_EW_MATH(SinOp, std::sin(x))
INGOT_EW_MATH(CosOp, std::cos(x))
INGOT_EW_MATH(TanhOp, std::tanh(x))
INGOT_EW_MATH(SigmoidOp, T(1) / (T(1) + std::exp(-x)))
INGOT_EW_MATH(ErfOp, std::erf(x))
INGOT_EW_MATH(SiluOp, x / (T(1) + std::exp(-x)))
// gelu and gelu_tanh of float (and 16-bit floats) run in double: in float the rounding of the
// erfc/exp argument is amplified by up to ~2|arg|^2 (gelu) or 2|u| (gelu_tanh) ulps.
template <typename T>
using wide_t = std::conditional_t<std::is_same_v<T, float>, double, T>;
// 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2): no cancellation for negative x.
struct GeluOp {
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T x) const {
    using W = wide_t<T>;
    const W w = x;
    return static_cast<T>(W(0.5) * w * std::erfc(w * W(-0.70710678118654752440)));
  }
};
// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation.
struct GeluTanhOp {
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T x) const {
    using W = wide_t<T>;
    const W w = x;
    const W u = W(0.79788456080286535588) * (w + W(0.044715) * w * w * w);
    return static_cast<T>(w / (W(1) + std::exp(W(-2) * u)));
  }
};
#undef INGOT_EW_MATH

struct LogicalNotOp {
  INGOT_EW_TRAITS(bools, false)
  bool operator()(bool x) const { return !x; }
};
struct IsNanOp {
  INGOT_EW_TRAITS(floats, true)
  template <typename T>
  bool operator()(T x) const {
    return std::isnan(x);
  }
};
struct IsInfOp {
  INGOT_EW_TRAITS(floats, true)
  template <typename T>
  bool operator()(T x) const {
    return std::isinf(x);
  }
};

// ---- binary ----

struct AddOp {
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_bool_v<T>)
      return a || b;
    else
      return T(wrap_t<T>(a) + wrap_t<T>(b));
  }
};
struct SubtractOp {
  INGOT_EW_TRAITS(no_bool, false)
  template <typename T>
  T operator()(T a, T b) const {
    return T(wrap_t<T>(a) - wrap_t<T>(b));
  }
};
struct MultiplyOp {
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_bool_v<T>)
      return a && b;
    else
      return T(wrap_t<T>(a) * wrap_t<T>(b));
  }
};
struct DivideOp {
  INGOT_EW_TRAITS(floats, false)
  template <typename T>
  T operator()(T a, T b) const {
    return a / b;
  }
};
/// Python floor division; integers: x // 0 = 0, MIN // -1 wraps to MIN. Floats follow
/// NumPy's divmod (exact remainder via fmod, then a corrected quotient).
struct FloorDivideOp {
  INGOT_EW_TRAITS(no_bool, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) {
      if (b == 0) return a / b;
      T mod = std::fmod(a, b);
      T div = (a - mod) / b;
      if (mod != 0 && ((b < 0) != (mod < 0))) div -= T(1);
      if (div == 0) return std::copysign(T(0), a / b);
      T fl = std::floor(div);
      if (div - fl > T(0.5)) fl += T(1);
      return fl;
    } else {
      if (b == 0) return T(0);
      if constexpr (std::is_signed_v<T>) {
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
  INGOT_EW_TRAITS(no_bool, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) {
      T mod = std::fmod(a, b);
      if (mod != 0) {
        if ((b < 0) != (mod < 0)) mod += b;
      } else {
        mod = std::copysign(T(0), b);
      }
      return mod;
    } else {
      if (b == 0) return T(0);
      if constexpr (std::is_signed_v<T>) {
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
/// Floats: std::pow. Integers: exact with wrapping; a negative exponent gives the truncated
/// value 1 / a^-b (so 0 unless |a| == 1; 0 ** negative = 0).
struct PowerOp {
  INGOT_EW_TRAITS(no_bool, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) {
      return std::pow(a, b);
    } else {
      if constexpr (std::is_signed_v<T>) {
        if (b < 0) {
          if (a == 1) return T(1);
          if (a == -1) return (b & 1) ? T(-1) : T(1);
          return T(0);
        }
      }
      using U = std::conditional_t<(sizeof(T) > 4), uint64_t, uint32_t>;
      U base = U(wrap_t<T>(a)), r = 1;
      for (auto e = b; e > 0; e = T(e >> 1)) {
        if (e & 1) r *= base;
        base *= base;
      }
      return T(static_cast<wrap_t<T>>(r));
    }
  }
};
struct MaximumOp {  // NaN propagates
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_float_v<T>)
      return (a > b || std::isnan(a)) ? a : b;
    else
      return a > b ? a : b;
  }
};
struct MinimumOp {
  INGOT_EW_TRAITS(any, false)
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (is_float_v<T>)
      return (a < b || std::isnan(a)) ? a : b;
    else
      return a < b ? a : b;
  }
};
#define INGOT_EW_CMP(NAME, OP)        \
  struct NAME {                       \
    INGOT_EW_TRAITS(any, true)        \
    template <typename T>             \
    bool operator()(T a, T b) const { \
      return a OP b;                  \
    }                                 \
  };
INGOT_EW_CMP(EqualOp, ==)
INGOT_EW_CMP(NotEqualOp, !=)
INGOT_EW_CMP(LessOp, <)
INGOT_EW_CMP(LessEqualOp, <=)
INGOT_EW_CMP(GreaterOp, >)
INGOT_EW_CMP(GreaterEqualOp, >=)
#undef INGOT_EW_CMP
struct LogicalAndOp {
  INGOT_EW_TRAITS(bools, false)
  bool operator()(bool a, bool b) const { return a && b; }
};
struct LogicalOrOp {
  INGOT_EW_TRAITS(bools, false)
  bool operator()(bool a, bool b) const { return a || b; }
};
#undef INGOT_EW_TRAITS

// ---- conversion (AsType) ----

/// Rounds a double to float with round-to-odd, so that a second rounding to a 16-bit float
/// gives the correctly rounded result (no double-rounding error).
inline float round_to_odd_float(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) == d || !std::isfinite(f)) return f;
  uint32_t u = f32_bits(f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) --u;  // truncate toward zero
  return bits_f32(u | 1u);
}

/// Converts a value between storage types: 16-bit floats round to nearest even (from float64
/// and integers through a round-to-odd float, so without double rounding); float to integer
/// truncates, NaN gives 0, values beyond int64 saturate, and the result wraps modulo 2^bits; to
/// bool is `v != 0`.
template <typename D, typename S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_half_v<D> && (std::is_same_v<S, double> || std::is_integral_v<S>)) {
    return D(round_to_odd_float(static_cast<double>(v)));
  } else if constexpr (std::is_integral_v<D> && !is_bool_v<D> &&
                       (std::is_floating_point_v<S> || is_half_v<S>)) {
    double x = static_cast<double>(static_cast<compute_t<S>>(v));
    if (std::isnan(x)) return D(0);
    int64_t i;
    if (x >= 9223372036854775807.0)
      i = std::numeric_limits<int64_t>::max();
    else if (x <= -9223372036854775808.0)
      i = std::numeric_limits<int64_t>::min();
    else
      i = static_cast<int64_t>(x);
    return static_cast<D>(i);
  } else {
    return cast_value<D>(v);
  }
}

}  // namespace ingot::cpu
