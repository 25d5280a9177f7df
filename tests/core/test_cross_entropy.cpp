// softmax_cross_entropy (CrossEntropy / CrossEntropyGrad) against float64 references: every
// float dtype and layout, target dtypes, rows from 1 to 70001 classes, the gradient against the
// closed form and central differences, grad-of-grad, non-finite rows, donation and errors.
#include <cmath>
#include <limits>

#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

double ref_lse(const double* x, int64_t n) {
  double m = -kInf;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
  return m + std::log(s);
}

/// Targets for `rows` rows of `n` classes (in range, including 0 and n - 1).
std::vector<double> targets_for(int64_t rows, int64_t n, uint32_t seed) {
  std::vector<double> t(static_cast<size_t>(rows));
  std::mt19937 g(seed);
  for (int64_t r = 0; r < rows; ++r)
    t[r] = r == 0 ? 0 : r == 1 ? static_cast<double>(n - 1) : static_cast<double>(g() % n);
  return t;
}

struct Shapes {
  Shape logits;
  Shape targets;
};

const std::vector<Shapes> kShapes = {
    {{7}, {}},        {{5, 7}, {5}},    {{2, 3, 33}, {2, 3}},
    {{4, 1000}, {4}}, {{3, 1025}, {3}}, {{2, 70001}, {2}},
};

}  // namespace

TEST(CrossEntropy, ValuesAndGradientsAllDtypesLayouts) {
  int ci = 0;
  for (const Shapes& c : kShapes) {
    ++ci;
    const int64_t n = c.logits.back();
    const int64_t rows = shape_size(c.targets);
    for (Dtype t : kFloatDtypes) {
      for (Layout l : kAllLayouts) {
        if (l == Layout::broadcast && c.logits.size() < 2) continue;
        std::vector<double> xv = random_values(shape_size(c.logits), t, 200 + ci, -6, 6);
        Array x = make_array(xv, c.logits, t, l);  // xv now holds the logical values
        const std::vector<double> tv = targets_for(rows, n, 300 + ci);
        for (Dtype tt : {int32, int64, uint8}) {
          if (tt == uint8 && n > 255) continue;
          const Array tg(tv, c.targets, tt);
          const std::string what = std::string(dtype_name(t)) + " " + layout_name(l) + " " +
                                   shape_str(c.logits) + " targets " + std::string(dtype_name(tt));
          // Loss per row.
          std::vector<double> want(static_cast<size_t>(rows)), lse(static_cast<size_t>(rows));
          for (int64_t r = 0; r < rows; ++r) {
            lse[r] = ref_lse(&xv[r * n], n);
            want[r] = lse[r] - xv[r * n + static_cast<int64_t>(tv[r])];
          }
          const Array loss = softmax_cross_entropy(x, tg);
          const Dtype ld = t == float64 ? float64 : float32;
          ASSERT_EQ(loss.dtype(), ld) << what;
          ASSERT_EQ(loss.shape(), c.targets) << what;
          const std::vector<double> got = loss.to_vector<double>();
          for (int64_t r = 0; r < rows; ++r) {
            // float32: the sum of exponentials (relative 4e-6, as the softmax tests allow)
            // and the roundings of max + log(sum) and of the difference.
            const double xt = xv[r * n + static_cast<int64_t>(tv[r])];
            const double tol = ld == float64
                                   ? 1e-12 * (1 + std::abs(lse[r]))
                                   : 4e-6 + 4 * eps_of(float32) * (std::abs(lse[r]) + std::abs(xt));
            EXPECT_NEAR(got[r], want[r], tol) << what << " row " << r;
          }
          // Gradient of sum(loss * w): (softmax - onehot) * w, rounded once to the dtype.
          const std::vector<double> wv = random_values(rows, float32, 400 + ci, -2, 2);
          const Array w(wv, c.targets, ld);
          auto [outs, grads] = vjp(
              [&](const std::vector<Array>& in) {
                return std::vector<Array>{softmax_cross_entropy(in[0], tg)};
              },
              {x}, {w});
          ASSERT_EQ(grads[0].dtype(), t) << what;
          ASSERT_EQ(grads[0].shape(), c.logits) << what;
          const std::vector<double> gg = grads[0].to_vector<double>();
          int bad = 0;
          for (int64_t r = 0; r < rows && bad < 5; ++r)
            for (int64_t j = 0; j < n && bad < 5; ++j) {
              const double p = std::exp(xv[r * n + j] - lse[r]);
              const double e = (p - (j == static_cast<int64_t>(tv[r]) ? 1 : 0)) * wv[r];
              // Rounded once to the dtype; p in float32 within 4e-6 relative (as softmax);
              // the target's -w after the product rounds in float32; float16 subnormals.
              const bool target = j == static_cast<int64_t>(tv[r]);
              const double tol = t == float64
                                     ? 1e-13
                                     : eps_of(t) * std::abs(e) + 4e-6 * p * std::abs(wv[r]) +
                                           (target ? 4 * eps_of(float32) * std::abs(wv[r]) : 0) +
                                           (t == float16 ? 6e-8 : 0);
              if (std::abs(gg[r * n + j] - e) > tol) {
                ++bad;
                ADD_FAILURE() << what << " grad row " << r << " class " << j << ": got "
                              << gg[r * n + j] << ", want " << e;
              }
            }
        }
      }
    }
  }
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  std::vector<double> xv = random_values(3 * 6, float64, 5, -3, 3);
  const Array x(xv, {3, 6}, float64);
  const Array tg(std::vector<double>{2, 0, 5}, {3}, int32);
  check_grad([&](const Array& a) { return softmax_cross_entropy(a, tg); }, x);
  // Second order: the gradient (CrossEntropyGrad) differentiated in the logits and in g.
  const Array w(std::vector<double>{0.7, -1.3, 2.1}, {3}, float64);
  auto grad_x = [&](const Array& a, const Array& g) {
    return vjp(
               [&](const std::vector<Array>& in) {
                 return std::vector<Array>{softmax_cross_entropy(in[0], tg)};
               },
               {a}, {g})
        .second[0];
  };
  check_grad([&](const Array& a) { return grad_x(a, w); }, x);
  check_grad([&](const Array& g) { return grad_x(x, g); }, w);
}

