// CUDA elementwise and creation primitives against the CPU backend: every unary/binary op x
// dtype x layout (contiguous, misaligned, transposed, sliced, broadcast scalar/row, zero-size,
// 2M elements), Where, AsType over all dtype pairs with special values, creation ops, a vjp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "cuda_test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kLarge = (int64_t(1) << 21) + 3;  // > 1M elements, not a multiple of 16

const Dtype kFloats[] = {float32, bfloat16, float16, float64};
const Dtype kSigned[] = {int32, int64, int8};
const Dtype kUnsigned[] = {uint8, uint32};

enum Kinds : unsigned { kF = 1, kS = 2, kU = 4, kB = 8, kAll = 15, kNoBool = 7 };

std::vector<Dtype> dtypes_of(unsigned kinds) {
  std::vector<Dtype> r;
  if (kinds & kF) r.insert(r.end(), std::begin(kFloats), std::end(kFloats));
  if (kinds & kS) r.insert(r.end(), std::begin(kSigned), std::end(kSigned));
  if (kinds & kU) r.insert(r.end(), std::begin(kUnsigned), std::end(kUnsigned));
  if (kinds & kB) r.push_back(bool_);
  return r;
}

/// Value range of an op's operand: floats uniform in [lo, hi), integers in [ilo, ihi] clipped
/// to the dtype; `role` picks which special values lead the data (0: a, 1: b).
struct Domain {
  double lo = -4, hi = 4;
  double ilo = -1e18, ihi = 1e18;
  int role = 0;
  bool specials = true;
  double quantum = 0;  // floats rounded to multiples of this (> 0) so that values repeat
};

double int_min(Dtype t) {
  switch (t) {
    case Dtype::int8:
      return -128;
    case Dtype::int32:
      return -2147483648.0;
    case Dtype::int64:
      return -9007199254740992.0;  // 2^53: exact through double
    default:
      return 0;
  }
}
double int_max(Dtype t) {
  switch (t) {
    case Dtype::int8:
      return 127;
    case Dtype::uint8:
      return 255;
    case Dtype::int32:
      return 2147483647.0;
    case Dtype::uint32:
      return 4294967295.0;
    case Dtype::int64:
      return 9007199254740992.0;
    default:
      return 1;
  }
}

/// n host values for an operand of dtype t: specials first (NaN, infinities, signed zeros,
/// ties; integer extremes, 0 and -1 divisors), then random values of the domain.
std::vector<double> values(int64_t n, Dtype t, uint32_t seed, const Domain& d) {
  std::mt19937 g(seed);
  std::vector<double> v(static_cast<size_t>(n));
  const double mn = int_min(t), mx = int_max(t);
  const double ilo = std::max(d.ilo, mn), ihi = std::min(d.ihi, mx);
  for (auto& x : v) {
    if (t == bool_) {
      x = (g() & 1) ? 1 : 0;
    } else if (is_floating(t)) {
      x = std::uniform_real_distribution<double>(d.lo, d.hi)(g);
      if (d.quantum > 0) x = std::round(x / d.quantum) * d.quantum;
    } else {
      x = std::floor(std::uniform_real_distribution<double>(ilo, ihi + 1)(g));
      x = std::min(std::max(x, ilo), ihi);
    }
  }
  std::vector<double> sp;
  if (!d.specials) {
  } else if (is_floating(t)) {
    sp = d.role == 0
             ? std::vector<double>{kNaN, kInf, -kInf, 0.0, -0.0, 0.5,   -0.5,
                                   1.5,  2.5,  -2.5,  5,   -7,   1e-30, 3}
             : std::vector<double>{1, 2, kInf, 0.0, -0.0, 2, 0.5, -kInf, kNaN, -1.5, 0.0, 3, -2, 3};
  } else if (t != bool_) {
    sp = d.role == 0 ? std::vector<double>{mn, mx, 0, mn, 1, 7, -7, 5}
                     : std::vector<double>{-1, 0, 0, 3, -1, 1, -2, 5};
    for (auto& x : sp) x = std::min(std::max(x, ilo), ihi);
  }
  for (size_t i = 0; i < sp.size() && i < v.size(); ++i) v[i] = sp[i];
  return v;
}

