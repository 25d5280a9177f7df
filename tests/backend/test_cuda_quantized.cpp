// CUDA quantized matmul against float64 loops over the layout's definition (value j of a uint32
// at bits [j * bits, (j + 1) * bits), w = s * q + b per group): the quantized mode of the
// decode GEMV for 1..8 rows (bits 4 and 8, group sizes 32/64/128, bfloat16/float16/float32,
// K not a multiple of a warp's chunk span, N not a multiple of the warps, the two-column warps
// from 8192 columns on), the plain GEMV for mixed dtypes and 9..15 rows, prefill through
// cuBLASLt, and the fusions (norm prologue, GLU pairs, residual epilogue) against the separate
// ops on the GPU (bit for bit where the norm's sums are RmsNorm's) and against float64, and an
// MLP / attention block's output with the quantized projections stacked against unstacked.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "cuda_test_util.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/quantized.h"

using namespace ingot;
using namespace ingot::test;

namespace {

Array host_normal(const Shape& shape, Dtype t, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (auto& x : v) x = nd(g);
  return Array(v, shape, t);
}

/// A quantized [N, K] weight on both devices and its float64 unpacking: w[n * K + k] and the
/// magnitude |s| * q + |b| of each term (the scale of the kernels' rounding errors).
struct QW {
  Array wq, sc, bi;  // CPU
  Array wq_g, sc_g, bi_g;
  std::vector<double> w, mag;
  int64_t N = 0, K = 0;
  QuantizeOptions opt;
  fast::QuantizedLinearWeight cpu() const { return {wq, sc, bi, opt}; }
  fast::QuantizedLinearWeight gpu() const { return {wq_g, sc_g, bi_g, opt}; }
};

QW make_qw(int64_t N, int64_t K, Dtype t, QuantizeOptions opt, uint32_t seed) {
  QW r;
  const QuantizedWeight q = quantize(host_normal({N, K}, t, seed), opt);
  eval({q.w, q.scales, q.biases});
  r.wq = q.w;
  r.sc = q.scales;
  r.bi = q.biases;
  r.wq_g = on_cuda(q.w);
  r.sc_g = on_cuda(q.scales);
  r.bi_g = on_cuda(q.biases);
  r.N = N;
  r.K = K;
  r.opt = opt;
  const auto words = q.w.to_vector<uint32_t>();
  const auto s = q.scales.to_vector<double>(), b = q.biases.to_vector<double>();
  const int per = 32 / opt.bits;
  const int64_t wpr = K / per, gpr = K / opt.group_size;
  r.w.resize(static_cast<size_t>(N * K));
  r.mag.resize(r.w.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const double qv =
          (words[n * wpr + k / per] >> ((k % per) * opt.bits)) & ((1u << opt.bits) - 1u);
      const size_t g = static_cast<size_t>(n * gpr + k / opt.group_size);
      r.w[n * K + k] = s[g] * qv + b[g];
      r.mag[n * K + k] = std::fabs(s[g]) * qv + std::fabs(b[g]);
    }
  return r;
}

/// y = x @ w^T in float64 for x [M, K] given as host values, and the error scale
/// sum_k |x_k| * mag_k of each output.
void reference(const std::vector<double>& x, int64_t M, const QW& w, std::vector<double>& y,
               std::vector<double>& scale) {
  y.assign(static_cast<size_t>(M * w.N), 0.0);
  scale.assign(y.size(), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < w.N; ++n) {
      double acc = 0, sc = 0;
      for (int64_t k = 0; k < w.K; ++k) {
        acc += x[m * w.K + k] * w.w[n * w.K + k];
        sc += std::fabs(x[m * w.K + k]) * w.mag[n * w.K + k];
      }
      y[m * w.N + n] = acc;
      scale[m * w.N + n] = sc;
    }
}

/// float32 accumulation tolerance relative to the error scale.
constexpr double kAccTol = 1e-5;

/// Every element of got within kAccTol * scale + (one rounding of the output dtype) of want.
void expect_within(const Array& got, const std::vector<double>& want,
                   const std::vector<double>& scale, const std::string& what) {
  EXPECT_EQ(got.device(), kCuda) << what;
  const auto g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  const double r = got.dtype() == float32 ? 0.0 : dtype_rtol(got.dtype());
  for (size_t i = 0; i < g.size(); ++i) {
    const double lim = kAccTol * scale[i] + r * std::fabs(want[i]) + 1e-30;
    if (!(std::fabs(g[i] - want[i]) <= lim)) {
      ADD_FAILURE() << what << ": at flat index " << i << " got " << g[i] << ", want " << want[i]
                    << " (limit " << lim << ")";
      return;
    }
  }
}

void expect_equal(const Array& got, const Array& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i]) << what << " at " << i;
}

