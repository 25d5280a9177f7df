// fast::gated_activation (Glu: act(g) * u) and its one-pass backward (GluGrad) on the CPU: the
// forward bit for bit the separate ops' on every activation, dtype and layout (the column halves
// of a stacked product, transposed, sliced, broadcast rows, infinities and NaN); the gradients
// against float64 loops, the composition (du bit for bit) and finite differences; second order,
// jvp, zero sizes, argument errors.
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/fast/fast.h"
#include "core/transforms/autodiff.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

using fast::GatedActivation;

double silu_f(double x) {
  return x / (1.0 + std::exp(-x));
}
double gelu_f(double x) {
  return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
}
// 0.5 x (1 + tanh(v)) written as x / (1 + e^(-2v)): no cancellation for negative x.
double gelu_tanh_f(double x) {
  const double v = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return x / (1.0 + std::exp(-2.0 * v));
}
double silu_d(double x) {
  const double s = 1.0 / (1.0 + std::exp(-x));
  return s * (1.0 + x * (1.0 - s));
}
double gelu_d(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
}
double gelu_tanh_d(double x) {
  const double c = std::sqrt(2.0 / M_PI), k = 0.044715;
  const double t = std::tanh(c * (x + k * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * k * x * x);
}

struct Act {
  const char* name;
  GatedActivation act;
  double (*f)(double);
  double (*d)(double);
};
const Act kActs[] = {{"silu", GatedActivation::silu, silu_f, silu_d},
                     {"gelu", GatedActivation::gelu, gelu_f, gelu_d},
                     {"gelu_tanh", GatedActivation::gelu_tanh, gelu_tanh_f, gelu_tanh_d}};

/// How g and u are laid out: test_util's layouts, or the two column halves of one stacked
/// [..., 2I] array (rows 2I apart: the gate|up product of a fused projection).
enum class Pairing { contiguous, stacked, transposed, sliced, broadcast };
const Pairing kPairings[] = {Pairing::contiguous, Pairing::stacked, Pairing::transposed,
                             Pairing::sliced, Pairing::broadcast};
Layout layout_of(Pairing p) {
  switch (p) {
    case Pairing::transposed:
      return Layout::transposed;
    case Pairing::sliced:
      return Layout::sliced;
    case Pairing::broadcast:
      return Layout::broadcast;
    default:
      return Layout::contiguous;
  }
}

const char* pairing_name(Pairing p) {
  return p == Pairing::stacked ? "stacked halves" : layout_name(layout_of(p));
}

/// g and u holding the logical values gv and uv (rewritten for broadcast layouts).
std::pair<Array, Array> make_pair_of(std::vector<double>& gv, std::vector<double>& uv,
                                     const Shape& sh, Dtype t, Pairing p) {
  if (p != Pairing::stacked || sh.empty())
    return {make_array(gv, sh, t, layout_of(p)), make_array(uv, sh, t, layout_of(p))};
  const int64_t i = sh.back(), rows = i == 0 ? 0 : shape_size(sh) / i;
  Shape big = sh;
  big.back() = 2 * i;
  std::vector<double> y(static_cast<size_t>(shape_size(big)));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < i; ++c) {
      y[r * 2 * i + c] = gv[r * i + c];
      y[r * 2 * i + i + c] = uv[r * i + c];
    }
  const Array ya(y, big, t);
  Shape start(sh.size(), 0), mid = sh;
  Shape up_start = start;
  up_start.back() = i;
  Array g = slice(ya, start, mid), u = slice(ya, up_start, big);
  g.eval();
  u.eval();
  return {g, u};
}

/// The bytes of a's elements in row-major order.
std::vector<uint8_t> bytes_of(const Array& a) {
  std::vector<uint8_t> b(a.nbytes());
  if (!b.empty())
    dispatch_dtype(a.dtype(),
                   [&](auto tag) { std::memcpy(b.data(), a.data<decltype(tag)>(), b.size()); });
  return b;
}

/// {dg, du} of fn(g, u) for the cotangent dh.
using GluFn = Array (*)(const Array&, const Array&, GatedActivation, StreamOrDevice);
std::vector<Array> glu_grads(GluFn fn, GatedActivation act, const Array& g, const Array& u,
                             const Array& dh) {
  auto f = [&](const std::vector<Array>& in) {
    return std::vector<Array>{fn(in[0], in[1], act, {})};
  };
  return vjp(f, {g, u}, {dh}).second;
}

const Shape kShapes[] = {Shape{1}, Shape{7, 33}, Shape{3, 4, 129}, Shape{2, 1100}, Shape{48, 1000}};

