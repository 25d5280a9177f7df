// Indexing ops (take, gather, take_along_axis, put_along_axis, scatter_add*) against naive
// float64 loops: every data dtype, every index dtype, negative indices, all layouts, errors.
#include <gtest/gtest.h>

#include <random>

#include "core/transforms/autodiff.h"
#include "test_util.h"

namespace ingot::test {
namespace {

const Dtype kIndexDtypes[] = {uint8, int8, int32, uint32, int64};

/// Random indices valid for an axis of size n (negative ones for signed dtypes), as doubles.
std::vector<double> random_indices(int64_t count, int64_t n, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  int64_t lo = is_signed_int(t) ? -n : 0, hi = n - 1;
  if (t == int8) lo = std::max<int64_t>(lo, -128), hi = std::min<int64_t>(hi, 127);
  if (t == uint8) hi = std::min<int64_t>(hi, 255);
  std::vector<double> v(static_cast<size_t>(count));
  for (auto& x : v) x = static_cast<double>(std::uniform_int_distribution<int64_t>(lo, hi)(g));
  return v;
}

int64_t wrap(double v, int64_t n) {
  auto i = static_cast<int64_t>(v);
  return i < 0 ? i + n : i;
}

/// Sizes of the axes before, at and after `axis`.
struct Split3 {
  int64_t outer = 1, n = 1, inner = 1;
};
Split3 split3(const Shape& s, int axis) {
  Split3 r;
  for (int d = 0; d < static_cast<int>(s.size()); ++d) {
    if (d < axis)
      r.outer *= s[d];
    else if (d == axis)
      r.n = s[d];
    else
      r.inner *= s[d];
  }
  return r;
}

std::vector<double> ref_take(const std::vector<double>& a, const Shape& ash,
                             const std::vector<double>& idx, int axis) {
  Split3 p = split3(ash, axis);
  std::vector<double> out;
  for (int64_t o = 0; o < p.outer; ++o)
    for (double j : idx)
      for (int64_t k = 0; k < p.inner; ++k)
        out.push_back(a[(o * p.n + wrap(j, p.n)) * p.inner + k]);
  return out;
}

std::string ctx(Dtype t, Dtype it, Layout l, const Shape& s) {
  return std::string(dtype_name(t)) + "/" + std::string(dtype_name(it)) + "/" + layout_name(l) +
         "/" + shape_str(s);
}

struct TakeCase {
  Shape shape;
  int axis;
  Shape ishape;
};

TEST(Take, AllDtypesLayoutsAndIndexTypes) {
  const TakeCase cases[] = {{{7}, 0, {5}},          {{1}, 0, {3}},        {{33, 5}, 1, {2, 3}},
                            {{3, 4, 5}, 1, {7}},    {{3, 4, 5}, -1, {1}}, {{1031, 3}, 0, {40}},
                            {{2, 1100}, 1, {3, 2}}, {{4, 6}, 0, {}}};
  uint32_t seed = 1;
  int rot = 0;  // index dtypes rotate over (dtype, layout, case)
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[(rot++ + static_cast<int>(l)) % 5];
        auto av = random_values(shape_size(c.shape), t, seed++);
        Array a = make_array(av, c.shape, t, l);
        const int ax = c.axis < 0 ? c.axis + static_cast<int>(c.shape.size()) : c.axis;
        auto iv = random_indices(shape_size(c.ishape), c.shape[ax], it, seed++);
        Layout il = c.ishape.size() >= 2 ? l : Layout::contiguous;
        Array idx = make_array(iv, c.ishape, it, il);
        Array out = take(a, idx, c.axis);
        Shape want_shape(c.shape.begin(), c.shape.begin() + ax);
        want_shape.insert(want_shape.end(), c.ishape.begin(), c.ishape.end());
        want_shape.insert(want_shape.end(), c.shape.begin() + ax + 1, c.shape.end());
        ASSERT_EQ(out.shape(), want_shape) << ctx(t, it, l, c.shape);
        ASSERT_EQ(out.dtype(), t);
        expect_close(values_of(out), ref_take(av, c.shape, iv, ax), 0, 0, ctx(t, it, l, c.shape));
      }
}

TEST(Take, Flattened) {
  for (Layout l : kAllLayouts) {
    auto av = random_values(5 * 7, float32, 3);
    Array a = make_array(av, {5, 7}, float32, l);
    auto iv = random_indices(13, 35, int32, 4);
    Array out = take(a, Array(iv, {13}, int32));
    expect_close(values_of(out), ref_take(av, {35}, iv, 0), 0, 0, layout_name(l));
  }
}

TEST(Gather, EmbeddingRows) {
  struct C {
    int64_t v, e;
    Shape ids;
  };
  const C cases[] = {{1, 1, {1}}, {7, 33, {2, 3}}, {1000, 16, {4, 9}}, {50, 7, {1031}}};
  uint32_t seed = 10;
  int rot = 0;
  for (Dtype t : kAllDtypes)
    for (Layout l : {Layout::contiguous, Layout::transposed, Layout::sliced})
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[(rot++ + static_cast<int>(l)) % 5];
        auto tv = random_values(c.v * c.e, t, seed++);
        Array table = make_array(tv, {c.v, c.e}, t, l);
        auto iv = random_indices(shape_size(c.ids), c.v, it, seed++);
        Array out = gather(table, Array(iv, c.ids, it));
        Shape want = c.ids;
        want.push_back(c.e);
        ASSERT_EQ(out.shape(), want);
        expect_close(values_of(out), ref_take(tv, {c.v, c.e}, iv, 0), 0, 0,
                     ctx(t, it, l, {c.v, c.e}));
      }
}

