// fast::scaled_dot_product_attention against a float64 naive loop and its reference
// composition: GQA, causal with L != S, sliding window, softcap, additive and boolean masks
// (broadcast shapes), every float dtype and layout; VJP against finite differences; errors.
#include <cmath>
#include <limits>

#include "core/fast/fast.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

const Dtype kDtypes[] = {float32, bfloat16, float16, float64};
constexpr double kInf = std::numeric_limits<double>::infinity();

enum class MaskKind { none, additive, boolean };

struct SdpaCase {
  int64_t B, H, Hkv, L, S, D, Dv;
  bool causal = false;
  int window = 0;
  float softcap = 0;
  MaskKind mask = MaskKind::none;
  Shape mask_shape = {};
};

struct Inputs {
  std::vector<double> q, k, v, m;
};

double mask_at(const SdpaCase& c, const std::vector<double>& m, int64_t b, int64_t h, int64_t l,
               int64_t j) {
  const int64_t idx[4] = {b, h, l, j};
  const int nd = static_cast<int>(c.mask_shape.size());
  int64_t off = 0;
  for (int d = 0; d < nd; ++d) {
    const int64_t n = c.mask_shape[d];
    off = off * n + (n == 1 ? 0 : idx[4 - nd + d]);
  }
  return m[off];
}

std::vector<double> naive_sdpa(const SdpaCase& c, const Inputs& in, float scale, Dtype t) {
  const int64_t G = c.H / c.Hkv;
  std::vector<double> out(c.B * c.H * c.L * c.Dv);
  std::vector<double> s(c.S);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t l = 0; l < c.L; ++l) {
        const int64_t hk = h / G, pos = c.S - c.L + l;
        const double* q = &in.q[((b * c.H + h) * c.L + l) * c.D];
        double mx = -kInf;
        for (int64_t j = 0; j < c.S; ++j) {
          const double* k = &in.k[((b * c.Hkv + hk) * c.S + j) * c.D];
          double acc = 0;
          for (int64_t d = 0; d < c.D; ++d) acc += q[d] * k[d];
          acc *= scale;
          if (c.softcap > 0) acc = c.softcap * std::tanh(acc / c.softcap);
          if (c.mask == MaskKind::additive) acc += mask_at(c, in.m, b, h, l, j);
          if (c.mask == MaskKind::boolean && mask_at(c, in.m, b, h, l, j) == 0) acc = -kInf;
          if (c.causal && (j > pos || (c.window > 0 && j <= pos - c.window))) acc = -kInf;
          s[j] = acc;
          mx = std::max(mx, acc);
        }
        double sum = 0;
        for (int64_t j = 0; j < c.S; ++j) sum += (s[j] = mx == -kInf ? 0.0 : std::exp(s[j] - mx));
        double* o = &out[((b * c.H + h) * c.L + l) * c.Dv];
        for (int64_t d = 0; d < c.Dv; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < c.S; ++j)
            acc += s[j] * in.v[((b * c.Hkv + hk) * c.S + j) * c.Dv + d];
          o[d] = round_to(sum > 0 ? acc / sum : 0.0, t);
        }
      }
  return out;
}

std::vector<SdpaCase> cases() {
  using M = MaskKind;
  return {
      {1, 2, 2, 1, 1, 8, 8},
      {2, 4, 2, 7, 7, 16, 16, true},
      {1, 5, 1, 33, 100, 64, 64, true},
      {1, 2, 1, 1, 1030, 64, 64},
      {2, 2, 2, 33, 40, 8, 8, true, 5},
      {1, 2, 1, 7, 9, 16, 16, false, 0, 5.0f, M::additive, {7, 9}},
      {2, 2, 2, 5, 6, 8, 8, false, 0, 0, M::boolean, {2, 1, 5, 6}},
      {1, 4, 2, 3, 70, 8, 8, true, 0, 0, M::additive, {1, 4, 3, 70}},
      {1, 3, 3, 4, 20, 8, 8, false, 0, 0, M::boolean, {1, 1, 1, 20}},
      {2, 2, 1, 6, 9, 7, 5, true},
      {1, 2, 2, 9, 4, 8, 8, true},
      {1, 2, 1, 7, 1030, 32, 32, true, 100, 30.0f, M::additive, {1, 1, 7, 1030}},
      {1, 2, 1, 2, 37, 13, 5, true},  // few rows: the direct K/V loops, with D and Dv tails
  };
}

