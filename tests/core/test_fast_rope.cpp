// fast::rope against a float64 naive loop that rounds where Hugging Face's bf16 rotary code
// does, and against its reference composition: both layouts, partial dims, offsets, per-row
// offsets, custom frequencies, scale, every float dtype and layout; VJP and errors.
#include <cmath>

#include "core/fast/fast.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

const Dtype kDtypes[] = {float32, bfloat16, float16, float64};

struct RopeCase {
  Shape shape;  // [..., L, D]
  int dims;
  fast::RopeOptions opt;
  std::vector<int64_t> offsets;  // per-row offsets (empty: opt.offset)
  std::vector<float> freqs;      // custom inverse frequencies (empty: base)
};

std::vector<double> naive_rope(const std::vector<double>& x, const RopeCase& c, Dtype t) {
  const int nd = static_cast<int>(c.shape.size());
  const int64_t D = c.shape[nd - 1], L = c.shape[nd - 2], half = c.dims / 2;
  const int64_t rows = shape_size(c.shape) / D;
  const int64_t per_b = c.offsets.size() > 1 ? rows / c.shape[0] : rows;
  std::vector<double> y(x);
  auto R = [&](double v) { return round_to(v, t == float64 ? float64 : t); };
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t l = r % L;
    int64_t start = c.opt.offset;
    if (!c.offsets.empty()) start = c.offsets[c.offsets.size() > 1 ? r / per_b : 0];
    const float pos = static_cast<float>(start + l) * c.opt.scale;
    for (int64_t i = 0; i < half; ++i) {
      float inv =
          c.freqs.empty()
              ? 1.0f / std::pow(c.opt.base, static_cast<float>(2 * i) / static_cast<float>(c.dims))
              : c.freqs[i];
      const float ang = pos * inv;
      const double cs = R(static_cast<float>(std::cos(static_cast<double>(ang))));
      const double sn = R(static_cast<float>(std::sin(static_cast<double>(ang))));
      const int64_t i1 = c.opt.traditional ? 2 * i : i;
      const int64_t i2 = c.opt.traditional ? 2 * i + 1 : i + half;
      const double x1 = x[r * D + i1], x2 = x[r * D + i2];
      y[r * D + i1] = R(R(x1 * cs) + R(-x2 * sn));
      y[r * D + i2] = R(R(x2 * cs) + R(x1 * sn));
    }
  }
  return y;
}

std::vector<RopeCase> cases() {
  std::vector<RopeCase> cs;
  for (bool trad : {false, true}) {
    cs.push_back({{1, 2, 1, 8}, 8, {.traditional = trad}});
    cs.push_back({{2, 3, 7, 16}, 16, {.traditional = trad, .offset = 5}});
    cs.push_back({{2, 3, 33, 64}, 32, {.traditional = trad, .base = 500000.0f, .offset = 3}});
    cs.push_back({{2, 2, 7, 12}, 8, {.traditional = trad, .scale = 0.25f}, {4, 1000}});
    cs.push_back({{2, 7, 10}, 10, {.traditional = trad}, {}, {1.0f, 0.5f, 0.1f, 0.01f, 1e-3f}});
    cs.push_back({{33, 6}, 4, {.traditional = trad, .offset = 100000}, {17}});
  }
  cs.push_back({{1, 4, 2, 128}, 128, {.offset = 4000}});
  return cs;
}

fast::RopeOptions with_arrays(const RopeCase& c) {
  fast::RopeOptions o = c.opt;
  if (!c.offsets.empty()) {
    std::vector<int32_t> off(c.offsets.begin(), c.offsets.end());
    o.offsets = Array(off, {static_cast<int64_t>(off.size())}, int32);
  }
  if (!c.freqs.empty()) o.freqs = Array(c.freqs, {static_cast<int64_t>(c.freqs.size())});
  return o;
}

