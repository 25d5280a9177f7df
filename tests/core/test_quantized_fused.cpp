// The fused quantized ops on the CPU (fast::rms_norm_quantized_linear, rms_norm_quantized_glu,
// quantized_linear_add: one QuantizedMatmul primitive carrying the fusion): equal to the
// separate ops bit for bit (the CPU composes their kernels) for every dtype, bit width, group
// size, norm weight mode and decode / prefill row count; the residual form against float64
// loops over the layout's definition; gradients equal to the separate ops' and the frozen
// weights refused; argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backend/cpu/quantized_int8.h"
#include "test_util.h"

namespace ingot {
namespace {

Array rand_arr(const Shape& s, Dtype t, uint32_t seed, double lo = -2, double hi = 2) {
  return Array(test::random_values(shape_size(s), t, seed, lo, hi), s, t);
}

fast::QuantizedLinearWeight make_weight(int64_t n, int64_t k, Dtype t, QuantizeOptions o,
                                        uint32_t seed) {
  QuantizedWeight q = quantize(rand_arr({n, k}, t, seed), o);
  eval({q.w, q.scales, q.biases});
  return {q.w, q.scales, q.biases, o};
}

Array qmm(const Array& x, const fast::QuantizedLinearWeight& w) {
  return quantized_matmul(x, w.w, w.scales, w.biases, true, w.opt);
}

Array act_of(const Array& g, fast::GatedActivation a) {
  return a == fast::GatedActivation::silu   ? silu(g)
         : a == fast::GatedActivation::gelu ? gelu(g)
                                            : gelu_tanh(g);
}

/// act(y[..., :I]) * y[..., I:] of a product y [1, M, 2I].
Array glu_of(const Array& y, fast::GatedActivation a) {
  const int64_t m = y.shape(1), i = y.shape(2) / 2;
  return act_of(slice(y, {0, 0, 0}, {1, m, i}), a) * slice(y, {0, 0, i}, {1, m, 2 * i});
}

void expect_same(const Array& got, const Array& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i]) << what << " at " << i;
}

TEST(QuantizedFused, EqualsTheSeparateOps) {
  const fast::GatedActivation acts[] = {fast::GatedActivation::silu, fast::GatedActivation::gelu,
                                        fast::GatedActivation::gelu_tanh};
  uint32_t seed = 10;
  for (Dtype t : {float32, bfloat16, float16})
    for (int bits : {4, 8})
      for (int gs : {32, 64, 128})
        for (int64_t m : {1, 3, 17}) {
          const QuantizeOptions o{.group_size = gs, .bits = bits};
          const int64_t k = 2 * gs + 128, n = 24;
          const std::string what = fmt::format("{} bits {} gs {} M {}", dtype_name(t), bits, gs, m);
          const auto w = make_weight(n, k, t, o, seed++);
          const Array x = rand_arr({1, m, k}, t, seed++);
          const Array nw = rand_arr({k}, t, seed++, -1.5, 1.5);
          const Array r = rand_arr({1, m, n}, t, seed++);
          const fast::RmsNormOptions opts[] = {
              {.eps = 1e-6f},
              {.eps = 1e-5f, .weight_in_float32 = false},
              {.eps = 1e-6f, .add_unit_offset = true, .weight_in_float32 = true}};
          for (int mode = 0; mode < 3; ++mode) {
            const std::optional<Array> weight =
                mode == 0 && m == 1 ? std::nullopt : std::optional<Array>(nw);
            const fast::RmsNormOptions& no = opts[mode];
            const fast::GatedActivation a = acts[(seed + mode) % 3];
            const Array h = fast::rms_norm(x, weight, no);
            expect_same(fast::rms_norm_quantized_linear(x, weight, w, no), qmm(h, w),
                        what + fmt::format(" norm mode {}", mode));
            expect_same(fast::rms_norm_quantized_glu(x, weight, w, a, no), glu_of(qmm(h, w), a),
                        what + fmt::format(" glu mode {}", mode));
          }
          expect_same(fast::quantized_linear_add(r, x, w), r + qmm(x, w), what + " residual");
        }
}

TEST(QuantizedFused, ResidualFormAgainstFloat64) {
  // residual + round(x @ w^T) with w = s * q + b unpacked here from the layout's definition;
  // float32 throughout (the product's float32 sums, then one rounding of the add).
  cpu::ScopedInt8Decode float_path(false);
  const QuantizeOptions o{.group_size = 32, .bits = 4};
  const int64_t m = 2, k = 96, n = 7;
  const auto w = make_weight(n, k, float32, o, 3);
  const Array x = rand_arr({m, k}, float32, 4), r = rand_arr({m, n}, float32, 5);
  const auto words = w.w.to_vector<uint32_t>();
  const auto s = w.scales.to_vector<double>(), b = w.biases.to_vector<double>();
  const auto xv = x.to_vector<double>(), rv = r.to_vector<double>();
  const auto got = fast::quantized_linear_add(r, x, w).to_vector<double>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double want = rv[i * n + j], sc = std::fabs(want);
      for (int64_t t = 0; t < k; ++t) {
        const double q = (words[j * (k / 8) + t / 8] >> ((t % 8) * 4)) & 15u;
        const double wv = s[j * (k / 32) + t / 32] * q + b[j * (k / 32) + t / 32];
        want += xv[i * k + t] * wv;
        sc += std::fabs(xv[i * k + t] * wv);
      }
      EXPECT_NEAR(got[i * n + j], want, 1e-6 * sc) << i << "," << j;
    }
}