/// out[pos] = a[pos with axis -> idx[pos]] over the broadcast index shape.
std::vector<double> ref_take_along(const std::vector<double>& a, const Shape& ash,
                                   const std::vector<double>& idx, const Shape& ishape, int axis) {
  const int nd = static_cast<int>(ash.size());
  Shape out = ishape;
  for (int d = 0; d < nd; ++d)
    if (d != axis) out[d] = std::max(ash[d], ishape[d]);
  std::vector<double> r;
  Strides ast = row_major_strides(ash), ist = row_major_strides(ishape);
  for (int64_t k = 0; k < shape_size(out); ++k) {
    int64_t rem = k, aoff = 0, ioff = 0;
    Strides ost = row_major_strides(out);
    for (int d = 0; d < nd; ++d) {
      int64_t i = rem / ost[d];
      rem %= ost[d];
      ioff += (ishape[d] == 1 ? 0 : i) * ist[d];
      if (d != axis) aoff += (ash[d] == 1 ? 0 : i) * ast[d];
    }
    aoff += wrap(idx[ioff], ash[axis]) * ast[axis];
    r.push_back(a[aoff]);
  }
  return r;
}

TEST(TakeAlongAxis, DtypesLayoutsBroadcast) {
  struct C {
    Shape a, idx;
    int axis;
  };
  const C cases[] = {{{4, 7}, {4, 5}, 1}, {{4, 7}, {1, 5}, 1},       {{4, 7}, {9, 7}, 0},
                     {{1, 7}, {3, 2}, 1}, {{3, 5, 6}, {3, 2, 6}, 1}, {{33, 40}, {33, 1}, -1},
                     {{1, 1}, {1, 1}, 0}, {{2, 1200}, {2, 600}, 1}};
  uint32_t seed = 100;
  int rot = 0;  // index dtypes rotate over (dtype, layout, case)
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[(rot++ + static_cast<int>(l)) % 5];
        const int ax = c.axis < 0 ? c.axis + 2 : c.axis;
        auto av = random_values(shape_size(c.a), t, seed++);
        Array a = make_array(av, c.a, t, l);
        auto iv = random_indices(shape_size(c.idx), c.a[ax], it, seed++);
        Array idx = make_array(iv, c.idx, it, l == Layout::broadcast ? Layout::sliced : l);
        Array out = take_along_axis(a, idx, c.axis);
        expect_close(values_of(out), ref_take_along(av, c.a, iv, c.idx, ax), 0, 0,
                     ctx(t, it, l, c.a));
      }
}

