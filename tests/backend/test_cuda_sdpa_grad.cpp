// CUDA ScaledDotProductAttentionGrad (the fused attention backward: the mma.sync kernels for
// unmasked D 64 / 128 problems, the wmma kernels for the rest and with INGOT_SDPA_BWD_MMA=0)
// against float64 naive loops:
// bfloat16/float16, D in {64, 128, 256}, L = S from 1 to 512, L < S and L > S, GQA 1/2/4,
// causal, sliding window, a block-diagonal packing mask [B, 1, L, S], additive masks, fully
// masked rows; determinism; unsupported cases; and the vjp of fast::scaled_dot_product_attention
// on CUDA through the fused primitive against the composition (INGOT_SDPA_FUSED_BWD=0).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/fast/fast.h"
#include "core/ingot.h"
#include "core/primitives/fast.h"
#include "core/sdpa_grad_ref.h"
#include "cuda_test_util.h"
#include "scoped_env.h"

using namespace ingot;
using namespace ingot::test;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

constexpr double kFloatTol = 1e-5, kAtolRel = 1e-6;

// Unit roundoff of the 16-bit dtypes.
double unit_roundoff(Dtype t) {
  return t == bfloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// Values uniform in [lo, hi) rounded to t.
std::vector<double> uniform(int64_t n, Dtype t, uint32_t seed, double lo, double hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(g);
  return Array(v, {n}, t).to_vector<double>();
}

struct GradCase {
  int64_t B, H, Hkv, L, S, D;
  bool causal = false;
  int window = 0;
};

enum class MaskGen { none, packing, additive };

std::string name_of(const GradCase& c, Dtype t, MaskGen m) {
  return fmt::format("{} B{} H{} Hkv{} L{} S{} D{}{}{}{}", dtype_name(t), c.B, c.H, c.Hkv, c.L, c.S,
                     c.D, c.causal ? " causal" : "",
                     c.window ? fmt::format(" window {}", c.window) : "",
                     m == MaskGen::packing    ? " packing mask [B, 1, L, S]"
                     : m == MaskGen::additive ? " additive mask [1, H, L, S]"
                                              : "");
}

// Boolean packing mask [B, 1, L, S]: documents of varying lengths along the rows (row i's
// document starts at doc_start(i)); a query sees keys of its own document at or before it
// (positions aligned to the end as causal ones are). The last rows of batch 0 are padding that
// sees nothing (fully masked rows).
std::vector<double> packing_mask(int64_t B, int64_t L, int64_t S) {
  std::vector<double> m(static_cast<size_t>(B * L * S), 0.0);
  const int64_t lens[] = {5, 23, 1, 40, 17, 64};
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0, di = b, left = lens[di % 6];
    std::vector<int64_t> doc_start(static_cast<size_t>(S));
    for (int64_t j = 0; j < S; ++j) {
      if (left == 0) start = j, left = lens[++di % 6];
      doc_start[j] = start;
      --left;
    }
    const int64_t pad = b == 0 ? std::min<int64_t>(3, L - 1) : 0;
    for (int64_t i = 0; i < L - pad; ++i) {
      const int64_t pos = S - L + i;
      if (pos < 0) continue;
      for (int64_t j = doc_start[pos]; j <= pos; ++j) m[(b * L + i) * S + j] = 1.0;
    }
  }
  return m;
}

SdpaGradProblem make_problem(const GradCase& c, Dtype t, MaskGen mg, uint32_t seed) {
  SdpaGradProblem p;
  p.B = c.B, p.H = c.H, p.Hkv = c.Hkv, p.L = c.L, p.S = c.S, p.D = c.D, p.Dv = c.D;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.D)));
  p.causal = c.causal, p.window = c.window;
  p.q = uniform(c.B * c.H * c.L * c.D, t, seed, -2, 2);
  p.k = uniform(c.B * c.Hkv * c.S * c.D, t, seed + 1, -2, 2);
  p.v = uniform(c.B * c.Hkv * c.S * c.D, t, seed + 2, -2, 2);
  p.d_out = uniform(c.B * c.H * c.L * c.D, t, seed + 3, -1, 1);
  if (mg == MaskGen::packing) {
    p.mask_kind = 2;
    p.mask_shape = {c.B, 1, c.L, c.S};
    p.mask = packing_mask(c.B, c.L, c.S);
  } else if (mg == MaskGen::additive) {
    p.mask_kind = 1;
    p.mask_shape = {1, c.H, c.L, c.S};
    p.mask = uniform(c.H * c.L * c.S, t, seed + 4, -3, 3);
    for (size_t i = 5; i < p.mask.size(); i += 7) p.mask[i] = -kInf;
    for (int64_t j = 0; j < c.S; ++j) p.mask[j] = -kInf;  // head 0, row 0 fully masked
  }
  p.out = Array(sdpa_forward_ref(p), {c.B * c.H * c.L * c.D}, t).to_vector<double>();
  return p;
}

