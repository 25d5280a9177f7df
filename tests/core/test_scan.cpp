// cumsum (forward/reverse, inclusive/exclusive) against float64 references on every dtype,
// layout and axis, sizes 1..70001; output dtypes; errors.
#include <cmath>

#include "test_reduce_ref.h"
#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

/// Reference cumsum of row-major `vals` along `axis`, with the running float error bound.
void ref_cumsum(const std::vector<double>& vals, const Shape& shape, int axis, bool reverse,
                bool inclusive, Dtype od, std::vector<double>& want, std::vector<double>& bound) {
  const int nd = static_cast<int>(shape.size());
  const int64_t n = shape[axis];
  int64_t inner = 1;
  for (int d = axis + 1; d < nd; ++d) inner *= shape[d];
  const int64_t outer = n ? shape_size(shape) / (n * inner) : 0;
  want.assign(vals.size(), 0);
  bound.assign(vals.size(), 0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      double s = 0, abs_s = 0;
      uint64_t si = 0;
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = reverse ? n - 1 - k : k;
        const int64_t idx = (o * n + i) * inner + in;
        const double prev = s, prev_abs = abs_s;
        const uint64_t prev_i = si;
        s += vals[idx];
        abs_s += std::abs(vals[idx]);
        si += static_cast<uint64_t>(static_cast<int64_t>(vals[idx]));
        const double w = inclusive ? s : prev;
        if (is_floating(od)) {
          want[idx] = round_to(w, od);
          const double acc_eps = od == float64 ? eps_of(float64) : eps_of(float32);
          bound[idx] = 2 * eps_of(od) * std::abs(w) + 64 * acc_eps * (inclusive ? abs_s : prev_abs);
        } else {
          want[idx] = wrap_to(inclusive ? si : prev_i, od);
        }
      }
    }
}

void check_cumsum(const Shape& shape, const std::vector<Dtype>& dtypes,
                  const std::vector<Layout>& layouts) {
  const int nd = static_cast<int>(shape.size());
  for (Dtype t : dtypes)
    for (Layout l : layouts)
      for (int axis = -1; axis < nd; ++axis)
        for (int mode = 0; mode < 4; ++mode) {
          const bool reverse = mode & 1, inclusive = (mode & 2) == 0;
          auto vals = random_values(shape_size(shape), t, 21 + mode, -1, 1);
          Array a = make_array(vals, shape, t, l);
          Array c = cumsum(a, axis, reverse, inclusive);
          const Dtype od = sum_dtype_of(t);
          const std::string what = std::string(dtype_name(t)) + " " + layout_name(l) + " " +
                                   shape_str(shape) + " axis " + std::to_string(axis) +
                                   (reverse ? " reverse" : "") + (inclusive ? "" : " exclusive");
          ASSERT_EQ(c.dtype(), od) << what;
          ASSERT_EQ(c.shape(), shape) << what;
          std::vector<double> want, bound;
          ref_cumsum(vals, shape, axis < 0 ? axis + nd : axis, reverse, inclusive, od, want, bound);
          auto got = c.to_vector<double>();
          for (size_t i = 0; i < got.size(); ++i)
            if (!(std::abs(got[i] - want[i]) <= bound[i])) {
              ADD_FAILURE() << what << " at " << i << ": got " << got[i] << ", want " << want[i];
              break;
            }
        }
}

}  // namespace

TEST(Scan, CumsumAllDtypesLayoutsAxes) {
  std::vector<Dtype> all(std::begin(kAllDtypes), std::end(kAllDtypes));
  std::vector<Layout> layouts(std::begin(kAllLayouts), std::end(kAllLayouts));
  check_cumsum({3, 7, 5}, all, layouts);
  check_cumsum({1}, all, layouts);
  check_cumsum({33, 9}, all, layouts);
}

TEST(Scan, CumsumLarge) {
  check_cumsum({3, 1000}, {float32, bfloat16, int32}, {Layout::contiguous, Layout::transposed});
  check_cumsum({1000, 17}, {float32, float16}, {Layout::contiguous, Layout::sliced});
  check_cumsum({70001}, {float32, int64}, {Layout::contiguous});
}

TEST(Scan, CumsumValuesAndErrors) {
  Array a({1, 2, 3, 4});
  EXPECT_EQ(cumsum(a, 0).to_vector<int>(), (std::vector<int>{1, 3, 6, 10}));
  EXPECT_EQ(cumsum(a, 0, true).to_vector<int>(), (std::vector<int>{10, 9, 7, 4}));
  EXPECT_EQ(cumsum(a, 0, false, false).to_vector<int>(), (std::vector<int>{0, 1, 3, 6}));
  EXPECT_EQ(cumsum(a, 0, true, false).to_vector<int>(), (std::vector<int>{9, 7, 4, 0}));
  Array b(std::vector<bool>{true, true, false, true}, {4});
  EXPECT_EQ(cumsum(b, 0).dtype(), int32);
  EXPECT_EQ(cumsum(b, 0).to_vector<int>(), (std::vector<int>{1, 2, 2, 3}));
  EXPECT_EQ(cumsum(zeros({0, 3}), 0).shape(), (Shape{0, 3}));
  expect_error<InvalidArgument>([&] { cumsum(a, 1); },
                                "[cumsum] axis 1 is out of range for an array of shape [4]");
  expect_error<InvalidArgument>([&] { cumsum(Array(1.f), 0); }, "[cumsum]");
}