std::string label(Dtype t, const QuantizeOptions& o, int64_t M, int64_t K, int64_t N) {
  return fmt::format("{} bits {} gs {} M{} K{} N{}", dtype_name(t), o.bits, o.group_size, M, K, N);
}

struct Case {
  int64_t M, K, N;
};

}  // namespace

TEST(CudaQuantized, GemvAgainstFloat64) {
  INGOT_REQUIRE_CUDA();
  // K = 5 groups / 4.5 KiB rows: a warp's 32 lanes x U chunks never tile them evenly; N = 13
  // or 37 leaves a partial block of 8 warps; 8200 columns take the two-column warps (M <= 2).
  uint32_t seed = 1;
  for (Dtype t : {bfloat16, float16, float32})
    for (int bits : {4, 8})
      for (int gs : {32, 64, 128}) {
        const QuantizeOptions o{.group_size = gs, .bits = bits};
        const std::vector<Case> cases = {
            {1, 5 * gs, 13}, {2, 1152, 37},   {3, 5 * gs, 40}, {4, 4608, 24},  {5, 2 * gs, 9},
            {6, 640, 17},    {7, 3 * gs, 31}, {8, 1024, 40},   {1, 256, 8200}, {2, 5 * gs, 8200}};
        for (const Case& c : cases) {
          const std::string what = label(t, o, c.M, c.K, c.N);
          const QW w = make_qw(c.N, c.K, t, o, seed++);
          const Array x = host_normal({c.M, c.K}, t, seed++);
          std::vector<double> want, scale;
          reference(x.to_vector<double>(), c.M, w, want, scale);
          const Array got = quantized_matmul(on_cuda(x), w.wq_g, w.sc_g, w.bi_g, true, o);
          ASSERT_EQ(got.shape(), (Shape{c.M, c.N})) << what;
          expect_within(got, want, scale, what);
        }
      }
}

TEST(CudaQuantized, OtherRowCountsAndMixedDtypes) {
  INGOT_REQUIRE_CUDA();
  // 9..15 rows and float32 x over bfloat16 scales take the plain dequantize-GEMV; 16 and more
  // rows (prefill) dequantize the weight in x's dtype (one rounding of each weight) and run
  // cuBLASLt; a batched [B, L, K] x and a sliced (strided) x too.
  uint32_t seed = 100;
  const QuantizeOptions o{.group_size = 64, .bits = 4};
  for (Dtype t : {bfloat16, float32})
    for (int64_t M : {9, 15, 16, 40}) {
      const int64_t K = 512, N = 72;
      const QW w = make_qw(N, K, t, o, seed++);
      const Array x = host_normal({M, K}, t, seed++);
      std::vector<double> want, scale;
      reference(x.to_vector<double>(), M, w, want, scale);
      const Array got = quantized_matmul(on_cuda(x), w.wq_g, w.sc_g, w.bi_g, true, o);
      std::vector<double> lim_scale = scale;
      if (M >= 16 && t != float32)  // the dequantized weight rounds once to t
        for (double& s : lim_scale) s *= dtype_rtol(t) / kAccTol;
      expect_within(got, want, lim_scale, label(t, o, M, K, N));
    }
  {
    const int64_t M = 3, K = 256, N = 40;
    const QW w = make_qw(N, K, bfloat16, o, seed++);
    const Array x = host_normal({M, K}, float32, seed++);
    std::vector<double> want, scale;
    reference(x.to_vector<double>(), M, w, want, scale);
    expect_within(quantized_matmul(on_cuda(x), w.wq_g, w.sc_g, w.bi_g, true, o), want, scale,
                  "float32 x, bfloat16 scales");
  }
  {
    const int64_t K = 256, N = 24;
    const QW w = make_qw(N, K, bfloat16, o, seed++);
    const Array xb = host_normal({2, 3, K + 32}, bfloat16, seed++);
    const Array xs = slice(xb, {0, 0, 32}, {2, 3, K + 32});  // strided rows
    std::vector<double> want, scale;
    reference(xs.to_vector<double>(), 6, w, want, scale);
    const Array xg = slice(on_cuda(xb), {0, 0, 32}, {2, 3, K + 32});
    const Array got = quantized_matmul(xg, w.wq_g, w.sc_g, w.bi_g, true, o);
    ASSERT_EQ(got.shape(), (Shape{2, 3, N}));
    expect_within(got, want, scale, "strided batched x");
  }
}

