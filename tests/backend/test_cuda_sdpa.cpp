// CUDA scaled_dot_product_attention against the CPU kernel and the float64 reference
// composition: tensor-core (bf16/f16, D in {64, 80, 96, 128, 256}) and generic kernels, split-K
// decode, GQA, causal offsets, sliding window, softcap, masks with fully masked rows, strided,
// misaligned and broadcast views, zero sizes, a large prefill and the VJP.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/fast/fast.h"
#include "core/ingot.h"
#include "core/transforms/graph.h"
#include "cuda_test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kHalfAndFloat[] = {float32, bfloat16, float16};
constexpr double kInf = std::numeric_limits<double>::infinity();

Array host_normal(const Shape& shape, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (auto& x : v) x = nd(g);
  return Array(v, shape, t);
}

/// The tensor-core kernel rounds the probabilities to the input dtype before P.V (error up to
/// half an ulp times max |v|, about 2^-9 * 4 for bf16), and both sides round the output once.
void expect_sdpa_close(const Array& got, const Array& want, const std::string& what) {
  switch (want.dtype()) {
    case Dtype::float32:
      return expect_close(got, want, 2e-5, 1e-4, what);
    case Dtype::float64:
      return expect_close(got, want, 1e-12, 1e-10, what);
    case Dtype::bfloat16:
      return expect_close(got, want, 2e-2, 1.0 / 64, what);
    default:
      return expect_close(got, want, 3e-3, 1.0 / 256, what);
  }
}

struct Case {
  int64_t B, H, Hkv, L, S, D, Dv;
  bool causal = false;
  int window = 0;
  float softcap = 0;
};

std::string case_name(const Case& c, Dtype t, const std::string& extra = "") {
  return fmt::format("{} B{} H{} Hkv{} L{} S{} D{} Dv{}{}{}{}{}", dtype_name(t), c.B, c.H, c.Hkv,
                     c.L, c.S, c.D, c.Dv, c.causal ? " causal" : "",
                     c.window ? fmt::format(" window {}", c.window) : "",
                     c.softcap ? fmt::format(" softcap {}", c.softcap) : "", extra);
}

fast::SdpaOptions options(const Case& c, std::optional<Array> mask = std::nullopt) {
  return {.scale = 1.0f / std::sqrt(static_cast<float>(c.D)),
          .causal = c.causal,
          .mask = std::move(mask),
          .window = c.window,
          .softcap = c.softcap};
}

/// Runs the op on CPU arrays and on their CUDA copies (the mask too) and compares.
void check_inputs(const Array& q, const Array& k, const Array& v, const fast::SdpaOptions& o,
                  const std::string& what) {
  const Array want = fast::scaled_dot_product_attention(q, k, v, o);
  fast::SdpaOptions og = o;
  if (o.mask) og.mask = on_cuda(*o.mask);
  const Array got = fast::scaled_dot_product_attention(on_cuda(q), on_cuda(k), on_cuda(v), og);
  expect_sdpa_close(got, want, what);
}

void check_case(const Case& c, Dtype t, uint32_t seed, std::optional<Array> mask = std::nullopt,
                const std::string& extra = "") {
  const Array q = host_normal({c.B, c.H, c.L, c.D}, t, seed);
  const Array k = host_normal({c.B, c.Hkv, c.S, c.D}, t, seed + 1);
  const Array v = host_normal({c.B, c.Hkv, c.S, c.Dv}, t, seed + 2);
  check_inputs(q, k, v, options(c, std::move(mask)), case_name(c, t, extra));
}

// Additive mask of `shape` in dtype t: uniform in [-2, 2), every 7th entry -inf, and the first
// row (all keys of the first [.., l = 0] slice) -inf so that a row is fully masked.
Array additive_mask(const Shape& shape, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-2, 2);
  std::vector<double> m(static_cast<size_t>(shape_size(shape)));
  for (size_t i = 0; i < m.size(); ++i) m[i] = i % 7 == 3 ? -kInf : u(g);
  for (int64_t j = 0; j < shape.back() && shape.size() >= 2; ++j) m[j] = -kInf;
  return Array(m, shape, t);
}

// Boolean mask (true = keep, about 3 in 4), the first row all false when the shape has rows.
Array bool_mask(const Shape& shape, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<bool> m(static_cast<size_t>(shape_size(shape)));
  for (size_t i = 0; i < m.size(); ++i) m[i] = g() % 4 != 0;
  for (int64_t j = 0; j < shape.back() && shape.size() >= 2; ++j) m[j] = false;
  return Array(m, shape);
}

TEST(CudaSdpa, PrefillMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1;
  for (int64_t D : {64, 128, 256, 80, 96})
    for (Dtype t : kHalfAndFloat) {
      check_case({1, 2, 2, 70, 70, D, D, true}, t, seed += 3);    // L == S causal
      check_case({1, 8, 2, 33, 100, D, D, true}, t, seed += 3);   // chunk after a cache, GQA 4
      check_case({2, 4, 1, 20, 45, D, D}, t, seed += 3);          // not causal, GQA 4 (MQA)
      check_case({1, 4, 2, 130, 130, D, D, true}, t, seed += 3);  // several row and key tiles
    }
  for (int64_t D : {64, 256}) check_case({1, 4, 2, 40, 70, D, D, true}, float64, seed += 3);
}

