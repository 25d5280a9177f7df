// CUDA vs CPU for the indexing primitives (take, gather, take/put/scatter-add along an axis,
// scatter-add) and the copying shape ops (slice_update, concatenate, pad): dtypes, strided and
// broadcast views on both sides, index dtypes, duplicates, zero sizes, large sizes, vjps, and
// out-of-range indices (the CPU's error, raised at the next synchronisation).
#include <algorithm>
#include <random>
#include <utility>

#include "core/primitives/shape.h"  // normalize_slice
#include "cuda_test_util.h"

namespace ingot::test {
namespace {

const Device kCpu = cpu_device;

enum class View { contiguous, transposed, sliced, broadcast };
const View kViews[] = {View::contiguous, View::transposed, View::sliced, View::broadcast};
const char* view_name(View v) {
  switch (v) {
    case View::contiguous:
      return "contiguous";
    case View::transposed:
      return "transposed";
    case View::sliced:
      return "sliced";
    default:
      return "broadcast";
  }
}

const Dtype kDataDtypes[] = {float32, bfloat16, float16, int32, int64, bool_, uint8, int8, float64};
const Dtype kIndexDtypes[] = {int32, int64, uint32, int8, uint8};

/// Values suited to a dtype: 0/1 for bool, small integers, floats in [-4, 4).
std::vector<double> values_for(int64_t n, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) {
    if (t == bool_)
      x = g() % 2;
    else if (t == uint8 || t == uint32)
      x = g() % 200;
    else if (is_integral(t))
      x = static_cast<int>(g() % 200) - 100;
    else
      x = std::uniform_real_distribution<double>(-4, 4)(g);
  }
  return v;
}

/// Valid indices for an axis of size n (negative ones too for signed index dtypes).
std::vector<double> indices_for(int64_t count, int64_t n, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  int64_t lo = is_signed_int(t) ? -n : 0, hi = n - 1;
  if (t == int8) lo = std::max<int64_t>(lo, -128), hi = std::min<int64_t>(hi, 127);
  if (t == uint8) hi = std::min<int64_t>(hi, 255);
  std::vector<double> v(static_cast<size_t>(count));
  for (auto& x : v) x = static_cast<double>(std::uniform_int_distribution<int64_t>(lo, hi)(g));
  return v;
}

/// The same view of one host-made base array on the CPU (first) and on CUDA (second): the CUDA
/// side views the base after moving it, so kernels see strided, offset and 0-stride inputs.
/// `gen(n)` makes the base's n values.
template <typename Gen>
std::pair<Array, Array> views_of(const Shape& s, Dtype t, View v, Gen&& gen) {
  if (s.empty() || shape_size(s) == 0) v = View::contiguous;
  Shape bs = s;
  if (v == View::transposed) std::reverse(bs.begin(), bs.end());
  if (v == View::sliced) bs.back() = 2 * s.back() + 1;
  if (v == View::broadcast) bs[0] = 1;
  Array base(gen(shape_size(bs)), bs, t);
  auto view = [&](const Array& b, Device d) {
    switch (v) {
      case View::transposed:
        return transpose(b, d);
      case View::sliced: {
        Shape start(bs.size(), 0), strides(bs.size(), 1);
        start.back() = 1;
        strides.back() = 2;
        return slice(b, start, bs, strides, d);
      }
      case View::broadcast:
        return broadcast_to(b, s, d);
      default:
        return b;
    }
  };
  return {view(base, kCpu), view(on_cuda(base), kCuda)};
}

/// Random data of shape s in view v.
std::pair<Array, Array> data_pair(const Shape& s, Dtype t, View v, uint32_t seed) {
  return views_of(s, t, v, [&](int64_t n) { return values_for(n, t, seed); });
}

/// Random valid indices for an axis of size n, of shape s in view v.
std::pair<Array, Array> index_pair(const Shape& s, int64_t n, Dtype it, View v, uint32_t seed) {
  return views_of(s, it, v, [&](int64_t m) { return indices_for(m, n, it, seed); });
}

std::string ctx(const char* op, Dtype t, View v, Dtype it, const Shape& s) {
  return std::string(op) + " " + std::string(dtype_name(t)) + "/" + view_name(v) + "/idx " +
         std::string(dtype_name(it)) + "/" + shape_str(s);
}

// ---- take / gather ----

struct TakeCase {
  Shape shape;
  int axis;
  Shape ishape;
};

TEST(CudaTake, DtypesViewsAndIndexTypes) {
  INGOT_REQUIRE_CUDA();
  const TakeCase cases[] = {{{7}, 0, {5}},        {{33, 5}, 1, {2, 3}}, {{3, 4, 5}, 1, {7}},
                            {{3, 4, 5}, -1, {1}}, {{1031, 3}, 0, {40}}, {{2, 1100}, 1, {3, 2}},
                            {{4, 6}, 0, {}},      {{5, 64}, 0, {3, 2}}, {{6, 1024}, 0, {4}},
                            {{3, 2, 130}, 1, {5}}};
  uint32_t seed = 1;
  int rot = 0;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[rot % 5];
        const View iv = (rot++ % 3 == 0) ? View::transposed : View::contiguous;
        const int ax = c.axis < 0 ? c.axis + static_cast<int>(c.shape.size()) : c.axis;
        auto [a, ga] = data_pair(c.shape, t, v, seed++);
        auto [i, gi] = index_pair(c.ishape, c.shape[ax], it, iv, seed++);
        expect_close(take(ga, gi, c.axis, kCuda), take(a, i, c.axis, kCpu), 0, 0,
                     ctx("take", t, v, it, c.shape));
      }
}