/// A CPU array of host values that ops keep on the CPU: an array made directly from host
/// values is a host constant, which runs on the default device (the GPU) when used alone.
Array on_cpu(const Array& host_values) {
  Array a = copy(host_values, cpu_device);
  a.eval();
  return a;
}
Array host(const std::vector<double>& v, const Shape& shape, Dtype t) {
  return on_cpu(Array(v, shape, t));
}

/// The same operand on the CPU and on the GPU (the view is taken on each device, so the GPU
/// input really is strided).
struct Operand {
  Array cpu, gpu;
};

enum class Lay { contiguous, offset, transposed, sliced, scalar, row, zero, large };
const char* lay_name(Lay l) {
  const char* names[] = {"contiguous", "offset", "transposed", "sliced",
                         "scalar",     "row",    "zero",       "large"};
  return names[static_cast<int>(l)];
}

/// Logical shape of a layout case (the offset and large cases are 1-d).
Shape shape_of(Lay l) {
  switch (l) {
    case Lay::offset:
      return {2145};
    case Lay::zero:
      return {0, 7};
    case Lay::large:
      return {kLarge};
    default:
      return {33, 65};
  }
}

Operand make_operand(Lay l, Dtype t, uint32_t seed, const Domain& d, const Shape& shape) {
  auto both = [](const Array& base, const std::function<Array(const Array&)>& view) {
    return Operand{view(base), view(on_cuda(base))};
  };
  const int64_t n = shape_size(shape);
  switch (l) {
    case Lay::offset: {  // contiguous, but one element past an aligned start
      Array base = host(values(n + 1, t, seed, d), {n + 1}, t);
      return both(base, [n](const Array& a) { return slice(a, {1}, {n + 1}); });
    }
    case Lay::transposed: {
      Shape rev(shape.rbegin(), shape.rend());
      Array base = host(values(n, t, seed, d), rev, t);
      return both(base, [](const Array& a) { return transpose(a); });
    }
    case Lay::sliced: {
      Shape big = shape;
      big.back() = 2 * shape.back() + 1;
      Array base = host(values(shape_size(big), t, seed, d), big, t);
      return both(base, [&](const Array& a) { return slice(a, {0, 1}, {big[0], big[1]}, {1, 2}); });
    }
    case Lay::scalar: {  // a random value, not one of the leading specials
      Array base = host({values(32, t, seed, d)[31]}, {1}, t);
      return both(base, [&](const Array& a) { return broadcast_to(a, shape); });
    }
    case Lay::row: {
      Array base = host(values(shape.back(), t, seed, d), {shape.back()}, t);
      return both(base, [&](const Array& a) { return broadcast_to(a, shape); });
    }
    default: {
      Array base = host(values(n, t, seed, d), shape, t);
      return both(base, [](const Array& a) { return a; });
    }
  }
}

/// Tolerance of an op's result: exact, or within a few ulps (float32 4e-7, float64 2e-15,
/// 16-bit floats one ulp of the output).
void expect_matches(const Array& got, const Array& want, bool exact, const std::string& what) {
  if (exact || !is_floating(want.dtype())) {
    expect_close(got, want, 0, 0, what);
    return;
  }
  switch (want.dtype()) {
    case Dtype::float32:
      return expect_close(got, want, 1e-37, 4e-7, what);
    case Dtype::float64:
      return expect_close(got, want, 1e-300, 2e-15, what);
    case Dtype::float16:
      return expect_close(got, want, std::ldexp(1.0, -24), 1.0 / 1024, what);
    default:
      return expect_close(got, want, 1e-38, 1.0 / 128, what);
  }
}

// ---- unary ----

struct UnaryCase {
  const char* name;
  Array (*fn)(const Array&);
  unsigned kinds;
  bool exact;
  Domain dom;
};