TEST(CrossEntropy, MatchesTheComposition) {
  // The fused op against logsumexp - take_along_axis in float32 (what nn::cross_entropy was).
  std::vector<double> xv = random_values(8 * 300, bfloat16, 17, -8, 8);
  const Array x(xv, {8, 300}, bfloat16);
  const Array tg(targets_for(8, 300, 18), {8}, int32);
  const Array xf = astype(x, float32);
  const Array comp = logsumexp(xf, -1) - squeeze(take_along_axis(xf, expand_dims(tg, -1), -1), -1);
  // The CPU kernel gathers the row into float32 and runs the same logsumexp row kernel.
  EXPECT_EQ(softmax_cross_entropy(x, tg).to_vector<float>(), comp.to_vector<float>());
}

TEST(CrossEntropy, NonFiniteRows) {
  const float inf = std::numeric_limits<float>::infinity();
  // Masked (-inf) classes other than the target: ordinary; a -inf target: +inf loss; all -inf
  // or a NaN: NaN.
  const Array x(std::vector<float>{0.f, -inf, 0.f, -inf,  //
                                   0.f, -inf, 1.f, 2.f,   //
                                   -inf, -inf, -inf, -inf, 1.f, NAN, 2.f, 3.f},
                {4, 4});
  const Array tg(std::vector<int32_t>{0, 1, 2, 3}, {4});
  const auto l = softmax_cross_entropy(x, tg).to_vector<float>();
  EXPECT_FLOAT_EQ(l[0], std::log(2.f));
  EXPECT_EQ(l[1], inf);
  EXPECT_TRUE(std::isnan(l[2]));
  EXPECT_TRUE(std::isnan(l[3]));
  // The gradient of the first row: masked classes get exactly 0.
  auto [outs, grads] = vjp(
      [&](const std::vector<Array>& in) {
        return std::vector<Array>{softmax_cross_entropy(in[0], tg)};
      },
      {x}, {Array(std::vector<float>{1.f, 0.f, 0.f, 0.f}, {4})});
  const auto g = grads[0].to_vector<float>();
  EXPECT_FLOAT_EQ(g[0], -0.5f);
  EXPECT_EQ(g[1], 0.f);
  EXPECT_FLOAT_EQ(g[2], 0.5f);
  EXPECT_EQ(g[3], 0.f);
}

