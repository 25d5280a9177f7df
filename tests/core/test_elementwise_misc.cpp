// where, astype, clip, dtype promotion (weak scalars), operators, buffer donation, the kernel
// table hook, and elementwise VJP formulas checked by finite differences in float64.
#include <gtest/gtest.h>

#include <cmath>

#include "core/primitives/elementwise.h"
#include "test_elementwise_ref.h"

using namespace ingot;
using namespace ingot::test;

TEST(Where, AllDtypesLayoutsSizes) {
  uint32_t seed = 1;
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const Shape& s : kTestShapes) {
        const int64_t n = shape_size(s);
        std::vector<double> vc = gen_values(n, bool_, 0, 1, seed++);
        std::vector<double> va = gen_values(n, t, -100, 100, seed++);
        std::vector<double> vb = gen_values(s[1], t, -100, 100, seed++);
        Array c = make_array(vc, s, bool_, l);
        Array a = make_array(va, s, t, l == Layout::transposed ? Layout::sliced : l);
        Array b(vb, {s[1]}, t);  // broadcast row
        Array y = where(c, a, b);
        ASSERT_EQ(y.dtype(), t);
        std::vector<ld> ref(n);
        for (int64_t i = 0; i < n; ++i) ref[i] = vc[i] != 0 ? va[i] : vb[i % s[1]];
        expect_ulps(y.to_vector<double>(), ref, t, 0, case_name("where", t, l, s));
      }
}

TEST(Where, ConditionConvertedAndScalarBranches) {
  Array c({0.f, 2.f, -1.f, NAN});
  Array y = where(c, Array(1), Array(0));
  EXPECT_EQ(y.dtype(), int32);
  EXPECT_EQ(y.to_vector<int>(), (std::vector<int>{0, 1, 1, 1}));
  Array h = where(Array(std::vector<bool>{true, false}, {2}), Array({1.5f, 2.5f}, {2}, bfloat16),
                  Array(0.25f));
  EXPECT_EQ(h.dtype(), bfloat16);
  EXPECT_EQ(h.to_vector<float>(), (std::vector<float>{1.5f, 0.25f}));
  expect_error<InvalidArgument>([] { where(zeros({2}, bool_), zeros({3}), zeros({2})); },
                                "[where] cannot broadcast condition [2], x [3] and y [2]");
}

namespace {
/// Reference conversion of an exactly held value x to dtype t.
double convert_ref(double x, Dtype t) {
  if (t == bool_) return x != 0 ? 1 : 0;
  if (is_floating(t)) return round_exact(x, t);
  if (std::isnan(x)) return 0;
  ld tr = std::trunc(static_cast<ld>(x));
  if (tr >= 9223372036854775807.0L) return wrap_int(9223372036854775807.0L, t);
  if (tr <= -9223372036854775808.0L) return wrap_int(-9223372036854775807.0L - 1, t);
  return wrap_int(tr, t);
}
}  // namespace

TEST(AsType, AllPairsLayouts) {
  uint32_t seed = 5;
  for (Dtype from : kAllDtypes)
    for (Dtype to : kAllDtypes)
      for (Layout l : {Layout::contiguous, Layout::transposed, Layout::broadcast})
        for (const Shape& s : {Shape{3, 11}, Shape{33, 37}}) {
          std::vector<double> v = gen_values(shape_size(s), from, -300.7, 300.7, seed++);
          Array a = make_array(v, s, from, l);
          Array y = astype(a, to);
          ASSERT_EQ(y.dtype(), to);
          std::vector<double> got = y.to_vector<double>();
          int bad = 0;
          for (size_t i = 0; i < v.size(); ++i) {
            double want = convert_ref(v[i], to);
            if (!(got[i] == want || (std::isnan(got[i]) && std::isnan(want))) && bad++ < 3)
              ADD_FAILURE() << dtype_name(from) << "->" << dtype_name(to) << " " << layout_name(l)
                            << " at " << i << ": " << v[i] << " gave " << got[i] << ", want "
                            << want;
          }
        }
}

