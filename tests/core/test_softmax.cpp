// softmax, log_softmax and logsumexp against float64 references: every dtype and layout, axes
// (last, inner, several, negative), sizes 1..70001, large magnitudes, -inf, and errors.
#include <cmath>
#include <limits>

#include "test_reduce_ref.h"
#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

struct Case {
  Shape shape;
  std::vector<int> axes;
};

const std::vector<Case> kCases = {
    {{3, 7, 5}, {2}},    {{3, 7, 5}, {-1}},   {{3, 7, 5}, {1}}, {{3, 7, 5}, {0}},
    {{3, 7, 5}, {1, 2}}, {{3, 7, 5}, {0, 2}}, {{1}, {0}},       {{7}, {0}},
    {{2, 33}, {1}},      {{3, 1000}, {-1}},   {{1000, 2}, {0}}, {{1, 70001}, {1}},
};

double ref_lse(const std::vector<double>& g) {
  double m = -INFINITY;
  for (double v : g) m = std::max(m, v);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (double v : g) s += std::exp(v - m);
  return m + std::log(s);
}

Dtype float_out(Dtype t) {
  return is_floating(t) ? t : float32;
}

/// Tolerances for an output dtype (16-bit outputs are rounded once from float32).
double rtol_of(Dtype od) {
  return od == float64 ? 1e-12 : 4 * eps_of(od) + 4e-6;
}

void check_softmax_family(double lo, double hi, const std::vector<Dtype>& dtypes) {
  int ci = 0;
  for (const Case& c : kCases) {
    ++ci;
    auto groups = reduce_groups(c.shape, c.axes);
    const Strides st = row_major_strides(c.shape);
    for (Dtype t : dtypes) {
      for (Layout l : kAllLayouts) {
        if (shape_size(c.shape) > 5000 && l == Layout::transposed && t != float32) continue;
        auto vals = random_values(shape_size(c.shape), t, 100 + ci, lo, hi);
        Array a = make_array(vals, c.shape, t, l);
        const Dtype od = float_out(t);
        const std::string what = std::string(dtype_name(t)) + " " + layout_name(l) + " " +
                                 shape_str(c.shape) + " case " + std::to_string(ci);
        std::vector<double> want_sm(vals.size()), want_lsm(vals.size()), want_lse;
        for (auto& g : groups) {
          std::vector<double> gv;
          for (auto k : g) gv.push_back(vals[k]);
          const double lse = ref_lse(gv);
          want_lse.push_back(lse);
          for (auto k : g) {
            want_sm[k] = std::exp(vals[k] - lse);
            want_lsm[k] = vals[k] - lse;
          }
        }
        Array sm = softmax(a, c.axes);
        ASSERT_EQ(sm.dtype(), od) << what;
        ASSERT_EQ(sm.shape(), c.shape) << what;
        auto got = sm.to_vector<double>();
        expect_close(got, want_sm, rtol_of(od), od == float64 ? 1e-15 : 1e-7, "softmax " + what);
        // Rows sum to 1 (within the output rounding).
        for (auto& g : groups) {
          double s = 0;
          for (auto k : g) s += got[k];
          EXPECT_NEAR(s, 1.0, 2 * rtol_of(od) * std::sqrt(static_cast<double>(g.size())) + 1e-6)
              << what;
        }
        Array lse = logsumexp(a, c.axes, (ci % 2) == 0);
        ASSERT_EQ(lse.dtype(), od) << what;
        ASSERT_EQ(lse.shape(), reduce_shape(c.shape, c.axes, (ci % 2) == 0)) << what;
        expect_close(lse.to_vector<double>(), want_lse, rtol_of(od), 1e-5, "logsumexp " + what);
        if (c.axes.size() == 1) {
          Array ls = log_softmax(a, c.axes[0]);
          ASSERT_EQ(ls.dtype(), od);
          const double atol =
              od == float64 ? 1e-12 : 1e-5 + 4 * eps_of(float32) * std::max(-lo, hi);
          expect_close(ls.to_vector<double>(), want_lsm, rtol_of(od), atol, "log_softmax " + what);
        }
      }
    }
  }
}

}  // namespace

TEST(Softmax, AllDtypesLayoutsAxes) {
  check_softmax_family(-4, 4, {float16, bfloat16, float32, float64, int32, uint8, bool_});
}