void check_cases(const std::vector<Layout>& layouts) {
  uint32_t seed = 1;
  for (const RopeCase& c : cases())
    for (Dtype t : kDtypes)
      for (Layout lay : layouts) {
        auto xv = random_values(shape_size(c.shape), t, seed++);
        Array x = make_array(xv, c.shape, t, lay);
        const fast::RopeOptions o = with_arrays(c);
        auto want = naive_rope(xv, c, t);
        // Angles, cos and sin are float32 by design (as in HF), also for float64 x.
        const double e = t == float64 ? 1e-7 : eps_of(t);
        std::string what = std::string(dtype_name(t)) + " " + shape_str(c.shape) + " dims " +
                           std::to_string(c.dims) + (c.opt.traditional ? " traditional " : " ") +
                           layout_name(lay);
        Array y = fast::rope(x, c.dims, o);
        EXPECT_EQ(y.dtype(), t);
        expect_close(values_of(y), want, 4 * e, 16 * e, what);
        expect_close(values_of(fast::ref::rope(x, c.dims, o)), want, 4 * e, 16 * e,
                     what + " (ref)");
      }
}

TEST(FastRope, MatchesNaiveAndReference) {
  check_cases({kAllLayouts, kAllLayouts + 4});
}

TEST(FastRope, PortableKernelsMatchNaive) {
  ScopedIsa isa("portable");
  check_cases({Layout::contiguous});
}

TEST(FastRope, OffsetsArrayOfOneBroadcasts) {
  RopeCase c{{2, 2, 5, 8}, 8, {}, {9}};
  auto xv = random_values(shape_size(c.shape), float32, 9);
  Array y = fast::rope(Array(xv, c.shape), 8, with_arrays(c));
  expect_close(values_of(y), naive_rope(xv, c, float32), 1e-6, 1e-6, "offsets [1]");
}

TEST(FastRope, VjpIsInverseRotation) {
  RopeCase c{{2, 3, 5, 12}, 8, {.offset = 2}, {1, 7}};
  auto xv = random_values(shape_size(c.shape), float64, 21);
  for (bool trad : {false, true}) {
    c.opt.traditional = trad;
    const fast::RopeOptions o = with_arrays(c);
    check_vjp([&](std::vector<Array> a) { return fast::rope(a[0], c.dims, o); }, {xv}, {c.shape},
              trad ? "rope traditional" : "rope");
  }
}

TEST(FastRope, Errors) {
  Array x = zeros({1, 2, 3, 8});
  expect_error<InvalidArgument>([&] { fast::rope(x, 7); },
                                "[rope] dims must be even and in [2, D = 8], got dims 7");
  expect_error<InvalidArgument>([&] { fast::rope(x, 10); }, "got dims 10 for x [1, 2, 3, 8]");
  expect_error<InvalidArgument>([&] { fast::rope(zeros({8}), 8); },
                                "[rope] x must have at least 2 dimensions");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope(x, 8, {.offsets = Array({1, 2}, int32)});
      },
      "[rope] offsets must have shape [B] = [1] (the first axis of x [1, 2, 3, 8]) or [1], got "
      "[2]");
  expect_error<InvalidArgument>([&] { fast::rope(x, 8, {.offsets = Array({1.0f})}); },
                                "[rope] offsets must be an integer array, got float32");
  expect_error<InvalidArgument>([&] { fast::rope(x, 8, {.freqs = zeros({3})}); },
                                "[rope] freqs must have shape [dims / 2] = [4], got [3]");
  expect_error<InvalidArgument>([&] { fast::ref::rope(x, 3); }, "[rope] dims must be even");
}

// ---- rope_kv_update: q/k norms, rotary and the cache writes in one primitive ----

struct RopeKvCase {
  int64_t b, l, h, hk, d, c, column;
  bool norm, traditional, unit_offset, weight_f32, per_row, freqs;
};

std::vector<RopeKvCase> rope_kv_cases() {
  return {
      {1, 1, 4, 2, 16, 6, 3, true, false, false, false, true, false},
      {2, 1, 8, 2, 64, 9, 8, true, false, true, true, true, false},     // Gemma-style norm
      {2, 3, 2, 1, 32, 7, 2, false, false, false, true, false, false},  // no norm, L = 3
      {3, 2, 6, 3, 16, 4, 0, true, true, false, false, false, true},    // traditional, freqs
      {1, 1, 2, 2, 256, 3, 2, true, false, false, true, true, true},    // D = 256
  };
}