/// Applies values at indices along axis (put, or add when `add`) in row-major index order.
std::vector<double> ref_put_along(std::vector<double> a, const Shape& ash,
                                  const std::vector<double>& idx, const Shape& ishape,
                                  const std::vector<double>& vals, int axis, bool add) {
  const int nd = static_cast<int>(ash.size());
  Strides ast = row_major_strides(ash), ist = row_major_strides(ishape);
  for (int64_t k = 0; k < shape_size(ishape); ++k) {
    int64_t rem = k, aoff = 0;
    for (int d = 0; d < nd; ++d) {
      int64_t i = rem / ist[d];
      rem %= ist[d];
      aoff += (d == axis ? wrap(idx[k], ash[axis]) : i) * ast[d];
    }
    a[aoff] = add ? a[aoff] + vals[k] : vals[k];
  }
  return a;
}

double tol_of(Dtype t) {
  return is_floating(t) ? 2 * eps_of(t) : 0;
}

/// What dtype t stores for the exact result w (integer sums wrap, bool is w != 0).
double store_as(double w, Dtype t) {
  switch (t) {
    case Dtype::bool_:
      return w != 0;
    case Dtype::int8:
      return static_cast<int8_t>(static_cast<int64_t>(w));
    case Dtype::uint8:
      return static_cast<uint8_t>(static_cast<int64_t>(w));
    default:
      return round_to(w, t);
  }
}

TEST(PutAlongAxis, DuplicatesLastWins) {
  struct C {
    Shape a, idx;
    int axis;
  };
  const C cases[] = {{{4, 7}, {4, 9}, 1},
                     {{5, 3}, {8, 3}, 0},
                     {{3, 4, 33}, {3, 2, 33}, 1},
                     {{2, 1100}, {2, 1500}, 1},
                     {{1}, {3}, 0}};
  uint32_t seed = 200;
  int rot = 0;  // index dtypes rotate over (dtype, layout, case)
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[(rot++ + static_cast<int>(l)) % 5];
        auto av = random_values(shape_size(c.a), t, seed++);
        Array a = make_array(av, c.a, t, l);
        auto iv = random_indices(shape_size(c.idx), c.a[c.axis], it, seed++);
        auto vv = random_values(shape_size(c.idx), t, seed++);
        Array idx = make_array(iv, c.idx, it, l == Layout::broadcast ? Layout::contiguous : l);
        Array vals = make_array(vv, c.idx, t, l);
        Array out = put_along_axis(a, idx, vals, c.axis);
        expect_close(values_of(out), ref_put_along(av, c.a, iv, c.idx, vv, c.axis, false), 0, 0,
                     ctx(t, it, l, c.a));
        Array sum = scatter_add_along_axis(a, idx, vals, c.axis);
        auto want = ref_put_along(av, c.a, iv, c.idx, vv, c.axis, true);
        for (auto& w : want) w = store_as(w, t);
        expect_close(values_of(sum), want, tol_of(t), t == float32 ? 1e-5 : 0,
                     "add " + ctx(t, it, l, c.a));
      }
}

TEST(PutAlongAxis, BroadcastValuesAndIndices) {
  Array a = zeros({3, 4}, float32);
  Array idx = Array({1, -1}, {1, 2}, int32);  // broadcast over rows
  Array out = put_along_axis(a, idx, Array(5.0f), 1);
  expect_close(values_of(out), {0, 5, 0, 5, 0, 5, 0, 5, 0, 5, 0, 5}, 0, 0);
  Array acc =
      scatter_add_along_axis(ones({3, 4}, float32), Array({0, 0}, {1, 2}, int32), Array(2.0f), 1);
  expect_close(values_of(acc), {5, 1, 1, 1, 5, 1, 1, 1, 5, 1, 1, 1}, 0, 0);
}