Inputs make_inputs(const SdpaCase& c, Dtype t, uint32_t seed) {
  Inputs in;
  in.q = random_values(c.B * c.H * c.L * c.D, t, seed, -1, 1);
  in.k = random_values(c.B * c.Hkv * c.S * c.D, t, seed + 1, -1, 1);
  in.v = random_values(c.B * c.Hkv * c.S * c.Dv, t, seed + 2, -4, 4);
  if (c.mask == MaskKind::additive) {
    in.m = random_values(shape_size(c.mask_shape), t, seed + 3, -2, 2);
    for (size_t i = 0; i < in.m.size(); i += 5) in.m[i] = -kInf;
  } else if (c.mask == MaskKind::boolean) {
    in.m = random_values(shape_size(c.mask_shape), bool_, seed + 3);
    const int64_t S = c.mask_shape.back();
    for (int64_t j = 0; j < S && c.mask_shape.size() == 4; ++j) in.m[j] = 0;  // a masked row
  }
  return in;
}

std::string case_name(const SdpaCase& c) {
  return fmt::format("B{} H{} Hkv{} L{} S{} D{} Dv{}{}{}{}{}", c.B, c.H, c.Hkv, c.L, c.S, c.D, c.Dv,
                     c.causal ? " causal" : "", c.window ? " window" : "",
                     c.softcap ? " softcap" : "",
                     c.mask == MaskKind::none ? "" : " mask " + shape_str(c.mask_shape));
}

void check_cases(const std::vector<Layout>& layouts, bool with_ref) {
  uint32_t seed = 1;
  for (const SdpaCase& c : cases())
    for (Dtype t : kDtypes)
      for (Layout lay : layouts) {
        Inputs in = make_inputs(c, t, seed += 4);
        const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
        fast::SdpaOptions o{
            .scale = scale, .causal = c.causal, .window = c.window, .softcap = c.softcap};
        if (c.mask == MaskKind::additive) o.mask = Array(in.m, c.mask_shape, t);
        if (c.mask == MaskKind::boolean) o.mask = Array(in.m, c.mask_shape, bool_);
        Array q = make_array(in.q, {c.B, c.H, c.L, c.D}, t, lay);
        Array k = make_array(in.k, {c.B, c.Hkv, c.S, c.D}, t, lay);
        Array v = make_array(in.v, {c.B, c.Hkv, c.S, c.Dv}, t, lay);
        auto want = naive_sdpa(c, in, scale, t);
        const double e = t == float64 ? 1e-12 : 4 * eps_of(t) + 2e-6;
        std::string what = case_name(c) + " " + std::string(dtype_name(t)) + " " + layout_name(lay);
        Array y = fast::scaled_dot_product_attention(q, k, v, o);
        EXPECT_EQ(y.dtype(), t);
        EXPECT_EQ(y.shape(), (Shape{c.B, c.H, c.L, c.Dv}));
        expect_close(values_of(y), want, e, 4 * e, what);
        if (with_ref && (lay == Layout::contiguous || lay == Layout::transposed))
          expect_close(values_of(fast::ref::scaled_dot_product_attention(q, k, v, o)), want, e,
                       4 * e, what + " (ref)");
      }
}

TEST(FastSdpa, MatchesNaiveAndReference) {
  check_cases({kAllLayouts, kAllLayouts + 4}, true);
}

TEST(FastSdpa, PortableKernelsMatchNaive) {
  ScopedIsa isa("portable");
  check_cases({Layout::contiguous, Layout::transposed}, false);
}