TEST(CudaSdpa, DecodeSplitKMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 100;
  for (int64_t S : {1, 17, 1000, 4096})
    for (int64_t D : {64, 128})
      for (Dtype t : kHalfAndFloat) {
        check_case({1, 8, 2, 1, S, D, D}, t, seed += 3);
        check_case({2, 4, 1, 1, S, D, D, true}, t, seed += 3);
      }
  // A few rows of decode (speculative tokens) with causal offsets, and float64.
  for (Dtype t : kHalfAndFloat) check_case({1, 8, 2, 4, 1500, 128, 128, true}, t, seed += 3);
  check_case({1, 8, 2, 1, 3000, 256, 256, true}, bfloat16, seed += 3);
  check_case({1, 8, 2, 2, 2000, 64, 64, true}, float64, seed += 3);
}

TEST(CudaSdpa, DecodeKernelRowsMasksAndViewsMatchCpu) {
  INGOT_REQUIRE_CUDA();
  // The few-row decode kernel (G * L <= 8 rows per kv head): every row count, head dims of 8,
  // 16 and 32 lanes per key, a [B,1,1,S] keep-mask with a masked tail as the static KV cache
  // passes it (one split and many), causal rows with a window, and q/k/v views.
  uint32_t seed = 150;
  for (Dtype t : kHalfAndFloat) {
    const std::vector<int64_t> dims =
        t == float32 ? std::vector<int64_t>{32, 64, 128} : std::vector<int64_t>{64, 128, 256};
    for (int64_t D : dims) {
      check_case({2, 1, 1, 1, 300, D, D}, t, seed += 3);
      check_case({2, 2, 1, 1, 40, D, D}, t, seed += 3);
      check_case({1, 16, 2, 1, 5000, D, D}, t, seed += 3);          // G = 8
      check_case({2, 8, 2, 2, 777, D, D, true, 50}, t, seed += 3);  // G = 4, L = 2, window
      for (int64_t S : {64, 3000}) {
        std::vector<bool> keep(static_cast<size_t>(2 * S));
        for (int64_t j = 0; j < S; ++j) {
          keep[static_cast<size_t>(j)] = j < S / 3 && j != 5;          // row 0: short
          keep[static_cast<size_t>(S + j)] = j >= 7 && j < S - S / 4;  // row 1: left padding
        }
        check_case({2, 4, 2, 1, S, D, D}, t, seed += 3, Array(keep, {2, 1, 1, S}), " keep");
      }
    }
    // Views: q from a [B, L, H, D] projection, k/v prefixes of a longer cache, a misaligned q.
    const int64_t D = 128, S = 900;
    const Array qb = host_normal({2, 1, 8, D + 8}, t, seed += 3);
    const Array kb = host_normal({2, 2, S + 100, D}, t, seed + 1);
    const Array vb = host_normal({2, 2, S + 100, D}, t, seed + 2);
    const auto qv = [&](const Array& x) {
      return swapaxes(slice(x, {0, 0, 0, 1}, {2, 1, 8, D + 1}), 1, 2);
    };
    const auto kv = [&](const Array& x) { return slice(x, {0, 0, 0, 0}, {2, 2, S, D}); };
    const fast::SdpaOptions o{.scale = 0.1f, .causal = true};
    expect_sdpa_close(
        fast::scaled_dot_product_attention(qv(on_cuda(qb)), kv(on_cuda(kb)), kv(on_cuda(vb)), o),
        fast::scaled_dot_product_attention(qv(qb), kv(kb), kv(vb), o),
        fmt::format("{} decode views", dtype_name(t)));
  }
}

TEST(CudaSdpa, GenericHeadDimsMatchCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 200;
  for (Dtype t : kHalfAndFloat) {
    check_case({2, 2, 1, 6, 9, 7, 5, true}, t, seed += 3);
    check_case({1, 4, 2, 19, 300, 32, 48, true, 100, 30.0f}, t, seed += 3);
    check_case({1, 3, 1, 5, 700, 192, 128, true}, t, seed += 3);  // MLA-like D != Dv
    check_case({1, 2, 2, 40, 40, 112, 112, true}, t, seed += 3);
  }
  check_case({1, 2, 1, 7, 50, 13, 5, true}, float64, seed += 3);
}

TEST(CudaSdpa, WindowAndSoftcapMatchCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 300;
  for (Dtype t : kHalfAndFloat) {
    check_case({1, 4, 2, 100, 100, 64, 64, true, 16}, t, seed += 3);
    check_case({1, 4, 2, 37, 200, 128, 128, true, 16}, t, seed += 3);
    check_case({1, 4, 4, 50, 80, 128, 128, true, 0, 50.0f}, t, seed += 3);
    check_case({1, 8, 2, 1, 2000, 256, 256, true, 16, 50.0f}, t, seed += 3);
    check_case({1, 2, 2, 70, 300, 256, 256, true, 100, 50.0f}, t, seed += 3);
  }
}

TEST(CudaSdpa, CausalWithMoreQueriesThanKeys) {
  INGOT_REQUIRE_CUDA();
  // Queries before the first key see nothing and give zeros, as on the CPU.
  for (Dtype t : kHalfAndFloat) {
    check_case({1, 2, 2, 9, 4, 64, 64, true}, t, 400);
    check_case({1, 2, 2, 9, 4, 8, 8, true}, t, 401);
  }
}

