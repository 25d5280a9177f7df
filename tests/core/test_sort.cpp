// sort, argsort (stable), topk, topk_indices, argpartition and partition against naive
// references on every dtype, layout and axis; NaN ordering; property checks; errors.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

/// Calls f(row_indices) for every row along `axis` of a row-major `shape`, giving the flat
/// indices of the row's elements in order.
template <typename F>
void for_rows(const Shape& shape, int axis, F&& f) {
  const int nd = static_cast<int>(shape.size());
  if (axis < 0) axis += nd;
  const int64_t n = shape[axis];
  int64_t inner = 1;
  for (int d = axis + 1; d < nd; ++d) inner *= shape[d];
  const int64_t outer = n ? shape_size(shape) / (n * inner) : 0;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      for (int64_t i = 0; i < n; ++i) idx[i] = (o * n + i) * inner + in;
      f(idx);
    }
}

const std::vector<Shape> kShapes = {{3, 7, 5}, {1}, {33}, {2, 1000}};

}  // namespace

TEST(Sort, SortArgsortAllDtypesLayoutsAxes) {
  for (const Shape& shape : kShapes)
    for (Dtype t : kAllDtypes)
      for (Layout l : kAllLayouts)
        for (int axis = -1; axis < static_cast<int>(shape.size()); ++axis) {
          auto vals = random_values(shape_size(shape), t, 31, -2, 2);  // many ties
          Array a = make_array(vals, shape, t, l);
          Array s = sort(a, axis), as = argsort(a, axis);
          ASSERT_EQ(s.dtype(), t);
          ASSERT_EQ(as.dtype(), uint32);
          ASSERT_EQ(as.shape(), shape);
          auto gs = s.to_vector<double>(), ga = as.to_vector<double>();
          const std::string what = std::string(dtype_name(t)) + " " + layout_name(l) + " " +
                                   shape_str(shape) + " axis " + std::to_string(axis);
          bool ok = true;
          for_rows(shape, axis, [&](const std::vector<int64_t>& row) {
            std::vector<int64_t> order(row.size());
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(),
                             [&](int64_t i, int64_t j) { return vals[row[i]] < vals[row[j]]; });
            for (size_t i = 0; i < row.size() && ok; ++i) {
              ok = gs[row[i]] == vals[row[order[i]]] && ga[row[i]] == static_cast<double>(order[i]);
              if (!ok) ADD_FAILURE() << what << " row position " << i;
            }
          });
        }
}

TEST(Sort, NansLastAndStableTies) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (Dtype t : kFloatDtypes) {
    Array a(std::vector<double>{3, nan, 1, 2, nan, 1, -0.5}, {7}, t);
    auto s = sort(a).to_vector<double>();
    EXPECT_EQ(std::vector<double>(s.begin(), s.begin() + 5),
              (std::vector<double>{-0.5, 1, 1, 2, 3}));
    EXPECT_TRUE(std::isnan(s[5]) && std::isnan(s[6]));
    EXPECT_EQ(argsort(a).to_vector<uint32_t>(), (std::vector<uint32_t>{6, 2, 5, 3, 0, 1, 4}));
    // topk: NaN counts as the largest value.
    EXPECT_EQ(topk_indices(a, 3).to_vector<uint32_t>(), (std::vector<uint32_t>{1, 4, 0}));
  }
  // Many equal keys keep their original order.
  std::vector<float> v(1000);
  for (int i = 0; i < 1000; ++i) v[i] = static_cast<float>(i % 3);
  auto idx = argsort(Array(v, {1000})).to_vector<uint32_t>();
  for (int i = 1; i < 1000; ++i)
    if (v[idx[i]] == v[idx[i - 1]]) {
      ASSERT_LT(idx[i - 1], idx[i]);
    }
}

TEST(Sort, TopK) {
  for (const Shape& shape : kShapes)
    for (Dtype t : kAllDtypes)
      for (Layout l : kAllLayouts)
        for (int axis = -1; axis < static_cast<int>(shape.size()); ++axis) {
          const int nd = static_cast<int>(shape.size());
          const int ax = axis < 0 ? axis + nd : axis;
          auto vals = random_values(shape_size(shape), t, 41, -2, 2);
          Array a = make_array(vals, shape, t, l);
          for (int k : {1, static_cast<int>(std::min<int64_t>(3, shape[ax])),
                        static_cast<int>(shape[ax])}) {
            Array tv = topk(a, k, axis), ti = topk_indices(a, k, axis);
            Shape os = shape;
            os[ax] = k;
            ASSERT_EQ(tv.shape(), os);
            ASSERT_EQ(ti.dtype(), uint32);
            auto gv = tv.to_vector<double>(), gi = ti.to_vector<double>();
            // Expected rows laid out with axis length k.
            std::vector<double> wv(gv.size()), wi(gv.size());
            std::vector<std::vector<int64_t>> out_rows;
            for_rows(os, axis, [&](const std::vector<int64_t>& r) { out_rows.push_back(r); });
            size_t ri = 0;
            for_rows(shape, axis, [&](const std::vector<int64_t>& row) {
              std::vector<int64_t> order(row.size());
              std::iota(order.begin(), order.end(), 0);
              std::stable_sort(order.begin(), order.end(),
                               [&](int64_t i, int64_t j) { return vals[row[i]] > vals[row[j]]; });
              for (int j = 0; j < k; ++j) {
                wv[out_rows[ri][j]] = vals[row[order[j]]];
                wi[out_rows[ri][j]] = static_cast<double>(order[j]);
              }
              ++ri;
            });
            const std::string what = std::string(dtype_name(t)) + " " + layout_name(l) + " " +
                                     shape_str(shape) + " axis " + std::to_string(axis) + " k " +
                                     std::to_string(k);
            EXPECT_EQ(gv, wv) << what;
            EXPECT_EQ(gi, wi) << what;
          }
        }
  EXPECT_EQ(topk(zeros({2, 3}), 0).shape(), (Shape{2, 0}));
}

