// Binary elementwise ops against long-double references: every op x dtype x layout pair x
// size (including scalar and shape broadcasting), special values, integer division by zero
// and overflow.
#include <gtest/gtest.h>

#include <cmath>

#include "test_elementwise_ref.h"

using namespace ingot;
using namespace ingot::test;

namespace {

enum class Out { same, floating, boolean };
using BinFn = Array (*)(const Array&, const Array&);

struct BinaryCase {
  const char* name;
  BinFn fn;
  ld (*ref)(ld, ld);   // float semantics
  ld (*iref)(ld, ld);  // integer semantics (nullptr: same as ref)
  Out out;
  bool bool_ok;
  double alo, ahi, blo, bhi;
  // ulps allowed for 16-bit, float32, float64 outputs. +,-,*,/ and the exact ops are
  // correctly rounded in float32 (and innocuous for halves computed in float32), so 0; the
  // float64 reference is a long double rounded twice, hence 1 there. pow: libm error.
  int ulps_half, ulps_f32, ulps_f64;
};

// Python floor division and remainder (NumPy for infinities: inf // x and inf % x are NaN).
ld floordiv_f(ld a, ld b) {
  if (std::isnan(a) || std::isnan(b)) return NAN;
  if (b == 0) return a / b;
  if (std::isinf(a)) return NAN;
  if (std::isinf(b)) return (a == 0 || (a < 0) == (b < 0)) ? std::copysign(0.0L, a / b) : -1;
  return std::floor(a / b);
}
ld floordiv_i(ld a, ld b) {
  return b == 0 ? 0 : std::floor(a / b);
}
ld rem_f(ld a, ld b) {
  if (std::isnan(a) || std::isnan(b) || b == 0 || std::isinf(a)) return NAN;
  ld m = std::fmod(a, b);  // exact
  if (m == 0) return std::copysign(0.0L, b);
  return (b < 0) != (m < 0) ? m + b : m;
}
ld rem_i(ld a, ld b) {
  return b == 0 ? 0 : a - b * std::floor(a / b);
}
ld pow_i(ld a, ld b) {
  if (b < 0) return a == 1 ? 1 : (a == -1 ? (std::fmod(b, 2) != 0 ? -1 : 1) : 0);
  uint64_t r = 1, base = static_cast<uint64_t>(static_cast<int64_t>(a));
  for (int64_t e = 0; e < static_cast<int64_t>(b); ++e) r *= base;
  return static_cast<ld>(static_cast<int64_t>(r));
}
ld max_ref(ld a, ld b) {
  return std::isnan(a) || std::isnan(b) ? NAN : (a > b ? a : b);
}
ld min_ref(ld a, ld b) {
  return std::isnan(a) || std::isnan(b) ? NAN : (a < b ? a : b);
}

#define FN(OP) [](const Array& a, const Array& b) { return ingot::OP(a, b); }
const BinaryCase kCases[] = {
    {"add", FN(add), [](ld a, ld b) { return a + b; }, nullptr, Out::same, true, -50, 50, -50, 50,
     0, 0, 1},
    {"subtract", FN(subtract), [](ld a, ld b) { return a - b; }, nullptr, Out::same, false, -50, 50,
     -50, 50, 0, 0, 1},
    {"multiply", FN(multiply), [](ld a, ld b) { return a * b; }, nullptr, Out::same, true, -50, 50,
     -50, 50, 0, 0, 1},
    {"divide", FN(divide), [](ld a, ld b) { return a / b; }, nullptr, Out::floating, true, -50, 50,
     -8, 8, 0, 0, 1},
    {"floor_divide", FN(floor_divide), floordiv_f, floordiv_i, Out::same, false, -50, 50, -8, 8, 0,
     0, 0},
    {"remainder", FN(remainder), rem_f, rem_i, Out::same, false, -50, 50, -8, 8, 0, 0, 0},
    {"power", FN(power), [](ld a, ld b) { return std::pow(a, b); }, pow_i, Out::same, false, 0.1, 4,
     -3, 6, 1, 3, 2},
    {"maximum", FN(maximum), max_ref, nullptr, Out::same, true, -50, 50, -50, 50, 0, 0, 0},
    {"minimum", FN(minimum), min_ref, nullptr, Out::same, true, -50, 50, -50, 50, 0, 0, 0},
    {"equal", FN(equal), [](ld a, ld b) -> ld { return a == b; }, nullptr, Out::boolean, true, -3,
     3, -3, 3, 0, 0, 0},
    {"not_equal", FN(not_equal), [](ld a, ld b) -> ld { return a != b; }, nullptr, Out::boolean,
     true, -3, 3, -3, 3, 0, 0, 0},
    {"less", FN(less), [](ld a, ld b) -> ld { return a < b; }, nullptr, Out::boolean, true, -3, 3,
     -3, 3, 0, 0, 0},
    {"less_equal", FN(less_equal), [](ld a, ld b) -> ld { return a <= b; }, nullptr, Out::boolean,
     true, -3, 3, -3, 3, 0, 0, 0},
    {"greater", FN(greater), [](ld a, ld b) -> ld { return a > b; }, nullptr, Out::boolean, true,
     -3, 3, -3, 3, 0, 0, 0},
    {"greater_equal", FN(greater_equal), [](ld a, ld b) -> ld { return a >= b; }, nullptr,
     Out::boolean, true, -3, 3, -3, 3, 0, 0, 0},
    {"logical_and", FN(logical_and), [](ld a, ld b) -> ld { return a != 0 && b != 0; }, nullptr,
     Out::boolean, true, -2, 2, -2, 2, 0, 0, 0},
    {"logical_or", FN(logical_or), [](ld a, ld b) -> ld { return a != 0 || b != 0; }, nullptr,
     Out::boolean, true, -2, 2, -2, 2, 0, 0, 0},
};
#undef FN

Dtype out_dtype(const BinaryCase& c, Dtype in) {
  switch (c.out) {
    case Out::same:
      return in;
    case Out::floating:
      return is_floating(in) ? in : float32;
    case Out::boolean:
      return bool_;
  }
  return in;
}

int ulps_for(const BinaryCase& c, Dtype out) {
  if (out == float16 || out == bfloat16) return c.ulps_half;
  if (out == float32) return c.ulps_f32;
  return c.ulps_f64;
}

ld reference(const BinaryCase& c, Dtype t, ld a, ld b) {
  return (!is_floating(t) && c.iref) ? c.iref(a, b) : c.ref(a, b);
}

/// a and b layouts, plus how b's shape relates to a's.
enum class BShape { same, scalar, row, col };
struct LayoutPair {
  Layout a, b;
  BShape bshape;
  bool swap;  // the broadcast operand goes first
};
const LayoutPair kPairs[] = {
    {Layout::contiguous, Layout::contiguous, BShape::same, false},
    {Layout::transposed, Layout::contiguous, BShape::same, false},
    {Layout::sliced, Layout::transposed, BShape::same, false},
    {Layout::broadcast, Layout::sliced, BShape::same, false},
    {Layout::contiguous, Layout::contiguous, BShape::scalar, false},
    {Layout::contiguous, Layout::contiguous, BShape::scalar, true},
    {Layout::transposed, Layout::contiguous, BShape::row, false},
    {Layout::contiguous, Layout::contiguous, BShape::col, true},
};

void run_case(const BinaryCase& c, Dtype t, const LayoutPair& lp, const Shape& shape,
              uint32_t seed) {
  double blo = c.blo, bhi = c.bhi;
  if (c.iref == pow_i && !is_floating(t)) blo = 0, bhi = 6;  // negative exponents: own test
  double alo = (c.iref == pow_i && !is_floating(t)) ? -6 : c.alo;
  std::vector<double> va = gen_values(shape_size(shape), t, alo, c.ahi, seed);
  Array a = make_array(va, shape, t, lp.a);
  Shape bs = shape;
  if (lp.bshape == BShape::scalar) bs = {};
  if (lp.bshape == BShape::row) bs = {shape[1]};
  if (lp.bshape == BShape::col) bs = {shape[0], 1};
  std::vector<double> vb = gen_values(shape_size(bs), t, blo, bhi, seed + 1000);
  Array b = bs.size() == 2 ? make_array(vb, bs, t, lp.b) : Array(vb, bs, t);
  Array y = lp.swap ? c.fn(b, a) : c.fn(a, b);
  const Dtype ot = out_dtype(c, t);
  const std::string what = case_name(c.name, t, lp.a, shape) + " with b " + shape_str(bs) + " " +
                           layout_name(lp.b) + (lp.swap ? " (b first)" : "");
  ASSERT_EQ(y.dtype(), ot) << what;
  ASSERT_EQ(y.shape(), shape) << what;
  std::vector<ld> ref(va.size());
  for (int64_t i = 0; i < shape[0]; ++i)
    for (int64_t j = 0; j < shape[1]; ++j) {
      double x = va[i * shape[1] + j];
      double z = lp.bshape == BShape::same     ? vb[i * shape[1] + j]
                 : lp.bshape == BShape::scalar ? vb[0]
                 : lp.bshape == BShape::row    ? vb[j]
                                               : vb[i];
      ref[i * shape[1] + j] = lp.swap ? reference(c, t, z, x) : reference(c, t, x, z);
    }
  expect_ulps(y.to_vector<double>(), ref, ot, ulps_for(c, ot), what);
}

}  // namespace