TEST(CudaSdpa, MasksMatchCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 500;
  for (Dtype t : kHalfAndFloat)
    for (int64_t D : {64, 128}) {
      const uint32_t s = seed += 20;
      const Case c{2, 4, 2, 40, 70, D, D};
      check_case(c, t, s, additive_mask({2, 1, 40, 70}, float32, s), " add [B,1,L,S]");
      check_case(c, t, s + 1, additive_mask({40, 70}, t, s + 1), " add [L,S] in-dtype");
      check_case(c, t, s + 2, bool_mask({2, 4, 40, 70}, s + 2), " bool [B,H,L,S]");
      check_case(c, t, s + 3, bool_mask({70}, s + 3), " bool [S]");
      const Case cc{2, 4, 2, 40, 70, D, D, true, 0, 20.0f};
      check_case(cc, t, s + 4, bool_mask({2, 1, 1, 70}, s + 4), " bool [B,1,1,S]");
      check_case(cc, t, s + 5, additive_mask({1, 4, 40, 70}, float32, s + 5), " add [1,H,L,S]");
      const Case dec{1, 8, 2, 1, 1000, D, D};
      check_case(dec, t, s + 6, bool_mask({1, 8, 1, 1000}, s + 6), " decode bool");
      check_case(dec, t, s + 7, additive_mask({1000}, float32, s + 7), " decode add [S]");
    }
  const Case c64{1, 2, 1, 5, 33, 16, 16};
  check_case(c64, float64, 990, additive_mask({5, 33}, float64, 991), " add");
  check_case(c64, float64, 992, bool_mask({1, 2, 5, 33}, 993), " bool");
}

// Many (batch, kv head) problems whose keys fit one tile (classification batches) run on the
// persistent two-stage kernel (at least 8 CTAs per SM of the H200's 132: these shapes give
// 1,200 to 2,400): causal, masks, softcap and window, a chunk after cached keys, row counts
// that are not multiples of 16.
TEST(CudaSdpa, ShortRowsPersistentKernelMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1700;
  for (Dtype t : {bfloat16, float16}) {
    check_case({300, 4, 2, 48, 48, 128, 128, true}, t, seed += 3);
    check_case({600, 2, 1, 64, 64, 64, 64, true}, t, seed += 3);
  }
  const Case padded{300, 4, 2, 40, 40, 128, 128};
  seed += 3;
  check_case(padded, bfloat16, seed, bool_mask({300, 1, 40, 40}, seed + 1), " bool [B,1,L,S]");
  check_case({300, 4, 2, 48, 48, 128, 128, true, 16, 30.0f}, bfloat16, seed += 3);
  check_case({1100, 2, 2, 16, 60, 64, 64, true}, float16, seed += 3);
  check_case({1200, 3, 1, 7, 7, 64, 64, true}, bfloat16, seed += 3);
}

/// One operand laid out as a view of a differently shaped base; `base` is built on the CPU and
/// the same view is taken of its CUDA copy.
struct ViewCase {
  const char* what;
  Shape base;
  std::function<Array(const Array&)> view;
};

TEST(CudaSdpa, StridedAndBroadcastViewsMatchCpu) {
  INGOT_REQUIRE_CUDA();
  const int64_t B = 3, H = 4, Hkv = 2, L = 20, S = 50;
  for (int64_t D : {64, 128, 40})
    for (Dtype t : kHalfAndFloat) {
      const std::vector<ViewCase> qviews = {
          {"q [B,L,H,D]^T", {B, L, H, D}, [](const Array& x) { return swapaxes(x, 1, 2); }},
          {"q D-strided [B,H,D,L]^T",
           {B, H, D, L},
           [](const Array& x) { return swapaxes(x, 2, 3); }},
          {"q misaligned slice",
           {B, H, L, D + 8},
           [=](const Array& x) {
             return slice(x, {0, 0, 0, 1}, {B, H, L, D + 1});
           }},
      };
      const std::vector<ViewCase> kvviews = {
          {"kv [B,S,Hkv,D]^T", {B, S, Hkv, D}, [](const Array& x) { return swapaxes(x, 1, 2); }},
          {"kv batch-broadcast",
           {1, Hkv, S, D},
           [=](const Array& x) {
             return broadcast_to(x, {B, Hkv, S, D});
           }},
          {"kv cache prefix", {B, Hkv, S + 30, D}, [=](const Array& x) {
             return slice(x, {0, 0, 0, 0}, {B, Hkv, S, D});
           }}};
      uint32_t seed = 600;
      for (const ViewCase& qv : qviews)
        for (const ViewCase& kv : kvviews) {
          const Array qb = host_normal(qv.base, t, seed += 3);
          const Array kb = host_normal(kv.base, t, seed + 1);
          const Array vb = host_normal(kv.base, t, seed + 2);
          const fast::SdpaOptions o{.scale = 0.125f, .causal = true};
          const Array want =
              fast::scaled_dot_product_attention(qv.view(qb), kv.view(kb), kv.view(vb), o);
          const Array got = fast::scaled_dot_product_attention(
              qv.view(on_cuda(qb)), kv.view(on_cuda(kb)), kv.view(on_cuda(vb)), o);
          expect_sdpa_close(got, want,
                            fmt::format("{} D{} {} / {}", dtype_name(t), D, qv.what, kv.what));
        }
    }
}