TEST(CudaQuantized, FusionsEqualTheSeparateOps) {
  INGOT_REQUIRE_CUDA();
  // rms_norm_quantized_linear / _glu and quantized_linear_add on a few rows run one GEMV with
  // the norm in its prologue (its rows RmsNorm's kernel's bit for bit up to 256 16-byte
  // vectors), gate/up pairs, or the add in the epilogue; each equals the separate ops on the
  // GPU exactly there (the products are the same kernel's sums in the same order). 9 rows take
  // the separate kernels (also exact); 20 rows the prefill product. Against float64 from the
  // GPU's normalised x: within the product's error (carried through act * up for the pairs).
  const fast::GatedActivation acts[] = {fast::GatedActivation::silu, fast::GatedActivation::gelu,
                                        fast::GatedActivation::gelu_tanh};
  uint32_t seed = 300;
  for (Dtype t : {bfloat16, float16, float32})
    for (int bits : {4, 8})
      for (int64_t E : {256, 1024, 2048 + 128})
        for (int64_t M : {1, 2, 5, 8, 9, 20}) {
          const int gs = E == 1024 ? 32 : 128;
          const QuantizeOptions o{.group_size = gs, .bits = bits};
          const int64_t N = M == 2 ? 8200 : 40, I = M == 1 ? 4100 : 24;
          const std::string what = label(t, o, M, E, N);
          const Array x = host_normal({1, M, E}, t, seed++);
          const Array nw = host_normal({E}, t, seed++);
          const Array res = host_normal({1, M, N}, t, seed++);
          const Array xg = on_cuda(x), nwg = on_cuda(nw), resg = on_cuda(res);
          const fast::RmsNormOptions no{.eps = 1e-5f, .weight_in_float32 = seed % 2 == 0};
          const QW w = make_qw(N, E, t, o, seed++);
          const QW wgu = make_qw(2 * I, E, t, o, seed++);
          const fast::GatedActivation a = acts[seed % 3];
          const bool exact = E * static_cast<int64_t>(size_of(t)) <= 256 * 16 && M < 16;

          // Norm prologue.
          const Array got_n = fast::rms_norm_quantized_linear(xg, nwg, w.gpu(), no);
          const Array hg = fast::rms_norm(xg, nwg, no);
          const Array sep_n = quantized_matmul(hg, w.wq_g, w.sc_g, w.bi_g, true, o);
          if (exact) expect_equal(got_n, sep_n, what + " norm");
          const std::vector<double> h = hg.to_vector<double>();
          std::vector<double> want, scale;
          reference(h, M, w, want, scale);
          if (M >= 16 && t != float32)
            for (double& s : scale) s *= dtype_rtol(t) / kAccTol;
          expect_within(got_n, want, scale, what + " norm vs float64");

          // Residual epilogue: residual + round(x @ w^T).
          const Array got_r = fast::quantized_linear_add(resg, xg, w.gpu());
          const Array sep_r = resg + quantized_matmul(xg, w.wq_g, w.sc_g, w.bi_g, true, o);
          expect_equal(got_r, sep_r, what + " residual");

          // GLU pairs: act(gate) * up, each rounded as the separate ops round.
          const Array got_g = fast::rms_norm_quantized_glu(xg, nwg, wgu.gpu(), a, no);
          const Array yg = quantized_matmul(hg, wgu.wq_g, wgu.sc_g, wgu.bi_g, true, o);
          const Array gg = slice(yg, {0, 0, 0}, {1, M, I}),
                      ug = slice(yg, {0, 0, I}, {1, M, 2 * I});
          const Array sep_g = (a == fast::GatedActivation::silu   ? silu(gg)
                               : a == fast::GatedActivation::gelu ? gelu(gg)
                                                                  : gelu_tanh(gg)) *
                              ug;
          if (exact) expect_equal(got_g, sep_g, what + " glu");
          ASSERT_EQ(got_g.shape(), (Shape{1, M, I})) << what;
          // Against float64: |u| * 1.2 * e_g + |act(g)| * e_u to first order (|act'| <= 1.2),
          // plus the roundings of the product, act and the multiply (3 output roundings).
          std::vector<double> y, ys;
          reference(h, M, wgu, y, ys);
          std::vector<double> gwant(static_cast<size_t>(M * I)), gscale(gwant.size());
          const auto act = [&](double v) {
            if (a == fast::GatedActivation::silu) return v / (1 + std::exp(-v));
            if (a == fast::GatedActivation::gelu)
              return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
            return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
          };
          const double rr = t == float32 ? 1e-6 : dtype_rtol(t);
          const double eprod = M >= 16 && t != float32 ? dtype_rtol(t) : kAccTol;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t i = 0; i < I; ++i) {
              const double g = y[m * 2 * I + i], u = y[m * 2 * I + I + i];
              const double eg = eprod * ys[m * 2 * I + i] + rr * std::fabs(g);
              const double eu = eprod * ys[m * 2 * I + I + i] + rr * std::fabs(u);
              gwant[m * I + i] = act(g) * u;
              gscale[m * I + i] = (std::fabs(u) * 1.2 * eg + std::fabs(act(g)) * eu +
                                   2 * rr * std::fabs(act(g) * u)) /
                                  kAccTol;
            }
          expect_within(got_g, gwant, gscale, what + " glu vs float64");
        }
}