#define INGOT_U(NAME) [](const Array& a) { return ingot::NAME(a); }
const UnaryCase kUnary[] = {
    {"abs", INGOT_U(abs), kF | kS, true, {}},
    {"negative", INGOT_U(negative), kNoBool, true, {}},
    {"sign", INGOT_U(sign), kNoBool, true, {}},
    {"floor", INGOT_U(floor), kF, true, {-10, 10}},
    {"ceil", INGOT_U(ceil), kF, true, {-10, 10}},
    {"round", INGOT_U(round), kF, true, {-10, 10}},
    {"square", INGOT_U(square), kAll, true, {-20, 20}},
    {"reciprocal", INGOT_U(reciprocal), kF, true, {-4, 4}},
    {"exp", INGOT_U(exp), kF, false, {-10, 10}},
    {"expm1", INGOT_U(expm1), kF, false, {-5, 5}},
    {"log", INGOT_U(log), kF, false, {0.001, 100}},
    {"log1p", INGOT_U(log1p), kF, false, {-0.99, 10}},
    {"sqrt", INGOT_U(sqrt), kF, true, {0, 100}},
    {"rsqrt", INGOT_U(rsqrt), kF, true, {0.01, 100}},
    {"sin", INGOT_U(sin), kF, false, {-10, 10}},
    {"cos", INGOT_U(cos), kF, false, {-10, 10}},
    {"tanh", INGOT_U(tanh), kF, false, {-5, 5}},
    {"sigmoid", INGOT_U(sigmoid), kF, false, {-10, 10}},
    {"erf", INGOT_U(erf), kF, false, {-3, 3}},
    {"silu", INGOT_U(silu), kF, false, {-10, 10}},
    {"gelu", INGOT_U(gelu), kF, false, {-6, 6}},
    {"gelu_tanh", INGOT_U(gelu_tanh), kF, false, {-6, 6}},
    {"logical_not", INGOT_U(logical_not), kB, true, {}},
    {"isnan", INGOT_U(isnan), kF, true, {}},
    {"isinf", INGOT_U(isinf), kF, true, {}},
};
#undef INGOT_U

class CudaUnary : public ::testing::TestWithParam<UnaryCase> {};