TEST(CudaTake, BroadcastIndicesAndFlatForm) {
  INGOT_REQUIRE_CUDA();
  auto [a, ga] = data_pair({9, 12}, float32, View::contiguous, 3);
  auto [i, gi] = index_pair({4, 5}, 12, int32, View::broadcast, 4);
  expect_close(take(ga, gi, 1, kCuda), take(a, i, 1, kCpu), 0, 0, "broadcast indices");
  auto [j, gj] = index_pair({17}, 9 * 12, int64, View::contiguous, 5);
  expect_close(take(ga, gj, kCuda), take(a, j, kCpu), 0, 0, "flat take");
}

TEST(CudaGather, EmbeddingRows) {
  INGOT_REQUIRE_CUDA();
  // bf16 [V, E] table with E * 2 bytes a multiple of 16: the 16-byte row path; 300 ids give
  // an output over 1M elements.
  auto [table, gtable] = data_pair({1000, 4096}, bfloat16, View::contiguous, 7);
  auto [ids, gids] = index_pair({3, 100}, 1000, int32, View::contiguous, 8);
  expect_close(gather(gtable, gids, kCuda), gather(table, ids, kCpu), 0, 0, "embedding bf16");
  const struct {
    Shape shape;
    Dtype t;
    View v;
  } more[] = {{{50, 3}, float32, View::contiguous}, {{50, 8}, float16, View::sliced},
              {{40, 24}, int32, View::transposed},  {{30, 100}, bfloat16, View::broadcast},
              {{64, 7}, float64, View::contiguous}, {{20, 33}, uint8, View::contiguous}};
  uint32_t seed = 20;
  for (const auto& m : more)
    for (Dtype it : kIndexDtypes) {
      auto [tb, gtb] = data_pair(m.shape, m.t, m.v, seed++);
      auto [id, gid] = index_pair({4, 5}, m.shape[0], it, View::transposed, seed++);
      expect_close(gather(gtb, gid, kCuda), gather(tb, id, kCpu), 0, 0,
                   ctx("gather", m.t, m.v, it, m.shape));
    }
}

TEST(CudaTake, ZeroSizes) {
  INGOT_REQUIRE_CUDA();
  auto [a, ga] = data_pair({4, 6}, float32, View::contiguous, 9);
  Array none = Array(std::vector<int32_t>{}, {0}, int32);
  expect_close(take(ga, on_cuda(none), 1, kCuda), take(a, none, 1, kCpu), 0, 0, "no indices");
  Array e = zeros({0, 6}, bfloat16, kCpu);
  expect_close(take(on_cuda(e), on_cuda(none), 0, kCuda), take(e, none, 0, kCpu), 0, 0,
               "empty table, no indices");
  Array z = zeros({3, 0}, float32, kCpu);
  Array i1 = Array({2, 0}, {2}, int32);
  expect_close(take(on_cuda(z), on_cuda(i1), 0, kCuda), take(z, i1, 0, kCpu), 0, 0, "empty rows");
  // An empty axis has no valid index: known on the host, so CUDA throws like the CPU.
  EXPECT_THROW(take(on_cuda(e), on_cuda(Array({0}, {1}, int32)), 0, kCuda).eval(), InvalidArgument);
}