TEST(ElementwiseBinary, AllOpsDtypesLayoutsSizes) {
  uint32_t seed = 1;
  for (const auto& c : kCases)
    for (Dtype t : kAllDtypes) {
      if (t == bool_ && !c.bool_ok) continue;
      for (const auto& lp : kPairs)
        for (const Shape& s : kTestShapes) run_case(c, t, lp, s, seed++);
    }
}

TEST(ElementwiseBinary, ParallelPathLargeArrays) {
  const Shape big{257, 256};  // 65792 elements
  for (const auto& c : kCases) run_case(c, float32, kPairs[0], big, 11);
  for (int i : {0, 2, 7}) {  // add, multiply, maximum on strided and broadcast inputs
    run_case(kCases[i], float16, kPairs[2], big, 12);
    run_case(kCases[i], int32, kPairs[6], big, 13);
    run_case(kCases[i], bfloat16, kPairs[7], big, 14);
  }
}

TEST(ElementwiseBinary, SpecialValues) {
  const double inf = INFINITY, nan = NAN;
  const std::vector<double> s = {0.0, -0.0, inf, -inf, nan, 1.0, -1.0, 1e30, -2.5, 3.0};
  for (const auto& c : kCases) {
    for (Dtype t : kFloatDtypes) {
      std::vector<double> va, vb;
      std::vector<ld> ref;
      for (double x : s)
        for (double z : s) {
          va.push_back(round_exact(x, t));
          vb.push_back(round_exact(z, t));
          ref.push_back(c.ref(va.back(), vb.back()));
        }
      const int64_t n = static_cast<int64_t>(va.size());
      Array y = c.fn(Array(va, {n}, t), Array(vb, {n}, t));
      expect_ulps(y.to_vector<double>(), ref, out_dtype(c, t), ulps_for(c, t),
                  std::string(c.name) + " specials",
                  std::string(c.name) != "maximum" && std::string(c.name) != "minimum");
    }
  }
}