TEST_P(CudaUnary, MatchesCpu) {
  INGOT_REQUIRE_CUDA();
  const UnaryCase& c = GetParam();
  for (Dtype t : dtypes_of(c.kinds)) {
    for (Lay l : {Lay::contiguous, Lay::offset, Lay::transposed, Lay::sliced, Lay::scalar, Lay::row,
                  Lay::zero, Lay::large}) {
      if (l == Lay::large && t != float32 && t != bfloat16 && t != int32 && t != bool_) continue;
      const Operand x = make_operand(l, t, 11, c.dom, shape_of(l));
      expect_matches(c.fn(x.gpu), c.fn(x.cpu), c.exact,
                     std::string(c.name) + " " + std::string(dtype_name(t)) + " " + lay_name(l));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaUnary, ::testing::ValuesIn(kUnary),
                         [](const auto& info) { return std::string(info.param.name); });

// gelu_tanh of 16-bit floats runs in float where the rounded result provably equals the
// double formula's (ew::gelu_tanh_round), else in double. Every finite bf16 and f16 input
// against the formula in long double, rounded to float and then to the 16-bit type as the
// double path rounds; where the reference lies within 1e-12 of a rounding boundary (the
// device's double exp may differ from the host's in the last bits) either neighbour passes.
template <typename H>
void expect_gelu_tanh_exhaustive(Dtype t) {
  std::vector<double> xs;
  for (uint32_t b = 0; b < 65536; ++b) {
    const double x = static_cast<float>(H::from_bits(static_cast<uint16_t>(b)));
    if (std::isfinite(x)) xs.push_back(x);
  }
  const int64_t n = static_cast<int64_t>(xs.size());
  const std::vector<double> got = gelu_tanh(on_cuda(Array(xs, {n}, t))).to_vector<double>();
  ASSERT_EQ(got.size(), xs.size());
  auto round16 = [](long double v) {
    return static_cast<double>(static_cast<float>(H(static_cast<float>(v))));
  };
  int ambiguous = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const long double x = xs[i];
    const long double u = 0.79788456080286535588L * (x + 0.044715L * x * x * x);
    const long double r = x / (1.0L + std::exp(-2.0L * u));
    const double lo = round16(r * (1 - 1e-12L)), hi = round16(r * (1 + 1e-12L));
    if (lo != hi) ++ambiguous;
    if (got[i] != lo && got[i] != hi)
      FAIL() << dtype_name(t) << " gelu_tanh(" << xs[i] << ") = " << got[i] << ", want " << lo;
    if (got[i] == 0 && lo == 0 && hi == 0) {  // the sign of zero too
      ASSERT_EQ(std::signbit(got[i]), std::signbit(static_cast<double>(r))) << xs[i];
    }
  }
  EXPECT_LT(ambiguous, 16) << dtype_name(t);
}

TEST(CudaElementwise, GeluTanhSixteenBitExhaustive) {
  INGOT_REQUIRE_CUDA();
  expect_gelu_tanh_exhaustive<bfloat16_t>(bfloat16);
  expect_gelu_tanh_exhaustive<float16_t>(float16);
}

// ---- binary ----

struct BinaryCase {
  const char* name;
  Array (*fn)(const Array&, const Array&);
  unsigned kinds;
  bool exact;
  Domain a, b;
};

#define INGOT_B(NAME) [](const Array& a, const Array& b) { return ingot::NAME(a, b); }
const Domain kA{};
const Domain kB1{.role = 1};
// Few distinct values so that comparisons see many equal pairs.
const Domain kCmpA{.lo = -2, .hi = 2, .ilo = -3, .ihi = 3, .quantum = 0.5};
const Domain kCmpB{.lo = -2, .hi = 2, .ilo = -3, .ihi = 3, .role = 1, .quantum = 0.5};
const BinaryCase kBinary[] = {
    {"add", INGOT_B(add), kAll, true, kA, kB1},
    {"subtract", INGOT_B(subtract), kNoBool, true, kA, kB1},
    {"multiply", INGOT_B(multiply), kAll, true, kA, kB1},
    {"divide", INGOT_B(divide), kF, true, kA, kB1},
    {"floor_divide",
     INGOT_B(floor_divide),
     kNoBool,
     true,
     kA,
     {.lo = -5, .hi = 5, .ilo = -300, .ihi = 300, .role = 1}},
    {"remainder",
     INGOT_B(remainder),
     kNoBool,
     true,
     kA,
     {.lo = -5, .hi = 5, .ilo = -300, .ihi = 300, .role = 1}},
    {"power",
     INGOT_B(power),
     kNoBool,
     false,
     {.lo = 0.05, .hi = 4, .ilo = -6, .ihi = 6},
     {.lo = -3, .hi = 3, .ilo = -2, .ihi = 9, .role = 1}},
    {"maximum", INGOT_B(maximum), kAll, true, kA, kB1},
    {"minimum", INGOT_B(minimum), kAll, true, kA, kB1},
    {"equal", INGOT_B(equal), kAll, true, kCmpA, kCmpB},
    {"not_equal", INGOT_B(not_equal), kAll, true, kCmpA, kCmpB},
    {"less", INGOT_B(less), kAll, true, kCmpA, kCmpB},
    {"less_equal", INGOT_B(less_equal), kAll, true, kCmpA, kCmpB},
    {"greater", INGOT_B(greater), kAll, true, kCmpA, kCmpB},
    {"greater_equal", INGOT_B(greater_equal), kAll, true, kCmpA, kCmpB},
    {"logical_and", INGOT_B(logical_and), kB, true, kA, kB1},
    {"logical_or", INGOT_B(logical_or), kB, true, kA, kB1},
};
#undef INGOT_B

class CudaBinary : public ::testing::TestWithParam<BinaryCase> {};

TEST_P(CudaBinary, MatchesCpu) {
  INGOT_REQUIRE_CUDA();
  const BinaryCase& c = GetParam();
  // (layout of a, layout of b): both contiguous (vector path), misaligned, mixed with
  // broadcast scalars (flat path), transposed/sliced/row broadcasts (strided path), empty, 2M.
  const std::pair<Lay, Lay> combos[] = {
      {Lay::contiguous, Lay::contiguous},
      {Lay::offset, Lay::offset},
      {Lay::contiguous, Lay::scalar},
      {Lay::scalar, Lay::contiguous},
      {Lay::scalar, Lay::scalar},
      {Lay::transposed, Lay::transposed},
      {Lay::sliced, Lay::contiguous},
      {Lay::row, Lay::transposed},
      {Lay::zero, Lay::zero},
      {Lay::large, Lay::large},
      {Lay::large, Lay::scalar},
  };
  for (Dtype t : dtypes_of(c.kinds)) {
    for (auto [la, lb] : combos) {
      const bool large = la == Lay::large;
      if (large && t != float32 && t != bfloat16 && t != int32 && t != bool_) continue;
      const Shape shape = shape_of(la == Lay::scalar ? lb : la);
      const Operand a = make_operand(la, t, 21, c.a, shape);
      const Operand b = make_operand(lb, t, 22, c.b, shape);
      expect_matches(c.fn(a.gpu, b.gpu), c.fn(a.cpu, b.cpu), c.exact,
                     std::string(c.name) + " " + std::string(dtype_name(t)) + " " + lay_name(la) +
                         "/" + lay_name(lb));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaBinary, ::testing::ValuesIn(kBinary),
                         [](const auto& info) { return std::string(info.param.name); });

// Integer edge cases spelled out: MIN // -1 wraps, x // 0 == x % 0 == 0, Python signs.
TEST(CudaElementwise, IntegerDivisionEdges) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {int8, int32, int64}) {
    const double mn = int_min(t);
    std::vector<double> av{mn, mn, 7, -7, 7, -7, 0, 5, -5, mn};
    std::vector<double> bv{-1, 0, 2, 2, -2, -2, 3, 0, 1, 1};
    Array a = host(av, {10}, t), b = host(bv, {10}, t);
    for (auto fn : {&ingot::floor_divide, &ingot::remainder, &ingot::power}) {
      expect_close(fn(on_cuda(a), on_cuda(b), {}), fn(a, b, {}), 0, 0,
                   std::string("int division ") + std::string(dtype_name(t)));
    }
  }
}

// ---- Where ----

TEST(CudaElementwise, Where) {
  INGOT_REQUIRE_CUDA();
  const Domain dc{}, dx{}, dy{.role = 1};
  struct Combo {
    Lay c, x, y;
  };
  const Combo combos[] = {
      {Lay::contiguous, Lay::contiguous, Lay::contiguous},
      {Lay::offset, Lay::offset, Lay::offset},
      {Lay::scalar, Lay::contiguous, Lay::contiguous},
      {Lay::contiguous, Lay::scalar, Lay::contiguous},
      {Lay::row, Lay::contiguous, Lay::scalar},
      {Lay::contiguous, Lay::transposed, Lay::sliced},
      {Lay::zero, Lay::zero, Lay::zero},
      {Lay::large, Lay::large, Lay::large},
  };
  for (Dtype t : dtypes_of(kAll)) {
    for (const Combo& k : combos) {
      if (k.c == Lay::large && t != float32 && t != bfloat16) continue;
      const Shape shape = shape_of(k.c == Lay::scalar ? k.x : k.c);
      const Operand c = make_operand(k.c, bool_, 31, dc, shape);
      const Operand x = make_operand(k.x, t, 32, dx, shape);
      const Operand y = make_operand(k.y, t, 33, dy, shape);
      expect_close(where(c.gpu, x.gpu, y.gpu), where(c.cpu, x.cpu, y.cpu), 0, 0,
                   std::string("where ") + std::string(dtype_name(t)) + " " + lay_name(k.c) + "/" +
                       lay_name(k.x) + "/" + lay_name(k.y));
    }
  }
  // A condition of a smaller shape, broadcast by the op itself.
  Array cond = host({1, 0, 1}, {3, 1}, bool_);
  Array x = host(values(12, float32, 3, {}), {3, 4}, float32);
  Array y = host(values(4, float32, 4, {.role = 1}), {4}, float32);
  expect_close(where(on_cuda(cond), on_cuda(x), on_cuda(y)), where(cond, x, y), 0, 0,
               "where broadcast cond");
}

// ---- AsType ----

/// Exact equality; integer outputs compared as int64 (doubles would hide large differences).
void expect_same(const Array& got, const Array& want, const std::string& what) {
  if (is_floating(want.dtype()) || want.dtype() == bool_) {
    expect_close(got, want, 0, 0, what);
    return;
  }
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(got.to_vector<int64_t>(), want.to_vector<int64_t>()) << what;
}

TEST(CudaElementwise, AsTypeAllPairs) {
  INGOT_REQUIRE_CUDA();
  std::vector<double> sp{kNaN,
                         kInf,
                         -kInf,
                         0.0,
                         -0.0,
                         0.5,
                         -0.5,
                         1.5,
                         2.5,
                         -2.5,
                         -0.99,
                         127.5,
                         128,
                         255.5,
                         256,
                         -129.7,
                         300,
                         65504,
                         65519.99,
                         65520,
                         1e20,
                         -1e20,
                         3e9,
                         4294967301.0,
                         9.3e18,
                         -9.3e18,
                         9223372036854775807.0,
                         -9223372036854775808.0,
                         1e-8,
                         1e-40,
                         1.0 / 3,
                         1.00390625,  // bfloat16 tie (rounds to even: down)
                         1.01171875,  // bfloat16 tie (rounds up)
                         1.0039062500000002,
                         2049,  // float16 tie
                         2051,
                         16777217,  // float32 tie
                         0.1,
                         -1e-300,
                         1e300};
  std::mt19937 g(5);
  for (int i = 0; i < 64; ++i) sp.push_back(std::normal_distribution<double>(0, 300)(g));
  const int64_t n = static_cast<int64_t>(sp.size());
  const Array src64 = host(sp, {n}, float64);
  std::vector<Array> sources;
  for (Dtype s : dtypes_of(kAll)) {
    Array a = astype(src64, s);
    a.eval();
    sources.push_back(a);
  }
  // Integer extremes that doubles cannot carry.
  sources.push_back(on_cpu(Array(
      std::vector<int64_t>{INT64_MAX, INT64_MIN, (int64_t(1) << 53) + 1, -(int64_t(1) << 53) - 1,
                           (int64_t(1) << 62) + 12345, -1, 255, 256, 65535, 4294967295LL},
      {10}, int64)));
  sources.push_back(on_cpu(Array(
      std::vector<uint32_t>{4294967295u, 2147483648u, 16777217u, 65505u, 0u, 1u}, {6}, uint32)));
  for (const Array& src : sources) {
    const Array gsrc = on_cuda(src);
    for (Dtype d : dtypes_of(kAll)) {
      expect_same(astype(gsrc, d), astype(src, d),
                  std::string("astype ") + std::string(dtype_name(src.dtype())) + " -> " +
                      std::string(dtype_name(d)));
    }
  }
}

TEST(CudaElementwise, AsTypeLayouts) {
  INGOT_REQUIRE_CUDA();
  const std::pair<Dtype, Dtype> pairs[] = {{float32, bfloat16}, {float32, int32},
                                           {bfloat16, float32}, {float16, int8},
                                           {int32, float16},    {float64, bfloat16}};
  for (auto [s, d] : pairs) {
    for (Lay l : {Lay::contiguous, Lay::offset, Lay::transposed, Lay::sliced, Lay::scalar, Lay::row,
                  Lay::zero, Lay::large}) {
      const Operand x = make_operand(l, s, 41, {.lo = -300, .hi = 300}, shape_of(l));
      expect_same(astype(x.gpu, d), astype(x.cpu, d),
                  std::string("astype ") + std::string(dtype_name(s)) + " -> " +
                      std::string(dtype_name(d)) + " " + lay_name(l));
    }
  }
}

TEST(CudaElementwise, AsTypeFloatRowsAndTails) {
  INGOT_REQUIRE_CUDA();
  // The 16-byte kernel between floating types: contiguous runs with and without a tail of
  // n % 8, column blocks of a wider matrix (rows 16-byte aligned), a block starting off the
  // 16-byte grid (the one-element kernel), NaN/inf/ties among the values.
  const Dtype fl[] = {float32, bfloat16, float16};
  for (Dtype s : fl)
    for (Dtype d : fl) {
      const std::string what =
          std::string("astype ") + std::string(dtype_name(s)) + " -> " + std::string(dtype_name(d));
      for (int64_t n : {7, 8, 9, 1001, 4096 + 5}) {
        std::vector<double> v = values(n, float64, 60 + static_cast<uint32_t>(n), {});
        v[0] = kNaN, v[1] = -kInf, v[2] = 1.00390625, v[3] = 65520;
        const Array x = astype(host(v, {n}, float64), s);
        expect_same(astype(on_cuda(x), d), astype(x, d), what + " n " + std::to_string(n));
      }
      const Array m = astype(host(values(33 * 96, float64, 70, {}), {33, 96}, float64), s);
      for (auto [c0, c1] : {std::pair<int64_t, int64_t>{16, 80}, {8, 72}, {1, 65}, {0, 96}}) {
        const Array cols_cpu = slice(m, {0, c0}, {33, c1}),
                    cols_gpu = slice(on_cuda(m), {0, c0}, {33, c1});
        expect_same(astype(cols_gpu, d), astype(cols_cpu, d),
                    what + " columns " + std::to_string(c0) + ".." + std::to_string(c1));
      }
    }
}

// ---- creation ----

TEST(CudaCreation, Full) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : dtypes_of(kAll)) {
    for (double v : {2.5, -3.7, 0.0, 1e10}) {
      const std::string what = "full " + std::string(dtype_name(t)) + " " + std::to_string(v);
      Array value(v, float64);
      expect_same(full({33, 65}, on_cuda(value), t, kCuda), full({33, 65}, value, t, cpu_device),
                  what);
      expect_same(full({0, 3}, on_cuda(value), t, kCuda), full({0, 3}, value, t, cpu_device),
                  what + " empty");
    }
    // A row broadcast over the rows, and a large fill.
    Array row = host(values(65, float64, 51, {}), {65}, float64);
    expect_same(full({33, 65}, on_cuda(row), t, kCuda), full({33, 65}, row, t, cpu_device),
                "full row " + std::string(dtype_name(t)));
    expect_same(full({kLarge}, on_cuda(Array(1.25, float64)), t, kCuda),
                full({kLarge}, Array(1.25, float64), t, cpu_device),
                "full large " + std::string(dtype_name(t)));
  }
}