TEST(AsType, SpecialValuesAndRounding) {
  // Float to integer: NaN -> 0, truncation toward zero, saturation at int64 then wrap.
  Array f({NAN, INFINITY, -INFINITY, -2.7f, 2.7f, 300.f, -1.f});
  EXPECT_EQ(astype(f, int64).to_vector<int64_t>(),
            (std::vector<int64_t>{0, INT64_MAX, INT64_MIN, -2, 2, 300, -1}));
  EXPECT_EQ(astype(f, uint8).to_vector<int>(), (std::vector<int>{0, 255, 0, 254, 2, 44, 255}));
  EXPECT_EQ(astype(f, bool_).to_vector<bool>(),
            (std::vector<bool>{true, true, true, true, true, true, true}));
  // float64 -> bfloat16 rounds once: 1 + 2^-8 + 2^-30 is just above the tie, so it rounds up
  // (a double rounding through float32 would give the tie and round down to 1).
  double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  EXPECT_EQ(astype(Array(x, float64), bfloat16).item<float>(), 1.0f + 1.0f / 128);
  EXPECT_EQ(astype(Array(std::vector<int32_t>{16777217 + 2 * 65536}, {1}), bfloat16).item<float>(),
            round_exact(16777217.0 + 2 * 65536, bfloat16));
  // float -> float16 overflow and subnormals
  auto h = astype(Array({70000.f, 65519.f, 65520.f, 1e-8f, 3e-8f}), float16).to_vector<float>();
  EXPECT_EQ(h[0], INFINITY);
  EXPECT_EQ(h[1], 65504.f);
  EXPECT_EQ(h[2], INFINITY);
  EXPECT_EQ(h[3], 0.f);
  EXPECT_EQ(h[4], std::ldexp(1.f, -25) * 2);  // 3e-8 rounds to the smallest subnormal 2^-24
  Array same = zeros({2});
  EXPECT_TRUE(astype(same, float32).same_node(same));
}

TEST(DtypeRules, PromotionAndWeakScalars) {
  Array bf = zeros({2}, bfloat16), f16 = zeros({2}, float16), i32 = zeros({2}, int32);
  Array u8 = zeros({2}, uint8), i8 = zeros({2}, int8), u32 = zeros({2}, uint32);
  Array b = zeros({2}, bool_);
  EXPECT_EQ(add(i32, f16).dtype(), float16);
  EXPECT_EQ(add(bf, f16).dtype(), float32);
  EXPECT_EQ(add(u32, i32).dtype(), int64);
  EXPECT_EQ(add(u8, i8).dtype(), int32);
  // weak scalars adopt the array's dtype within a kind
  EXPECT_EQ((bf * 0.5f).dtype(), bfloat16);
  EXPECT_EQ((bf * 0.5).dtype(), bfloat16);
  EXPECT_EQ((0.5 * f16).dtype(), float16);
  EXPECT_EQ((i8 + 1).dtype(), int8);
  EXPECT_EQ((u8 + int64_t{1}).dtype(), uint8);
  EXPECT_EQ((bf + 1).dtype(), bfloat16);
  EXPECT_EQ((i32 + 1.5).dtype(), float32);
  EXPECT_EQ((b + 1).dtype(), int32);
  EXPECT_EQ((b + true).dtype(), bool_);
  EXPECT_EQ((i32 + true).dtype(), int32);
  EXPECT_EQ((Array(2.0f) + Array(3)).dtype(), float32);  // both weak: normal promotion
  EXPECT_EQ((Array(2.0) + Array(3.0f)).dtype(), float64);
  EXPECT_FLOAT_EQ((Array({1, 2}, Shape{2}, int32) + 1.5f).to_vector<float>()[1], 3.5f);
  EXPECT_EQ((Array({200}, Shape{1}, uint8) + 300).item<int>(), 244);  // 300 -> 44 in uint8
  // comparisons give bool, logical ops convert, divide of ints gives float32
  EXPECT_EQ((i32 < 0.5f).dtype(), bool_);
  EXPECT_EQ(logical_and(i32, bf).dtype(), bool_);
  EXPECT_EQ(divide(i32, i32).dtype(), float32);
  EXPECT_EQ(divide(bf, 2).dtype(), bfloat16);
  EXPECT_EQ(floor_divide(i32, 2).dtype(), int32);
  EXPECT_EQ((Array({3}, Shape{1}, int32) < 3.5f).item<bool>(), true);  // compared as float
}

