// Reductions (sum, prod, max, min, all, any, mean, var, stddev, argmax, argmin) against float64
// naive references on every dtype, layout, axes combination and odd sizes; error messages.
#include <cmath>
#include <functional>
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
    {{3, 7, 5}, {0}},    {{3, 7, 5}, {1}},
    {{3, 7, 5}, {2}},    {{3, 7, 5}, {-1}},
    {{3, 7, 5}, {0, 2}}, {{3, 7, 5}, {-3, -2}},
    {{3, 7, 5}, {1, 2}}, {{3, 7, 5}, {2, 0, 1}},
    {{3, 7, 5}, {}},     {{1}, {0}},
    {{7}, {0}},          {{33}, {0}},
    {{4, 1000}, {1}},    {{1000, 3}, {0}},
    {{33, 40}, {0, 1}},  {{2, 1, 9}, {1}},
};

enum class Tol { exact, sum, prod };

/// Runs op on every dtype x layout x case and checks it against ref (a float64 function of a
/// group's values and the input/output dtypes).
void check_reduction(const char* name, Dtype (*out_dtype)(Dtype),
                     const std::function<Array(const Array&, const std::vector<int>&, bool)>& op,
                     const std::function<double(const std::vector<double>&, Dtype, Dtype)>& ref,
                     Tol tol, double lo = -4, double hi = 4, bool ints_only = false) {
  int ci = 0;
  for (const Case& c : kCases) {
    const bool keepdims = (ci++ % 2) == 1;
    auto groups = reduce_groups(c.shape, c.axes);
    for (Dtype t : kAllDtypes) {
      if (ints_only && is_floating(t)) continue;
      for (Layout l : kAllLayouts) {
        auto vals = random_values(shape_size(c.shape), t, 7 + ci, lo, hi);
        Array a = make_array(vals, c.shape, t, l);
        Array r = op(a, c.axes, keepdims);
        const Dtype od = out_dtype(t);
        const std::string what = std::string(name) + " " + std::string(dtype_name(t)) + " " +
                                 layout_name(l) + " shape " + shape_str(c.shape) + " case " +
                                 std::to_string(ci);
        ASSERT_EQ(r.dtype(), od) << what;
        ASSERT_EQ(r.shape(), reduce_shape(c.shape, c.axes, keepdims)) << what;
        auto got = r.to_vector<double>();
        for (size_t o = 0; o < groups.size(); ++o) {
          std::vector<double> g;
          double abs_sum = 0;
          for (int64_t k : groups[o]) g.push_back(vals[k]), abs_sum += std::abs(vals[k]);
          const double want = ref(g, t, od);
          double bound = 0;
          const double acc_eps = t == float64 ? eps_of(float64) : eps_of(float32);
          if (is_floating(od) && tol == Tol::sum)
            bound = 2 * eps_of(od) * std::abs(want) + 64 * acc_eps * abs_sum;
          if (is_floating(od) && tol == Tol::prod)
            bound =
                (2 * eps_of(od) + 4 * acc_eps * static_cast<double>(g.size())) * std::abs(want) +
                (od == float16   ? 6e-8
                 : od == float64 ? 1e-300
                                 : 1e-38);  // subnormals
          if (std::isnan(want)) {
            EXPECT_TRUE(std::isnan(got[o])) << what << " at " << o;
          } else if (std::isinf(want)) {
            EXPECT_EQ(got[o], want) << what << " at " << o;
          } else if (!(std::abs(got[o] - want) <= bound)) {
            ADD_FAILURE() << what << " at " << o << ": got " << got[o] << ", want " << want;
            return;
          }
        }
      }
    }
  }
}

Dtype same(Dtype t) {
  return t;
}
Dtype to_bool(Dtype) {
  return bool_;
}
Dtype to_float(Dtype t) {
  return is_floating(t) ? t : float32;
}

double ref_sum(const std::vector<double>& g, Dtype t, Dtype od) {
  if (is_floating(od)) {
    long double s = 0;  // the reference must beat float64
    for (double v : g) s += v;
    return round_to(static_cast<double>(s), od);
  }
  uint64_t s = 0;
  for (double v : g) s += static_cast<uint64_t>(static_cast<int64_t>(v));
  return wrap_to(s, od);
}