// The primitive on `dev` for problem p in dtype t.
// An input [B, H, L, D] on dev: row-major, or (blhd) stored [B, L, H, D] and viewed through a
// transpose, as attention's projections give it.
Array input(const std::vector<double>& v, const Shape& shape, Dtype t, Device dev, bool blhd) {
  const Array x(v, shape, t);
  if (!blhd) return to_device(x, dev);
  return swapaxes(to_device(contiguous(swapaxes(x, 1, 2)), dev), 1, 2);
}

std::vector<Array> fused_grad(const SdpaGradProblem& p, Dtype t, Device dev, bool blhd = false) {
  std::vector<Array> in{input(p.q, {p.B, p.H, p.L, p.D}, t, dev, blhd),
                        input(p.k, {p.B, p.Hkv, p.S, p.D}, t, dev, blhd),
                        input(p.v, {p.B, p.Hkv, p.S, p.Dv}, t, dev, blhd),
                        input(p.out, {p.B, p.H, p.L, p.Dv}, t, dev, blhd),
                        input(p.d_out, {p.B, p.H, p.L, p.Dv}, t, dev, blhd)};
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
  const Dtype dt = in[0].dtype();
  return Array::make_arrays({qs, ks, vs}, {dt, dt, dt}, prim, std::move(in));
}

// The kernels round P and dS to t (half an ulp per term) and the result once: within
// 2u (|want| + sum |terms|); kFloatTol of the dS-magnitude sums covers float32 dP - delta and
// logits; kAtolRel float16's subnormals. The same check rejects a 3% wrong scale
// (WrongScaleIsCaught). On an H200 a scratch run of these cases gave worst ratios <= 0.47.
void check_problem(const SdpaGradProblem& p, Dtype t, const std::string& what, Device dev = kCuda,
                   bool blhd = false) {
  const SdpaGradRef r = sdpa_grad_ref(p);
  const std::vector<Array> g = fused_grad(p, t, dev, blhd);
  ASSERT_EQ(g.size(), 3u);
  for (const Array& x : g) {
    EXPECT_EQ(x.dtype(), t) << what;
    EXPECT_EQ(x.device(), dev) << what;
  }
  expect_sdpa_grads({g[0].to_vector<double>(), g[1].to_vector<double>(), g[2].to_vector<double>()},
                    r, 2 * unit_roundoff(t), kFloatTol, kAtolRel, what);
}

TEST(CudaSdpaGrad, ProblemsAndToleranceHoldOnCpu) {
  // Runs everywhere (no GPU needed): the generators, the reference and the tolerance used
  // below, through the CPU eval of the primitive (float64 loops, one rounding).
  uint32_t seed = 500;
  for (Dtype t : {bfloat16, float16}) {
    const GradCase cp{2, 4, 2, 96, 96, 16, true};
    check_problem(make_problem(cp, t, MaskGen::packing, seed += 5), t,
                  "cpu " + name_of(cp, t, MaskGen::packing), cpu_device);
    const GradCase ca{1, 4, 1, 37, 70, 16, false};
    check_problem(make_problem(ca, t, MaskGen::additive, seed += 5), t,
                  "cpu " + name_of(ca, t, MaskGen::additive), cpu_device);
    const GradCase cw{1, 2, 2, 30, 30, 16, true, 1};
    check_problem(make_problem(cw, t, MaskGen::none, seed += 5), t,
                  "cpu " + name_of(cw, t, MaskGen::none), cpu_device);
  }
  // Batch 0's last 3 rows of the packing mask see nothing (FullyMaskedRowsAndKeysAreZero).
  const std::vector<double> m = packing_mask(2, 64, 64);
  for (int64_t i = 0; i < 64; ++i) {
    double seen = 0;
    for (int64_t j = 0; j < 64; ++j) seen += m[i * 64 + j];
    EXPECT_EQ(seen == 0, i >= 61) << "row " << i;
  }
}