TEST(CudaCreation, ArangeAndLinspace) {
  INGOT_REQUIRE_CUDA();
  struct Range {
    double start, stop, step;
  };
  const Range ranges[] = {{0, 100, 1},   {-5.5, 20, 0.3}, {10, -10, -3},   {0, 300, 1},
                          {0.1, 1, 0.1}, {5, 5, 1},       {-1e9, 1e9, 1e7}};
  for (Dtype t : dtypes_of(kNoBool)) {
    for (const Range& r : ranges) {
      const std::string what = "arange " + std::string(dtype_name(t)) + " " +
                               std::to_string(r.start) + ":" + std::to_string(r.stop) + ":" +
                               std::to_string(r.step);
      expect_same(arange(r.start, r.stop, r.step, t, kCuda),
                  arange(r.start, r.stop, r.step, t, cpu_device), what);
    }
    struct Lin {
      double start, stop;
      int64_t num;
    };
    for (const Lin& r : {Lin{0, 1, 7}, Lin{-3, 5, 1000}, Lin{1, 2, 1}, Lin{2, -2, 0},
                         Lin{0, 10, 11}, Lin{-1e6, 1e6, 333}}) {
      expect_same(linspace(r.start, r.stop, r.num, t, kCuda),
                  linspace(r.start, r.stop, r.num, t, cpu_device),
                  "linspace " + std::string(dtype_name(t)) + " n=" + std::to_string(r.num));
    }
  }
  expect_same(arange(0, double(kLarge), 1, float32, kCuda),
              arange(0, double(kLarge), 1, float32, cpu_device), "arange large float32");
  expect_same(arange(0.0, 1.0, 1e-6, float32, kCuda), arange(0.0, 1.0, 1e-6, float32, cpu_device),
              "arange fine float32");
  expect_same(linspace(-1, 1, kLarge, bfloat16, kCuda),
              linspace(-1, 1, kLarge, bfloat16, cpu_device), "linspace large bfloat16");
}