double ref_prod(const std::vector<double>& g, Dtype t, Dtype od) {
  if (is_floating(od)) {
    double s = 1;
    for (double v : g) s *= v;
    return round_to(s, od);
  }
  uint64_t s = 1;
  for (double v : g) s *= static_cast<uint64_t>(static_cast<int64_t>(v));
  return wrap_to(s, od);
}

}  // namespace

TEST(Reduce, Sum) {
  check_reduction(
      "sum", sum_dtype_of,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return sum(a, ax, kd); }, ref_sum,
      Tol::sum);
}

TEST(Reduce, Prod) {
  // Values near 1 so that float products neither overflow nor underflow.
  check_reduction(
      "prod", sum_dtype_of,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return prod(a, ax, kd); }, ref_prod,
      Tol::prod, 0.9, 1.1);
  // Integers wrap as their output dtype does.
  check_reduction(
      "prod", sum_dtype_of,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return prod(a, ax, kd); }, ref_prod,
      Tol::prod, -3, 3, true);
}

TEST(Reduce, MaxMin) {
  check_reduction(
      "max", same,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return max(a, ax, kd); },
      [](const std::vector<double>& g, Dtype, Dtype) {
        return *std::max_element(g.begin(), g.end());
      },
      Tol::exact);
  check_reduction(
      "min", same,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return min(a, ax, kd); },
      [](const std::vector<double>& g, Dtype, Dtype) {
        return *std::min_element(g.begin(), g.end());
      },
      Tol::exact);
}

TEST(Reduce, AllAny) {
  // Mostly-nonzero data (ints in [-4, 4) are 0 one time in 8) so `all` is sometimes true.
  check_reduction(
      "all", to_bool,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return all(a, ax, kd); },
      [](const std::vector<double>& g, Dtype, Dtype) {
        return std::all_of(g.begin(), g.end(), [](double v) { return v != 0; }) ? 1.0 : 0.0;
      },
      Tol::exact, 0.5, 1.5);
  check_reduction(
      "any", to_bool,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return any(a, ax, kd); },
      [](const std::vector<double>& g, Dtype, Dtype) {
        return std::any_of(g.begin(), g.end(), [](double v) { return v != 0; }) ? 1.0 : 0.0;
      },
      Tol::exact, -0.3, 0.3);
}

TEST(Reduce, Mean) {
  check_reduction(
      "mean", to_float,
      [](const Array& a, const std::vector<int>& ax, bool kd) { return mean(a, ax, kd); },
      [](const std::vector<double>& g, Dtype, Dtype od) {
        long double s = 0;
        for (double v : g) s += v;
        return round_to(static_cast<double>(s / g.size()), od);
      },
      Tol::sum);
}

TEST(Reduce, VarStd) {
  for (int ddof : {0, 1}) {
    auto ref_var = [ddof](const std::vector<double>& g) {
      double m = 0;
      for (double v : g) m += v;
      m /= static_cast<double>(g.size());
      double s = 0;
      for (double v : g) s += (v - m) * (v - m);
      return s / static_cast<double>(static_cast<int64_t>(g.size()) - ddof);
    };
    const Shape shape{6, 33};
    for (Dtype t : kAllDtypes)
      for (Layout l : kAllLayouts)
        for (auto axes : {std::vector<int>{1}, std::vector<int>{0}, std::vector<int>{0, 1}}) {
          auto vals = random_values(shape_size(shape), t, 3);
          Array a = make_array(vals, shape, t, l);
          Array v = var(a, axes, false, ddof), sd = stddev(a, axes, true, ddof);
          const Dtype od = is_floating(t) ? t : float32;
          ASSERT_EQ(v.dtype(), od);
          ASSERT_EQ(sd.dtype(), od);
          auto groups = reduce_groups(shape, axes);
          std::vector<double> wv, ws;
          for (auto& grp : groups) {
            std::vector<double> g;
            for (auto k : grp) g.push_back(vals[k]);
            wv.push_back(ref_var(g));
            ws.push_back(std::sqrt(ref_var(g)));
          }
          const double rtol = 4 * eps_of(od) + 1e-5;
          const std::string what = std::string(dtype_name(t)) + " " + layout_name(l);
          expect_close(v.to_vector<double>(), wv, rtol, 1e-6, "var " + what);
          expect_close(sd.to_vector<double>(), ws, rtol, 1e-6, "stddev " + what);
        }
  }
  // ddof equal to the count: division by zero gives inf (or NaN for a constant row).
  Array c({1.f, 2.f});
  EXPECT_TRUE(std::isinf(var(c, {0}, false, 2).item<float>()));
}