TEST(CudaSdpaGrad, SquareCausalAndFullMatchFloat64) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1;
  for (int64_t D : {64, 128, 256})
    for (Dtype t : {bfloat16, float16})
      for (int64_t L : {1, 17, 64, 129}) {
        for (bool causal : {true, false}) {
          const GradCase c{1, 2, 2, L, L, D, causal};
          check_problem(make_problem(c, t, MaskGen::none, seed += 5), t,
                        name_of(c, t, MaskGen::none));
        }
      }
}

TEST(CudaSdpaGrad, LongSequencesMatchFloat64) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1000;
  for (int64_t D : {64, 128, 256})
    for (Dtype t : {bfloat16, float16}) {
      if (D == 256 && t == float16) continue;  // the reference's cost
      const GradCase c{1, 2, 1, 512, 512, D, true};
      check_problem(make_problem(c, t, MaskGen::none, seed += 5), t, name_of(c, t, MaskGen::none));
    }
}

// GQA, query/key offsets, windows: unmasked problems, which the mma.sync kernels
// (fast_sdpa_bwd_mma.cu) take at D 64 and 128 and the wmma kernels at D 256.
void check_gqa_offsets_windows(uint32_t seed) {
  for (int64_t D : {64, 128, 256})
    for (Dtype t : {bfloat16, float16}) {
      const GradCase cs[] = {
          {2, 4, 4, 33, 100, D, true},       // G 1, a chunk after a cache (L < S)
          {1, 4, 2, 70, 150, D, true},       // G 2
          {1, 8, 2, 20, 45, D, false},       // G 4, not causal
          {2, 4, 1, 65, 65, D, true},        // G 4 (MQA), a one-row tail tile
          {1, 2, 2, 40, 20, D, true},        // L > S: the first 20 rows see no key
          {1, 4, 2, 100, 100, D, true, 17},  // sliding window
          {1, 2, 1, 40, 90, D, true, 30},    // window with L < S
          {1, 2, 2, 130, 130, D, true, 1},   // window 1: each row sees only itself
      };
      for (const GradCase& c : cs)
        check_problem(make_problem(c, t, MaskGen::none, seed += 5), t,
                      name_of(c, t, MaskGen::none));
    }
}

TEST(CudaSdpaGrad, GqaOffsetsWindowsMatchFloat64) {
  INGOT_REQUIRE_CUDA();
  check_gqa_offsets_windows(2000);
}

TEST(CudaSdpaGrad, WmmaKernelsOnUnmaskedProblemsMatchFloat64) {
  INGOT_REQUIRE_CUDA();
  const ScopedEnv off("INGOT_SDPA_BWD_MMA", "0");  // the wmma kernels at every D
  check_gqa_offsets_windows(2500);
}

TEST(CudaSdpaGrad, TrainingShapeMatchesFloat64) {
  // A Llama-3.2-1B / Qwen3 training layer's shape, cut down: causal, G 4, 256 rows, several
  // key tiles per CTA and query tiles per head in the dk/dv loop; row-major inputs and inputs
  // stored [B, L, H, D] (which the mma kernels read in place through their strides, the wmma
  // kernels from row-major copies).
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 3000;
  for (const char* mma : {"1", "0"})
    for (bool blhd : {false, true})
      for (int64_t D : {64, 128}) {
        const ScopedEnv env("INGOT_SDPA_BWD_MMA", mma);
        const GradCase c{2, 8, 2, 256, 256, D, true};
        check_problem(make_problem(c, bfloat16, MaskGen::none, seed += 5), bfloat16,
                      name_of(c, bfloat16, MaskGen::none) + (blhd ? " [B, L, H, D] storage" : "") +
                          " INGOT_SDPA_BWD_MMA=" + mma,
                      kCuda, blhd);
      }
  // An L < S chunk with a window, G 2, strided, float16.
  const GradCase cw{1, 4, 2, 70, 150, 128, true, 40};
  check_problem(make_problem(cw, float16, MaskGen::none, seed += 5), float16,
                name_of(cw, float16, MaskGen::none) + " [B, L, H, D] storage", kCuda, true);
}