TEST(GatedActivation, ForwardIsTheSeparateOpsBitForBit) {
  uint32_t seed = 1;
  const double inf = std::numeric_limits<double>::infinity();
  for (const Act& a : kActs)
    for (Dtype t : kFloatDtypes)
      for (const Shape& sh : kShapes)
        for (Pairing p : kPairings) {
          const int64_t n = shape_size(sh);
          auto gv = random_values(n, t, seed++, -8, 8), uv = random_values(n, t, seed++);
          const double special[] = {inf, -inf, std::nan(""), -0.0, 100.0, -100.0, 0.0};
          for (size_t k = 0; k < std::size(special) && 3 * k < gv.size(); ++k)
            gv[3 * k] = special[k];
          if (uv.size() > 4) uv[4] = inf;
          const auto [g, u] = make_pair_of(gv, uv, sh, t, p);
          const std::string what = std::string(a.name) + " " + std::string(dtype_name(t)) + " " +
                                   shape_str(sh) + " " + pairing_name(p);
          const Array got = fast::gated_activation(g, u, a.act);
          ASSERT_TRUE(got.has_primitive()) << what;
          EXPECT_STREQ(got.primitive().name(), "Glu") << what;
          EXPECT_EQ(got.dtype(), t) << what;
          EXPECT_EQ(got.shape(), sh) << what;
          const Array want = fast::ref::gated_activation(g, u, a.act);
          EXPECT_EQ(bytes_of(got), bytes_of(want)) << what;
          // And near act(g) * u in float64 (act rounded to t, then the product): finite inputs.
          const auto gotv = values_of(got);
          const double rtol = t == float64 ? 1e-14 : 2 * eps_of(t) + 1e-6;
          for (size_t k = 0; k < gv.size(); ++k) {
            if (!std::isfinite(gv[k]) || !std::isfinite(uv[k]) || std::abs(gv[k]) > 50) continue;
            const double w = a.f(gv[k]) * uv[k];
            ASSERT_NEAR(gotv[k], w, rtol * std::abs(w) + 1e-6) << what << " at " << k;
          }
        }
}

TEST(GatedActivation, GradientsMatchFloat64AndTheComposition) {
  uint32_t seed = 100;
  for (const Act& a : kActs)
    for (Dtype t : kFloatDtypes)
      for (const Shape& sh : kShapes)
        for (Pairing p : kPairings) {
          const int64_t n = shape_size(sh);
          auto gv = random_values(n, t, seed++, -8, 8), uv = random_values(n, t, seed++, -2, 2);
          auto hv = random_values(n, t, seed++, -2, 2);
          const auto [g, u] = make_pair_of(gv, uv, sh, t, p);
          const Array dh = make_array(hv, sh, t, layout_of(p));
          const std::string what = std::string(a.name) + " " + std::string(dtype_name(t)) + " " +
                                   shape_str(sh) + " " + pairing_name(p);
          const auto grads = glu_grads(fast::gated_activation, a.act, g, u, dh);
          ASSERT_EQ(grads.size(), 2u);
          for (const Array& d : grads) {
            ASSERT_TRUE(d.has_primitive()) << what;
            EXPECT_STREQ(d.primitive().name(), "GluGrad") << what;
            EXPECT_EQ(d.dtype(), t) << what;
            EXPECT_EQ(d.shape(), sh) << what;
          }
          std::vector<double> want_dg(gv.size()), want_du(gv.size());
          for (size_t k = 0; k < gv.size(); ++k) {
            want_dg[k] = hv[k] * uv[k] * a.d(gv[k]);
            want_du[k] = hv[k] * a.f(gv[k]);
          }
          // One rounding to t of float32 math (float64: the formulas' own error); du also has
          // act(g) rounded to t. The float32 terms of gelu_tanh's derivative cancel for x < -3
          // (1 + tanh, 1 - tanh^2): a few float32 ulps of terms near 1, as in ActivationGrad.
          const double rtol = t == float64 ? 1e-13 : 2 * eps_of(t) + 1e-6;
          const double atol = t == float64 ? 1e-13 : 2e-5;
          expect_close(values_of(grads[0]), want_dg, rtol, atol, what + " dg");
          expect_close(values_of(grads[1]), want_du, rtol, t == float64 ? 1e-13 : 1e-6,
                       what + " du");
          // du is the composition's multiply of dh and the rounded act(g), bit for bit; the
          // composition's dg rounds dh * u and then each op of act' in t.
          const auto composed = glu_grads(fast::ref::gated_activation, a.act, g, u, dh);
          EXPECT_EQ(bytes_of(grads[1]), bytes_of(composed[1])) << what << " du";
          if (t == float32 || t == float64)
            expect_close(values_of(composed[0]), want_dg, 20 * rtol, 20 * atol,
                         what + " dg (composition)");
        }
}

