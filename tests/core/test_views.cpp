// View ops (reshape, transpose, broadcast_to, slice, expand/squeeze...) against naive index
// arithmetic, on every layout and dtype; buffers are shared, not copied.
#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

// Naive transpose of row-major values.
std::vector<double> ref_transpose(const std::vector<double>& v, const Shape& shape,
                                  const std::vector<int>& axes) {
  const int nd = static_cast<int>(shape.size());
  Shape out(nd);
  for (int i = 0; i < nd; ++i) out[i] = shape[axes[i]];
  Strides ist = row_major_strides(shape);
  std::vector<double> r(v.size());
  Strides ost = row_major_strides(out);
  for (int64_t k = 0; k < static_cast<int64_t>(v.size()); ++k) {
    int64_t rem = k, off = 0;
    for (int d = 0; d < nd; ++d) {
      int64_t i = rem / ost[d];
      rem %= ost[d];
      off += i * ist[axes[d]];
    }
    r[k] = v[off];
  }
  return r;
}

}  // namespace

TEST(Views, TransposeAllLayoutsDtypes) {
  const Shape shape{3, 7, 5};
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts) {
      auto vals = random_values(shape_size(shape), t, 1);
      Array a = make_array(vals, shape, t, l);
      for (auto axes : {std::vector<int>{2, 0, 1}, std::vector<int>{1, 2, 0},
                        std::vector<int>{0, 2, 1}, std::vector<int>{-1, -2, -3}}) {
        Array b = transpose(a, axes);
        std::vector<int> norm;
        for (int x : axes) norm.push_back(x < 0 ? x + 3 : x);
        EXPECT_EQ(b.to_vector<double>(), ref_transpose(vals, shape, norm))
            << dtype_name(t) << " " << layout_name(l);
        EXPECT_EQ(b.dtype(), t);
      }
    }
}

TEST(Views, ReshapeOfEveryLayout) {
  const Shape shape{4, 6};
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts) {
      auto vals = random_values(24, t, 2);
      Array a = make_array(vals, shape, t, l);
      for (Shape ns : {Shape{24}, Shape{2, 12}, Shape{3, -1}, Shape{2, 3, 4}, Shape{1, 24, 1}})
        EXPECT_EQ(reshape(a, ns).to_vector<double>(), vals) << layout_name(l);
      // reshape of a transposed view: logical order is preserved
      Array tr = transpose(a);
      EXPECT_EQ(reshape(tr, {24}).to_vector<double>(), ref_transpose(vals, shape, {1, 0}));
    }
}

TEST(Views, ViewsShareTheBuffer) {
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i);
  Array a = copy(Array(v, {4, 6}));  // a buffer on the default device (host values may move)
  Array r = reshape(a, {6, 4});
  Array t = transpose(a);
  Array s = slice(a, {1, 2}, {3, 6});
  Array b = broadcast_to(reshape(a, {1, 4, 6}), {5, 4, 6});
  eval({r, t, s, b});
  for (const Array* x : {&r, &t, &s, &b}) EXPECT_EQ(x->data_shared(), a.data_shared());
  EXPECT_TRUE(r.flags().row_contiguous);
  EXPECT_FALSE(t.flags().row_contiguous);
  EXPECT_TRUE(t.flags().col_contiguous);
  EXPECT_FALSE(s.flags().contiguous);
  EXPECT_EQ(b.strides()[0], 0);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{8, 9, 10, 11, 14, 15, 16, 17}));
}

TEST(Views, SlicePythonSemantics) {
  // 1-d against Python's range semantics on sizes 1, 7, 33, 1000
  for (int64_t n : {1, 7, 33, 1000}) {
    std::vector<double> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i);
    Array a(v, {n}, float64);
    const int64_t cases[][3] = {{0, n, 1},   {1, n - 1, 2}, {-3, n, 1},     {n - 1, -n - 1, -1},
                                {-1, 0, -2}, {5, 2, 1},     {-100, 100, 3}, {100, -100, -4}};
    for (auto& c : cases) {
      int64_t b = c[0], e = c[1], st = c[2];
      // Python: slice.indices
      int64_t lo, hi;
      if (st > 0) {
        lo = b < 0 ? std::max<int64_t>(b + n, 0) : std::min(b, n);
        hi = e < 0 ? std::max<int64_t>(e + n, 0) : std::min(e, n);
      } else {
        lo = b < 0 ? std::max<int64_t>(b + n, -1) : std::min(b, n - 1);
        hi = e < 0 ? std::max<int64_t>(e + n, -1) : std::min(e, n - 1);
      }
      std::vector<double> want;
      for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) want.push_back(v[i]);
      Array got = slice(a, {b}, {e}, {st});
      EXPECT_EQ(got.to_vector<double>(), want) << n << " [" << b << ":" << e << ":" << st << "]";
      EXPECT_EQ(got.shape(0), static_cast<int64_t>(want.size()));
    }
  }
}

