// Creation ops against float64 references: zeros/ones/full (+ *_like), arange (float and int,
// negative steps, empty ranges), linspace, eye (k offsets), copy and contiguous of views.
#include <gtest/gtest.h>

#include <cmath>

#include "test_elementwise_ref.h"

using namespace ingot;
using namespace ingot::test;

TEST(Creation, ZerosOnesFullAllDtypes) {
  for (Dtype t : kAllDtypes)
    for (const Shape& s :
         {Shape{}, Shape{1}, Shape{7}, Shape{3, 11}, Shape{33, 37}, Shape{300, 259}}) {
      const std::string what = std::string(dtype_name(t)) + " " + shape_str(s);
      Array z = zeros(s, t), o = ones(s, t), f = full(s, Array(2.5), t);
      ASSERT_EQ(z.shape(), s) << what;
      ASSERT_EQ(o.dtype(), t) << what;
      const size_t n = static_cast<size_t>(shape_size(s));
      std::vector<ld> r0(n, 0), r1(n, 1), r2(n, t == bool_ ? 1 : (is_floating(t) ? 2.5 : 2));
      expect_ulps(z.to_vector<double>(), r0, t, 0, "zeros " + what);
      expect_ulps(o.to_vector<double>(), r1, t, 0, "ones " + what);
      expect_ulps(f.to_vector<double>(), r2, t, 0, "full " + what);
      EXPECT_TRUE(o.flags().row_contiguous) << what;
    }
}

TEST(Creation, FullBroadcastsValueAndKeepsDtype) {
  Array row({1.f, 2.f, 3.f});
  Array f = full({2, 3}, row);
  EXPECT_EQ(f.dtype(), float32);
  EXPECT_EQ(f.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  Array g = full({2, 2}, Array(7, int64));
  EXPECT_EQ(g.dtype(), int64);
  EXPECT_EQ(g.to_vector<int64_t>(), (std::vector<int64_t>{7, 7, 7, 7}));
  EXPECT_EQ(full({3}, Array(0.1), bfloat16).to_vector<double>()[2], round_exact(0.1, bfloat16));
  Array h({1.f, 2.f});
  expect_error<InvalidArgument>([&] { full({2, 3}, h); }, "[full] cannot broadcast");
  expect_error<InvalidArgument>(
      [&] {
        zeros({2, -1});
      },
      "[full] negative dimension in shape [2, -1]");
}

TEST(Creation, LikeVariants) {
  Array a = transpose(Array(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3}));
  EXPECT_EQ(zeros_like(a).shape(), (Shape{3, 2}));
  EXPECT_EQ(zeros_like(a).dtype(), int32);
  EXPECT_EQ(ones_like(a).to_vector<int>(), (std::vector<int>(6, 1)));
  EXPECT_EQ(full_like(a, Array(2.9f)).to_vector<int>(), (std::vector<int>(6, 2)));
  EXPECT_EQ(full_like(a, Array(2.9f)).dtype(), int32);
}

namespace {
std::vector<ld> arange_ref(double start, double stop, double step) {
  std::vector<ld> r;
  for (int64_t i = 0;; ++i) {
    ld v = static_cast<ld>(start) + static_cast<ld>(i) * step;
    if (step > 0 ? v >= stop : v <= stop) break;
    r.push_back(v);
  }
  return r;
}
}  // namespace

TEST(Creation, ArangeFloatAndInt) {
  struct C {
    double start, stop, step;
  };
  for (C c : {C{0, 10, 1}, C{2, 3, 0.25}, C{5, -3, -1.5}, C{-1, 1, 0.5}, C{0, 1, 0.1}, C{3, 3, 1},
              C{3, 1, 1}, C{1, 3, -1}, C{-7, 1000, 3}, C{10, -10, -3}})
    for (Dtype t : {float16, bfloat16, float32, float64, int8, int32, int64, uint8, uint32}) {
      if (is_unsigned_int(t) && (c.start < 0 || c.stop < -1)) continue;
      if (!is_floating(t) && std::floor(c.step) != c.step) continue;
      if (t == int8 && c.stop > 127) continue;
      Array a = arange(c.start, c.stop, c.step, t);
      std::vector<ld> ref = arange_ref(c.start, c.stop, c.step);
      const std::string what = "arange(" + std::to_string(c.start) + ", " + std::to_string(c.stop) +
                               ", " + std::to_string(c.step) + ")";
      ASSERT_EQ(a.shape(), (Shape{static_cast<int64_t>(ref.size())})) << what;
      ASSERT_EQ(a.dtype(), t);
      expect_ulps(a.to_vector<double>(), ref, t, 0, what);
    }
  Array n = arange(5);
  EXPECT_EQ(n.dtype(), int32);
  EXPECT_EQ(n.to_vector<int>(), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(0).size(), 0);
  EXPECT_EQ(arange(100000, float32).to_vector<float>()[99999], 99999.f);
}