TEST(FastSdpa, HeadsMajorLayoutFromBLHD) {
  // Projections come out as [B, L, H, D]; attention reads them through a transpose.
  const SdpaCase c{2, 4, 2, 5, 5, 16, 16, true};
  const Inputs in = make_inputs(c, bfloat16, 99);
  auto blhd = [](const std::vector<double>& x, int64_t B, int64_t H, int64_t L, int64_t D) {
    std::vector<double> r(x.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t l = 0; l < L; ++l)
          for (int64_t d = 0; d < D; ++d)
            r[((b * L + l) * H + h) * D + d] = x[((b * H + h) * L + l) * D + d];
    return swapaxes(Array(r, {B, L, H, D}, bfloat16), 1, 2);
  };
  Array y =
      fast::scaled_dot_product_attention(blhd(in.q, 2, 4, 5, 16), blhd(in.k, 2, 2, 5, 16),
                                         blhd(in.v, 2, 2, 5, 16), {.scale = 0.25f, .causal = true});
  expect_close(values_of(y), naive_sdpa(c, in, 0.25f, bfloat16), 4 * eps_of(bfloat16),
               4 * eps_of(bfloat16), "[B, L, H, D] transposed");
}

TEST(FastSdpa, VjpMatchesFiniteDifferences) {
  const SdpaCase c{1, 2, 1, 3, 5, 4, 3, true, 0, 3.0f, MaskKind::additive, {3, 5}};
  Inputs in = make_inputs(c, float64, 5);
  in.m = random_values(15, float64, 6, -1, 1);
  check_vjp(
      [&](std::vector<Array> a) {
        return fast::scaled_dot_product_attention(
            a[0], a[1], a[2], {.scale = 0.7f, .causal = true, .mask = a[3], .softcap = 3.0f});
      },
      {in.q, in.k, in.v, in.m}, {{1, 2, 3, 4}, {1, 1, 5, 4}, {1, 1, 5, 3}, {3, 5}},
      "sdpa causal softcap additive mask");
  Array bm(std::vector<bool>{true, false, true, true, true}, {5});
  check_vjp(
      [&](std::vector<Array> a) {
        return fast::scaled_dot_product_attention(
            a[0], a[1], a[2], {.scale = 0.5f, .causal = true, .mask = bm, .window = 2});
      },
      {in.q, in.k, in.v}, {{1, 2, 3, 4}, {1, 1, 5, 4}, {1, 1, 5, 3}}, "sdpa window bool mask");
}

TEST(FastSdpa, NanKeyGivesNanRowsOnEveryIsa) {
  // A NaN key deep in a long row (in the vectorised exp, not its scalar tail): the query heads
  // of its (batch, kv head) are NaN, as in torch, and every other row is finite. Every CPU ISA.
  const int64_t D = 64, S = 384;
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    ScopedIsa scoped(isa);
    for (Dtype t : {float32, bfloat16}) {
      std::vector<double> kv = random_values(2 * 2 * S * D, t, 31, -1, 1);
      kv[static_cast<size_t>(300 * D + 5)] = std::nan("");  // batch 0, kv head 0, key 300
      const Array q(random_values(2 * 8 * D, t, 32, -1, 1), {2, 8, 1, D}, t);
      const Array k(kv, {2, 2, S, D}, t);
      const Array v(random_values(2 * 2 * S * D, t, 33, -1, 1), {2, 2, S, D}, t);
      const auto y = values_of(
          fast::scaled_dot_product_attention(q, k, v, fast::SdpaOptions{.scale = 0.125f}));
      ASSERT_EQ(y.size(), static_cast<size_t>(2 * 8 * D));
      for (size_t i = 0; i < y.size(); ++i)  // rows of (batch 0, heads 0-3) come first
        ASSERT_EQ(std::isnan(y[i]), i < static_cast<size_t>(4 * D))
            << isa << " " << dtype_name(t) << " at " << i;
    }
  }
}

