// Unary elementwise ops against long-double references: every op x dtype x layout x size,
// special values (NaN, inf, -0, large) and the parallel path.
#include <gtest/gtest.h>

#include <cmath>

#include "test_elementwise_ref.h"

using namespace ingot;
using namespace ingot::test;

namespace {

enum class Out { same, floating, boolean };

struct UnaryCase {
  const char* name;
  Array (*fn)(const Array&);
  ld (*ref)(ld);
  Out out;
  bool bool_ok, int_ok;  // accepted input kinds besides floats
  double lo, hi;
  // Allowed error in ulps of the output for 16-bit floats, float32 and float64. Halves: the
  // float32 result (a few float32 ulps) rounded once is at most 1 ulp from the correctly
  // rounded one (0 for exact or correctly rounded float32 ops: IEEE ops of halves computed in
  // float32 are innocuous). float32/64: libm error; float32 gelu/gelu_tanh compute in double.
  // float64 gelu/gelu_tanh: the rounding of the erfc/exp argument (x/sqrt2, the cubic u) is
  // amplified by the condition number 2 z^2 (<= 36 for |x| <= 6) or 2|u| (<= 25), hence 64.
  int ulps_half, ulps_f32, ulps_f64;
};

ld sigmoid_ref(ld x) {
  return 1.0L / (1.0L + std::exp(-x));
}
ld gelu_tanh_ref(ld x) {
  // 0.5 x (1 + tanh(u)) written as x * sigmoid(2u) (an identity) to avoid cancellation.
  ld u = std::sqrt(2.0L / 3.14159265358979323846264338327950288L) * (x + 0.044715L * x * x * x);
  return x / (1.0L + std::exp(-2.0L * u));
}

const UnaryCase kCases[] = {
    {"abs", [](const Array& a) { return ingot::abs(a); }, [](ld x) { return std::fabs(x); },
     Out::same, true, true, -100, 100, 0, 0, 0},
    {"negative", [](const Array& a) { return ingot::negative(a); }, [](ld x) { return -x; },
     Out::same, false, true, -100, 100, 0, 0, 0},
    {"sign", [](const Array& a) { return ingot::sign(a); },
     [](ld x) -> ld { return std::isnan(x) ? x : (x > 0 ? 1 : (x < 0 ? -1 : 0)); }, Out::same, true,
     true, -3, 3, 0, 0, 0},
    {"floor", [](const Array& a) { return ingot::floor(a); }, [](ld x) { return std::floor(x); },
     Out::same, true, true, -10, 10, 0, 0, 0},
    {"ceil", [](const Array& a) { return ingot::ceil(a); }, [](ld x) { return std::ceil(x); },
     Out::same, true, true, -10, 10, 0, 0, 0},
    {"round", [](const Array& a) { return ingot::round(a); },
     [](ld x) { return std::nearbyint(x); }, Out::same, true, true, -10, 10, 0, 0, 0},
    {"square", [](const Array& a) { return ingot::square(a); }, [](ld x) { return x * x; },
     Out::same, true, true, -20, 20, 0, 0, 1},
    {"reciprocal", [](const Array& a) { return ingot::reciprocal(a); },
     [](ld x) { return 1.0L / x; }, Out::floating, true, true, -4, 4, 0, 0, 1},
    {"exp", [](const Array& a) { return ingot::exp(a); }, [](ld x) { return std::exp(x); },
     Out::floating, true, true, -10, 10, 1, 2, 2},
    {"expm1", [](const Array& a) { return ingot::expm1(a); }, [](ld x) { return std::expm1(x); },
     Out::floating, true, true, -3, 3, 1, 2, 2},
    {"log", [](const Array& a) { return ingot::log(a); }, [](ld x) { return std::log(x); },
     Out::floating, true, true, 0.01, 100, 1, 2, 2},
    {"log1p", [](const Array& a) { return ingot::log1p(a); }, [](ld x) { return std::log1p(x); },
     Out::floating, true, true, -0.9, 10, 1, 2, 2},
    {"sqrt", [](const Array& a) { return ingot::sqrt(a); }, [](ld x) { return std::sqrt(x); },
     Out::floating, true, true, 0, 100, 0, 0, 1},
    {"rsqrt", [](const Array& a) { return ingot::rsqrt(a); },
     [](ld x) { return 1.0L / std::sqrt(x); }, Out::floating, true, true, 0.01, 100, 1, 2, 2},
    {"sin", [](const Array& a) { return ingot::sin(a); }, [](ld x) { return std::sin(x); },
     Out::floating, true, true, -10, 10, 1, 2, 2},
    {"cos", [](const Array& a) { return ingot::cos(a); }, [](ld x) { return std::cos(x); },
     Out::floating, true, true, -10, 10, 1, 2, 2},
    {"tanh", [](const Array& a) { return ingot::tanh(a); }, [](ld x) { return std::tanh(x); },
     Out::floating, true, true, -5, 5, 1, 3, 2},
    {"sigmoid", [](const Array& a) { return ingot::sigmoid(a); }, sigmoid_ref, Out::floating, true,
     true, -20, 20, 1, 4, 4},
    {"erf", [](const Array& a) { return ingot::erf(a); }, [](ld x) { return std::erf(x); },
     Out::floating, true, true, -3, 3, 1, 3, 2},
    {"silu", [](const Array& a) { return ingot::silu(a); }, [](ld x) { return x * sigmoid_ref(x); },
     Out::floating, true, true, -20, 20, 1, 4, 4},
    {"gelu", [](const Array& a) { return ingot::gelu(a); },
     [](ld x) { return 0.5L * x * std::erfc(-x / std::sqrt(2.0L)); }, Out::floating, true, true, -6,
     6, 1, 2, 64},
    {"gelu_tanh", [](const Array& a) { return ingot::gelu_tanh(a); }, gelu_tanh_ref, Out::floating,
     true, true, -6, 6, 1, 2, 64},
    {"logical_not", [](const Array& a) { return ingot::logical_not(a); },
     [](ld x) -> ld { return x == 0; }, Out::boolean, true, true, -2, 2, 0, 0, 0},
    {"isnan", [](const Array& a) { return ingot::isnan(a); },
     [](ld x) -> ld { return std::isnan(x); }, Out::boolean, true, true, -2, 2, 0, 0, 0},
    {"isinf", [](const Array& a) { return ingot::isinf(a); },
     [](ld x) -> ld { return std::isinf(x); }, Out::boolean, true, true, -2, 2, 0, 0, 0},
};

Dtype out_dtype(const UnaryCase& c, Dtype in) {
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

int ulps_for(const UnaryCase& c, Dtype out) {
  if (out == float16 || out == bfloat16) return c.ulps_half;
  if (out == float32) return c.ulps_f32;
  return c.ulps_f64;
}

bool accepts(const UnaryCase& c, Dtype t) {
  if (t == bool_) return c.bool_ok;
  if (!is_floating(t)) return c.int_ok;
  return true;
}

void run_case(const UnaryCase& c, Dtype t, Layout l, const Shape& shape, uint32_t seed) {
  std::vector<double> v = gen_values(shape_size(shape), t, c.lo, c.hi, seed);
  Array a = make_array(v, shape, t, l);
  Array y = c.fn(a);
  const Dtype ot = out_dtype(c, t);
  const std::string what = case_name(c.name, t, l, shape);
  ASSERT_EQ(y.dtype(), ot) << what;
  ASSERT_EQ(y.shape(), shape) << what;
  std::vector<ld> ref(v.size());
  for (size_t i = 0; i < v.size(); ++i) ref[i] = c.ref(v[i]);
  expect_ulps(y.to_vector<double>(), ref, ot, ulps_for(c, ot), what);
}

}  // namespace

TEST(ElementwiseUnary, AllOpsDtypesLayoutsSizes) {
  uint32_t seed = 1;
  for (const auto& c : kCases)
    for (Dtype t : kAllDtypes) {
      if (!accepts(c, t)) continue;
      for (Layout l : kAllLayouts)
        for (const Shape& s : kTestShapes) run_case(c, t, l, s, seed++);
    }
}

TEST(ElementwiseUnary, ParallelPathLargeArrays) {
  // > 64k elements: split across threads, contiguous and strided.
  const Shape big{257, 256};  // 65792 elements
  for (const auto& c : kCases) run_case(c, float32, Layout::contiguous, big, 7);
  for (int i : {0, 8, 21}) {  // abs, exp, gelu_tanh on strided 16-bit and integer inputs
    run_case(kCases[i], bfloat16, Layout::transposed, big, 8);
    run_case(kCases[i], int32, Layout::sliced, big, 9);
  }
}

TEST(ElementwiseUnary, SpecialValues) {
  const double inf = INFINITY, nan = NAN;
  const std::vector<double> specials = {0.0, -0.0, inf,  -inf,  nan,    1e30, -1e30, 0.5, -0.5,
                                        1.5, 2.5,  -2.5, 1e-30, -1e-30, 88.5, -88.5, 700, -700};
  for (const auto& c : kCases) {
    if (std::string(c.name) == "silu") continue;  // silu(-inf) is NaN (x / (1 + e^-x))
    for (Dtype t : kFloatDtypes) {
      std::vector<double> v;
      for (double x : specials) v.push_back(round_exact(x, t));
      Array y = c.fn(Array(v, {static_cast<int64_t>(v.size())}, t));
      std::vector<ld> ref;
      for (double x : v) ref.push_back(c.ref(x));
      // Signed zeros must match for ops that are odd around 0 or map -0 to -0.
      expect_ulps(y.to_vector<double>(), ref, out_dtype(c, t), ulps_for(c, t),
                  std::string(c.name) + " specials", true);
    }
  }
}

TEST(ElementwiseUnary, SiluLargeNegative) {
  Array y = silu(Array({-100.f, -1000.f, 100.f}));
  auto v = y.to_vector<float>();
  EXPECT_EQ(v[0], -0.0f);
  EXPECT_EQ(v[1], -0.0f);
  EXPECT_EQ(v[2], 100.f);
}

TEST(ElementwiseUnary, IntegerRulesKeepDtype) {
  Array i({-3, 0, 5}, Shape{3}, int32);
  EXPECT_EQ(floor(i).dtype(), int32);
  EXPECT_EQ(ceil(i).to_vector<int>(), (std::vector<int>{-3, 0, 5}));
  EXPECT_EQ(round(i).to_vector<int>(), (std::vector<int>{-3, 0, 5}));
  EXPECT_EQ(sign(i).to_vector<int>(), (std::vector<int>{-1, 0, 1}));
  Array u(std::vector<uint32_t>{0, 7, 4000000000u}, {3}, uint32);
  EXPECT_TRUE(abs(u).same_node(u));  // identity for unsigned
  EXPECT_EQ(exp(i).dtype(), float32);
  EXPECT_EQ(sqrt(Array({4}, Shape{1}, uint8)).item<float>(), 2.0f);
  EXPECT_EQ(isnan(i).dtype(), bool_);
  EXPECT_EQ(isnan(i).to_vector<bool>(), (std::vector<bool>{false, false, false}));
  EXPECT_EQ(negative(u).to_vector<uint32_t>(), (std::vector<uint32_t>{0, 4294967289u, 294967296u}));
  Array b(std::vector<bool>{true, false}, {2});
  EXPECT_EQ(sign(b).to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_EQ(logical_not(b).to_vector<bool>(), (std::vector<bool>{false, true}));
  EXPECT_EQ((!Array({0.f, 2.f})).to_vector<bool>(), (std::vector<bool>{true, false}));
}

TEST(ElementwiseUnary, IntegerOverflowWraps) {
  const int32_t mn = std::numeric_limits<int32_t>::min();
  Array a(std::vector<int32_t>{mn, -1, 46341}, {3});
  EXPECT_EQ(negative(a).to_vector<int32_t>(), (std::vector<int32_t>{mn, 1, -46341}));
  EXPECT_EQ(abs(a).to_vector<int32_t>(), (std::vector<int32_t>{mn, 1, 46341}));
  EXPECT_EQ(square(a).to_vector<int32_t>(), (std::vector<int32_t>{0, 1, -2147479015}));
  Array b(std::vector<int64_t>{std::numeric_limits<int64_t>::min()}, {1});
  EXPECT_EQ(negative(b).item<int64_t>(), std::numeric_limits<int64_t>::min());
}

TEST(ElementwiseUnary, NegativeOfBoolThrows) {
  Array b(std::vector<bool>{true, false}, {2});
  expect_error<InvalidArgument>([&] { negative(b); }, "[negative] is not supported for bool");
  expect_error<InvalidArgument>([&] { -b; }, "shape [2]");
}

TEST(ElementwiseUnary, RoundHalfToEven) {
  Array y = round(Array({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 3.49999f}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0.f, 2.f, 2.f, -0.f, -2.f, 3.f}));
}

TEST(ElementwiseUnary, ScalarInputAndZeroSize) {
  EXPECT_FLOAT_EQ(exp(Array(0.0f)).item<float>(), 1.0f);
  Array e = exp(zeros({0, 3}));
  EXPECT_EQ(e.shape(), (Shape{0, 3}));
  EXPECT_EQ(e.to_vector<float>().size(), 0u);
}