/// Expects reading `x` back to raise InvalidArgument with exactly the CPU's message.
void expect_index_error(const Array& x, const std::string& msg) {
  try {
    x.to_vector<double>();
    ADD_FAILURE() << "no error; expected: " << msg;
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()), msg);
  }
}

TEST(CudaIndexing, OutOfRangeIndexRaisesTheCpuErrorAtTheNextRead) {
  INGOT_REQUIRE_CUDA();
  // Kernels clamp reads and drop writes of out-of-range indices, record the first one, and the
  // host raises the CPU's error when it next synchronises; the device then works as before.
  auto [a, ga] = data_pair({5, 3}, float32, View::contiguous, 10);
  const Array ok = Array({4, 0, 4, 2}, {4}, int32);
  expect_index_error(take(ga, on_cuda(Array({4, 0, 5, 2}, {4}, int32)), 0, kCuda),
                     "[take] index 5 is out of range for axis 0 of size 5");
  expect_close(take(ga, on_cuda(ok), 0, kCuda), take(a, ok, 0, kCpu), 0, 0, "take after error");
  expect_index_error(take(ga, on_cuda(Array({2, -4}, {2}, int64)), 1, kCuda),
                     "[take] index -4 is out of range for axis 1 of size 3");
  expect_index_error(gather(ga, on_cuda(Array({1, 7}, {2}, int64))),
                     "[gather] index 7 is out of range for axis 0 of size 5");
  expect_index_error(take_along_axis(ga, on_cuda(full({5, 1}, Array(3), int32, kCpu)), 1, kCuda),
                     "[take_along_axis] index 3 is out of range for axis 1 of size 3");
  expect_index_error(put_along_axis(ga, on_cuda(full({5, 1}, Array(-9), int32, kCpu)),
                                    on_cuda(ones({5, 1}, float32, kCpu)), 0, kCuda),
                     "[put_along_axis] index -9 is out of range for axis 0 of size 5");
  expect_index_error(scatter_add_along_axis(ga, on_cuda(full({1, 3}, Array(5), int32, kCpu)),
                                            on_cuda(ones({1, 3}, float32, kCpu)), 0, kCuda),
                     "[scatter_add_along_axis] index 5 is out of range for axis 0 of size 5");
  expect_index_error(scatter_add(ga, on_cuda(Array({1, 9}, {2}, uint8)),
                                 on_cuda(ones({2, 3}, float32, kCpu)), 0, kCuda),
                     "[scatter_add] index 9 is out of range for axis 0 of size 5");
  // A fault in an op whose result is never read surfaces at synchronize().
  Array lazy = take(ga, on_cuda(Array({6}, {1}, int32)), 0, kCuda);
  lazy.eval();
  try {
    synchronize(kCuda);
    ADD_FAILURE() << "synchronize() did not raise";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()), "[take] index 6 is out of range for axis 0 of size 5");
  }
  // Writes skipped the bad index and kept the good ones; nothing is pending any more.
  const Array want = scatter_add(a, Array({1}, {1}, int32), ones({1, 3}, float32, kCpu), 0, kCpu);
  Array got = scatter_add(ga, on_cuda(Array({1, 9}, {2}, int32)),
                          on_cuda(ones({2, 3}, float32, kCpu)), 0, kCuda);
  got.eval();
  EXPECT_THROW(synchronize(kCuda), InvalidArgument);
  expect_close(got, want, 0, 0, "scatter_add dropped the bad index");
  expect_close(take(ga, on_cuda(ok), 0, kCuda), take(a, ok, 0, kCpu), 0, 0, "take at the end");
}

// ---- along an axis ----

struct AlongCase {
  Shape a;
  int axis;
  Shape idx;
};