TEST(CudaSdpaGrad, MasksMatchFloat64) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 3000;
  for (int64_t D : {64, 128, 256})
    for (Dtype t : {bfloat16, float16}) {
      // Packed training: boolean [B, 1, L, L], with and without causal on top.
      for (bool causal : {false, true}) {
        const GradCase c{2, 4, 2, 96, 96, D, causal};
        check_problem(make_problem(c, t, MaskGen::packing, seed += 5), t,
                      name_of(c, t, MaskGen::packing));
      }
      const GradCase cl{2, 4, 2, 50, 77, D, false};  // packing mask with L < S
      check_problem(make_problem(cl, t, MaskGen::packing, seed += 5), t,
                    name_of(cl, t, MaskGen::packing));
      for (bool causal : {false, true}) {
        const GradCase c{1, 4, 1, 37, 70, D, causal};
        check_problem(make_problem(c, t, MaskGen::additive, seed += 5), t,
                      name_of(c, t, MaskGen::additive));
      }
    }
}

TEST(CudaSdpaGrad, FullyMaskedRowsAndKeysAreZero) {
  INGOT_REQUIRE_CUDA();
  // Packing mask: batch 0's last 3 rows are padding (see nothing); with L > S causal the first
  // rows see nothing either.
  const GradCase c{2, 2, 1, 64, 64, 64, false};
  const SdpaGradProblem p = make_problem(c, bfloat16, MaskGen::packing, 7);
  const std::vector<Array> g = fused_grad(p, bfloat16, kCuda);
  const auto dq = g[0].to_vector<double>();
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 61; i < 64; ++i)
      for (int64_t d = 0; d < 64; ++d)
        ASSERT_EQ(dq[((0 * 2 + h) * 64 + i) * 64 + d], 0.0) << "padding row " << i;
  const GradCase c2{1, 2, 2, 40, 20, 128, true};
  const SdpaGradProblem p2 = make_problem(c2, float16, MaskGen::none, 9);
  const auto dq2 = fused_grad(p2, float16, kCuda)[0].to_vector<double>();
  for (int64_t i = 0; i < 20; ++i)
    for (int64_t d = 0; d < 128; ++d) ASSERT_EQ(dq2[i * 128 + d], 0.0) << "row " << i;
}

TEST(CudaSdpaGrad, WrongScaleIsCaught) {
  INGOT_REQUIRE_CUDA();
  // The tolerance of check_problem against the kernels' own output: a reference with a 3%
  // larger scale must fail it.
  const GradCase c{1, 4, 2, 80, 80, 64, true};
  SdpaGradProblem p = make_problem(c, bfloat16, MaskGen::none, 21);
  const std::vector<Array> g = fused_grad(p, bfloat16, kCuda);
  p.scale *= 1.03;
  const SdpaGradRef r = sdpa_grad_ref(p);
  const double cc = 2 * unit_roundoff(bfloat16);
  EXPECT_GT(
      sdpa_grad_worst(g[0].to_vector<double>(), r.dq, r.dq_abs, r.dq_abs2, cc, kFloatTol, kAtolRel),
      1.0);
  EXPECT_GT(
      sdpa_grad_worst(g[1].to_vector<double>(), r.dk, r.dk_abs, r.dk_abs2, cc, kFloatTol, kAtolRel),
      1.0);
  EXPECT_GT(
      sdpa_grad_worst(g[2].to_vector<double>(), r.dv, r.dv_abs, r.dv_abs, cc, kFloatTol, kAtolRel),
      1.0);
}

TEST(CudaSdpaGrad, Deterministic) {
  INGOT_REQUIRE_CUDA();
  const GradCase c{2, 8, 2, 200, 200, 128, true};
  const SdpaGradProblem p = make_problem(c, bfloat16, MaskGen::none, 31);
  const std::vector<Array> a = fused_grad(p, bfloat16, kCuda), b = fused_grad(p, bfloat16, kCuda);
  for (int i = 0; i < 3; ++i) {
    const auto x = a[i].to_vector<double>(), y = b[i].to_vector<double>();
    ASSERT_EQ(x.size(), y.size());
    for (size_t e = 0; e < x.size(); ++e) ASSERT_EQ(x[e], y[e]) << "output " << i << " at " << e;
  }
}

TEST(CudaSdpaGrad, UnsupportedCasesRaise) {
  INGOT_REQUIRE_CUDA();
  for (const auto& [t, D] : {std::pair{float32, int64_t{64}}, std::pair{bfloat16, int64_t{80}}}) {
    const GradCase c{1, 2, 2, 8, 8, D, true};
    const SdpaGradProblem p = make_problem(c, t, MaskGen::none, 41);
    EXPECT_THROW(fused_grad(p, t, kCuda)[0].eval(), Unsupported) << dtype_name(t) << " D " << D;
  }
}