TEST(ElementwiseBinary, NanPropagatesThroughMaxMin) {
  Array a({NAN, 1.f, NAN});
  Array b({1.f, NAN, NAN});
  for (auto v : {maximum(a, b).to_vector<float>(), minimum(a, b).to_vector<float>()})
    for (float x : v) EXPECT_TRUE(std::isnan(x));
}

TEST(ElementwiseBinary, IntegerDivisionByZeroGivesZero) {
  for (Dtype t : {uint8, int8, int32, uint32, int64}) {
    Array a(std::vector<int>{5, 0, 7, 100}, {4}, t);
    Array z(std::vector<int>{0, 0, 0, 0}, {4}, t);
    EXPECT_EQ(floor_divide(a, z).to_vector<int>(), (std::vector<int>{0, 0, 0, 0}));
    EXPECT_EQ(remainder(a, z).to_vector<int>(), (std::vector<int>{0, 0, 0, 0}));
    EXPECT_EQ(floor_divide(a, Array(0)).to_vector<int>(), (std::vector<int>{0, 0, 0, 0}));
  }
  // Float division by zero follows IEEE / NumPy.
  auto f = floor_divide(Array({1.f, -1.f, 0.f}), Array(0.f)).to_vector<float>();
  EXPECT_EQ(f[0], INFINITY);
  EXPECT_EQ(f[1], -INFINITY);
  EXPECT_TRUE(std::isnan(f[2]));
  EXPECT_TRUE(std::isnan(remainder(Array(1.f), Array(0.f)).item<float>()));
}