TEST(CudaTakeAlongAxis, DtypesViewsAndIndexTypes) {
  INGOT_REQUIRE_CUDA();
  const AlongCase cases[] = {{{5, 3}, 1, {5, 4}},       {{5, 3}, 0, {2, 3}},
                             {{4, 1, 6}, 2, {4, 3, 2}}, {{7}, 0, {9}},
                             {{2, 3, 4}, 1, {1, 5, 4}}, {{64, 300}, 1, {64, 1}}};
  uint32_t seed = 100;
  int rot = 0;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[rot % 5];
        const View iv = (rot++ % 2 == 0) ? View::transposed : View::contiguous;
        auto [a, ga] = data_pair(c.a, t, v, seed++);
        auto [i, gi] = index_pair(c.idx, c.a[c.axis], it, iv, seed++);
        expect_close(take_along_axis(ga, gi, c.axis, kCuda), take_along_axis(a, i, c.axis, kCpu), 0,
                     0, ctx("take_along_axis", t, v, it, c.a));
      }
}

TEST(CudaPutAlongAxis, LastDuplicateWins) {
  INGOT_REQUIRE_CUDA();
  const AlongCase cases[] = {{{6, 5}, 1, {6, 7}},
                             {{6, 5}, 0, {9, 5}},
                             {{3, 4, 5}, 2, {3, 4, 8}},
                             {{10}, 0, {25}},
                             {{4, 3}, 1, {4, 0}}};
  uint32_t seed = 200;
  int rot = 0;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[rot++ % 5];
        auto [a, ga] = data_pair(c.a, t, v, seed++);
        auto [i, gi] = index_pair(c.idx, c.a[c.axis], it, View::contiguous, seed++);
        auto [x, gx] =
            data_pair(c.idx, t, v == View::broadcast ? View::broadcast : View::sliced, seed++);
        expect_close(put_along_axis(ga, gi, gx, c.axis, kCuda),
                     put_along_axis(a, i, x, c.axis, kCpu), 0, 0,
                     ctx("put_along_axis", t, v, it, c.a));
      }
}

TEST(CudaScatterAddAlongAxis, DuplicatesAccumulate) {
  INGOT_REQUIRE_CUDA();
  const AlongCase cases[] = {{{6, 5}, 1, {6, 7}},       {{6, 5}, 0, {9, 5}},
                             {{3, 4, 5}, 1, {3, 6, 5}}, {{10}, 0, {40}},
                             {{128, 50}, 1, {128, 1}},  {{4, 3}, 0, {0, 3}}};
  uint32_t seed = 300;
  int rot = 0;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[rot++ % 5];
        auto [a, ga] = data_pair(c.a, t, v, seed++);
        auto [i, gi] = index_pair(c.idx, c.a[c.axis], it, View::contiguous, seed++);
        auto [x, gx] =
            data_pair(c.idx, t, v == View::transposed ? View::transposed : View::sliced, seed++);
        // Each target sums its updates in index order on both devices: equal bit for bit.
        expect_close(scatter_add_along_axis(ga, gi, gx, c.axis, kCuda),
                     scatter_add_along_axis(a, i, x, c.axis, kCpu), 0, 0,
                     ctx("scatter_add_along_axis", t, v, it, c.a));
      }
}

// ---- scatter_add ----

TEST(CudaScatterAdd, DtypesViewsAndIndexTypes) {
  INGOT_REQUIRE_CUDA();
  const TakeCase cases[] = {{{5, 3}, 0, {7}},     {{4, 6}, 1, {2, 5}},     {{3, 4, 5}, 1, {9}},
                            {{10}, 0, {30}},      {{64, 128}, 0, {4, 33}}, {{4, 6}, 0, {0}},
                            {{3, 1, 40}, 2, {50}}};
  uint32_t seed = 400;
  int rot = 0;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        const Dtype it = kIndexDtypes[rot++ % 5];
        const int ax = c.axis;
        Shape us(c.shape.begin(), c.shape.begin() + ax);
        us.insert(us.end(), c.ishape.begin(), c.ishape.end());
        us.insert(us.end(), c.shape.begin() + ax + 1, c.shape.end());
        auto [a, ga] = data_pair(c.shape, t, v, seed++);
        auto [i, gi] = index_pair(c.ishape, c.shape[ax], it, View::contiguous, seed++);
        auto [u, gu] = data_pair(us, t, v, seed++);
        // Index-order sums on both devices (the CPU's stable grouping): equal bit for bit.
        expect_close(scatter_add(ga, gi, gu, ax, kCuda), scatter_add(a, i, u, ax, kCpu), 0, 0,
                     ctx("scatter_add", t, v, it, c.shape));
      }
}