TEST(Reduce, OverloadsAndKeepdims) {
  Array a(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(sum(a).item<float>(), 21.f);
  EXPECT_EQ(sum(a, true).shape(), (Shape{1, 1}));
  EXPECT_EQ(sum(a, 1).to_vector<float>(), (std::vector<float>{6, 15}));
  EXPECT_EQ(sum(a, -2, true).shape(), (Shape{1, 3}));
  EXPECT_EQ(max(a).item<float>(), 6.f);
  EXPECT_EQ(min(a, 0).to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(prod(a).item<float>(), 720.f);
  EXPECT_EQ(prod(a, 1).to_vector<float>(), (std::vector<float>{6, 120}));
  EXPECT_FLOAT_EQ(mean(a).item<float>(), 3.5f);
  EXPECT_EQ(mean(a, 0).to_vector<float>(), (std::vector<float>{2.5, 3.5, 4.5}));
  EXPECT_FLOAT_EQ(var(a, 1).to_vector<float>()[0], 2.f / 3);
  EXPECT_TRUE(all(a).item<bool>());
  EXPECT_TRUE(any(a, true).item<bool>());
  EXPECT_EQ(sum(a, std::vector<int>{}).shape(), (Shape{2, 3}));  // reduces nothing
  // Reductions of a 0-d array over no axes.
  EXPECT_EQ(sum(Array(2.5f)).item<float>(), 2.5f);
}

TEST(Reduce, EmptyAxes) {
  Array e = zeros({3, 0});
  EXPECT_EQ(sum(e, 1).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(prod(e, 1).to_vector<float>(), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(all(e, {1}).to_vector<bool>(), (std::vector<bool>{true, true, true}));
  EXPECT_EQ(any(e, {1}).to_vector<bool>(), (std::vector<bool>{false, false, false}));
  EXPECT_TRUE(std::isnan(mean(e, 1).to_vector<float>()[0]));
  EXPECT_EQ(sum(e, 0).shape(), (Shape{0}));
  EXPECT_EQ(max(e, 0).size(), 0);  // reduces a non-empty axis into an empty result
  expect_error<InvalidArgument>([&] { max(e, 1); }, "[max] cannot reduce an empty axis");
  expect_error<InvalidArgument>([&] { min(e); }, "[min] cannot reduce an empty axis");
  expect_error<InvalidArgument>([&] { argmax(e, 1); }, "[argmax] cannot reduce an empty axis");
}

TEST(Reduce, NanPropagates) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Array a(std::vector<float>{1, nan, 3, 4, 5, 6}, {2, 3});
  auto mx = max(a, 1).to_vector<float>();
  EXPECT_TRUE(std::isnan(mx[0]));
  EXPECT_EQ(mx[1], 6.f);
  auto mn = min(a, 0).to_vector<float>();
  EXPECT_TRUE(std::isnan(mn[1]));
  EXPECT_EQ(mn[0], 1.f);
  EXPECT_TRUE(std::isnan(sum(a).item<float>()));
  EXPECT_EQ(argmax(a, 1).to_vector<uint32_t>()[0], 1u);
  EXPECT_EQ(argmin(a, 1).to_vector<uint32_t>()[0], 1u);
  EXPECT_TRUE(all(Array(std::vector<float>{nan}, {1})).item<bool>());  // NaN is truthy
}

TEST(Reduce, Large) {
  // > 64k elements: full reductions (split across threads), rows and columns.
  for (Dtype t : {float32, bfloat16, float16, int32, float64}) {
    for (auto [shape, axes] : {std::pair<Shape, std::vector<int>>{{70001}, {0}},
                               {{3, 70001}, {1}},
                               {{70001, 3}, {0}},
                               {{300, 301}, {0, 1}}}) {
      auto vals = random_values(shape_size(shape), t, 11, -1, 1);
      for (Layout l : {Layout::contiguous, Layout::transposed}) {
        Array a = make_array(vals, shape, t, l);
        auto groups = reduce_groups(shape, axes);
        auto s = sum(a, axes).to_vector<double>();
        auto mx = max(a, axes).to_vector<double>();
        for (size_t o = 0; o < groups.size(); ++o) {
          double w = 0, aw = 0, m = -1e300;
          for (auto k : groups[o]) w += vals[k], aw += std::abs(vals[k]), m = std::max(m, vals[k]);
          const double tol = t == float64     ? 1e-12 * aw
                             : is_floating(t) ? 2 * eps_of(t) * std::abs(w) + 1e-6 * aw
                                              : 0;
          EXPECT_NEAR(s[o], round_to(w, t), tol) << dtype_name(t) << " " << shape_str(shape);
          EXPECT_EQ(mx[o], m) << dtype_name(t) << " " << shape_str(shape);
        }
      }
    }
  }
}

TEST(Reduce, ArgMaxArgMin) {
  const Shape shape{5, 33, 7};
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (int axis : {0, 1, 2, -1})
        for (bool kd : {false, true}) {
          auto vals = random_values(shape_size(shape), t, 5, -2, 2);  // many ties
          Array a = make_array(vals, shape, t, l);
          Array am = argmax(a, axis, kd), an = argmin(a, axis, kd);
          ASSERT_EQ(am.dtype(), uint32);
          ASSERT_EQ(am.shape(), reduce_shape(shape, {axis}, kd));
          auto groups = reduce_groups(shape, {axis});
          std::vector<double> wmax, wmin;
          for (auto& g : groups) {
            size_t bi = 0, si = 0;
            for (size_t i = 1; i < g.size(); ++i) {
              if (vals[g[i]] > vals[g[bi]]) bi = i;
              if (vals[g[i]] < vals[g[si]]) si = i;
            }
            wmax.push_back(static_cast<double>(bi));
            wmin.push_back(static_cast<double>(si));
          }
          const std::string what =
              std::string(dtype_name(t)) + " " + layout_name(l) + " axis " + std::to_string(axis);
          EXPECT_EQ(am.to_vector<double>(), wmax) << what;
          EXPECT_EQ(an.to_vector<double>(), wmin) << what;
        }
  // Ties: the first index wins; sizes 1 and > 64k.
  EXPECT_EQ(argmax(Array({3.f, 1.f, 3.f, 3.f}), 0).item<uint32_t>(), 0u);
  EXPECT_EQ(argmin(Array({3.f, 1.f, 1.f, 3.f}), 0).item<uint32_t>(), 1u);
  EXPECT_EQ(argmax(Array({5.f}), 0).item<uint32_t>(), 0u);
  std::vector<float> big(70000, 1.f);
  big[65537] = 2.f;
  big[69999] = 2.f;
  EXPECT_EQ(argmax(Array(big, {70000}), 0).item<uint32_t>(), 65537u);
}

TEST(Reduce, Errors) {
  Array a = zeros({2, 3});
  expect_error<InvalidArgument>([&] { sum(a, 2); },
                                "[sum] axis 2 is out of range for an array of shape [2, 3]");
  expect_error<InvalidArgument>([&] { prod(a, {-3}); }, "[prod] axis -3 is out of range");
  expect_error<InvalidArgument>(
      [&] {
        max(a, {1, -1});
      },
      "[max] repeated axis in axes [1, -1] for an array of shape [2, 3]");
  expect_error<InvalidArgument>([&] { mean(a, {0, 0}); }, "[mean] repeated axis");
  expect_error<InvalidArgument>([&] { var(a, {5}); }, "[var] axis 5 is out of range");
  expect_error<InvalidArgument>([&] { all(a, {7}); }, "[all] axis 7");
  expect_error<InvalidArgument>([&] { argmin(a, 2); }, "[argmin] axis 2 is out of range");
  expect_error<InvalidArgument>([&] { var(a, 0, false, -1); }, "[var] ddof must be non-negative");
}