TEST(CudaCreation, Eye) {
  INGOT_REQUIRE_CUDA();
  struct E {
    int64_t n, m, k;
  };
  for (Dtype t : dtypes_of(kAll)) {
    for (const E& e : {E{5, 7, 2}, E{7, 5, -3}, E{4, 4, 0}, E{3, 3, 10}, E{3, 3, -10}, E{0, 3, 0},
                       E{1000, 1200, 1}}) {
      expect_same(eye(e.n, e.m, e.k, t, kCuda), eye(e.n, e.m, e.k, t, cpu_device),
                  "eye " + std::string(dtype_name(t)) + " " + std::to_string(e.n) + "x" +
                      std::to_string(e.m) + " k=" + std::to_string(e.k));
    }
  }
}

TEST(CudaCreation, CopyAndContiguous) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16, float16, int32, int64, uint8, bool_, float64}) {
    for (Lay l : {Lay::contiguous, Lay::transposed, Lay::sliced, Lay::scalar, Lay::row, Lay::offset,
                  Lay::zero}) {
      const Operand x = make_operand(l, t, 61, {}, shape_of(l));
      const std::string what = std::string(dtype_name(t)) + " " + lay_name(l);
      Array c = copy(x.gpu);
      expect_same(c, copy(x.cpu), "copy " + what);
      EXPECT_TRUE(c.flags().row_contiguous) << what;
      Array k = contiguous(x.gpu);
      expect_same(k, contiguous(x.cpu), "contiguous " + what);
      EXPECT_TRUE(k.flags().row_contiguous) << what;
    }
  }
}

// ---- autodiff ----

TEST(CudaElementwise, VjpSinTimes) {
  INGOT_REQUIRE_CUDA();
  const Array x = host(values(33 * 65, float32, 71, {.specials = false}), {33, 65}, float32);
  const Array y = host(values(33 * 65, float32, 72, {.specials = false}), {33, 65}, float32);
  auto fn = [](const std::vector<Array>& in) {
    return std::vector<Array>{ingot::sum(ingot::multiply(ingot::sin(in[0]), in[1]))};
  };
  auto g = grad(fn, {0, 1});
  const auto want = g({x, y});
  const auto got = g({on_cuda(x), on_cuda(y)});
  ASSERT_EQ(got.size(), 2u);
  // d/dx = cos(x) * y (cosf within a few ulps, then one exact-rounded multiply); d/dy = sin(x).
  expect_close(got[0], want[0], 1e-37, 1e-6, "grad x");
  expect_close(got[1], want[1], 1e-37, 4e-7, "grad y");
}

}  // namespace