TEST(CudaSdpa, ZeroSizes) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16}) {
    const fast::SdpaOptions o{.scale = 0.125f, .causal = true};
    auto run = [&](Shape qs, Shape ks, const std::string& what) {
      const Array q = host_normal(qs, t, 1), k = host_normal(ks, t, 2), v = host_normal(ks, t, 3);
      const Array want = fast::scaled_dot_product_attention(q, k, v, o);
      const Array got = fast::scaled_dot_product_attention(on_cuda(q), on_cuda(k), on_cuda(v), o);
      expect_close(got, want, 0, 0, std::string(dtype_name(t)) + " " + what);
    };
    run({2, 4, 0, 64}, {2, 2, 10, 64}, "L = 0");
    run({2, 4, 5, 64}, {2, 2, 0, 64}, "S = 0 (zeros)");
    run({0, 4, 5, 64}, {0, 2, 7, 64}, "B = 0");
    run({1, 2, 0, 64}, {1, 1, 0, 64}, "L = S = 0");
  }
}

TEST(CudaSdpa, LargePrefillMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  check_case({2, 16, 16, 1024, 1024, 128, 128, true}, bfloat16, 700);
}

// float32 (and float64, bf16) on CUDA against the reference composition run in float64 on the
// CPU from the same (rounded) inputs.
TEST(CudaSdpa, MatchesFloat64Reference) {
  INGOT_REQUIRE_CUDA();
  struct RefCase {
    Case c;
    int mask;  // 0 none, 1 additive [B,1,L,S], 2 boolean [B,H,L,S]
  };
  const RefCase cases[] = {
      {{1, 8, 2, 33, 100, 128, 128, true}, 0},
      {{1, 8, 2, 1, 1000, 64, 64}, 0},
      {{1, 4, 2, 37, 200, 64, 64, true, 16, 50.0f}, 0},
      {{2, 4, 2, 40, 70, 128, 128}, 1},
      {{2, 4, 2, 40, 70, 80, 80, true}, 2},
      {{1, 2, 1, 7, 300, 32, 48, true}, 0},
  };
  uint32_t seed = 800;
  for (const RefCase& rc : cases)
    for (Dtype t : {float32, bfloat16, float64}) {
      const Case& c = rc.c;
      const Array q = host_normal({c.B, c.H, c.L, c.D}, t, seed += 3);
      const Array k = host_normal({c.B, c.Hkv, c.S, c.D}, t, seed + 1);
      const Array v = host_normal({c.B, c.Hkv, c.S, c.Dv}, t, seed + 2);
      std::optional<Array> mask;
      if (rc.mask == 1) mask = additive_mask({c.B, 1, c.L, c.S}, float32, seed);
      if (rc.mask == 2) mask = bool_mask({c.B, c.H, c.L, c.S}, seed);
      fast::SdpaOptions o = options(c, mask);
      const Array want = fast::ref::scaled_dot_product_attention(
          astype(q, float64), astype(k, float64), astype(v, float64), o);
      if (mask) o.mask = on_cuda(*mask);
      const Array got = fast::scaled_dot_product_attention(on_cuda(q), on_cuda(k), on_cuda(v), o);
      const double atol = t == float64 ? 1e-12 : t == float32 ? 1e-5 : 1.5e-2;
      const double rtol = t == float64 ? 1e-10 : t == float32 ? 1e-5 : 1.0 / 128;
      const double r = worst_ratio(got.to_vector<double>(), want.to_vector<double>(), atol, rtol);
      EXPECT_LE(r, 1.0) << case_name(c, t, rc.mask ? " mask" : "") << " vs float64 reference";
    }
}

TEST(CudaSdpa, VjpMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  // The VJP is built from ops in core (recomputed probabilities), so this exercises the
  // forward kernel plus the CUDA matmul/softmax/where the backward uses.
  for (Dtype t : {float32, float64}) {
    const Array q = host_normal({1, 4, 6, 16}, t, 1);
    const Array k = host_normal({1, 2, 9, 16}, t, 2);
    const Array v = host_normal({1, 2, 9, 16}, t, 3);
    const Array ct = host_normal({1, 4, 6, 16}, t, 4);
    auto fn = [](const std::vector<Array>& in) {
      return std::vector<Array>{fast::scaled_dot_product_attention(
          in[0], in[1], in[2], {.scale = 0.25f, .causal = true, .window = 4, .softcap = 5.0f})};
    };
    const auto want = vjp(fn, {q, k, v}, {ct});
    const auto got = vjp(fn, {on_cuda(q), on_cuda(k), on_cuda(v)}, {on_cuda(ct)});
    const double tol = t == float64 ? 1e-11 : 1e-4;
    const std::string what = std::string(dtype_name(t)) + " sdpa vjp";
    ASSERT_EQ(got.second.size(), 3u);
    expect_close(got.first[0], want.first[0], tol, tol, what + " value");
    expect_close(got.second[0], want.second[0], tol, tol, what + " d/dq");
    expect_close(got.second[1], want.second[1], tol, tol, what + " d/dk");
    expect_close(got.second[2], want.second[2], tol, tol, what + " d/dv");
  }
}

