// Helpers of the elementwise tests: input generation per dtype, exact rounding of long-double
// references to each dtype (16-bit floats by nearest-neighbour search, ties to even), integer
// wrap-around, and comparison within a number of units in the last place (ulps).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "test_util.h"

namespace ingot::test {

using ld = long double;

/// n values representable in `t`: floats uniform in [lo, hi], integers uniform in
/// [ceil(lo), floor(hi)] clipped to the dtype's range, bool 0/1.
inline std::vector<double> gen_values(int64_t n, Dtype t, double lo, double hi, uint32_t seed);

/// Bits of a half type H holding exactly representable v.
template <typename H>
uint16_t half_bits(double v) {
  return H(static_cast<float>(v)).bits;
}

/// Correctly rounded (nearest, ties to even) value of r in the 16-bit float type H.
template <typename H>
double round_half_exact(ld r, double max_finite, double overflow_at) {
  if (std::isnan(r)) return std::nan("");
  if (std::fabs(static_cast<double>(r)) >= overflow_at || std::isinf(r))
    return r > 0 ? INFINITY : -INFINITY;
  const uint16_t b = H(static_cast<float>(r)).bits;
  const uint16_t sign = b & 0x8000;
  double best = NAN;
  ld best_d = INFINITY;
  uint16_t best_bits = 0;
  for (int delta = -1; delta <= 1; ++delta) {
    int mag = (b & 0x7fff) + delta;
    if (mag < 0) continue;
    uint16_t cb = static_cast<uint16_t>(sign | mag);
    double v = static_cast<float>(H::from_bits(cb));
    if (std::isnan(v) || std::isinf(v) || std::fabs(v) > max_finite) continue;
    ld d = std::fabs(static_cast<ld>(v) - r);
    if (d < best_d || (d == best_d && (cb & 1) == 0)) {
      best_d = d;
      best = v;
      best_bits = cb;
    }
  }
  (void)best_bits;
  return best;
}

/// Wraps an exact integer result to the range of an integer dtype (two's complement).
inline double wrap_int(ld r, Dtype t) {
  int64_t i = static_cast<int64_t>(r);
  switch (t) {
    case Dtype::bool_:
      return r != 0 ? 1 : 0;
    case Dtype::uint8:
      return static_cast<uint8_t>(i);
    case Dtype::int8:
      return static_cast<int8_t>(i);
    case Dtype::int32:
      return static_cast<int32_t>(i);
    case Dtype::uint32:
      return static_cast<uint32_t>(i);
    default:
      return static_cast<double>(i);
  }
}

/// The reference value r as the dtype holds it: exact rounding for floats, wrap for integers.
inline double round_exact(ld r, Dtype t) {
  switch (t) {
    case Dtype::float16:
      return round_half_exact<float16_t>(r, 65504.0, 65520.0);
    case Dtype::bfloat16:
      return round_half_exact<bfloat16_t>(r, std::ldexp(255.0, 120),
                                          std::ldexp(255.0, 120) + std::ldexp(1.0, 119));
    case Dtype::float32:
      return static_cast<float>(r);
    case Dtype::float64:
      return static_cast<double>(r);
    default:
      return wrap_int(r, t);
  }
}

/// Position of v on the ordered line of values of float dtype t (adjacent values differ by 1).
inline int64_t ordinal(double v, Dtype t) {
  int64_t mag;
  bool neg = std::signbit(v);
  switch (t) {
    case Dtype::float16:
      mag = half_bits<float16_t>(v) & 0x7fff;
      break;
    case Dtype::bfloat16:
      mag = half_bits<bfloat16_t>(v) & 0x7fff;
      break;
    case Dtype::float32:
      mag = f32_bits(static_cast<float>(v)) & 0x7fffffff;
      break;
    default: {
      uint64_t u;
      std::memcpy(&u, &v, 8);
      mag = static_cast<int64_t>(u & 0x7fffffffffffffffull);
    }
  }
  return neg ? -mag : mag;
}

/// Expects got[i] to equal the reference ref[i] rounded to t, within `ulps` for floats (NaN
/// matches NaN); exact for integers and bool. With `signed_zero`, zeros must agree in sign.
inline void expect_ulps(const std::vector<double>& got, const std::vector<ld>& ref, Dtype t,
                        int ulps, const std::string& what, bool signed_zero = false) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double want = round_exact(ref[i], t), g = got[i];
    bool ok;
    if (!is_floating(t))
      ok = g == want;
    else if (std::isnan(want) || std::isnan(g))
      ok = std::isnan(want) && std::isnan(g);
    else
      ok = std::llabs(ordinal(g, t) - ordinal(want, t)) <= ulps;
    if (ok && signed_zero && want == 0 && g == 0) ok = std::signbit(g) == std::signbit(want);
    if (!ok && reported++ < 5)
      ADD_FAILURE() << what << " [" << dtype_name(t) << "] at " << i << ": got " << g << ", want "
                    << want << " (reference " << static_cast<double>(ref[i]) << ", " << ulps
                    << " ulps allowed)";
  }
}

inline std::vector<double> gen_values(int64_t n, Dtype t, double lo, double hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<double> v(static_cast<size_t>(n));
  double ilo = std::ceil(lo), ihi = std::floor(hi);
  switch (t) {
    case Dtype::uint8:
      ilo = std::max(ilo, 0.0), ihi = std::min(ihi, 255.0);
      break;
    case Dtype::uint32:
      ilo = std::max(ilo, 0.0);
      break;
    case Dtype::int8:
      ilo = std::max(ilo, -128.0), ihi = std::min(ihi, 127.0);
      break;
    default:
      break;
  }
  for (auto& x : v) {
    if (t == Dtype::bool_) {
      x = static_cast<double>(g() & 1);
    } else if (!is_floating(t)) {
      x = std::floor(std::uniform_real_distribution<double>(ilo, ihi + 1)(g));
      x = std::min(x, ihi);
    } else {
      x = round_exact(std::uniform_real_distribution<double>(lo, hi)(g), t);
    }
  }
  return v;
}

/// Shapes every op runs on: sizes 1, 7, 33 and 1221.
inline const Shape kTestShapes[] = {{1, 1}, {1, 7}, {3, 11}, {33, 37}};

inline std::string case_name(const char* op, Dtype t, Layout l, const Shape& s) {
  return std::string(op) + " " + std::string(dtype_name(t)) + " " + layout_name(l) + " " +
         shape_str(s);
}

}  // namespace ingot::test