TEST(Views, SliceOfSliceOfTransposeAllDtypes) {
  const Shape shape{7, 33};
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts) {
      auto vals = random_values(shape_size(shape), t, 3);
      Array a = make_array(vals, shape, t, l);
      Array s1 = slice(transpose(a), {2, 1}, {30, 7}, {3, 2});  // [10, 3] of a^T
      Array s2 = slice(s1, {9, 0}, {-11, 3}, {-2, 1});          // reversed rows
      std::vector<double> want;
      for (int64_t i = 9; i > -1; i -= 2)
        for (int64_t j = 0; j < 3; ++j) {
          int64_t r = 2 + 3 * i, c = 1 + 2 * j;  // a^T[r, c] = a[c, r]
          want.push_back(vals[c * 33 + r]);
        }
      EXPECT_EQ(s2.to_vector<double>(), want) << dtype_name(t) << " " << layout_name(l);
    }
}

TEST(Views, BroadcastExpandSqueeze) {
  Array a({1.f, 2.f, 3.f});
  Array b = broadcast_to(a, {2, 3});
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  Array c = broadcast_to(reshape(a, {3, 1}), {3, 4});
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  EXPECT_EQ(expand_dims(a, {0, 2}).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(expand_dims(a, -1).shape(), (Shape{3, 1}));
  EXPECT_EQ(squeeze(expand_dims(a, {0, 2})).shape(), (Shape{3}));
  EXPECT_EQ(squeeze(reshape(a, {1, 3, 1}), -1).shape(), (Shape{1, 3}));
  Array m(std::vector<float>(24, 1.f), {2, 3, 4});
  EXPECT_EQ(flatten(m).shape(), (Shape{24}));
  EXPECT_EQ(flatten(m, 1).shape(), (Shape{2, 12}));
  EXPECT_EQ(swapaxes(m, 0, 2).shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(moveaxis(m, 0, -1).shape(), (Shape{3, 4, 2}));
  auto bs = broadcast_arrays({a, reshape(a, {3, 1})});
  EXPECT_EQ(bs[0].shape(), (Shape{3, 3}));
  EXPECT_EQ(bs[1].to_vector<float>(), (std::vector<float>{1, 1, 1, 2, 2, 2, 3, 3, 3}));
}

TEST(Views, Errors) {
  Array m(std::vector<float>(24, 1.f), {2, 3, 4});
  expect_error<InvalidArgument>(
      [&] {
        reshape(m, {5, 5});
      },
      "[reshape] cannot reshape [2, 3, 4] (24 elements) to [5, 5]");
  expect_error<InvalidArgument>([&] { reshape(m, {-1, -1}); }, "[reshape] more than one -1");
  expect_error<InvalidArgument>(
      [&] {
        transpose(m, {0, 1});
      },
      "[transpose] 2 axes given for an array of 3 dimensions");
  expect_error<InvalidArgument>([&] { transpose(m, {0, 1, 1}); }, "[transpose] repeated axis 1");
  expect_error<InvalidArgument>(
      [&] {
        transpose(m, {0, 1, 3});
      },
      "[transpose] axis 3 is out of range for an array of 3 dimensions");
  expect_error<InvalidArgument>(
      [&] {
        broadcast_to(m, {2, 5, 4});
      },
      "[broadcast_to] cannot broadcast [2, 3, 4] to [2, 5, 4]");
  expect_error<InvalidArgument>([&] { squeeze(m, 1); },
                                "[squeeze] axis 1 has size 3 (not 1) in shape [2, 3, 4]");
  expect_error<InvalidArgument>(
      [&] {
        slice(m, {0, 0, 0}, {1, 1, 1}, {1, 0, 1});
      },
      "[slice] step of axis 1 is 0");
  expect_error<InvalidArgument>([&] { slice(m, {0}, {1}); }, "[slice] start/stop/strides");
}