/// Expects got (CUDA) to have NaN exactly where want (CPU) has it and to be within 2e-2
/// elsewhere; returns the number of NaNs (-1 after a fatal mismatch).
int expect_same_nans(const Array& got, const Array& want, const std::string& what) {
  const auto w = astype(want, float32).to_vector<float>();
  const auto g = astype(got, float32).to_vector<float>();
  EXPECT_EQ(g.size(), w.size()) << what;
  if (g.size() != w.size()) return -1;
  int nans = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_EQ(std::isnan(g[i]), std::isnan(w[i])) << what << " at " << i;
    if (std::isnan(g[i]) != std::isnan(w[i])) return -1;
    nans += std::isnan(w[i]) ? 1 : 0;
    if (!std::isnan(w[i])) {
      EXPECT_NEAR(g[i], w[i], 2e-2) << what << " at " << i;
    }
  }
  return nans;
}

TEST(CudaSdpa, NanInputsGiveNanRowsWithoutHanging) {
  INGOT_REQUIRE_CUDA();
  // A NaN in some keys' scores once deadlocked the generic kernel (lanes disagreed on the row
  // maximum and only some of them reached a warp shuffle). Rows that see a NaN key or value are
  // NaN on both devices; the others are finite and equal.
  for (Dtype t : {float32, bfloat16}) {
    for (int d : {16, 64, 128}) {  // generic, mma for bf16 (5 rows), decode (1 row)
      const int64_t L = d == 128 ? 1 : 5;
      Array q = host_normal({2, 4, L, d}, t, 11);
      Array k = host_normal({2, 2, 5, d}, t, 12);
      Array v = host_normal({2, 2, 5, d}, t, 13);
      std::vector<float> kv = astype(k, float32).to_vector<float>();
      kv[static_cast<size_t>(3 * d + 1)] = NAN;  // batch 0, head 0, key 3
      k = astype(Array(kv, k.shape()), t);
      const fast::SdpaOptions o{.scale = 0.5f, .causal = true};
      const Array want = fast::scaled_dot_product_attention(q, k, v, o, cpu_device);
      const Array got = fast::scaled_dot_product_attention(on_cuda(q), on_cuda(k), on_cuda(v), o);
      const int nans =
          expect_same_nans(got, want, std::string(dtype_name(t)) + " D " + std::to_string(d));
      ASSERT_GE(nans, 0);
      EXPECT_GT(nans, 0);
    }
  }
}

TEST(CudaSdpa, NanQueryGivesANanRow) {
  INGOT_REQUIRE_CUDA();
  // A NaN in a query row makes every score of that row NaN; torch and the CPU give a NaN output
  // row (a maximum that skips NaN must not make the row look fully masked and give zeros).
  for (Dtype t : {float32, bfloat16}) {
    for (int d : {16, 64, 128}) {
      for (int64_t L : {int64_t{1}, int64_t{5}, int64_t{70}}) {  // decode, mma/generic, tiles
        Array q = host_normal({2, 4, L, d}, t, 21);
        Array k = host_normal({2, 2, 80, d}, t, 22);
        Array v = host_normal({2, 2, 80, d}, t, 23);
        std::vector<float> qv = astype(q, float32).to_vector<float>();
        qv[static_cast<size_t>((1 * L + L - 1) * d + 2)] = NAN;  // batch 0, head 1, last row
        q = astype(Array(qv, q.shape()), t);
        const fast::SdpaOptions o{.scale = 0.25f, .causal = true};
        const Array want = fast::scaled_dot_product_attention(q, k, v, o, cpu_device);
        const Array got = fast::scaled_dot_product_attention(on_cuda(q), on_cuda(k), on_cuda(v), o);
        const std::string what =
            std::string(dtype_name(t)) + " D " + std::to_string(d) + " L " + std::to_string(L);
        const int nans = expect_same_nans(got, want, what);
        ASSERT_GE(nans, 0);
        EXPECT_EQ(nans, d) << what;  // exactly that row
      }
    }
  }
}

// ---- decode attention on the cluster kernel (by default problems with enough (batch, kv
// head) pairs or at most 2048 keys take it: tests/backend/CMakeLists.txt runs this binary again
// with INGOT_CUDA_DECODE_KERNEL=1 (every decode problem on it) and =0 (none), and the decode tests
// once more with clusters of one CTA, INGOT_CUDA_DECODE_CLUSTER=1) ----
//
// With the H200's 132 SMs the cluster plan gives: S = 1 one CTA per (batch, kv head); S = 37
// clusters of 2 or 3 CTAs with spans that are not multiples of the lane groups; S = 384 (the
// static cache of the Llama/Qwen3 decode benchmarks) clusters of 8, one stage; S = 3000 clusters
// of 8 whose spans run in 3 to 12 stages; many (batch, kv head) pairs one CTA each (no cluster).

const Dtype kHalves[] = {bfloat16, float16};