/// The fused op and the ops one at a time (ref::rope_kv_update) on the same inputs.
std::pair<std::vector<Array>, std::vector<Array>> run_rope_kv(const RopeKvCase& c, Dtype t,
                                                              uint32_t seed) {
  const int64_t f = (c.h + 2 * c.hk) * c.d;
  const Array qkv(random_values(c.b * c.l * f, t, seed), {c.b, c.l, f}, t);
  const Array keys(random_values(c.b * c.hk * c.c * c.d, t, seed + 1), {c.b, c.hk, c.c, c.d}, t);
  const Array values(random_values(c.b * c.hk * c.c * c.d, t, seed + 2), {c.b, c.hk, c.c, c.d}, t);
  std::optional<Array> qw, kw;
  if (c.norm) {
    qw = Array(random_values(c.d, t, seed + 3, 0.5, 1.5), {c.d}, t);
    kw = Array(random_values(c.d, t, seed + 4, 0.5, 1.5), {c.d}, t);
  }
  fast::RopeKvOptions o{.n_heads = static_cast<int>(c.h), .n_kv_heads = static_cast<int>(c.hk)};
  o.norm = {.eps = 1e-6f, .add_unit_offset = c.unit_offset, .weight_in_float32 = c.weight_f32};
  o.rope = {.traditional = c.traditional, .base = 10000.0f, .offset = 11};
  if (c.per_row) {
    std::vector<int32_t> off;
    for (int64_t i = 0; i < c.b; ++i) off.push_back(static_cast<int32_t>(5 + 7 * i));
    o.rope.offsets = Array(off, {c.b}, int32);
  }
  if (c.freqs) {
    std::vector<float> fr;
    for (int64_t i = 0; i < c.d / 2; ++i) fr.push_back(1.0f / static_cast<float>(1 + i * i));
    o.rope.freqs = Array(fr, {c.d / 2});
  }
  const Array column = Array({static_cast<int32_t>(c.column)}, {1}, int32);
  return {fast::rope_kv_update(qkv, qw, kw, keys, values, column, o),
          fast::ref::rope_kv_update(qkv, qw, kw, keys, values, column, o)};
}

TEST(FastRopeKvUpdate, EqualsTheOpsOneAtATime) {
  uint32_t seed = 100;
  for (const RopeKvCase& c : rope_kv_cases())
    for (Dtype t : {float32, bfloat16, float16}) {
      auto [got, want] = run_rope_kv(c, t, seed += 10);
      ASSERT_EQ(got.size(), 3u);
      const char* names[] = {"q", "keys", "values"};
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(got[i].shape(), want[i].shape());
        EXPECT_EQ(got[i].dtype(), t);
        expect_close(values_of(got[i]), values_of(want[i]), 0, 0,
                     std::string(dtype_name(t)) + " D " + std::to_string(c.d) + " L " +
                         std::to_string(c.l) + " " + names[i]);
      }
    }
}

TEST(FastRopeKvUpdate, WritesOnlyTheNewColumnsInPlace) {
  const RopeKvCase c{2, 2, 2, 1, 16, 5, 1, true, false, false, false, false, false};
  const int64_t f = (c.h + 2 * c.hk) * c.d;
  const Array qkv(random_values(c.b * c.l * f, float32, 3), {c.b, c.l, f}, float32);
  auto kv = random_values(c.b * c.hk * c.c * c.d, float32, 4);
  Array keys(kv, {c.b, c.hk, c.c, c.d}, float32), values(kv, {c.b, c.hk, c.c, c.d}, float32);
  keys.eval();
  const void* storage = keys.raw_ptr();
  fast::RopeKvOptions o{.n_heads = 2, .n_kv_heads = 1};
  std::vector<Array> out =
      fast::rope_kv_update(qkv, std::nullopt, std::nullopt, keys, values, Array({1}, int32), o);
  keys = Array();  // only the update holds the buffer now
  eval(out);
  EXPECT_EQ(out[1].raw_ptr(), storage) << "the keys buffer was not reused";
  const std::vector<double> kv_new = values_of(out[2]), qv = values_of(qkv);
  for (int64_t bi = 0; bi < c.b; ++bi)
    for (int64_t col = 0; col < c.c; ++col)
      for (int64_t j = 0; j < c.d; ++j) {
        const size_t at = static_cast<size_t>((bi * c.c + col) * c.d + j);
        // Columns 1 and 2 hold v (the last head of qkv's rows); the rest is untouched.
        const double want = col == 1 || col == 2
                                ? qv[static_cast<size_t>((bi * c.l + col - 1) * f + 3 * c.d + j)]
                                : kv[at];
        EXPECT_EQ(kv_new[at], want) << "b " << bi << " column " << col << " " << j;
      }
}