TEST(GatedActivation, GradientOfAFreshCotangent) {
  // dh computed just before (an unevaluated product nothing else holds: its buffer may become
  // du's) gives what an evaluated copy of it gives.
  auto gv = random_values(3 * 700, bfloat16, 7, -8, 8), uv = random_values(3 * 700, bfloat16, 8);
  auto hv = random_values(3 * 700, bfloat16, 9);
  const Array g(gv, {3, 700}, bfloat16), u(uv, {3, 700}, bfloat16), h(hv, {3, 700}, bfloat16);
  for (const Act& a : kActs) {
    const auto want = glu_grads(fast::gated_activation, a.act, g, u, h);
    const auto got = glu_grads(fast::gated_activation, a.act, g, u, h * Array(1.0f, bfloat16));
    eval({got[0], got[1]});
    EXPECT_EQ(bytes_of(got[0]), bytes_of(want[0])) << a.name;
    EXPECT_EQ(bytes_of(got[1]), bytes_of(want[1])) << a.name;
  }
}

TEST(GatedActivation, CotangentOfAnotherDtypePromotesAsTheSeparateOps) {
  auto gv = random_values(40, bfloat16, 11, -6, 6), uv = random_values(40, bfloat16, 12);
  auto hv = random_values(40, float32, 13);
  const Array g(gv, {5, 8}, bfloat16), u(uv, {5, 8}, bfloat16), h(hv, {5, 8}, float32);
  for (const Act& a : kActs) {
    const auto got = glu_grads(fast::gated_activation, a.act, g, u, h);
    const auto want = glu_grads(fast::ref::gated_activation, a.act, g, u, h);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(got[i].dtype(), want[i].dtype()) << a.name;
      EXPECT_EQ(bytes_of(got[i]), bytes_of(want[i])) << a.name << " input " << i;
    }
  }
}

TEST(GatedActivation, FiniteDifferencesSecondOrderAndJvp) {
  const Shape sh{2, 6};
  auto gv = random_values(12, float64, 21, -5, 5), uv = random_values(12, float64, 22);
  auto hv = random_values(12, float64, 23), wv = random_values(12, float64, 24);
  const Array g(gv, sh, float64), u(uv, sh, float64), h(hv, sh, float64), w(wv, sh, float64);
  for (const Act& a : kActs) {
    check_vjp([&](std::vector<Array> in) { return fast::gated_activation(in[0], in[1], a.act); },
              {gv, uv}, {sh, sh}, a.name);
    // d/d(g, u, dh) of sum(dg * h + du * w), the first-order gradients: GluGrad's VJP (the
    // composition's) against the separate ops' second order.
    auto second = [&](GluFn fn) {
      auto f = [&](const std::vector<Array>& in) {
        const auto d = glu_grads(fn, a.act, in[0], in[1], in[2]);
        return std::vector<Array>{sum(d[0] * h) + sum(d[1] * w)};
      };
      return vjp(f, {g, u, h}, {Array(1.0, float64)}).second;
    };
    const auto fused = second(fast::gated_activation),
               composed = second(fast::ref::gated_activation);
    ASSERT_EQ(fused.size(), 3u);
    for (size_t i = 0; i < 3; ++i)
      expect_close(values_of(fused[i]), values_of(composed[i]), 1e-12, 1e-12,
                   std::string(a.name) + " second order, input " + std::to_string(i));
    check_jvp([&](const Array& x) { return fast::gated_activation(x, u, a.act); }, g);
    check_jvp([&](const Array& x) { return fast::gated_activation(g, x, a.act); }, u);
  }
}

TEST(GatedActivation, ZeroSizes) {
  for (Dtype t : {bfloat16, float32})
    for (const Shape& sh : {Shape{0}, Shape{0, 5}, Shape{5, 0}, Shape{2, 0, 3}}) {
      const Array g = zeros(sh, t), u = ones(sh, t), h = ones(sh, t);
      const Array y = fast::gated_activation(g, u, GatedActivation::silu);
      EXPECT_EQ(y.shape(), sh);
      EXPECT_TRUE(values_of(y).empty());
      const auto d = glu_grads(fast::gated_activation, GatedActivation::gelu, g, u, h);
      for (const Array& x : d) {
        EXPECT_EQ(x.shape(), sh);
        EXPECT_TRUE(values_of(x).empty());
      }
    }
}

TEST(GatedActivation, ArgumentErrors) {
  const Array a = ones({2, 3}, float32);
  expect_error<InvalidArgument>(
      [&] {
        fast::gated_activation(ones({2, 3}, int32), ones({2, 3}, int32), {});
      },
      "floating-point");
  expect_error<InvalidArgument>(
      [&] {
        fast::gated_activation(a, ones({2, 3}, bfloat16), {});
      },
      "one floating-point dtype");
  expect_error<InvalidArgument>([&] { fast::gated_activation(a, ones({3}, float32), {}); },
                                "same shape");
}

}  // namespace
}  // namespace ingot::test