// Keep-mask [B, 1, 1, S] as the static KV cache passes it: batch row i has a left padding span
// [2 + 3i, 9 + 5i) and is valid up to its own length (S - 1 - 7i).
Array padded_keep(int64_t B, int64_t S) {
  std::vector<bool> keep(static_cast<size_t>(B * S));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < S; ++j)
      keep[static_cast<size_t>(b * S + j)] =
          !(j >= 2 + 3 * b && j < 9 + 5 * b) && j <= std::max<int64_t>(0, S - 1 - 7 * b);
  return Array(keep, {B, 1, 1, S});
}

TEST(CudaSdpa, DecodeClusterRowsAndHeadDimsMatchCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 2000;
  for (Dtype t : kHalves)
    for (int64_t D : {64, 128, 256})
      for (int64_t G : {1, 2, 4, 8}) {
        check_case({1, 2 * G, 2, 1, 1, D, D}, t, seed += 3);     // one key
        check_case({2, 2 * G, 2, 1, 37, D, D}, t, seed += 3);    // short, uneven spans
        check_case({1, 8 * G, 8, 1, 3000, D, D}, t, seed += 3);  // several stages
        const Case c{3, 2 * G, 2, 1, 384, D, D};                 // batch 3, static cache
        check_case(c, t, seed += 3, padded_keep(3, 384), " padded keep");
      }
}

TEST(CudaSdpa, DecodeClusterRowsFromPositionsMatchCpu) {
  INGOT_REQUIRE_CUDA();
  // G * L rows with L > 1 (speculative tokens): causal rows at different positions, with a
  // window (the plan skips the keys before the first row's window) and softcap, and masks that
  // differ between the rows.
  uint32_t seed = 2500;
  for (Dtype t : kHalves) {
    check_case({1, 8, 2, 2, 1000, 128, 128, true, 50, 30.0f}, t, seed += 3);  // G 4, L 2
    check_case({2, 4, 4, 8, 700, 64, 64, true, 200}, t, seed += 3);           // G 1, L 8
    check_case({1, 16, 8, 3, 390, 256, 256, true, 0, 20.0f}, t, seed += 3);   // 6 rows of 8
    check_case({2, 4, 2, 1, 2000, 64, 64, true, 16}, t, seed += 3);           // tiny window
    const Case c{2, 8, 2, 2, 500, 64, 64};
    const uint32_t m = seed += 10;
    check_case(c, t, m, additive_mask({2, 8, 2, 500}, float32, m), " add [B,H,L,S]");
    check_case(c, t, m + 3, bool_mask({2, 1, 2, 500}, m + 3), " bool [B,1,L,S]");
    check_case(c, t, m + 6, additive_mask({500}, t, m + 6), " add [S] in-dtype");
  }
}

TEST(CudaSdpa, DecodeClusterFallbacksMatchCpu) {
  INGOT_REQUIRE_CUDA();
  // More (batch, kv head) pairs than two per SM: one CTA each, no cluster, its span in stages;
  // and a fully masked batch row (zeros, as on the CPU).
  uint32_t seed = 2700;
  for (Dtype t : kHalves) {
    check_case({4, 160, 80, 1, 500, 64, 64}, t, seed += 3);
    check_case({3, 96, 96, 1, 300, 128, 128, true}, t, seed += 3);
    std::vector<bool> keep(2 * 384, true);
    for (size_t j = 0; j < 384; ++j) keep[j] = false;  // batch row 0 sees nothing
    check_case({2, 8, 2, 1, 384, 64, 64}, t, seed += 3, Array(keep, {2, 1, 1, 384}), " row 0 off");
  }
}

TEST(CudaSdpa, DecodeClusterNanKeyGivesNanRows) {
  INGOT_REQUIRE_CUDA();
  // A NaN key in one (batch, kv head) of a clustered problem: its rows are NaN on both devices
  // (through the cluster's combine), every other row finite and equal.
  for (Dtype t : kHalves) {
    const int64_t D = 64, S = 384;
    Array q = host_normal({2, 8, 1, D}, t, 21);
    Array k = host_normal({2, 2, S, D}, t, 22);
    Array v = host_normal({2, 2, S, D}, t, 23);
    std::vector<float> kv = astype(k, float32).to_vector<float>();
    kv[static_cast<size_t>(300 * D + 5)] = NAN;  // batch 0, kv head 0, key 300
    k = astype(Array(kv, k.shape()), t);
    const fast::SdpaOptions o{.scale = 0.125f};
    const auto w = astype(fast::scaled_dot_product_attention(q, k, v, o, cpu_device), float32)
                       .to_vector<float>();
    const auto g =
        astype(fast::scaled_dot_product_attention(on_cuda(q), on_cuda(k), on_cuda(v), o), float32)
            .to_vector<float>();
    ASSERT_EQ(g.size(), w.size());
    int nans = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_EQ(std::isnan(g[i]), std::isnan(w[i])) << dtype_name(t) << " at " << i;
      nans += std::isnan(w[i]) ? 1 : 0;
      if (!std::isnan(w[i])) {
        EXPECT_NEAR(g[i], w[i], 2e-2) << dtype_name(t) << " at " << i;
      }
    }
    EXPECT_EQ(nans, 4 * D);  // the 4 query heads of (batch 0, kv head 0)
  }
}