TEST(Sort, ArgpartitionProperties) {
  for (const Shape& shape : kShapes)
    for (Dtype t : kAllDtypes)
      for (Layout l : kAllLayouts)
        for (int axis = -1; axis < static_cast<int>(shape.size()); ++axis) {
          const int nd = static_cast<int>(shape.size());
          const int64_t n = shape[axis < 0 ? axis + nd : axis];
          auto vals = random_values(shape_size(shape), t, 51, -3, 3);
          Array a = make_array(vals, shape, t, l);
          for (int kth : {0, static_cast<int>(n / 2), static_cast<int>(n - 1), -1}) {
            const int64_t kk = kth < 0 ? kth + n : kth;
            auto gi = argpartition(a, kth, axis).to_vector<double>();
            auto gp = partition(a, kth, axis).to_vector<double>();
            const std::string what = std::string(dtype_name(t)) + " " + layout_name(l) + " " +
                                     shape_str(shape) + " axis " + std::to_string(axis) + " kth " +
                                     std::to_string(kth);
            bool ok = true;
            for_rows(shape, axis, [&](const std::vector<int64_t>& row) {
              if (!ok) return;
              std::vector<double> sorted;
              for (auto k : row) sorted.push_back(vals[k]);
              std::sort(sorted.begin(), sorted.end());
              std::vector<bool> seen(row.size(), false);
              const double pivot = sorted[kk];
              for (size_t i = 0; i < row.size(); ++i) {
                const auto j = static_cast<size_t>(gi[row[i]]);
                ok = ok && j < row.size() && !seen[j];
                if (!ok) break;
                seen[j] = true;
                const double v = vals[row[j]];
                ok = gp[row[i]] == v;
                if (static_cast<int64_t>(i) < kk) ok = ok && v <= pivot;
                if (static_cast<int64_t>(i) == kk) ok = ok && v == pivot;
                if (static_cast<int64_t>(i) > kk) ok = ok && v >= pivot;
              }
              if (!ok) ADD_FAILURE() << what;
            });
          }
        }
}

TEST(Sort, LargeRow) {
  const int64_t n = 70001;
  auto vals = random_values(n, float32, 61, -100, 100);
  Array a(vals, {n}, float32);
  auto s = sort(a).to_vector<double>();
  std::vector<double> w = vals;
  std::sort(w.begin(), w.end());
  EXPECT_EQ(s, w);
  auto t = topk(a, 10).to_vector<double>();
  EXPECT_EQ(t, std::vector<double>(w.rbegin(), w.rbegin() + 10));
  auto ap = argpartition(a, 35000).to_vector<uint32_t>();
  EXPECT_EQ(vals[ap[35000]], w[35000]);
}

TEST(Sort, Errors) {
  Array a = zeros({2, 3});
  expect_error<InvalidArgument>([&] { topk(a, 5); },
                                "[topk] k=5 is out of range for axis of size 3");
  expect_error<InvalidArgument>([&] { topk(a, -1); }, "[topk] k=-1 is out of range");
  expect_error<InvalidArgument>([&] { topk_indices(a, 3, 0); },
                                "[topk_indices] k=3 is out of range for axis of size 2");
  expect_error<InvalidArgument>([&] { argpartition(a, 3); },
                                "[argpartition] kth=3 is out of range for axis of size 3");
  expect_error<InvalidArgument>([&] { partition(a, -4); }, "[partition] kth=-4 is out of range");
  expect_error<InvalidArgument>([&] { sort(a, 2); },
                                "[sort] axis 2 is out of range for an array of shape [2, 3]");
  expect_error<InvalidArgument>([&] { argsort(a, -3); }, "[argsort] axis -3 is out of range");
  expect_error<InvalidArgument>([&] { sort(Array(1.f)); }, "[sort] needs an array of at least");
}