TEST(CudaScatterAdd, LargeEmbeddingGradient) {
  INGOT_REQUIRE_CUDA();
  // The vjp of an embedding lookup: [B*T, E] rows summed into a [V, E] table (> 1M updates).
  for (Dtype t : {float32, bfloat16}) {
    auto [a, ga] = data_pair({512, 1024}, t, View::contiguous, 500);
    auto [i, gi] = index_pair({1200}, 512, int32, View::contiguous, 501);
    auto [u, gu] = data_pair({1200, 1024}, t, View::contiguous, 502);
    // Deterministic: the same bits as the CPU's index-order sums, run after run.
    const Array want = scatter_add(a, i, u, 0, kCpu);
    for (int run = 0; run < 2; ++run)
      expect_close(scatter_add(ga, gi, gu, 0, kCuda), want, 0, 0,
                   std::string("large scatter_add ") + std::string(dtype_name(t)));
  }
}

// ---- slice_update / concatenate / pad ----

TEST(CudaSliceUpdate, DtypesViewsAndSteps) {
  INGOT_REQUIRE_CUDA();
  const struct {
    Shape a, start, stop, strides;
  } cases[] = {{{8, 6}, {1, 0}, {5, 6}, {1, 1}},
               {{8, 6}, {0, 1}, {8, 6}, {2, 3}},
               {{8, 6}, {6, 5}, {1, 0}, {-2, -1}},
               {{2, 4, 16, 8}, {0, 0, 5, 0}, {2, 4, 6, 8}, {1, 1, 1, 1}},
               {{1000, 1200}, {3, 0}, {998, 1200}, {1, 1}},
               {{9}, {-3}, {9}, {1}}};
  uint32_t seed = 600;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        if (shape_size(c.a) > 100000 && t != bfloat16) continue;  // one large case
        const Shape us = normalize_slice(c.a, c.start, c.stop, c.strides).count;
        auto [a, ga] = data_pair(c.a, t, v, seed++);
        auto [u, gu] =
            data_pair(us, t, v == View::broadcast ? View::broadcast : View::transposed, seed++);
        expect_close(slice_update(ga, gu, c.start, c.stop, c.strides, kCuda),
                     slice_update(a, u, c.start, c.stop, c.strides, kCpu), 0, 0,
                     ctx("slice_update", t, v, t, c.a));
      }
}

TEST(CudaSliceUpdate, DonatesAUniqueInputBuffer) {
  INGOT_REQUIRE_CUDA();
  // The KV cache's write: a uniquely held buffer is updated in place.
  Array host = reshape(arange(0, 2 * 16 * 8, 1, bfloat16, kCpu), {2, 16, 8}, kCpu);
  Array cache = to_device(host, kCuda);
  cache.eval();
  const void* p = cache.raw_ptr();
  auto [u, gu] = data_pair({2, 1, 8}, bfloat16, View::contiguous, 700);
  Array want = slice_update(host, u, {0, 5, 0}, {2, 6, 8}, kCpu);
  Array got = slice_update(cache, gu, {0, 5, 0}, {2, 6, 8}, kCuda);
  cache = Array();  // got's graph now holds the only reference: the buffer can be donated
  got.eval();
  EXPECT_EQ(got.raw_ptr(), p);
  expect_close(got, want, 0, 0, "donated slice_update");
}

TEST(CudaConcatenate, MixedDtypesAndViews) {
  INGOT_REQUIRE_CUDA();
  const struct {
    Dtype a, b;
  } pairs[] = {{float32, float32}, {bfloat16, bfloat16}, {float32, bfloat16}, {int32, int64},
               {float16, float64}, {bool_, int32},       {uint8, int8},       {int64, float32}};
  uint32_t seed = 800;
  for (const auto& pr : pairs)
    for (View v : kViews)
      for (int axis : {0, 1, -1}) {
        Shape sa{4, 6, 5}, sb{4, 6, 5};
        const int ax = axis < 0 ? axis + 3 : axis;
        sb[ax] = 3;
        auto [a, ga] = data_pair(sa, pr.a, v, seed++);
        auto [b, gb] = data_pair(sb, pr.b, View::transposed, seed++);
        Shape se = sa;
        se[ax] = 0;
        Array e = zeros(se, pr.a, kCpu), ge = on_cuda(e);
        expect_close(concatenate({ga, ge, gb}, axis, kCuda), concatenate({a, e, b}, axis, kCpu), 0,
                     0,
                     std::string("concatenate ") + std::string(dtype_name(pr.a)) + "+" +
                         std::string(dtype_name(pr.b)) + "/" + view_name(v) + "/axis " +
                         std::to_string(axis));
      }
  auto [x, gx] = data_pair({600, 1000}, float32, View::contiguous, 850);
  auto [y, gy] = data_pair({600, 1000}, float32, View::sliced, 851);
  expect_close(concatenate({gx, gy}, 1, kCuda), concatenate({x, y}, 1, kCpu), 0, 0,
               "large concatenate");
}