TEST(QuantizedFused, GradientsEqualTheSeparateOps) {
  // d/dx, d/d(norm weight) and d/d(residual) of sum(c * f(...)) for each fused form against the
  // same gradients of the separate ops (one float32 rounding of each sum apart at most).
  const QuantizeOptions o{.group_size = 32, .bits = 8};
  const int64_t m = 3, k = 64, n = 10;
  const auto w = make_weight(n, k, float32, o, 21);
  const auto wgu = make_weight(2 * n, k, float32, o, 22);
  const Array x = rand_arr({1, m, k}, float32, 23), nw = rand_arr({k}, float32, 24);
  const Array r = rand_arr({1, m, n}, float32, 25), c = rand_arr({1, m, n}, float32, 26);
  const fast::RmsNormOptions no{.eps = 1e-5f, .add_unit_offset = true};
  using Fn = std::function<Array(const std::vector<Array>&)>;
  const auto check = [&](const Fn& fused, const Fn& sep, const std::vector<Array>& at,
                         const std::string& what) {
    const std::vector<int> args = at.size() == 2 ? std::vector<int>{0, 1} : std::vector<int>{0};
    const auto loss = [&](const Fn& f) {
      return [&, f](const std::vector<Array>& a) { return std::vector<Array>{sum(f(a) * c)}; };
    };
    const std::vector<Array> gf = grad(loss(fused), args)(at), gs = grad(loss(sep), args)(at);
    ASSERT_EQ(gf.size(), gs.size()) << what;
    for (size_t i = 0; i < gf.size(); ++i) {
      const auto a = gf[i].to_vector<double>(), b = gs[i].to_vector<double>();
      ASSERT_EQ(a.size(), b.size()) << what;
      for (size_t j = 0; j < a.size(); ++j)
        EXPECT_NEAR(a[j], b[j], 1e-5 * (1 + std::fabs(b[j]))) << what << " arg " << i << " @" << j;
    }
  };
  check(
      [&](const std::vector<Array>& a) {
        return fast::rms_norm_quantized_linear(a[0], a[1], w, no);
      },
      [&](const std::vector<Array>& a) { return qmm(fast::rms_norm(a[0], a[1], no), w); }, {x, nw},
      "norm");
  check(
      [&](const std::vector<Array>& a) {
        return fast::rms_norm_quantized_glu(a[0], a[1], wgu, fast::GatedActivation::gelu_tanh, no);
      },
      [&](const std::vector<Array>& a) {
        return glu_of(qmm(fast::rms_norm(a[0], a[1], no), wgu), fast::GatedActivation::gelu_tanh);
      },
      {x, nw}, "glu");
  check([&](const std::vector<Array>& a) { return fast::quantized_linear_add(a[1], a[0], w); },
        [&](const std::vector<Array>& a) { return a[1] + qmm(a[0], w); }, {x, r}, "residual");
  // The packed weight, scales and biases are frozen.
  const auto through_scales = [&](const std::vector<Array>& a) {
    return std::vector<Array>{sum(fast::quantized_linear_add(r, x, {w.w, a[0], w.biases, w.opt}))};
  };
  EXPECT_THROW(grad(through_scales, {0})({w.scales}), Unsupported);
}

TEST(QuantizedFused, Errors) {
  const QuantizeOptions o{.group_size = 32, .bits = 4};
  const auto w = make_weight(6, 64, float32, o, 31);
  const Array x = rand_arr({2, 64}, float32, 32);
  const Array nw = rand_arr({64}, float32, 33);
  // Scales of another dtype than x, x of the wrong width, an odd gate|up stack, a residual of
  // the wrong shape or dtype, a norm weight of another dtype, unsupported options.
  EXPECT_THROW(fast::rms_norm_quantized_linear(astype(x, bfloat16), nw, w), InvalidArgument);
  EXPECT_THROW(fast::rms_norm_quantized_linear(rand_arr({2, 32}, float32, 34), std::nullopt, w),
               InvalidArgument);
  const auto w5 = make_weight(5, 64, float32, o, 35);
  EXPECT_THROW(fast::rms_norm_quantized_glu(x, nw, w5, fast::GatedActivation::silu),
               InvalidArgument);
  EXPECT_THROW(fast::quantized_linear_add(zeros({2, 5}, float32), x, w), InvalidArgument);
  EXPECT_THROW(fast::quantized_linear_add(zeros({2, 6}, bfloat16), x, w), InvalidArgument);
  EXPECT_THROW(fast::rms_norm_quantized_linear(x, astype(nw, bfloat16), w), InvalidArgument);
  EXPECT_THROW(fast::rms_norm_quantized_linear(
                   x, nw, {w.w, w.scales, w.biases, {.group_size = 32, .bits = 3}}),
               Unsupported);
  EXPECT_THROW(fast::rms_norm_quantized_linear(x, nw, {w.scales, w.scales, w.biases, o}),
               InvalidArgument);
}

}  // namespace
}  // namespace ingot
