// ScaledDotProductAttentionGrad (the fused attention backward) on the CPU against float64 naive
// loops: causal, GQA, sliding window, boolean and additive masks with fully masked rows, L != S,
// odd sizes; ScaledDotProductAttention::vjp through it (INGOT_SDPA_FUSED_BWD=1) against the
// composition (=0) and finite differences; which path the vjp takes.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>

#include "core/fast/fast.h"
#include "core/primitives/fast.h"
#include "core/sdpa_grad_ref.h"
#include "scoped_env.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Sets an environment variable for the scope of a test.

struct GradCase {
  int64_t B, H, Hkv, L, S, D, Dv;
  bool causal = false;
  int window = 0;
  int mask_kind = 0;  // 0 none, 1 additive, 2 boolean
  Shape mask_shape = {};
};

std::string name_of(const GradCase& c, Dtype t) {
  return fmt::format(
      "{} B{} H{} Hkv{} L{} S{} D{} Dv{}{}{}{}", dtype_name(t), c.B, c.H, c.Hkv, c.L, c.S, c.D,
      c.Dv, c.causal ? " causal" : "", c.window ? fmt::format(" window {}", c.window) : "",
      c.mask_kind ? fmt::format(" mask {} {}", c.mask_kind == 1 ? "additive" : "bool",
                                shape_str(c.mask_shape))
                  : "");
}

// Random inputs representable in t; out is the exact forward rounded to t. Masks get a fully
// masked first row.
SdpaGradProblem make_problem(const GradCase& c, Dtype t, uint32_t seed) {
  SdpaGradProblem p;
  p.B = c.B, p.H = c.H, p.Hkv = c.Hkv, p.L = c.L, p.S = c.S, p.D = c.D, p.Dv = c.Dv;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.D)));
  p.causal = c.causal, p.window = c.window, p.mask_kind = c.mask_kind, p.mask_shape = c.mask_shape;
  p.q = random_values(c.B * c.H * c.L * c.D, t, seed, -2, 2);
  p.k = random_values(c.B * c.Hkv * c.S * c.D, t, seed + 1, -2, 2);
  p.v = random_values(c.B * c.Hkv * c.S * c.Dv, t, seed + 2, -2, 2);
  p.d_out = random_values(c.B * c.H * c.L * c.Dv, t, seed + 3, -1, 1);
  if (c.mask_kind == 1) {
    p.mask = random_values(shape_size(c.mask_shape), t, seed + 4, -2, 2);
    for (size_t i = 3; i < p.mask.size(); i += 7) p.mask[i] = -kInf;
  } else if (c.mask_kind == 2) {
    p.mask = random_values(shape_size(c.mask_shape), bool_, seed + 4);
  }
  if (c.mask_kind != 0 && c.mask_shape.size() >= 2)
    for (int64_t j = 0; j < c.mask_shape.back(); ++j) p.mask[j] = c.mask_kind == 1 ? -kInf : 0;
  p.out = sdpa_forward_ref(p);
  for (double& x : p.out) x = round_to(x, t);
  return p;
}

// The primitive on `dev` for problem p in dtype t.
std::vector<Array> fused_grad(const SdpaGradProblem& p, Dtype t, Device dev = cpu_device) {
  std::vector<Array> in{to_device(Array(p.q, {p.B, p.H, p.L, p.D}, t), dev),
                        to_device(Array(p.k, {p.B, p.Hkv, p.S, p.D}, t), dev),
                        to_device(Array(p.v, {p.B, p.Hkv, p.S, p.Dv}, t), dev),
                        to_device(Array(p.out, {p.B, p.H, p.L, p.Dv}, t), dev),
                        to_device(Array(p.d_out, {p.B, p.H, p.L, p.Dv}, t), dev)};
  SdpaMask mk = SdpaMask::none;
  if (p.mask_kind == 1) {
    in.push_back(to_device(Array(p.mask, p.mask_shape, t), dev));
    mk = SdpaMask::additive;
  } else if (p.mask_kind == 2) {
    in.push_back(to_device(Array(p.mask, p.mask_shape, bool_), dev));
    mk = SdpaMask::boolean;
  }
  auto prim = std::make_shared<ScaledDotProductAttentionGrad>(
      default_stream(dev), static_cast<float>(p.scale), p.causal, p.window, mk);
  const Shape qs = in[0].shape(), ks = in[1].shape(), vs = in[2].shape();
  return Array::make_arrays({qs, ks, vs}, {t, t, t}, prim, std::move(in));
}