// value and gradients of sum(sdpa(q, k, v) * ct) for q, k, v on CUDA.
std::pair<std::vector<Array>, std::vector<Array>> sdpa_vjp(const std::vector<Array>& qkv,
                                                           const Array& ct,
                                                           const fast::SdpaOptions& o) {
  auto fn = [&](const std::vector<Array>& in) {
    return std::vector<Array>{fast::scaled_dot_product_attention(in[0], in[1], in[2], o)};
  };
  return vjp(fn, qkv, {ct});
}

TEST(CudaSdpaGrad, VjpOnCudaMatchesComposition) {
  INGOT_REQUIRE_CUDA();
  // Llama-3.2-1B-like attention: B 2, H 8, Hkv 2, L = S = 256, D 64, causal, bf16. q, k and v
  // come from [B, L, H, D] projections through a transpose (the kernels' inputs are copies).
  const int64_t B = 2, H = 8, Hkv = 2, L = 256, D = 64;
  const Dtype t = bfloat16;
  auto blhd = [&](int64_t heads, uint32_t seed) {
    const Array x(uniform(B * L * heads * D, t, seed, -2, 2), {B, L, heads, D}, t);
    return swapaxes(on_cuda(x), 1, 2);
  };
  const std::vector<Array> qkv{blhd(H, 1), blhd(Hkv, 2), blhd(Hkv, 3)};
  const Array ct = on_cuda(Array(uniform(B * H * L * D, t, 4, -1, 1), {B, H, L, D}, t));
  const fast::SdpaOptions o{.scale = 0.125f, .causal = true};
  std::pair<std::vector<Array>, std::vector<Array>> fused, comp;
  {
    ScopedEnv env("INGOT_SDPA_FUSED_BWD", nullptr);  // the default: fused on CUDA
    fused = sdpa_vjp(qkv, ct, o);
    ASSERT_TRUE(fused.second[0].has_primitive());
    EXPECT_STREQ(fused.second[0].primitive().name(), "ScaledDotProductAttentionGrad");
  }
  {
    ScopedEnv env("INGOT_SDPA_FUSED_BWD", "0");
    comp = sdpa_vjp(qkv, ct, o);
    EXPECT_STRNE(comp.second[0].primitive().name(), "ScaledDotProductAttentionGrad");
  }
  expect_close(fused.first[0], comp.first[0], 0, 0, "forward value");
  // The composition differentiates float32 math; the fused kernels round P and dS to bf16 and
  // take delta from the bf16 output: within 8 units of bf16 roundoff of the largest gradient
  // (the element-wise check against float64 below is the tight one).
  const char* names[] = {"dq", "dk", "dv"};
  for (int i = 0; i < 3; ++i) {
    const auto f = fused.second[i].to_vector<double>(), w = comp.second[i].to_vector<double>();
    double mx = 0, worst = 0;
    for (double x : w) mx = std::max(mx, std::abs(x));
    for (size_t e = 0; e < f.size(); ++e) worst = std::max(worst, std::abs(f[e] - w[e]));
    EXPECT_GT(mx, 0.0) << names[i];
    EXPECT_LE(worst, 8 * unit_roundoff(t) * mx)
        << names[i] << ": max |fused - composition| " << worst << ", max |grad| " << mx;
  }
  // And the fused gradients against the float64 reference with delta from the bf16 output.
  SdpaGradProblem p;
  p.B = B, p.H = H, p.Hkv = Hkv, p.L = L, p.S = L, p.D = D, p.Dv = D, p.scale = 0.125,
  p.causal = true;
  auto host = [](const Array& a) { return a.to_vector<double>(); };
  p.q = host(qkv[0]), p.k = host(qkv[1]), p.v = host(qkv[2]);
  p.out = host(fused.first[0]), p.d_out = host(ct);
  const SdpaGradRef r = sdpa_grad_ref(p);
  expect_sdpa_grads({fused.second[0].to_vector<double>(), fused.second[1].to_vector<double>(),
                     fused.second[2].to_vector<double>()},
                    r, 2 * unit_roundoff(t), kFloatTol, kAtolRel, "vjp vs float64");
}

}  // namespace