TEST(Softmax, LargeMagnitudesAreStable) {
  check_softmax_family(-1e4, 1e4, {float16, bfloat16, float32, float64});
  // Rows dominated by one huge value.
  Array a(std::vector<float>{1e4f, -1e4f, 0.f, 1e4f, 1e4f, 1e4f}, {2, 3});
  auto s = softmax(a, -1).to_vector<float>();
  EXPECT_FLOAT_EQ(s[0], 1.f);
  EXPECT_EQ(s[1], 0.f);
  EXPECT_FLOAT_EQ(s[3], 1.f / 3);
  auto l = logsumexp(a, 1).to_vector<float>();
  EXPECT_FLOAT_EQ(l[0], 1e4f);
  EXPECT_NEAR(l[1], 1e4 + std::log(3.0), 1e-3);
}

TEST(Softmax, InfinitiesAndMasks) {
  const float inf = std::numeric_limits<float>::infinity();
  // A masked (-inf) position gets exactly 0; the rest renormalise.
  Array a(std::vector<float>{0.f, -inf, 0.f, -inf}, {1, 4});
  EXPECT_EQ(softmax(a).to_vector<float>(), (std::vector<float>{0.5f, 0.f, 0.5f, 0.f}));
  auto ls = log_softmax(a).to_vector<float>();
  EXPECT_FLOAT_EQ(ls[0], -std::log(2.f));
  EXPECT_EQ(ls[1], -inf);
  // logsumexp of an all -inf row is -inf; with +inf it is +inf; an empty axis gives -inf.
  Array b(std::vector<float>{-inf, -inf, 1.f, inf}, {2, 2});
  EXPECT_EQ(logsumexp(b, 1).to_vector<float>(), (std::vector<float>{-inf, inf}));
  EXPECT_EQ(logsumexp(zeros({2, 0}), 1).to_vector<float>(), (std::vector<float>{-inf, -inf}));
  // NaN propagates to the whole row.
  Array c(std::vector<float>{1.f, NAN, 2.f}, {3});
  for (float v : softmax(c).to_vector<float>()) EXPECT_TRUE(std::isnan(v));
  EXPECT_TRUE(std::isnan(logsumexp(c, 0).item<float>()));
  // Also where the NaN falls in the vectorised part of a longer row (8-wide exp), not only in
  // its scalar tail; the NaN-free row beside it stays finite.
  std::vector<float> d(2 * 40);
  for (size_t i = 0; i < d.size(); ++i) d[i] = 0.1f * static_cast<float>(i % 7);
  d[17] = NAN;
  const auto sd = softmax(Array(d, {2, 40})).to_vector<float>();
  for (size_t i = 0; i < sd.size(); ++i) EXPECT_EQ(std::isnan(sd[i]), i < 40) << i;
  const auto ld = logsumexp(Array(d, {2, 40}), 1).to_vector<float>();
  EXPECT_TRUE(std::isnan(ld[0]));
  EXPECT_TRUE(std::isfinite(ld[1]));
}

TEST(Softmax, MatchesNaiveFloat32ToFewUlp) {
  // The vectorised exp, float32 sum and scaling stay within a few ulp, plus the rounding of
  // x - max in float32 (relative error |x - max| * eps in the exponential).
  const int64_t n = 4099;
  auto vals = random_values(n, float32, 9, -20, 20);
  Array a(vals, {n}, float32);
  auto got = softmax(a).to_vector<double>();
  const double lse = ref_lse(vals);
  for (int64_t i = 0; i < n; ++i) {
    const double w = std::exp(vals[i] - lse);
    ASSERT_NEAR(got[i], w, (16 + 2 * std::abs(vals[i] - lse)) * eps_of(float32) * w) << i;
  }
}

TEST(Softmax, DonatedInputGivesSameValues) {
  // The intermediate x + 0 is owned by the graph only, so softmax may overwrite it in place.
  for (Dtype t : {float32, bfloat16}) {
    for (int axis : {-1, 0}) {
      auto vals = random_values(7 * 33, t, 77);
      Array a(vals, {7, 33}, t);
      Array want = softmax(a, axis);
      Array got = softmax(add(a, Array(0.0f, t)), axis);
      EXPECT_EQ(got.to_vector<double>(), want.to_vector<double>()) << dtype_name(t);
      EXPECT_EQ(a.to_vector<double>(), vals);  // the user's array is untouched
    }
  }
}

TEST(Softmax, Errors) {
  Array a = zeros({2, 3});
  expect_error<InvalidArgument>([&] { softmax(a, 2); },
                                "[softmax] axis 2 is out of range for an array of shape [2, 3]");
  expect_error<InvalidArgument>(
      [&] {
        softmax(a, std::vector<int>{0, -2});
      },
      "[softmax] repeated axis in axes [0, -2]");
  expect_error<InvalidArgument>([&] { log_softmax(a, -3); }, "[log_softmax] axis -3");
  expect_error<InvalidArgument>([&] { logsumexp(a, 5); }, "[logsumexp] axis 5 is out of range");
}