TEST(CudaSdpa, DecodeClusterReplaysInADeviceGraph) {
  INGOT_REQUIRE_CUDA();
  // A decode attention recorded into a device graph (inputs written between replays, as the
  // static decoder does) gives the CPU's values at every replay. The first call of the kernel
  // happens inside the capture.
  const int64_t B = 2, H = 8, Hkv = 2, S = 384, D = 128;
  Array q = on_cuda(zeros({B, H, 1, D}, float32, cpu_device));
  Array k = on_cuda(zeros({B, Hkv, S, D}, float32, cpu_device));
  Array v = on_cuda(zeros({B, Hkv, S, D}, float32, cpu_device));
  Array keep = on_cuda(Array(std::vector<bool>(B * S, true), {B, 1, 1, S}));
  eval({q, k, v, keep});
  const fast::SdpaOptions o{.scale = 0.09f, .mask = keep};
  DeviceGraph g = DeviceGraph::capture(kCuda, [&] {
    return std::vector<Array>{fast::scaled_dot_product_attention(
        astype(q, bfloat16), astype(k, bfloat16), astype(v, bfloat16), o)};
  });
  for (int round = 0; round < 3; ++round) {
    const Array qh = host_normal({B, H, 1, D}, float32, 40 + 3 * round);
    const Array kh = host_normal({B, Hkv, S, D}, float32, 41 + 3 * round);
    const Array vh = host_normal({B, Hkv, S, D}, float32, 42 + 3 * round);
    const auto qv = qh.to_vector<float>(), kv = kh.to_vector<float>(), vv = vh.to_vector<float>();
    write_from_host(q, qv.data(), qv.size() * sizeof(float));
    write_from_host(k, kv.data(), kv.size() * sizeof(float));
    write_from_host(v, vv.data(), vv.size() * sizeof(float));
    // The keys each batch row sees shrink with the round (the mask is an input too).
    std::vector<uint8_t> keep_h(static_cast<size_t>(B * S));
    std::vector<bool> keep_b(static_cast<size_t>(B * S));
    for (int64_t i = 0; i < B * S; ++i) {
      const bool on = i % S < S - 50 * round - 7 * (i / S);
      keep_h[static_cast<size_t>(i)] = on ? 1 : 0;
      keep_b[static_cast<size_t>(i)] = on;
    }
    write_from_host(keep, keep_h.data(), keep_h.size());
    g.replay();
    const fast::SdpaOptions oc{.scale = 0.09f, .mask = Array(keep_b, {B, 1, 1, S})};
    const Array want = fast::scaled_dot_product_attention(
        astype(qh, bfloat16), astype(kh, bfloat16), astype(vh, bfloat16), oc);
    expect_sdpa_close(g.outputs()[0], want, fmt::format("graph replay {}", round));
  }
}

// ---- fast::rope_kv_attention: the new token's q/k norms, rotary, cache writes and attention in
// one kernel (the cluster decode kernel with a prologue) where the cluster plan takes the
// attention, else rope_kv_update's kernel and the attention's ----

struct RopeKvAttentionCase {
  int64_t B, H, Hkv, D, C, column;
  bool norm, unit_offset, weight_f32, freqs;
  int mask;  // 0 boolean padded keep [B, 1, 1, C], 1 additive [B, 1, 1, C], 2 all-keep [C]
};