TEST(CudaPad, DtypesViewsAndWidths) {
  INGOT_REQUIRE_CUDA();
  const struct {
    Shape s;
    std::vector<int> axes;
    Shape low, high;
  } cases[] = {{{5, 4}, {0, 1}, {1, 2}, {3, 0}},
               {{3, 4, 5}, {2}, {0}, {3}},
               {{7}, {0}, {4}, {4}},
               {{2, 0, 3}, {1}, {1}, {1}},
               {{1100, 1000}, {0, 1}, {2, 1}, {1, 3}}};
  uint32_t seed = 900;
  for (Dtype t : kDataDtypes)
    for (View v : kViews)
      for (const auto& c : cases) {
        if (shape_size(c.s) > 100000 && t != float32) continue;  // one large case
        auto [a, ga] = data_pair(c.s, t, v, seed++);
        Array val = Array(values_for(1, t, seed++), {}, t);
        expect_close(pad(ga, c.axes, c.low, c.high, on_cuda(val), kCuda),
                     pad(a, c.axes, c.low, c.high, val, kCpu), 0, 0, ctx("pad", t, v, t, c.s));
      }
}

// ---- vjps ----

TEST(CudaIndexingGrad, TakeGatherAndSliceUpdateVjps) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64}) {
    const double tol = t == float32 ? 1e-5 : 1e-12;
    auto [x, gx] = data_pair({6, 5}, t, View::contiguous, 1000);
    Array idx = Array({4, 0, 4, -1, 2, 4}, {6}, int32);  // duplicates accumulate in the vjp
    auto [ct, gct] = data_pair({6, 6}, t, View::contiguous, 1001);
    auto take_fn = [](const Array& i, Device d) {
      return [=](const std::vector<Array>& in) { return std::vector<Array>{take(in[0], i, 1, d)}; };
    };
    auto want = vjp(take_fn(idx, kCpu), {x}, {ct}).second;
    auto got = vjp(take_fn(on_cuda(idx), kCuda), {gx}, {gct}).second;
    expect_close(got[0], want[0], tol, tol, std::string("take vjp ") + std::string(dtype_name(t)));

    auto [tab, gtab] = data_pair({10, 16}, t, View::contiguous, 1002);
    Array ids = Array({3, 3, 9, -10, 5}, {5}, int32);
    auto [ctg, gctg] = data_pair({5, 16}, t, View::contiguous, 1003);
    auto gather_fn = [](const Array& i, Device d) {
      return [=](const std::vector<Array>& in) { return std::vector<Array>{gather(in[0], i, d)}; };
    };
    expect_close(vjp(gather_fn(on_cuda(ids), kCuda), {gtab}, {gctg}).second[0],
                 vjp(gather_fn(ids, kCpu), {tab}, {ctg}).second[0], tol, tol,
                 std::string("gather vjp ") + std::string(dtype_name(t)));

    auto [a, ga] = data_pair({6, 8}, t, View::contiguous, 1004);
    auto [u, gu] = data_pair({2, 3}, t, View::contiguous, 1005);
    auto [cs, gcs] = data_pair({6, 8}, t, View::contiguous, 1006);
    auto su_fn = [](Device d) {
      return [=](const std::vector<Array>& in) {
        return std::vector<Array>{slice_update(in[0], in[1], {1, 2}, {5, 8}, {2, 2}, d)};
      };
    };
    auto sw = vjp(su_fn(kCpu), {a, u}, {cs}).second;
    auto sg = vjp(su_fn(kCuda), {ga, gu}, {gcs}).second;
    expect_close(sg[0], sw[0], 0, 0, "slice_update vjp (a)");
    expect_close(sg[1], sw[1], 0, 0, "slice_update vjp (update)");
  }
}

}  // namespace
}  // namespace ingot::test