TEST(Operators, MatchFunctions) {
  Array a({1.f, -2.f, 3.f}), b({2.f, 2.f, -1.f});
  EXPECT_EQ((a + b).to_vector<float>(), (std::vector<float>{3, 0, 2}));
  EXPECT_EQ((a - b).to_vector<float>(), (std::vector<float>{-1, -4, 4}));
  EXPECT_EQ((a * b).to_vector<float>(), (std::vector<float>{2, -4, -3}));
  EXPECT_EQ((a / b).to_vector<float>(), (std::vector<float>{0.5f, -1, -3}));
  EXPECT_EQ((-a).to_vector<float>(), (std::vector<float>{-1, 2, -3}));
  EXPECT_EQ((a < b).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ((a <= 1.f).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ((a > b).to_vector<bool>(), (std::vector<bool>{false, false, true}));
  EXPECT_EQ((a >= 3).to_vector<bool>(), (std::vector<bool>{false, false, true}));
  EXPECT_EQ(((a > 0.f) && (b > 0.f)).to_vector<bool>(), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(((a > 0.f) || (b > 0.f)).to_vector<bool>(), (std::vector<bool>{true, true, true}));
  EXPECT_EQ((!(a > 0.f)).to_vector<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(clip(a, -1.f, 2.f).to_vector<float>(), (std::vector<float>{1, -1, 2}));
}

TEST(Donation, ChainReusesBuffers) {
  const int64_t n = 1 << 20;  // 4 MiB per float32 buffer
  Array x = full({n}, Array(0.5f));
  x.eval();
  memory::reset_peak();
  const size_t base = memory::active();
  Array y = x;
  for (int i = 0; i < 8; ++i) y = exp(negative(y));
  y.eval();
  // Without donation each step would hold its input and output plus x; donation keeps one
  // intermediate buffer besides x (and y's).
  EXPECT_LE(memory::peak() - base, static_cast<size_t>(n) * 4 + 4096);
  float v = 0.5f;
  for (int i = 0; i < 8; ++i) v = std::exp(-v);
  EXPECT_FLOAT_EQ(y.to_vector<float>()[n - 1], v);
  EXPECT_EQ(x.to_vector<float>()[0], 0.5f);  // x itself was not overwritten
}

TEST(KernelTable, FusionHook) {
  // Every elementwise primitive names its op; the table gives a loop usable on blocks.
  Array a({1.f, 2.f}), b({3.f, 4.f});
  Array y = add(a, b);
  auto* p = dynamic_cast<Elementwise*>(&y.primitive());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->op(), EwOp::Add);
  EXPECT_EQ(ew_arity(EwOp::Add), 2);
  EXPECT_EQ(ew_arity(EwOp::Exp), 1);
  EXPECT_EQ(ew_arity(EwOp::Where), 3);
  EXPECT_STREQ(ew_name(EwOp::GeluTanh), "GeluTanh");
  EXPECT_TRUE(p->is_equivalent(*add(b, a).primitive_ptr()));
  EXPECT_FALSE(p->is_equivalent(*multiply(a, b).primitive_ptr()));
  EXPECT_EQ(p->output_shapes(y.inputs()), (std::vector<Shape>{{2}}));
}

namespace {
/// Central-difference derivative of f at x (float64), vs the VJP with cotangent 1.
void check_unary_grad(const char* name, Array (*f)(const Array&), double x) {
  Array a(x, float64);
  Array y = f(a);
  auto prim = y.primitive_ptr();  // evaluating the gradients detaches y
  auto g = prim->vjp({a}, {Array(1.0, float64)}, {0}, {y});
  const double h = 1e-6;
  double fd =
      (f(Array(x + h, float64)).item<double>() - f(Array(x - h, float64)).item<double>()) / (2 * h);
  EXPECT_NEAR(g[0].item<double>(), fd, 1e-6 * (1 + std::fabs(fd))) << name << " at " << x;
  auto t = prim->jvp({a}, {Array(1.0, float64)}, {0});
  EXPECT_NEAR(t[0].item<double>(), fd, 1e-6 * (1 + std::fabs(fd))) << name << " jvp at " << x;
}
void check_binary_grad(const char* name, Array (*f)(const Array&, const Array&), double x,
                       double z) {
  Array a(x, float64), b(z, float64);
  Array y = f(a, b);
  auto prim = y.primitive_ptr();
  auto g = prim->vjp({a, b}, {Array(1.0, float64)}, {0, 1}, {y});
  const double h = 1e-6;
  auto at = [&](double p, double q) {
    return f(Array(p, float64), Array(q, float64)).item<double>();
  };
  double da = (at(x + h, z) - at(x - h, z)) / (2 * h);
  double db = (at(x, z + h) - at(x, z - h)) / (2 * h);
  EXPECT_NEAR(g[0].item<double>(), da, 1e-6 * (1 + std::fabs(da))) << name << " d/da";
  EXPECT_NEAR(g[1].item<double>(), db, 1e-6 * (1 + std::fabs(db))) << name << " d/db";
  auto t = prim->jvp({a, b}, {Array(1.0, float64), Array(2.0, float64)}, {0, 1});
  EXPECT_NEAR(t[0].item<double>(), da + 2 * db, 1e-6 * (1 + std::fabs(da) + 2 * std::fabs(db)))
      << name << " jvp";
}
}  // namespace

TEST(ElementwiseGrad, UnaryFiniteDifferences) {
#define U(OP) [](const Array& a) { return ingot::OP(a); }
  for (double x : {-1.3, 0.4, 2.2}) {
    check_unary_grad("abs", U(abs), x);
    check_unary_grad("negative", U(negative), x);
    check_unary_grad("square", U(square), x);
    check_unary_grad("reciprocal", U(reciprocal), x);
    check_unary_grad("exp", U(exp), x);
    check_unary_grad("expm1", U(expm1), x);
    check_unary_grad("sin", U(sin), x);
    check_unary_grad("cos", U(cos), x);
    check_unary_grad("tanh", U(tanh), x);
    check_unary_grad("sigmoid", U(sigmoid), x);
    check_unary_grad("erf", U(erf), x);
    check_unary_grad("silu", U(silu), x);
    check_unary_grad("gelu", U(gelu), x);
    check_unary_grad("gelu_tanh", U(gelu_tanh), x);
    check_unary_grad("log", U(log), std::fabs(x));
    check_unary_grad("log1p", U(log1p), std::fabs(x));
    check_unary_grad("sqrt", U(sqrt), std::fabs(x));
    check_unary_grad("rsqrt", U(rsqrt), std::fabs(x));
    check_unary_grad("floor", U(floor), x);
    check_unary_grad("round", U(round), x);
  }
#undef U
}

TEST(ElementwiseGrad, BinaryFiniteDifferences) {
#define B(OP) [](const Array& a, const Array& b) { return ingot::OP(a, b); }
  for (auto [x, z] : std::vector<std::pair<double, double>>{{1.3, 0.7}, {-0.4, 2.1}, {2.5, -1.7}}) {
    check_binary_grad("add", B(add), x, z);
    check_binary_grad("subtract", B(subtract), x, z);
    check_binary_grad("multiply", B(multiply), x, z);
    check_binary_grad("divide", B(divide), x, z);
    check_binary_grad("maximum", B(maximum), x, z);
    check_binary_grad("minimum", B(minimum), x, z);
    check_binary_grad("remainder", B(remainder), x, z);
    check_binary_grad("power", B(power), std::fabs(x), z);
  }
#undef B
  // where: gradient flows to the selected branch only
  Array c(std::vector<bool>{true, false}, {2});
  Array a({1.0, 2.0}, {2}, float64), b({3.0, 4.0}, {2}, float64);
  Array y = where(c, a, b);
  auto g = y.primitive().vjp(y.inputs(), {ones({2}, float64)}, {1, 2}, {y});
  EXPECT_EQ(g[0].to_vector<double>(), (std::vector<double>{1, 0}));
  EXPECT_EQ(g[1].to_vector<double>(), (std::vector<double>{0, 1}));
  Array h = astype(a, float32);
  auto gh = h.primitive().vjp({a}, {ones({2}, float32)}, {0}, {h});
  EXPECT_EQ(gh[0].dtype(), float64);
}