TEST(FastRopeKvUpdate, Errors) {
  const Array qkv = zeros({1, 1, 64}), kv = zeros({1, 1, 4, 16}), col = Array({0}, int32);
  fast::RopeKvOptions o{.n_heads = 2, .n_kv_heads = 1};
  const std::optional<Array> none;
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_update(zeros({1, 1, 60}), none, none, kv, kv, col, o);
      },
      "[rope_kv_update] qkv must be [B = 1, L, (H + 2 Hkv) D = 64], got [1, 1, 60]");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_update(zeros({1, 1, 40}), none, none, zeros({1, 1, 4, 10}),
                             zeros({1, 1, 4, 10}), col, o);
      },
      "the head dimension must be a multiple of 16 and at most 256, got 10");
  expect_error<InvalidArgument>(
      [&] { fast::rope_kv_update(qkv, zeros({16}), none, kv, kv, col, o); },
      "q_norm and k_norm must both be given or both be absent");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_update(qkv, none, none, kv, zeros({1, 1, 4, 16}, bfloat16), col, o);
      },
      "keys and values must have qkv's dtype float32");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_update(qkv, none, none, kv, kv, Array({0, 1}, int32), o);
      },
      "column must be an integer array of one element, got int32 [2]");
  expect_error<InvalidArgument>(
      [&] { fast::rope_kv_update(qkv, none, none, kv, kv, Array({0.0f}), o); },
      "column must be an integer array of one element, got float32");
  expect_error<InvalidArgument>(
      [&] {
        fast::RopeKvOptions bad = o;
        bad.rope.offsets = Array({1, 2}, int32);
        fast::rope_kv_update(qkv, none, none, kv, kv, col, bad);
      },
      "[rope] offsets must have shape [B] = [1]");
  expect_error<InvalidArgument>(
      [&] { eval(fast::rope_kv_update(qkv, none, none, kv, kv, Array({4}, int32), o)); },
      "[rope_kv_update] columns [4, 5) are outside the cache's 4 columns");
}

// ---- rope_kv_attention: rope_kv_update and the attention over the updated cache ----

TEST(FastRopeKvAttention, EqualsTheOpsOneAtATime) {
  uint32_t seed = 500;
  for (const RopeKvCase& c : rope_kv_cases())
    for (Dtype t : {float32, bfloat16, float16})
      for (int m = 0; m < 3; ++m) {
        const int64_t f = (c.h + 2 * c.hk) * c.d;
        seed += 10;
        const Array qkv(random_values(c.b * c.l * f, t, seed), {c.b, c.l, f}, t);
        const Shape kvs{c.b, c.hk, c.c, c.d};
        const Array keys(random_values(shape_size(kvs), t, seed + 1), kvs, t);
        const Array values(random_values(shape_size(kvs), t, seed + 2), kvs, t);
        std::optional<Array> qw, kw;
        if (c.norm) {
          qw = Array(random_values(c.d, t, seed + 3, 0.5, 1.5), {c.d}, t);
          kw = Array(random_values(c.d, t, seed + 4, 0.5, 1.5), {c.d}, t);
        }
        fast::RopeKvOptions o{.n_heads = static_cast<int>(c.h),
                              .n_kv_heads = static_cast<int>(c.hk)};
        o.norm = {
            .eps = 1e-6f, .add_unit_offset = c.unit_offset, .weight_in_float32 = c.weight_f32};
        o.rope = {.traditional = c.traditional, .offset = 11};
        // m: a boolean keep-mask [B, 1, 1, C] (column 0 of row 0 off), an additive [B, H, L, C],
        // none.
        std::optional<Array> mask;
        if (m == 0) {
          std::vector<bool> keep(static_cast<size_t>(c.b * c.c), true);
          keep[0] = false;
          mask = Array(keep, {c.b, 1, 1, c.c});
        } else if (m == 1) {
          const Shape ms{c.b, c.h, c.l, c.c};
          mask = Array(random_values(shape_size(ms), float32, seed + 5, -2.0, 0.0), ms, float32);
        }
        const Array column = Array({static_cast<int32_t>(c.column)}, {1}, int32);
        const float scale = 0.25f;
        const std::vector<Array> got =
            fast::rope_kv_attention(qkv, qw, kw, keys, values, column, mask, o, scale);
        const std::vector<Array> want =
            fast::ref::rope_kv_attention(qkv, qw, kw, keys, values, column, mask, o, scale);
        ASSERT_EQ(got.size(), 3u);
        EXPECT_EQ(got[0].shape(), (Shape{c.b, c.h, c.l, c.d}));
        const char* names[] = {"o", "keys", "values"};
        for (int i = 0; i < 3; ++i)
          expect_close(values_of(got[i]), values_of(want[i]), 0, 0,
                       std::string(dtype_name(t)) + " D " + std::to_string(c.d) + " L " +
                           std::to_string(c.l) + " mask " + std::to_string(m) + " " + names[i]);
      }
}

