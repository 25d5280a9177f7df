// ActivationGrad (the VJP of silu / gelu / gelu_tanh in one pass) against float64 derivatives,
// the composition it replaces (INGOT_FUSED_ACT_GRAD=0) and finite differences; its own VJP.
#include <cmath>
#include <cstdlib>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/primitives/fast.h"
#include "core/transforms/autodiff.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

using ActFn = Array (*)(const Array&, StreamOrDevice);

struct Act {
  const char* name;
  ActFn fn;
  double (*deriv)(double);
};

double silu_d(double x) {
  const double s = 1.0 / (1.0 + std::exp(-x));
  return s * (1.0 + x * (1.0 - s));
}
double gelu_d(double x) {
  return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) +
         x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
}
double gelu_tanh_d(double x) {
  const double c = std::sqrt(2.0 / M_PI), k = 0.044715;
  const double t = std::tanh(c * (x + k * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * k * x * x);
}

const Act kActs[] = {
    {"silu", silu, silu_d}, {"gelu", gelu, gelu_d}, {"gelu_tanh", gelu_tanh, gelu_tanh_d}};

/// The x gradient of act(x) for cotangent g, through whichever path INGOT_FUSED_ACT_GRAD
/// selects ("0": the composition).
Array act_dx(const Act& a, const Array& x, const Array& g, const char* fused) {
  setenv("INGOT_FUSED_ACT_GRAD", fused, 1);
  auto res = vjp([&](const std::vector<Array>& in) { return std::vector<Array>{a.fn(in[0], {})}; },
                 {x}, {g});
  unsetenv("INGOT_FUSED_ACT_GRAD");
  return res.second[0];
}

TEST(ActivationGrad, MatchesFloat64OnEveryDtypeAndLayout) {
  uint32_t seed = 1;
  for (const Act& a : kActs)
    for (Dtype t : kFloatDtypes)
      for (const Shape& sh : {Shape{1}, Shape{7, 33}, Shape{3, 4, 129}})
        for (Layout lay : {Layout::contiguous, Layout::transposed, Layout::sliced}) {
          auto xv = random_values(shape_size(sh), t, seed++, -8, 8);
          auto gv = random_values(shape_size(sh), t, seed++);
          const Array x = make_array(xv, sh, t, lay), g = make_array(gv, sh, t, lay);
          const std::string what = std::string(a.name) + " " + std::string(dtype_name(t)) + " " +
                                   shape_str(sh) + " " + layout_name(lay);
          const Array dx = act_dx(a, x, g, "1");
          ASSERT_TRUE(dx.has_primitive()) << what;
          EXPECT_STREQ(dx.primitive().name(), "ActivationGrad") << what;
          EXPECT_EQ(dx.dtype(), t) << what;
          std::vector<double> want(xv.size());
          for (size_t i = 0; i < xv.size(); ++i) want[i] = round_to(gv[i] * a.deriv(xv[i]), t);
          // One rounding to t after float32 math (float64: the formulas' own error). The
          // float32 terms of gelu_tanh's derivative cancel for x < -3 (1 + tanh, 1 - tanh^2):
          // a few float32 ulps of terms near 1, as in PyTorch's float32 formula.
          const double rtol = t == float64 ? 1e-13 : 2 * eps_of(t) + 1e-6;
          const double atol = t == float64 ? 1e-13 : 2e-5;
          expect_close(values_of(dx), want, rtol, atol, what);
          if (t == float32 || t == float64)  // the composition rounds after every op in t
            expect_close(values_of(act_dx(a, x, g, "0")), want, 20 * rtol, 20 * atol,
                         what + " (composition)");
        }
}

TEST(ActivationGrad, FiniteDifferencesAndSecondOrder) {
  auto xv = random_values(2 * 6, float64, 31, -5, 5), hv = random_values(2 * 6, float64, 32);
  const Array h(hv, {2, 6}, float64);
  for (const Act& a : kActs) {
    check_vjp([&](std::vector<Array> in) { return a.fn(in[0], {}); }, {xv}, {{2, 6}}, a.name);
    // d/d(x, g) of sum(dx * h), dx the first-order gradient: fused equals composition.
    auto second = [&](const char* fused) {
      setenv("INGOT_FUSED_ACT_GRAD", fused, 1);
      auto f = [&](const std::vector<Array>& in) {
        auto inner = [&](const std::vector<Array>& b) {
          return std::vector<Array>{a.fn(b[0], {})};
        };
        return std::vector<Array>{sum(vjp(inner, {in[0]}, {in[1]}).second[0] * h)};
      };
      auto r = vjp(f, {Array(xv, {2, 6}, float64), h}, {Array(1.0, float64)}).second;
      unsetenv("INGOT_FUSED_ACT_GRAD");
      return r;
    };
    const auto fused = second("1"), composed = second("0");
    ASSERT_EQ(fused.size(), 2u);
    for (size_t i = 0; i < 2; ++i)
      expect_close(values_of(fused[i]), values_of(composed[i]), 1e-12, 1e-10,
                   std::string(a.name) + " second order, input " + std::to_string(i));
  }
}

}  // namespace
}  // namespace ingot::test
