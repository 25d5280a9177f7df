// fast::adam_step against the separate ops of fast::ref::adam_step (bit for bit) and against
// float64 loops; fast::sum_squares against float64 sums; errors and the VJP of sum_squares.
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/fast/fast.h"
#include "core/test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kOptimDtypes[] = {float32, bfloat16, float16};

fast::AdamStepOptions options(int step, float lr, float wd, bool decoupled, bool correct) {
  fast::AdamStepOptions o;
  o.lr = lr;
  o.beta1 = 0.9f;
  o.beta2 = 0.999f;
  o.one_minus_beta1 = 1.0f - o.beta1;
  o.one_minus_beta2 = 1.0f - o.beta2;
  o.eps = 1e-8f;
  if (correct) {
    o.c1 = 1.0f - std::pow(o.beta1, static_cast<float>(step));
    o.c2 = 1.0f - std::pow(o.beta2, static_cast<float>(step));
  }
  o.weight_decay = wd;
  o.decay = 1.0f - lr * wd;
  o.decoupled = decoupled;
  return o;
}

void expect_bits(const Array& got, const Array& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = values_of(got), w = values_of(want);
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i]) << what << " at " << i;
}

}  // namespace

TEST(FastAdamStep, EqualsSeparateOpsBitForBit) {
  // Three steps over tensors of every parameter/gradient dtype pair and layout, with and without
  // a gradient scale, weight decay (decoupled or added to the gradient) and bias correction;
  // each step's outputs feed the next. The fused step must be the composition's, bit for bit.
  const std::vector<Shape> shapes{{3}, {4, 5}, {2, 0}, {2, 3, 70}, {1, 1}};
  uint32_t seed = 10;
  for (bool decoupled : {true, false})
    for (float wd : {0.0f, 0.1f})
      for (bool scaled : {false, true})
        for (bool correct : {true, false}) {
          std::vector<Array> ps, gs_base, ms, vs;
          int k = 0;
          for (Dtype pt : kOptimDtypes)
            for (Dtype gt : kOptimDtypes) {
              const Shape& sh = shapes[static_cast<size_t>(k++) % shapes.size()];
              const Layout pl = k % 3 == 0 ? Layout::transposed : Layout::contiguous;
              const Layout gl = k % 2 == 0 ? Layout::sliced : Layout::contiguous;
              auto pv = random_values(shape_size(sh), pt, seed++, -2, 2);
              auto gv = random_values(shape_size(sh), gt, seed++, -1, 1);
              ps.push_back(make_array(pv, sh, pt, pl));
              gs_base.push_back(make_array(gv, sh, gt, gl));
              ms.push_back(zeros(sh, float32));
              vs.push_back(zeros(sh, float32));
            }
          std::vector<Array> fp = ps, fm = ms, fv = vs, rp = ps, rm = ms, rv = vs;
          const size_t n = ps.size();
          for (int step = 1; step <= 3; ++step) {
            std::vector<Array> gs;
            for (const Array& g : gs_base)
              gs.push_back(g * Array(1.0f + 0.5f * static_cast<float>(step), g.dtype()));
            std::optional<Array> scale;
            if (scaled) scale = Array(0.37f + 0.1f * static_cast<float>(step));
            const auto o = options(step, 1e-2f, wd, decoupled, correct);
            const auto f = fast::adam_step(fp, gs, fm, fv, o, scale);
            const auto r = fast::ref::adam_step(rp, gs, rm, rv, o, scale);
            ASSERT_EQ(f.size(), 3 * n);
            for (size_t i = 0; i < n; ++i) {
              const std::string what = "tensor " + std::to_string(i) + " (" +
                                       std::string(dtype_name(ps[i].dtype())) + " param, " +
                                       std::string(dtype_name(gs[i].dtype())) + " grad) step " +
                                       std::to_string(step) + (decoupled ? " adamw" : " adam") +
                                       " wd " + std::to_string(wd) + (scaled ? " scaled" : "") +
                                       (correct ? "" : " no correction");
              expect_bits(f[i], r[i], what + " p");
              expect_bits(f[n + i], r[n + i], what + " m");
              expect_bits(f[2 * n + i], r[2 * n + i], what + " v");
            }
            for (size_t i = 0; i < n; ++i) {
              fp[i] = f[i], fm[i] = f[n + i], fv[i] = f[2 * n + i];
              rp[i] = r[i], rm[i] = r[n + i], rv[i] = r[2 * n + i];
            }
          }
        }
}