TEST(CrossEntropy, DonatedLogitsGiveTheSameGradient) {
  // x + 0 is held by the graph only, so the gradient kernel may overwrite it in place.
  for (Dtype t : {float32, bfloat16}) {
    std::vector<double> xv = random_values(6 * 50, t, 23);
    const Array x(xv, {6, 50}, t);
    const Array tg(targets_for(6, 50, 24), {6}, int64);
    const Array w = ones({6});
    auto run = [&](bool donate) {
      return vjp(
                 [&](const std::vector<Array>& in) {
                   const Array a = donate ? add(in[0], Array(0.0f, t)) : in[0];
                   return std::vector<Array>{softmax_cross_entropy(a, tg)};
                 },
                 {x}, {w})
          .second[0]
          .to_vector<double>();
    };
    EXPECT_EQ(run(true), run(false)) << dtype_name(t);
    EXPECT_EQ(x.to_vector<double>(), xv);  // the caller's logits are untouched
  }
}

TEST(CrossEntropy, Errors) {
  const Array x = zeros({2, 5});
  expect_error<InvalidArgument>(
      [&] {
        softmax_cross_entropy(x, Array(std::vector<int32_t>{1, 5}, {2})).eval();
      },
      "[cross_entropy] index 5 is out of range for axis 1 of size 5");
  expect_error<InvalidArgument>(
      [&] {
        softmax_cross_entropy(x, Array(std::vector<int64_t>{-1, 0}, {2})).eval();
      },
      "[cross_entropy] index -1 is out of range for axis 1 of size 5");
  expect_error<InvalidArgument>([&] { softmax_cross_entropy(x, zeros({2})); },
                                "[cross_entropy] targets must be integers, got float32");
  expect_error<InvalidArgument>(
      [&] {
        softmax_cross_entropy(x, Array(std::vector<int32_t>{1, 2, 3}, {3}));
      },
      "[cross_entropy] logits [2, 5] and targets [3] disagree on axis 0");
  expect_error<InvalidArgument>(
      [&] {
        softmax_cross_entropy(x, zeros({2, 5}, int32));
      },
      "[cross_entropy] logits [2, 5] must have one more axis");
  expect_error<InvalidArgument>(
      [&] {
        softmax_cross_entropy(zeros({2, 5}, int32), zeros({2}, int32));
      },
      "[cross_entropy] logits must be floating point, got int32");
  expect_error<InvalidArgument>(
      [&] {
        softmax_cross_entropy(zeros({2, 0}), zeros({2}, int32));
      },
      "[cross_entropy] logits [2, 0] have no classes");
  // The gradient checks its targets the same way (only the gradient is evaluated).
  expect_error<InvalidArgument>(
      [&] {
        const Array bad(std::vector<int32_t>{7, 0}, {2});
        auto r = vjp(
            [&](const std::vector<Array>& in) {
              return std::vector<Array>{softmax_cross_entropy(in[0], bad)};
            },
            {x}, {ones({2})});
        r.second[0].eval();
      },
      "[cross_entropy] index 7 is out of range");
}