/// a[o, idx[j], k] += upd[o, j, k].
std::vector<double> ref_scatter_add(std::vector<double> a, const Shape& ash,
                                    const std::vector<double>& idx, const std::vector<double>& upd,
                                    int axis) {
  Split3 p = split3(ash, axis);
  const auto J = static_cast<int64_t>(idx.size());
  for (int64_t o = 0; o < p.outer; ++o)
    for (int64_t j = 0; j < J; ++j)
      for (int64_t k = 0; k < p.inner; ++k)
        a[(o * p.n + wrap(idx[j], p.n)) * p.inner + k] += upd[(o * J + j) * p.inner + k];
  return a;
}

TEST(ScatterAdd, DuplicatesAccumulate) {
  struct C {
    Shape a;
    int axis;
    Shape idx;
  };
  const C cases[] = {{{7}, 0, {20}},         {{5, 33}, 0, {9}},   {{3, 6, 4}, 1, {2, 5}},
                     {{1000, 3}, 0, {1500}}, {{2, 1100}, 1, {7}}, {{1, 1}, 1, {1}}};
  uint32_t seed = 300;
  int rot = 0;
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[(rot++ + static_cast<int>(l)) % 5];
        auto av = random_values(shape_size(c.a), t, seed++);
        Array a = make_array(av, c.a, t, l);
        auto iv = random_indices(shape_size(c.idx), c.a[c.axis], it, seed++);
        Shape us(c.a.begin(), c.a.begin() + c.axis);
        us.insert(us.end(), c.idx.begin(), c.idx.end());
        us.insert(us.end(), c.a.begin() + c.axis + 1, c.a.end());
        auto uv = random_values(shape_size(us), t, seed++);
        Array upd = make_array(uv, us, t, l);
        Array out = scatter_add(a, Array(iv, c.idx, it), upd, c.axis);
        auto want = ref_scatter_add(av, c.a, iv, uv, c.axis);
        for (auto& w : want) w = store_as(w, t);
        // float32 accumulation of 16-bit sums: compare within a couple of ulps of the
        // sum.
        double atol = t == float16 || t == bfloat16 ? 64 * eps_of(t) : 1e-12;
        expect_close(values_of(out), want, tol_of(t), t == float32 ? 1e-5 : atol,
                     ctx(t, it, l, c.a));
      }
}

TEST(ScatterAdd, BroadcastUpdate) {
  Array out = scatter_add(zeros({4, 2}, int32), Array({3, 3, -4}, {3}, int32), Array(1), 0);
  expect_close(values_of(out), {1, 1, 0, 0, 0, 0, 2, 2}, 0, 0);
}

/// Evaluates and waits for the device: on a GPU an out-of-range index found by a kernel is
/// raised when the host next synchronises with the device.
void eval_and_wait(const Array& x) {
  x.eval();
  synchronize(x.device());
}