std::vector<GradCase> cases() {
  return {
      {1, 2, 2, 5, 5, 8, 8},
      {2, 4, 2, 7, 7, 16, 16, true},
      {1, 4, 1, 6, 13, 8, 8, true},  // L < S (a cache-like prefix), GQA 4
      {1, 2, 1, 9, 4, 8, 8, true},   // L > S: the first rows see no key
      {2, 2, 2, 11, 11, 8, 8, true, 3},
      {1, 2, 1, 5, 9, 7, 5, false, 0, 1, {5, 9}},  // odd D, Dv
      {2, 2, 2, 5, 6, 8, 8, false, 0, 2, {2, 1, 5, 6}},
      {1, 3, 3, 4, 20, 8, 8, false, 0, 2, {1, 1, 1, 20}},
      {1, 4, 2, 17, 17, 16, 16, true, 5, 2, {1, 1, 17, 17}},
  };
}

TEST(FastSdpaGrad, CpuPrimitiveMatchesNaive) {
  uint32_t seed = 1;
  for (const GradCase& c : cases())
    for (Dtype t : {float64, float32, bfloat16, float16}) {
      const SdpaGradProblem p = make_problem(c, t, seed += 7);
      const SdpaGradRef r = sdpa_grad_ref(p);
      const std::vector<Array> g = fused_grad(p, t);
      ASSERT_EQ(g.size(), 3u);
      EXPECT_EQ(g[0].dtype(), t);
      EXPECT_EQ(g[1].shape(), (Shape{c.B, c.Hkv, c.S, c.D}));
      // float64 loops, one rounding to t at the end (float16's subnormals round absolutely,
      // by up to 2^-25).
      const double u = t == float64 ? 1e-13 : 2 * eps_of(t);
      const double atol = t == float16 ? 1e-6 : 0;
      const std::string what = name_of(c, t);
      expect_sdpa_grads({values_of(g[0]), values_of(g[1]), values_of(g[2])}, r, u, 0, atol, what);
    }
}

TEST(FastSdpaGrad, FullyMaskedRowsGiveZeroGradients) {
  // Boolean mask: query row 0 sees nothing; key 2 is seen by no query.
  GradCase c{1, 2, 1, 3, 4, 8, 8, false, 0, 2, {3, 4}};
  SdpaGradProblem p = make_problem(c, float32, 3);
  p.mask = {0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 1};
  p.out = sdpa_forward_ref(p);
  const std::vector<Array> g = fused_grad(p, float32);
  const auto dq = values_of(g[0]), dk = values_of(g[1]), dv = values_of(g[2]);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t d = 0; d < 8; ++d) EXPECT_EQ(dq[(h * 3) * 8 + d], 0.0) << "dq row 0";
  for (int64_t d = 0; d < 8; ++d) {
    EXPECT_EQ(dk[2 * 8 + d], 0.0) << "dk key 2";
    EXPECT_EQ(dv[2 * 8 + d], 0.0) << "dv key 2";
  }
  double nz = 0;
  for (double x : dq) nz += std::abs(x);
  EXPECT_GT(nz, 0.0);
}

TEST(FastSdpaGrad, ToleranceCatchesAWrongScale) {
  // The check used for the CUDA kernels (bfloat16) must reject a 3% scale error.
  const GradCase c{1, 4, 2, 16, 16, 16, 16, true};
  const SdpaGradProblem p = make_problem(c, bfloat16, 11);
  SdpaGradProblem wrong = p;
  wrong.scale *= 1.03;
  const SdpaGradRef r = sdpa_grad_ref(p), rw = sdpa_grad_ref(wrong);
  const double u2 = 2 * eps_of(bfloat16);
  EXPECT_GT(sdpa_grad_worst(rw.dq, r.dq, r.dq_abs, r.dq_abs2, u2, 1e-5, 1e-6), 1.0);
  EXPECT_GT(sdpa_grad_worst(rw.dk, r.dk, r.dk_abs, r.dk_abs2, u2, 1e-5, 1e-6), 1.0);
  EXPECT_GT(sdpa_grad_worst(rw.dv, r.dv, r.dv_abs, r.dv_abs, u2, 1e-5, 1e-6), 1.0);
}

// vjp of fast::scaled_dot_product_attention for q, k, v.
std::vector<Array> sdpa_vjp(const SdpaGradProblem& p, Dtype t, uint32_t seed) {
  fast::SdpaOptions o{.scale = static_cast<float>(p.scale), .causal = p.causal, .window = p.window};
  if (p.mask_kind == 1) o.mask = Array(p.mask, p.mask_shape, t);
  if (p.mask_kind == 2) o.mask = Array(p.mask, p.mask_shape, bool_);
  auto fn = [&](const std::vector<Array>& in) {
    return std::vector<Array>{fast::scaled_dot_product_attention(in[0], in[1], in[2], o)};
  };
  const Array ct(random_values(p.B * p.H * p.L * p.Dv, t, seed, -1, 1), {p.B, p.H, p.L, p.Dv}, t);
  return vjp(fn,
             {Array(p.q, {p.B, p.H, p.L, p.D}, t), Array(p.k, {p.B, p.Hkv, p.S, p.D}, t),
              Array(p.v, {p.B, p.Hkv, p.S, p.Dv}, t)},
             {ct})
      .second;
}