TEST(FastRopeKvAttention, UpdatesTheBuffersInPlace) {
  Array keys(random_values(2 * 5 * 16, float32, 6), {1, 2, 5, 16}, float32);
  Array values(random_values(2 * 5 * 16, float32, 7), {1, 2, 5, 16}, float32);
  eval({keys, values});
  const void* kp = keys.raw_ptr();
  const void* vp = values.raw_ptr();
  const Array qkv(random_values(8 * 16, float32, 8), {1, 1, 8 * 16}, float32);
  std::vector<Array> out = fast::rope_kv_attention(
      qkv, std::nullopt, std::nullopt, std::move(keys), std::move(values), Array({2}, int32),
      std::nullopt, {.n_heads = 4, .n_kv_heads = 2}, 0.25f);
  keys = Array();
  values = Array();
  eval(out);
  EXPECT_EQ(out[1].raw_ptr(), kp) << "the keys buffer was not reused";
  EXPECT_EQ(out[2].raw_ptr(), vp) << "the values buffer was not reused";
}

TEST(FastRopeKvAttention, Errors) {
  const Array qkv = zeros({1, 1, 64}), kv = zeros({1, 1, 4, 16}), col = Array({0}, int32);
  const fast::RopeKvOptions o{.n_heads = 2, .n_kv_heads = 1};
  const std::optional<Array> none;
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_attention(qkv, none, none, kv, kv, col, zeros({1, 1, 1, 5}), o, 1.0f);
      },
      "[rope_kv_attention] mask [1, 1, 1, 5] does not broadcast to [B, H, L, S] = [1, 2, 1, 4]");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_attention(qkv, none, none, kv, kv, col, Array({1, 1, 1, 1}, int32), o, 1.0f);
      },
      "[rope_kv_attention] mask must be boolean or floating point (additive), got int32");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_attention(zeros({1, 1, 80}), none, none, zeros({1, 2, 4, 16}),
                                zeros({1, 2, 4, 16}), col, none, {.n_heads = 1, .n_kv_heads = 2},
                                1.0f);
      },
      "[rope_kv_attention] n_heads 1 must be a multiple of n_kv_heads 2");
  expect_error<InvalidArgument>(
      [&] {
        fast::rope_kv_attention(zeros({1, 1, 60}), none, none, kv, kv, col, none, o, 1.0f);
      },
      "[rope_kv_update] qkv must be [B = 1, L, (H + 2 Hkv) D = 64], got [1, 1, 60]");
  expect_error<InvalidArgument>(
      [&] {
        eval(fast::rope_kv_attention(qkv, none, none, kv, kv, Array({4}, int32), none, o, 1.0f));
      },
      "[rope_kv_update] columns [4, 5) are outside the cache's 4 columns");
}

}  // namespace
}  // namespace ingot::test