TEST(Creation, ArangeErrors) {
  expect_error<InvalidArgument>([] { arange(0, 10, 0); }, "[arange] step must be non-zero");
  expect_error<InvalidArgument>([] { arange(0, INFINITY, 1); }, "[arange] start, stop and step");
  expect_error<InvalidArgument>([] { arange(-3); }, "[arange] negative length -3");
  expect_error<InvalidArgument>([] { arange(0, 1e300, 1e-300); }, "[arange]");
  expect_error<InvalidArgument>([] { arange(0, 4, 1, bool_); }, "[arange] bool dtype");
}

TEST(Creation, Linspace) {
  for (int64_t num : {0, 1, 2, 7, 33, 1001})
    for (Dtype t : {float16, bfloat16, float32, float64, int32}) {
      const double start = -2.5, stop = 7.25;
      Array a = linspace(start, stop, num, t);
      ASSERT_EQ(a.shape(), (Shape{num}));
      std::vector<ld> ref;
      for (int64_t i = 0; i < num; ++i) {
        ld v = num == 1 ? start : start + (stop - start) * static_cast<ld>(i) / (num - 1);
        ref.push_back(is_floating(t) ? v : std::trunc(v));
      }
      // start + i * delta carries an absolute error of a few ulps of max(|start|, |stop|)
      // (cancellation near zero is inherent to the formula); integers truncate exactly.
      std::vector<double> want;
      for (ld r : ref) want.push_back(round_exact(r, t));
      const double atol = 4 * eps_of(t) * std::max(std::fabs(start), std::fabs(stop));
      expect_close(a.to_vector<double>(), want, 0, atol, "linspace " + std::to_string(num));
      if (num > 1) {
        EXPECT_EQ(a.to_vector<double>().back(), round_exact(stop, t));
      }
    }
  EXPECT_EQ(linspace(3, -3, 3).to_vector<float>(), (std::vector<float>{3, 0, -3}));
  expect_error<InvalidArgument>([] { linspace(0, 1, -1); }, "[linspace] number of samples");
}

TEST(Creation, EyeOffsets) {
  for (Dtype t : kAllDtypes)
    for (auto [n, m] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {4, 4}, {3, 7}, {7, 3}})
      for (int64_t k : {-8, -3, -1, 0, 1, 2, 6, 9}) {
        Array e = eye(n, m, k, t);
        ASSERT_EQ(e.shape(), (Shape{n, m}));
        std::vector<ld> ref;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < m; ++j) ref.push_back(j - i == k ? 1 : 0);
        expect_ulps(
            e.to_vector<double>(), ref, t, 0,
            "eye " + std::to_string(n) + "x" + std::to_string(m) + " k=" + std::to_string(k));
      }
  EXPECT_EQ(eye(3).shape(), (Shape{3, 3}));
  EXPECT_EQ(eye(2, -1, 0, int32).to_vector<int>(), (std::vector<int>{1, 0, 0, 1}));
  expect_error<InvalidArgument>([] { eye(-2); }, "[eye] number of rows");
}

TEST(Creation, CopyAndContiguousOfViews) {
  uint32_t seed = 3;
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const Shape& s : kTestShapes) {
        std::vector<double> v = gen_values(shape_size(s), t, -50, 50, seed++);
        Array a = make_array(v, s, t, l);
        std::vector<ld> ref(v.begin(), v.end());
        Array c = copy(a), d = contiguous(a);
        const std::string what = case_name("copy", t, l, s);
        c.eval();
        d.eval();
        EXPECT_TRUE(c.flags().row_contiguous) << what;
        EXPECT_TRUE(d.flags().row_contiguous) << what;
        EXPECT_NE(c.raw_ptr(), a.raw_ptr()) << what;
        if (l == Layout::contiguous) {
          EXPECT_EQ(d.raw_ptr(), a.raw_ptr()) << what;
        }
        expect_ulps(c.to_vector<double>(), ref, t, 0, what);
        expect_ulps(d.to_vector<double>(), ref, t, 0, what);
      }
  // contiguous of an unevaluated, row-contiguous result shares its buffer
  Array x = exp(zeros({4}));
  Array y = contiguous(x);
  y.eval();
  EXPECT_EQ(y.raw_ptr(), x.raw_ptr());
}