TEST(FastAdamStep, MatchesFloat64Loops) {
  // An oracle outside the composition: PyTorch's Adam/AdamW formulas in float64 on float32
  // parameters, five steps.
  for (bool decoupled : {true, false}) {
    const int64_t n = 257;
    auto pv = random_values(n, float32, 3, -1, 1);
    std::vector<double> p = pv, m(n, 0.0), v(n, 0.0);
    Array pa(pv, {n}, float32), ma = zeros({n}, float32), va = zeros({n}, float32);
    const double lr = 1e-2, wd = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int t = 1; t <= 5; ++t) {
      auto gv = random_values(n, float32, 100 + t, -1, 1);
      const auto r = fast::adam_step({pa}, {Array(gv, {n}, float32)}, {ma}, {va},
                                     options(t, 1e-2f, 0.05f, decoupled, true));
      pa = r[0], ma = r[1], va = r[2];
      for (int64_t i = 0; i < n; ++i) {
        double g = gv[i];
        if (decoupled)
          p[i] *= 1 - lr * wd;
        else
          g += wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        p[i] -=
            lr * (m[i] / (1 - std::pow(b1, t))) / (std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps);
      }
      expect_close(values_of(pa), p, 1e-6, 1e-5, "param step " + std::to_string(t));
      expect_close(values_of(ma), m, 1e-7, 1e-5, "m step " + std::to_string(t));
      expect_close(values_of(va), v, 1e-9, 1e-5, "v step " + std::to_string(t));
    }
  }
}

TEST(FastAdamStep, Errors) {
  const Array p = zeros({2, 3}), s = zeros({2, 3});
  const fast::AdamStepOptions o;
  EXPECT_TRUE(fast::adam_step({}, {}, {}, {}, o).empty());
  expect_error<InvalidArgument>(
      [&] { fast::adam_step({p}, {}, {s}, {s}, o); },
      "[adam_step] expected as many gradients, m and v as parameters (1), "
      "got 0, 1, 1");
  expect_error<InvalidArgument>(
      [&] {
        fast::adam_step({p}, {zeros({3, 2})}, {s}, {s}, o);
      },
      "[adam_step] parameter 0 has shape [2, 3] but its gradient, m and v "
      "have [3, 2], [2, 3], [2, 3]");
  expect_error<InvalidArgument>(
      [&] {
        fast::adam_step({zeros({2, 3}, int32)}, {p}, {s}, {s}, o);
      },
      "[adam_step] parameter 0 is int32 with a float32 gradient (float32, bfloat16 or float16)");
  expect_error<InvalidArgument>(
      [&] {
        fast::adam_step({p}, {zeros({2, 3}, float64)}, {s}, {s}, o);
      },
      "[adam_step] parameter 0 is float32 with a float64 gradient");
  expect_error<InvalidArgument>(
      [&] {
        fast::adam_step({p}, {p}, {zeros({2, 3}, bfloat16)}, {s}, o);
      },
      "[adam_step] the state of parameter 0 must be float32, got m bfloat16 and v float32");
  expect_error<InvalidArgument>(
      [&] { fast::adam_step({p}, {p}, {s}, {s}, o, zeros({2})); },
      "[adam_step] grad_scale must be one float32 value, got float32 of shape [2]");
}

TEST(FastSumSquares, MatchesFloat64Sums) {
  uint32_t seed = 40;
  for (const std::vector<Shape>& shapes :
       std::vector<std::vector<Shape>>{{{5}}, {{3, 4}, {0}, {2, 2, 300}}, {{1}, {1000, 3}}}) {
    std::vector<Array> xs;
    double want = 0.0;
    int k = 0;
    for (const Shape& sh : shapes) {
      const Dtype t = kOptimDtypes[static_cast<size_t>(k) % 3];
      const Layout l = k++ % 2 == 0 ? Layout::contiguous : Layout::transposed;
      auto v = random_values(shape_size(sh), t, seed++);
      xs.push_back(make_array(v, sh, t, l));
      for (double x : v) want += x * x;
    }
    const Array got = fast::sum_squares(xs);
    EXPECT_EQ(got.dtype(), float32);
    EXPECT_EQ(got.ndim(), 0);
    EXPECT_NEAR(got.item<float>(), want, 1e-6 * want) << shapes.size() << " inputs";
    EXPECT_NEAR(fast::ref::sum_squares(xs).item<float>(), want, 1e-5 * want);
  }
  EXPECT_EQ(fast::sum_squares({}).item<float>(), 0.0f);
  EXPECT_EQ(fast::sum_squares({zeros({0, 3})}).item<float>(), 0.0f);
  expect_error<InvalidArgument>(
      [] {
        fast::sum_squares({zeros({2}), zeros({2}, int32)});
      },
      "[sum_squares] input 1 is int32 (floating-point only)");
}

TEST(FastSumSquares, Gradient) {
  // d/dx_i of c * sum(x^2) is 2 c x_i, in each input's dtype.
  auto av = random_values(6, float32, 7), bv = random_values(4, bfloat16, 8);
  const Array a(av, {2, 3}), b(bv, {4}, bfloat16);
  auto [outs, grads] = vjp(
      [](const std::vector<Array>& in) {
        return std::vector<Array>{fast::sum_squares({in[0], in[1]})};
      },
      {a, b}, {Array(1.5f)});
  ASSERT_EQ(grads.size(), 2u);
  EXPECT_EQ(grads[1].dtype(), bfloat16);
  std::vector<double> wa, wb;
  for (double x : av) wa.push_back(3.0 * x);
  for (double x : bv) wb.push_back(round_to(3.0 * x, bfloat16));
  expect_close(values_of(grads[0]), wa, 1e-6, 1e-6, "float32 input");
  expect_close(values_of(grads[1]), wb, 0, 0, "bfloat16 input");
}