TEST(ElementwiseBinary, IntegerMinByMinusOneWraps) {
  const int32_t mn = std::numeric_limits<int32_t>::min();
  Array a(std::vector<int32_t>{mn, mn, 7, -7}, {4});
  Array b(std::vector<int32_t>{-1, 1, -2, 2}, {4});
  EXPECT_EQ(floor_divide(a, b).to_vector<int32_t>(), (std::vector<int32_t>{mn, mn, -4, -4}));
  EXPECT_EQ(remainder(a, b).to_vector<int32_t>(), (std::vector<int32_t>{0, 0, -1, 1}));
  Array c(std::vector<int8_t>{-128}, {1});
  EXPECT_EQ(floor_divide(c, Array(std::vector<int8_t>{-1}, {1})).item<int>(), -128);
  const int64_t mn64 = std::numeric_limits<int64_t>::min();
  Array d(std::vector<int64_t>{mn64}, {1});
  EXPECT_EQ(floor_divide(d, Array(std::vector<int64_t>{-1}, {1})).item<int64_t>(), mn64);
  EXPECT_EQ(remainder(d, Array(std::vector<int64_t>{-1}, {1})).item<int64_t>(), 0);
}

TEST(ElementwiseBinary, IntegerOverflowWraps) {
  const int32_t mx = std::numeric_limits<int32_t>::max();
  Array a(std::vector<int32_t>{mx, -mx - 1, 65536}, {3});
  EXPECT_EQ(add(a, Array(1)).to_vector<int32_t>(), (std::vector<int32_t>{-mx - 1, -mx, 65537}));
  EXPECT_EQ(subtract(a, Array(2)).to_vector<int32_t>(),
            (std::vector<int32_t>{mx - 2, mx - 1, 65534}));
  EXPECT_EQ(multiply(a, a).to_vector<int32_t>(), (std::vector<int32_t>{1, 0, 0}));
  uint64_t p = 1;
  for (int i = 0; i < 41; ++i) p *= 3;  // 3^41 mod 2^64
  EXPECT_EQ(power(Array(std::vector<int64_t>{3}, {1}), Array(std::vector<int64_t>{41}, {1}))
                .item<int64_t>(),
            static_cast<int64_t>(p));
}

TEST(ElementwiseBinary, IntegerPowerNegativeExponent) {
  Array base(std::vector<int32_t>{1, -1, -1, 2, 0, -3}, {6});
  Array e(std::vector<int32_t>{-3, -3, -2, -1, -1, -2}, {6});
  EXPECT_EQ(power(base, e).to_vector<int32_t>(), (std::vector<int32_t>{1, -1, 1, 0, 0, 0}));
}

TEST(ElementwiseBinary, BoolArithmetic) {
  Array t(std::vector<bool>{true, true, false, false}, {4});
  Array u(std::vector<bool>{true, false, true, false}, {4});
  EXPECT_EQ(add(t, u).dtype(), bool_);
  EXPECT_EQ(add(t, u).to_vector<bool>(), (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(multiply(t, u).to_vector<bool>(), (std::vector<bool>{true, false, false, false}));
  expect_error<InvalidArgument>([&] { subtract(t, u); }, "[subtract] is not supported for bool");
  expect_error<InvalidArgument>([&] { power(t, u); }, "[power]");
  EXPECT_EQ(divide(t, u).dtype(), float32);
}

TEST(ElementwiseBinary, BroadcastErrorNamesBothShapes) {
  Array a = zeros({2, 3}), b = zeros({4});
  expect_error<InvalidArgument>([&] { add(a, b); }, "[add] cannot broadcast [2, 3] and [4]");
  expect_error<InvalidArgument>([&] { less(a, b); }, "[less] cannot broadcast [2, 3] and [4]");
  expect_error<InvalidArgument>([&] { a* b; }, "[multiply] cannot broadcast");
  EXPECT_EQ(broadcast_shapes({5, 1, 3}, {4, 1}), (Shape{5, 4, 3}));
  EXPECT_EQ(add(zeros({3, 1}), zeros({1, 4})).shape(), (Shape{3, 4}));
}