TEST(IndexingErrors, Messages) {
  Array a = zeros({5, 3}, float32);
  expect_error<InvalidArgument>([&] { eval_and_wait(take(a, Array({5}, {1}, int32), 0)); },
                                "[take] index 5 is out of range for axis 0 of size 5");
  expect_error<InvalidArgument>([&] { eval_and_wait(take(a, Array({-4}, {1}, int32), 1)); },
                                "[take] index -4 is out of range for axis 1 of size 3");
  expect_error<InvalidArgument>([&] { take(a, Array({1.0f}), 0); },
                                "[take] indices must be an integer array, got float32");
  expect_error<InvalidArgument>([&] { take(a, Array({1}, {1}, int32), 2); }, "[take]");
  expect_error<InvalidArgument>([&] { gather(zeros({5}), Array({1}, {1}, int32)); },
                                "[gather] table must be 2-D [V, E], got shape [5]");
  expect_error<InvalidArgument>([&] { eval_and_wait(gather(a, Array({7}, {1}, int64))); },
                                "[gather] index 7 is out of range for axis 0 of size 5");
  expect_error<InvalidArgument>([&] { take_along_axis(a, Array({0}, {1}, int32), 1); },
                                "[take_along_axis] indices of shape [1] need as many "
                                "dimensions as a of shape [5, 3]");
  expect_error<InvalidArgument>(
      [&] {
        take_along_axis(a, zeros({4, 1}, int32), 1);
      },
      "[take_along_axis] indices of shape [4, 1] do not broadcast against a of shape [5, "
      "3]");
  expect_error<InvalidArgument>(
      [&] {
        eval_and_wait(take_along_axis(a, full({5, 1}, Array(3), int32), 1));
      },
      "[take_along_axis] index 3 is out of range for axis 1 of size 3");
  expect_error<InvalidArgument>(
      [&] {
        put_along_axis(a, zeros({5, 2}, int32), zeros({3}), 1);
      },
      "[put_along_axis] values of shape [3] cannot be broadcast to the indices' shape "
      "[5, 2]");
  expect_error<InvalidArgument>(
      [&] {
        put_along_axis(zeros({1, 3}), zeros({5, 1}, int32), Array(1.0f), 1);
      },
      "[put_along_axis] indices of shape [5, 1] would broadcast a of shape [1, 3]");
  expect_error<InvalidArgument>(
      [&] {
        eval_and_wait(scatter_add_along_axis(a, full({5, 1}, Array(-9), int32), Array(1.0f), 0));
      },
      "[scatter_add_along_axis] index -9 is out of range for axis 0 of size 5");
  expect_error<InvalidArgument>(
      [&] {
        scatter_add(a, zeros({2}, int32), zeros({3, 3}), 0);
      },
      "[scatter_add] updates of shape [3, 3] do not broadcast to a.shape[:axis] + "
      "indices.shape + a.shape[axis+1:] = [2, 3]");
  expect_error<InvalidArgument>(
      [&] {
        eval_and_wait(scatter_add(a, Array({9}, {1}, uint8), zeros({1, 3}), 0));
      },
      "[scatter_add] index 9 is out of range for axis 0 of size 5");
}

// ---- gradients (float64 finite differences through the autodiff engine) ----

TEST(IndexingGrad, FiniteDifferences) {
  Array x(random_values(12, float64, 5), {3, 4}, float64);
  Array idx = Array({2, 0, 2, -1}, {4}, int32);
  check_grad([&](const Array& a) { return take(a, idx, 1); }, x);
  check_grad([&](const Array& a) { return gather(a, Array({1, 1, 0}, {3}, int32)); }, x);
  Array along = Array({0, 3, 3, 1, 2, 2}, {3, 2}, int32);
  check_grad([&](const Array& a) { return take_along_axis(a, along, 1); }, x);
  check_grad([&](const Array& a) { return put_along_axis(a, along, Array(0.5), 1); }, x);
  check_grad([&](const Array& a) { return scatter_add(a, idx, a * 2.0, 1); }, x);
  check_grad(
      [&](const Array& a) {
        return scatter_add_along_axis(a, along, take_along_axis(a, along, 1) * 3.0, 1);
      },
      x);
}

TEST(IndexingGrad, ForwardMode) {
  Array x(random_values(12, float64, 6), {3, 4}, float64);
  Array idx = Array({2, 0, 2, -1}, {4}, int32);
  Array along = Array({0, 3, 3, 1, 2, 2}, {3, 2}, int32);
  check_jvp([&](const Array& a) { return take(a * a, idx, 1); }, x);
  check_jvp([&](const Array& a) { return gather(a, Array({2, 0}, {2}, int64)); }, x);
  check_jvp([&](const Array& a) { return take_along_axis(a, along, 1); }, x);
  check_jvp(
      [&](const Array& a) {
        return put_along_axis(a * a, along, take_along_axis(a, along, 1) * 0.5, 1);
      },
      x);
  check_jvp([&](const Array& a) { return scatter_add(a, idx, take(a, idx, 1), 1); }, x);
  check_jvp(
      [&](const Array& a) {
        return scatter_add_along_axis(a * a, along, take_along_axis(a, along, 1), 1);
      },
      x);
}

}  // namespace
}  // namespace ingot::test