TEST(FastSdpa, NanQueryGivesANanRowOnEveryIsa) {
  // A NaN query makes every score of its row NaN (the running max then never leaves -inf): that
  // row is NaN, as in torch, not zeros; every other row is finite. Decode (one position, keys
  // read in place) and prefill (causal, key panels), every CPU ISA.
  const int64_t D = 64, S = 96;
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    ScopedIsa scoped(isa);
    for (Dtype t : {float32, bfloat16})
      for (int64_t L : {int64_t{1}, S}) {
        std::vector<double> qv = random_values(2 * 4 * L * D, t, 41, -1, 1);
        const int64_t bad = (1 * 4 + 2) * L + (L - 1);  // batch 1, head 2, last position
        qv[static_cast<size_t>(bad * D + 7)] = std::nan("");
        const Array q(qv, {2, 4, L, D}, t);
        const Array k(random_values(2 * 2 * S * D, t, 42, -1, 1), {2, 2, S, D}, t);
        const Array v(random_values(2 * 2 * S * D, t, 43, -1, 1), {2, 2, S, D}, t);
        const auto y = values_of(fast::scaled_dot_product_attention(
            q, k, v, fast::SdpaOptions{.scale = 0.125f, .causal = L > 1}));
        ASSERT_EQ(y.size(), static_cast<size_t>(2 * 4 * L * D));
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_EQ(std::isnan(y[i]), static_cast<int64_t>(i) / D == bad)
              << isa << " " << dtype_name(t) << " L=" << L << " at " << i;
      }
  }
}

// K or V [B, Hkv, S, D] as a view of a padded cache [B, Hkv, S + 5, D + 3] (key stride D + 3,
// head stride (S + 5) (D + 3)) whose other entries are NaN: a read past a row or past the keys
// shows in the result.
Array padded_cache_view(const std::vector<double>& x, int64_t B, int64_t Hkv, int64_t S, int64_t D,
                        Dtype t) {
  const int64_t Sp = S + 5, Dp = D + 3;
  std::vector<double> buf(static_cast<size_t>(B * Hkv * Sp * Dp), std::nan(""));
  for (int64_t bh = 0; bh < B * Hkv; ++bh)
    for (int64_t j = 0; j < S; ++j)
      for (int64_t d = 0; d < D; ++d)
        buf[static_cast<size_t>((bh * Sp + j) * Dp + d)] =
            x[static_cast<size_t>((bh * S + j) * D + d)];
  return slice(Array(buf, {B, Hkv, Sp, Dp}, t), {0, 0, 0, 0}, {B, Hkv, S, D}, {1, 1, 1, 1});
}