TEST(CudaSdpa, DecodeRopeKvAttentionEqualsRopeKvUpdateThenAttention) {
  INGOT_REQUIRE_CUDA();
  const RopeKvAttentionCase cases[] = {
      {1, 16, 8, 128, 384, 300, true, false, false, false, 0},  // Qwen3-0.6B shapes
      {2, 32, 8, 64, 384, 37, false, false, true, true, 0},     // Llama-3.2-1B: no norms
      // Gemma3-1B (D 256, one kv head): 8 CTAs of 75 keys in stages of 32, the new column in
      // the third stage of the fourth CTA (its slot is filled after the prologue, in the loop).
      {1, 4, 1, 256, 600, 295, true, true, true, false, 2},
      {3, 8, 1, 128, 1000, 999, true, false, false, false, 1},    // G 8, the last column
      {2, 2, 2, 64, 129, 0, true, false, false, false, 0},        // G 1, the first column
      {1, 16, 8, 128, 3000, 2500, true, false, false, false, 2},  // long: split kernel
  };
  uint32_t seed = 4000;
  for (const RopeKvAttentionCase& c : cases)
    for (Dtype t : kHalves) {
      const std::string what = fmt::format("{} B{} H{} Hkv{} D{} C{} column {}", dtype_name(t), c.B,
                                           c.H, c.Hkv, c.D, c.C, c.column);
      const int64_t f = (c.H + 2 * c.Hkv) * c.D;
      const Array qkv = host_normal({c.B, 1, f}, t, seed += 7);
      const Array keys = host_normal({c.B, c.Hkv, c.C, c.D}, t, seed + 1);
      const Array values = host_normal({c.B, c.Hkv, c.C, c.D}, t, seed + 2);
      std::optional<Array> qw, kw;
      if (c.norm) {
        qw = astype(host_normal({c.D}, float32, seed + 3) * 0.3f + 1.0f, t);
        kw = astype(host_normal({c.D}, float32, seed + 4) * 0.3f + 1.0f, t);
      }
      Array mask = c.mask == 0   ? padded_keep(c.B, c.C)
                   : c.mask == 1 ? additive_mask({c.B, 1, 1, c.C}, float32, seed + 5)
                                 : Array(std::vector<bool>(static_cast<size_t>(c.C), true), {c.C});
      fast::RopeKvOptions o{.n_heads = static_cast<int>(c.H),
                            .n_kv_heads = static_cast<int>(c.Hkv)};
      o.norm = {.eps = 1e-6f, .add_unit_offset = c.unit_offset, .weight_in_float32 = c.weight_f32};
      o.rope = {.base = 1000000.0f};
      std::vector<int32_t> pos;
      for (int64_t i = 0; i < c.B; ++i) pos.push_back(static_cast<int32_t>(c.column + 3 * i));
      o.rope.offsets = Array(pos, {c.B}, int32);
      if (c.freqs) {
        std::vector<float> fr;
        for (int64_t i = 0; i < c.D / 2; ++i) fr.push_back(1.0f / static_cast<float>(1 + i));
        o.rope.freqs = Array(fr, {c.D / 2});
      }
      const Array column({static_cast<int32_t>(c.column)}, {1}, int32);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
      auto dev = [](const std::optional<Array>& a) {
        return a ? std::optional<Array>(on_cuda(*a)) : std::nullopt;
      };
      fast::RopeKvOptions og = o;
      og.rope.offsets = dev(o.rope.offsets);
      og.rope.freqs = dev(o.rope.freqs);
      // Fresh device copies of the buffers for each run (each run writes its own).
      auto run = [&](bool fused) {
        const auto f = fused ? fast::rope_kv_attention : fast::ref::rope_kv_attention;
        return f(on_cuda(qkv), dev(qw), dev(kw), on_cuda(keys), on_cuda(values), on_cuda(column),
                 on_cuda(mask), og, scale, {});
      };
      const std::vector<Array> got = run(true), composed = run(false);
      const std::vector<Array> cpu =
          fast::rope_kv_attention(qkv, qw, kw, keys, values, column, mask, o, scale);
      // The one kernel computes q, the new key and the attention as the two kernels do.
      expect_close(got[0], composed[0], 0, 0, what + " o against the two kernels");
      expect_close(got[1], composed[1], 0, 0, what + " keys against the two kernels");
      expect_close(got[2], composed[2], 0, 0, what + " values against the two kernels");
      expect_sdpa_close(got[0], cpu[0], what + " o against the CPU");
      expect_close(got[1], cpu[1], 4 * dtype_rtol(t), 4 * dtype_rtol(t), what + " keys vs CPU");
      expect_close(got[2], cpu[2], 0, 0, what + " values against the CPU");
    }
}

TEST(CudaSdpa, DecodeRopeKvAttentionUpdatesTheBuffersInPlace) {
  INGOT_REQUIRE_CUDA();
  // Keys and values held only by the call are donated to its outputs (what a recorded decode
  // graph relies on), on the one kernel's path (Qwen3 shapes) and on the two kernels' (long).
  for (int64_t C : {384, 3000}) {
    Array keys = on_cuda(host_normal({1, 8, C, 128}, bfloat16, 3));
    Array values = on_cuda(host_normal({1, 8, C, 128}, bfloat16, 4));
    eval({keys, values});
    const void* kp = keys.raw_ptr();
    const void* vp = values.raw_ptr();
    const Array qkv = on_cuda(host_normal({1, 1, 32 * 128}, bfloat16, 5));
    const Array mask = on_cuda(Array(std::vector<bool>(static_cast<size_t>(C), true), {C}));
    std::vector<Array> out = fast::rope_kv_attention(
        qkv, std::nullopt, std::nullopt, std::move(keys), std::move(values),
        on_cuda(Array({7}, int32)), mask, {.n_heads = 16, .n_kv_heads = 8}, 0.1f);
    keys = Array();
    values = Array();
    eval(out);
    EXPECT_EQ(out[1].raw_ptr(), kp) << "C " << C << ": the keys buffer was not reused";
    EXPECT_EQ(out[2].raw_ptr(), vp) << "C " << C << ": the values buffer was not reused";
  }
}

TEST(CudaSdpa, DecodeRopeKvAttentionOutOfRangeColumnRaises) {
  INGOT_REQUIRE_CUDA();
  const Array qkv = on_cuda(host_normal({1, 1, 6 * 128}, bfloat16, 1));
  const Array kv = on_cuda(host_normal({1, 2, 64, 128}, bfloat16, 2));
  const Array mask = on_cuda(Array(std::vector<bool>(64, true), {64}));
  const fast::RopeKvOptions o{.n_heads = 2, .n_kv_heads = 2};
  const std::vector<Array> out = fast::rope_kv_attention(
      qkv, std::nullopt, std::nullopt, kv, kv, on_cuda(Array({64}, int32)), mask, o, 0.1f);
  try {
    out[0].to_vector<double>();
    ADD_FAILURE() << "no error for column 64 of 64";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()),
              "[put_along_axis] index 64 is out of range for axis 2 of size 64");
  }
  const std::vector<Array> ok = fast::rope_kv_attention(qkv, std::nullopt, std::nullopt, kv, kv,
                                                        on_cuda(Array({63}, int32)), mask, o, 0.1f);
  EXPECT_EQ(ok[0].to_vector<double>().size(), 256u);
}

}  // namespace