TEST(CudaQuantized, StackedQuantizedBlocksEqualUnstacked) {
  INGOT_REQUIRE_CUDA();
  // A quantized GatedMLP and Attention block before and after fuse_projections(): stacked
  // gate|up (norm + pairs in one GEMV) and q|k|v (norm prologue), the residual adds in the
  // epilogues (both runs). The same sums rounded the same way, so the same outputs; the
  // tolerance (one rounding of the dtype, of the largest output for the absolute part) only
  // guards against the compiled activation kernel of the unstacked MLP rounding one element
  // differently.
  const auto to_cuda = [](nn::Module& m) {
    ParamMap p = m.parameters();
    for (auto& kv : p) kv.second = on_cuda(kv.second);
    m.update(p);
  };
  const auto all = [](const QuantizeOptions& o) {
    return [o](const std::string&, const nn::Module&) { return std::optional<QuantizeOptions>(o); };
  };
  for (Dtype t : {bfloat16, float32})
    for (int bits : {4, 8}) {
      const int64_t E = 256, F = 512;
      const QuantizeOptions o{.group_size = 64, .bits = bits};
      random::seed(11);
      nn::GatedMLP mlp(E, F, nn::Activation::silu, false, t);
      nn::RMSNorm norm(E, {.eps = 1e-5f, .weight_in_float32 = false}, t);
      nn::Attention attn(nn::AttentionConfig{
          .dims = E, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .dtype = t});
      ASSERT_EQ(nn::quantize_modules(mlp, all(o)), 3);
      ASSERT_EQ(nn::quantize_modules(attn, all(o)), 4);
      to_cuda(mlp);
      to_cuda(norm);
      to_cuda(attn);
      const nn::AttentionInputs in;
      std::vector<Array> xs, rs, before;
      for (int64_t L : {1, 3}) {
        xs.push_back(on_cuda(host_normal({1, L, E}, t, 7 + static_cast<uint32_t>(L))));
        rs.push_back(on_cuda(host_normal({1, L, E}, t, 9 + static_cast<uint32_t>(L))));
        before.push_back(mlp.normed(xs.back(), norm, &rs.back()));
        before.push_back(attn.normed(xs.back(), norm, in, &rs.back()));
        before.push_back(mlp.normed(xs.back(), norm, nullptr));
        before.push_back(attn.normed(xs.back(), norm, in, nullptr));
      }
      eval(before);
      ASSERT_TRUE(mlp.fuse_projections());
      ASSERT_TRUE(attn.fuse_projections());
      for (size_t i = 0; i < xs.size(); ++i) {
        const std::string what = fmt::format("{} bits {} case {}", dtype_name(t), bits, i);
        for (int j = 0; j < 4; ++j) {
          const Array& want = before[4 * i + static_cast<size_t>(j)];
          const Array* r = j < 2 ? &rs[i] : nullptr;
          const Array got =
              j % 2 == 0 ? mlp.normed(xs[i], norm, r) : attn.normed(xs[i], norm, in, r);
          // Without a residual the outputs are the blocks' own (the scale of the tolerance).
          const Array& own = before[4 * i + 2 + static_cast<size_t>(j % 2)];
          const double big = max(abs(astype(own, float32))).item<float>();
          expect_close(got, want, dtype_rtol(t) * big, dtype_rtol(t),
                       what + (j % 2 == 0 ? " mlp" : " attention") + (r ? " + residual" : ""));
        }
      }
    }
}