TEST(FastSdpaGrad, VjpThroughPrimitiveMatchesComposition) {
  uint32_t seed = 100;
  for (const GradCase& c : cases())
    for (Dtype t : {float32, float64}) {
      const SdpaGradProblem p = make_problem(c, t, seed += 7);
      std::vector<Array> fused, comp;
      {
        ScopedEnv env("INGOT_SDPA_FUSED_BWD", "1");
        fused = sdpa_vjp(p, t, seed + 5);
        EXPECT_STREQ(fused[0].primitive().name(), "ScaledDotProductAttentionGrad");
      }
      {
        ScopedEnv env("INGOT_SDPA_FUSED_BWD", "0");
        comp = sdpa_vjp(p, t, seed + 5);
        EXPECT_STRNE(comp[0].primitive().name(), "ScaledDotProductAttentionGrad");
      }
      // Both in float32 (float64) math; relative to the largest gradient.
      const double tol = t == float64 ? 1e-12 : 2e-5;
      for (int i = 0; i < 3; ++i) {
        const auto f = values_of(fused[i]), w = values_of(comp[i]);
        double mx = 0;
        for (double x : w) mx = std::max(mx, std::abs(x));
        expect_close(f, w, tol, tol * mx, name_of(c, t) + " input " + std::to_string(i));
      }
    }
}

TEST(FastSdpaGrad, FusedVjpMatchesFiniteDifferences) {
  ScopedEnv env("INGOT_SDPA_FUSED_BWD", "1");
  const GradCase c{1, 2, 1, 3, 5, 4, 3, true, 0, 1, {3, 5}};
  SdpaGradProblem p = make_problem(c, float64, 5);
  p.mask = random_values(15, float64, 6, -1, 1);
  const Array m(p.mask, {3, 5}, float64);
  check_vjp(
      [&](std::vector<Array> a) {
        return fast::scaled_dot_product_attention(a[0], a[1], a[2],
                                                  {.scale = 0.7f, .causal = true, .mask = m});
      },
      {p.q, p.k, p.v}, {{1, 2, 3, 4}, {1, 1, 5, 4}, {1, 1, 5, 3}}, "fused sdpa additive mask");
  Array bm(std::vector<bool>{true, false, true, true, true}, {5});
  check_vjp(
      [&](std::vector<Array> a) {
        return fast::scaled_dot_product_attention(
            a[0], a[1], a[2], {.scale = 0.5f, .causal = true, .mask = bm, .window = 2});
      },
      {p.q, p.k, p.v}, {{1, 2, 3, 4}, {1, 1, 5, 4}, {1, 1, 5, 3}}, "fused sdpa window bool mask");
}

TEST(FastSdpaGrad, VjpPathSelection) {
  const Array q = zeros({1, 2, 3, 8}), k = zeros({1, 1, 4, 8}), v = zeros({1, 1, 4, 8});
  const Array ct = ones({1, 2, 3, 8});
  auto grads = [&](const fast::SdpaOptions& o, std::vector<int> argnums) {
    const Array y = fast::scaled_dot_product_attention(q, k, v, o);
    return y.primitive().vjp(y.inputs(), {ct}, argnums, {y});
  };
  auto fused = [](const Array& g) {
    return g.has_primitive() &&
           std::string(g.primitive().name()) == "ScaledDotProductAttentionGrad";
  };
  {
    // Default: the composition on the CPU (its fused eval is a reference loop).
    EXPECT_FALSE(fused(grads({.scale = 1.0f}, {0})[0]));
  }
  {
    ScopedEnv env("INGOT_SDPA_FUSED_BWD", "1");
    EXPECT_TRUE(fused(grads({.scale = 1.0f, .causal = true}, {0, 1, 2})[2]));
    EXPECT_FALSE(fused(grads({.scale = 1.0f, .softcap = 5.0f}, {0})[0]));  // softcap
    // An additive mask's gradient needs the composition; a boolean mask's is zero.
    const Array am = zeros({3, 4});
    EXPECT_FALSE(fused(grads({.scale = 1.0f, .mask = am}, {0, 3})[0]));
    EXPECT_TRUE(fused(grads({.scale = 1.0f, .mask = am}, {0})[0]));
    const Array bm = ones({3, 4}, bool_);
    const auto g = grads({.scale = 1.0f, .mask = bm}, {0, 3});
    EXPECT_TRUE(fused(g[0]));
    EXPECT_EQ(g[1].shape(), bm.shape());
    // The fused primitive has no gradient of its own: a clear error, not a wrong value.
    expect_error<Unsupported>(
        [&] {
          g[0].primitive().vjp(g[0].inputs(), {ones_like(g[0]), zeros_like(g[0]), zeros_like(g[0])},
                               {0}, g[0].outputs());
        },
        "[scaled_dot_product_attention] the fused backward has no gradient of its own");
  }
}

}  // namespace
}  // namespace ingot::test