TEST(FastSdpa, DecodeDirectLoopsMatchNaiveOnEveryIsa) {
  // Decode shapes (1 or 2 query positions, G = 1 .. 8 query heads per KV head, so at most 8 rows
  // per task: K and V read in place by the direct loops, 1 to 4 rows per call) on every CPU ISA,
  // K/V from a padded cache view, against the float64 loop: head dims with and without a 16-lane
  // tail (D != Dv too), key counts below 4, not a multiple of 4 and past one direct block of
  // 256 keys, an additive mask with -inf entries.
  using M = MaskKind;
  const SdpaCase decode_cases[] = {
      {1, 16, 8, 1, 517, 128, 128},  // Qwen3-0.6B heads, G = 2
      {1, 32, 8, 1, 300, 128, 128, false, 0, 0, M::additive, {1, 32, 1, 300}},  // Llama, G = 4
      {2, 3, 1, 1, 259, 64, 64},                                                // G = 3
      {1, 8, 1, 1, 70, 64, 64, false, 0, 0, M::additive, {70}},                 // G = 8: 4 + 4 rows
      {1, 4, 4, 1, 33, 256, 256},                                               // G = 1, D = 256
      {1, 6, 2, 1, 257, 256, 256},                                              // G = 3, D = 256
      {1, 4, 2, 2, 45, 80, 80, true, 0, 0, M::additive, {1, 1, 2, 45}},  // 2 positions, 4 rows
      {1, 12, 4, 2, 263, 72, 80, true},                                  // 6 rows, D 72, Dv 80
      {1, 2, 1, 1, 3, 128, 128},                                         // 3 keys
      {1, 1, 1, 1, 1, 72, 72},                                           // 1 key
  };
  uint32_t seed = 500;
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    ScopedIsa scoped(isa);
    for (const SdpaCase& c : decode_cases)
      for (Dtype t : {bfloat16, float16, float32}) {
        Inputs in = make_inputs(c, t, seed += 4);
        const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
        fast::SdpaOptions o{.scale = scale, .causal = c.causal};
        if (c.mask == MaskKind::additive) o.mask = Array(in.m, c.mask_shape, t);
        const Array q(in.q, {c.B, c.H, c.L, c.D}, t);
        const Array k = padded_cache_view(in.k, c.B, c.Hkv, c.S, c.D, t);
        const Array v = padded_cache_view(in.v, c.B, c.Hkv, c.S, c.Dv, t);
        const double e = 4 * eps_of(t) + 2e-6;
        expect_close(values_of(fast::scaled_dot_product_attention(q, k, v, o)),
                     naive_sdpa(c, in, scale, t), e, 4 * e,
                     std::string(isa) + " " + case_name(c) + " " + std::string(dtype_name(t)));
      }
  }
}

TEST(FastSdpa, Errors) {
  auto sdpa = [](Shape q, Shape k, Shape v, fast::SdpaOptions o = {}) {
    fast::scaled_dot_product_attention(zeros(q), zeros(k), zeros(v), o);
  };
  const std::string op = "[scaled_dot_product_attention] ";
  expect_error<InvalidArgument>(
      [&] {
        sdpa({2, 2, 8}, {1, 2, 4, 8}, {1, 2, 4, 8});
      },
      op + "q, k and v must be 4-d");
  expect_error<InvalidArgument>(
      [&] {
        sdpa({1, 3, 2, 8}, {1, 2, 4, 8}, {1, 2, 4, 8});
      },
      op + "query heads H = 3 must be a multiple of key/value heads Hkv = 2");
  expect_error<InvalidArgument>(
      [&] {
        sdpa({1, 2, 2, 8}, {1, 2, 4, 4}, {1, 2, 4, 8});
      },
      op + "head dims differ: q [1, 2, 2, 8] has D = 8, k [1, 2, 4, 4] has D = 4");
  expect_error<InvalidArgument>(
      [&] {
        sdpa({1, 2, 2, 8}, {1, 2, 4, 8}, {1, 2, 5, 8});
      },
      op + "shapes do not match");
  expect_error<InvalidArgument>(
      [&] {
        sdpa({1, 2, 2, 8}, {1, 2, 4, 8}, {1, 2, 4, 8}, {.window = 4});
      },
      op + "a sliding window (4) needs causal = true");
  expect_error<InvalidArgument>(
      [&] {
        sdpa({1, 2, 2, 8}, {1, 2, 4, 8}, {1, 2, 4, 8}, {.mask = zeros({3, 4})});
      },
      op + "mask [3, 4] does not broadcast to [B, H, L, S] = [1, 2, 2, 4]");
  expect_error<InvalidArgument>(
      [&] {
        sdpa({1, 2, 2, 8}, {1, 2, 4, 8}, {1, 2, 4, 8}, {.mask = zeros({4}, int32)});
      },
      op + "mask must be boolean or floating point");
  expect_error<InvalidArgument>(
      [&] {
        fast::scaled_dot_product_attention(zeros({1, 1, 1, 4}), zeros({1, 1, 1, 4}, bfloat16),
                                           zeros({1, 1, 1, 4}));
      },
      op + "q, k and v must have one dtype, got float32, bfloat16 and float32");
}

}  // namespace
}  // namespace ingot::test
