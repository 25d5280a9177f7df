// CUDA rms_norm / layer_norm / rope against the CPU backend: float32/bf16/f16/f64 x layouts
// (contiguous, transposed heads view, sliced, strided rows) x options (weights and their
// dtype, (1 + w), weight rounding, bias; half-split and traditional rotation, partial dims,
// base, scale, offset, per-row offsets, custom frequencies), warp- and block-per-row sizes,
// > 1M elements, zero-size inputs, and the VJPs of rms_norm and rope.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "core/primitive.h"
#include "cuda_test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kFloats[] = {float32, bfloat16, float16, float64};

Array host_normal(const Shape& shape, Dtype t, uint32_t seed, double mean = 0.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(mean, 1.0);
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (auto& x : v) x = nd(g);
  return Array(v, shape, t);
}

struct Pair {
  Array cpu, gpu;
};
using View = std::function<Array(const Array&)>;
Pair both(const Array& base, const View& view) {
  return {view(base), view(on_cuda(base))};
}
Array identity(const Array& a) {
  return a;
}

std::string name(Dtype t, const std::string& what) {
  return std::string(dtype_name(t)) + " " + what;
}

/// Norm outputs round once (twice without weight_in_float32) after float32 math whose sums
/// run in another order than the CPU's: one or two output ulps.
void expect_norm_close(const Array& got, const Array& want, const std::string& what) {
  switch (want.dtype()) {
    case Dtype::float32:
      return expect_close(got, want, 1e-6, 1e-5, what);
    case Dtype::float64:
      return expect_close(got, want, 1e-13, 1e-12, what);
    default: {
      const double r = 2 * dtype_rtol(want.dtype());
      return expect_close(got, want, r * 1e-2, r, what);
    }
  }
}

// ---- norms ----

/// A norm input: logical shape [..., E] and how it is laid out.
struct NormLayout {
  const char* what;
  Shape base;
  View view;
};

std::vector<NormLayout> norm_layouts(int64_t E) {
  return {
      {"contiguous [4,7,E]", {4, 7, E}, identity},
      {"transposed [E,R]^T", {E, 6}, [](const Array& x) { return transpose(x); }},
      {"sliced rows [5,E] of [5,E+8]",
       {5, E + 8},
       [E](const Array& x) {
         return slice(x, {0, 4}, {5, E + 4});
       }},
      {"heads view [B,L,H,E] -> [B,H,L,E]",
       {2, 3, 4, E},
       [](const Array& x) {
         return transpose(x, {0, 2, 1, 3});
       }},
      {"one row, offset by one element",
       {E + 1},
       [E](const Array& x) {
         return reshape(slice(x, {1}, {E + 1}), {1, E});
       }},
  };
}

// Warp-per-row sizes (vectorised and not) and block-per-row sizes; 256 and 8192 are the edges
// of the register kernel's warp and block rows for 16-bit inputs.
const int64_t kNormSizes[] = {128, 256, 1000, 999, 4096, 8192, 3001};

TEST(CudaFastNorm, RmsNormMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1;
  for (Dtype t : kFloats)
    for (int64_t E : kNormSizes)
      for (const NormLayout& lay : norm_layouts(E)) {
        const Pair x = both(host_normal(lay.base, t, seed++), lay.view);
        const Pair w = both(host_normal({E}, t, seed++, 1.0), identity);
        const Pair w32 = both(host_normal({E}, float32, seed++, 0.1), identity);
        const std::string what = name(t, lay.what + (" E " + std::to_string(E)));
        expect_norm_close(fast::rms_norm(x.gpu, std::nullopt), fast::rms_norm(x.cpu, std::nullopt),
                          what + " no weight");
        for (bool wf32 : {true, false}) {
          const fast::RmsNormOptions o{.eps = 1e-5f, .weight_in_float32 = wf32};
          const std::string ww = wf32 ? " weight in float32" : " weight rounded";
          expect_norm_close(fast::rms_norm(x.gpu, w.gpu, o), fast::rms_norm(x.cpu, w.cpu, o),
                            what + ww);
          const fast::RmsNormOptions g{.add_unit_offset = true, .weight_in_float32 = wf32};
          expect_norm_close(fast::rms_norm(x.gpu, w32.gpu, g), fast::rms_norm(x.cpu, w32.cpu, g),
                            what + ww + " (1 + w) float32 weight");
        }
      }
}

TEST(CudaFastNorm, RmsNormAddEqualsNormThenAdd) {
  INGOT_REQUIRE_CUDA();
  // fast::rms_norm_add on the GPU: bit for bit the GPU's rms_norm followed by its add (the
  // norm rounds, then the sum), over x layouts, residual layouts (contiguous, and a transposed
  // view, which is copied first so that the kernel and its order of the row sums stay
  // rms_norm's), register and multi-pass kernels; and the CPU's result within the norm's
  // tolerance (the row sums run in another order).
  uint32_t seed = 500;
  for (Dtype t : kFloats)
    for (int64_t E : kNormSizes)
      for (const NormLayout& lay : norm_layouts(E)) {
        const Pair x = both(host_normal(lay.base, t, seed++), lay.view);
        const Shape sh = x.cpu.shape();
        const Pair rc = both(host_normal(sh, t, seed++), identity);
        Shape tsh(sh.rbegin(), sh.rend());
        std::vector<int> perm(sh.size());
        for (size_t d = 0; d < perm.size(); ++d) perm[d] = static_cast<int>(perm.size() - 1 - d);
        const Pair rt =
            both(host_normal(tsh, t, seed++), [&](const Array& a) { return transpose(a, perm); });
        const Pair w = both(host_normal({E}, t, seed++, 1.0), identity);
        for (const Pair* res : {&rc, &rt})
          for (bool wf32 : {true, false}) {
            const fast::RmsNormOptions o{.eps = 1e-5f, .weight_in_float32 = wf32};
            const std::string what =
                name(t, lay.what + (" E " + std::to_string(E)) +
                            (res == &rc ? " residual contiguous" : " residual transposed") +
                            (wf32 ? " weight in float32" : " weight rounded"));
            const Array got = fast::rms_norm_add(res->gpu, x.gpu, w.gpu, o);
            const Array two = res->gpu + fast::rms_norm(x.gpu, w.gpu, o);
            ASSERT_EQ(got.shape(), two.shape()) << what;
            const auto gv = got.to_vector<double>(), tv = two.to_vector<double>();
            for (size_t i = 0; i < gv.size(); ++i) ASSERT_EQ(gv[i], tv[i]) << what << " at " << i;
            // The norm's tolerance in absolute terms at its values' scale (up to ~5 here:
            // |x| / rms(x) times the weight), plus the sum's rounding.
            const Array cpu = fast::rms_norm_add(res->cpu, x.cpu, w.cpu, o);
            const double r = t == float32 ? 1e-5 : t == float64 ? 1e-12 : 2 * dtype_rtol(t);
            expect_close(got, cpu, 16 * r, r, what + " vs CPU");
          }
      }
}

/// LayerNorm results: float32 ones against float64 math on the same inputs (the backends sum a
/// row in different orders, and a row far from zero loses ~E ulps of its mean in float32: the
/// CUDA error must be within the float32 tolerance or no larger than the CPU's own); the other
/// dtypes against the CPU.
void expect_layer_norm_close(const Array& got, const Array& cpu, const Array& ref64,
                             const std::string& what) {
  if (cpu.dtype() != float32) return expect_norm_close(got, cpu, what);
  ASSERT_EQ(got.shape(), cpu.shape()) << what;
  ASSERT_EQ(got.dtype(), float32) << what;
  const std::vector<double> g = got.to_vector<double>(), c = cpu.to_vector<double>(),
                            r = ref64.to_vector<double>();
  const double cuda_err = worst_ratio(g, r, 1e-6, 1e-5), cpu_err = worst_ratio(c, r, 1e-6, 1e-5);
  EXPECT_LE(cuda_err, std::max(1.0, cpu_err))
      << what << ": CUDA error ratio " << cuda_err << ", CPU " << cpu_err;
}

TEST(CudaFastNorm, LayerNormMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1000;
  const auto f64 = [](const Pair& p) { return astype(p.cpu, float64); };
  for (Dtype t : kFloats)
    for (int64_t E : kNormSizes)
      for (const NormLayout& lay : norm_layouts(E)) {
        // A mean far from zero checks the two-pass variance.
        const Pair x = both(host_normal(lay.base, t, seed++, 3.0), lay.view);
        const Pair w = both(host_normal({E}, t, seed++, 1.0), identity);
        const Pair b = both(host_normal({E}, float32, seed++), identity);
        const Array x64 = f64(x), w64 = f64(w), b64 = f64(b);
        const std::string what = name(t, lay.what + (" E " + std::to_string(E)));
        expect_layer_norm_close(fast::layer_norm(x.gpu, std::nullopt, std::nullopt),
                                fast::layer_norm(x.cpu, std::nullopt, std::nullopt),
                                fast::layer_norm(x64, std::nullopt, std::nullopt), what + " plain");
        expect_layer_norm_close(fast::layer_norm(x.gpu, w.gpu, std::nullopt),
                                fast::layer_norm(x.cpu, w.cpu, std::nullopt),
                                fast::layer_norm(x64, w64, std::nullopt), what + " weight");
        expect_layer_norm_close(fast::layer_norm(x.gpu, w.gpu, b.gpu, 1e-6f),
                                fast::layer_norm(x.cpu, w.cpu, b.cpu, 1e-6f),
                                fast::layer_norm(x64, w64, b64, 1e-6f), what + " weight + bias");
        expect_layer_norm_close(fast::layer_norm(x.gpu, std::nullopt, b.gpu),
                                fast::layer_norm(x.cpu, std::nullopt, b.cpu),
                                fast::layer_norm(x64, std::nullopt, b64), what + " bias");
      }
}

TEST(CudaFastNorm, LargeAndEmpty) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16}) {
    const Pair x = both(host_normal({600, 2048}, t, 7), identity);  // 1.2M elements
    const Pair w = both(host_normal({2048}, t, 8), identity);
    expect_norm_close(fast::rms_norm(x.gpu, w.gpu), fast::rms_norm(x.cpu, w.cpu),
                      name(t, "rms_norm [600, 2048]"));
    expect_norm_close(fast::layer_norm(x.gpu, w.gpu, w.gpu), fast::layer_norm(x.cpu, w.cpu, w.cpu),
                      name(t, "layer_norm [600, 2048]"));
    const Pair big = both(host_normal({2, 20000}, t, 9), identity);  // long rows, 1024 threads
    expect_norm_close(fast::rms_norm(big.gpu, std::nullopt), fast::rms_norm(big.cpu, std::nullopt),
                      name(t, "rms_norm [2, 20000]"));
    const Pair e = both(host_normal({0, 64}, t, 10), identity);
    const Pair we = both(host_normal({64}, t, 11), identity);
    expect_close(fast::rms_norm(e.gpu, we.gpu), fast::rms_norm(e.cpu, we.cpu), 0, 0,
                 name(t, "rms_norm [0, 64]"));
    expect_close(fast::layer_norm(e.gpu, we.gpu, we.gpu), fast::layer_norm(e.cpu, we.cpu, we.cpu),
                 0, 0, name(t, "layer_norm [0, 64]"));
    const Pair e2 = both(host_normal({3, 0}, t, 12), identity);
    expect_close(fast::rms_norm(e2.gpu, std::nullopt), fast::rms_norm(e2.cpu, std::nullopt), 0, 0,
                 name(t, "rms_norm [3, 0]"));
  }
}

TEST(CudaFastNorm, RmsNormVjpMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64}) {
    const Array x = host_normal({3, 5, 64}, t, 1);
    const Array w = host_normal({64}, t, 2, 1.0);
    const Array ct = host_normal({3, 5, 64}, t, 3);
    for (bool unit : {false, true}) {
      const fast::RmsNormOptions o{.add_unit_offset = unit};
      auto fn = [o](const std::vector<Array>& in) {
        return std::vector<Array>{fast::rms_norm(in[0], in[1], o)};
      };
      const auto want = vjp(fn, {x, w}, {ct});
      const auto got = vjp(fn, {on_cuda(x), on_cuda(w)}, {on_cuda(ct)});
      const double tol = t == float64 ? 1e-11 : 1e-4;
      const std::string what = name(t, unit ? "rms_norm (1 + w) vjp" : "rms_norm vjp");
      ASSERT_EQ(got.second.size(), 2u);
      expect_close(got.second[0], want.second[0], tol, tol, what + " d/dx");
      expect_close(got.second[1], want.second[1], tol, tol, what + " d/dw");
    }
  }
}

// RmsNormGrad (rms_norm's x gradient in one kernel a row) on every dtype, layout and row
// size of the norm kernels, with and without a weight, against the CPU's RmsNormGrad.
TEST(CudaFastNorm, RmsNormGradMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 50;
  for (Dtype t : kFloats)
    for (int64_t E : kNormSizes)
      for (const NormLayout& l : norm_layouts(E)) {
        const Pair x = both(host_normal(l.base, t, seed++), l.view);
        const Shape sh = x.cpu.shape();
        const Pair g = both(host_normal(sh, t, seed++), identity);
        const Pair w = both(host_normal({E}, float32, seed++, 1.0), identity);
        for (int variant = 0; variant < 3; ++variant) {
          const fast::RmsNormOptions o{.eps = 1e-5f, .add_unit_offset = variant == 2};
          auto dx = [&](const Array& xs, const Array& ws, const Array& gs) {
            auto fn = [&](const std::vector<Array>& in) {
              return std::vector<Array>{
                  fast::rms_norm(in[0], variant ? std::optional<Array>(ws) : std::nullopt, o)};
            };
            return vjp(fn, {xs}, {gs}).second[0];
          };
          const Array got = dx(x.gpu, w.gpu, g.gpu), want = dx(x.cpu, w.cpu, g.cpu);
          ASSERT_STREQ(got.primitive().name(), "RmsNormGrad");
          const std::string what = name(t, std::string(l.what) + " E=" + std::to_string(E) +
                                               " variant " + std::to_string(variant));
          if (t == float64)
            expect_close(got, want, 1e-12, 1e-11, what);
          else if (t == float32)
            expect_close(got, want, 1e-5, 1e-5, what);
          else  // one rounding of float32 values that differ in their last bits
            expect_close(got, want, 2e-2 * dtype_rtol(t), 2 * dtype_rtol(t), what);
        }
      }
}

// ActivationGrad (silu / gelu / gelu_tanh VJPs in one kernel) on every float dtype: aligned
// 16-byte vectors with odd tails, an unaligned start (offset by one element) and a transposed
// x (copied first), against the CPU's ActivationGrad.
TEST(CudaFastActivationGrad, MatchesCpu) {
  INGOT_REQUIRE_CUDA();
  using Fn = Array (*)(const Array&, StreamOrDevice);
  const std::pair<const char*, Fn> acts[] = {
      {"silu", silu}, {"gelu", gelu}, {"gelu_tanh", gelu_tanh}};
  uint32_t seed = 90;
  for (const auto& [aname, fn] : acts)
    for (Dtype t : kFloats)
      for (const Shape& sh : {Shape{5, 1}, Shape{64, 72}, Shape{3, 1001}, Shape{4096, 130}}) {
        const int64_t n = shape_size(sh);
        const std::pair<const char*, Pair> xs[] = {
            {"contiguous", both(host_normal(sh, t, seed++), identity)},
            {"offset by one",
             both(host_normal({n + 1}, t, seed++),
                  [&](const Array& a) { return reshape(slice(a, {1}, {n + 1}), sh); })},
            {"transposed", both(host_normal({sh[1], sh[0]}, t, seed++),
                                [](const Array& a) { return transpose(a); })}};
        const Pair g = both(host_normal(sh, t, seed++), identity);
        for (const auto& [lname, x] : xs) {
          auto dx = [&](const Array& xa, const Array& ga) {
            auto f = [&](const std::vector<Array>& in) {
              return std::vector<Array>{fn(in[0], {})};
            };
            return vjp(f, {xa}, {ga}).second[0];
          };
          const Array got = dx(x.gpu, g.gpu), want = dx(x.cpu, g.cpu);
          ASSERT_STREQ(got.primitive().name(), "ActivationGrad");
          const std::string what = name(t, std::string(aname) + " " + lname + " " + shape_str(sh));
          if (t == float64)
            expect_close(got, want, 1e-13, 1e-12, what);
          else if (t == float32)  // exp/erf/tanh of two libraries; gelu_tanh's cancelling terms
            expect_close(got, want, 1e-5, 1e-5, what);
          else
            expect_close(got, want, 1e-5, 2 * dtype_rtol(t), what);
        }
      }
}

// ---- rope ----

struct RopeCase {
  const char* what;
  Shape base;  // the layout's base; the view gives [..., L, D]
  View view;
  int dims;
  fast::RopeOptions opt;
  std::vector<int32_t> offsets;  // per-row offsets (empty: opt.offset)
  std::vector<float> freqs;      // inverse frequencies (empty: base)
};

Array heads_view(const Array& x) {  // [B, L, H, D] -> [B, H, L, D]
  return transpose(x, {0, 2, 1, 3});
}

std::vector<RopeCase> rope_cases() {
  std::vector<RopeCase> cs;
  for (bool trad : {false, true}) {
    cs.push_back({"contiguous [2,4,7,64]", {2, 4, 7, 64}, identity, 64, {.traditional = trad}});
    cs.push_back({"heads view [B,H,L,D] of [2,9,4,128], offset",
                  {2, 9, 4, 128},
                  heads_view,
                  128,
                  {.traditional = trad, .offset = 37}});
    cs.push_back({"sliced D of [2,3,5,80], partial dims",
                  {2, 3, 5, 80},
                  [](const Array& x) {
                    return slice(x, {0, 0, 0, 8}, {2, 3, 5, 72});
                  },
                  32,
                  {.traditional = trad, .base = 500000.0f}});
    cs.push_back({"strided L [2,3,12,16] step 2, scale",
                  {2, 3, 12, 16},
                  [](const Array& x) {
                    return slice(x, {0, 0, 0, 0}, {2, 3, 12, 16}, {1, 1, 2, 1});
                  },
                  16,
                  {.traditional = trad, .scale = 0.25f, .offset = 3}});
    cs.push_back({"transposed D axis [L,D]^T",
                  {24, 9},
                  [](const Array& x) { return transpose(x); },
                  8,
                  {.traditional = trad, .offset = 100000}});
    cs.push_back({"per-row offsets [3,2,5,32]",
                  {3, 5, 2, 32},
                  heads_view,
                  24,
                  {.traditional = trad},
                  {4, 1000, 0}});
    cs.push_back({"offsets [1] decode [2,4,1,64]",
                  {2, 4, 1, 64},
                  identity,
                  64,
                  {.traditional = trad},
                  {17}});
    cs.push_back({"custom freqs [2,3,6,20]",
                  {2, 3, 6, 20},
                  identity,
                  20,
                  {.traditional = trad},
                  {},
                  {1.0f, 0.5f, 0.25f, 0.1f, 0.05f, 0.01f, 5e-3f, 1e-3f, 5e-4f, 1e-4f}});
    cs.push_back({"3-d [6,33,10]", {6, 33, 10}, identity, 10, {.traditional = trad, .offset = 5}});
  }
  cs.push_back(
      {"head dim 1040 (device frequencies)", {1, 2, 3, 1040}, identity, 1040, {.offset = 2}});
  cs.push_back({"decode per-row offsets [4,8,1,128]",
                {4, 1, 8, 128},
                heads_view,
                128,
                {},
                {5, 900, 17, 4000}});
  return cs;
}

fast::RopeOptions with_arrays(const RopeCase& c, bool gpu) {
  fast::RopeOptions o = c.opt;
  auto place = [gpu](const Array& a) { return gpu ? on_cuda(a) : a; };
  if (!c.offsets.empty())
    o.offsets = place(Array(c.offsets, {static_cast<int64_t>(c.offsets.size())}, int32));
  if (!c.freqs.empty())
    o.freqs = place(Array(c.freqs, {static_cast<int64_t>(c.freqs.size())}, float32));
  return o;
}

/// Angles and cos/sin are float32 as on the CPU; 16-bit results round as there, so a
/// difference is at most an output ulp (a cos/sin ulp flipping a 16-bit rounding).
void expect_rope_close(const Array& got, const Array& want, const std::string& what) {
  switch (want.dtype()) {
    case Dtype::float32:
      return expect_close(got, want, 1e-6, 1e-5, what);
    case Dtype::float64:
      return expect_close(got, want, 4e-7, 1.6e-6, what);
    default: {
      const double r = 2 * dtype_rtol(want.dtype());
      return expect_close(got, want, r, r, what);
    }
  }
}

TEST(CudaFastRope, MatchesCpu) {
  INGOT_REQUIRE_CUDA();
  uint32_t seed = 1;
  for (const RopeCase& c : rope_cases())
    for (Dtype t : kFloats) {
      const Pair x = both(host_normal(c.base, t, seed++), c.view);
      const std::string what = name(t, std::string(c.what) + " dims " + std::to_string(c.dims) +
                                           (c.opt.traditional ? " traditional" : ""));
      const Array want = fast::rope(x.cpu, c.dims, with_arrays(c, false));
      const Array got = fast::rope(x.gpu, c.dims, with_arrays(c, true));
      // Beyond 512 frequencies the device computes them (double pow rounded to float, where
      // the CPU calls powf): an angle may differ by an ulp.
      if (c.dims > 1024 && (t == float32 || t == float64))
        expect_close(got, want, 1e-5, 1e-5, what);
      else
        expect_rope_close(got, want, what);
    }
}

TEST(CudaFastRope, OffsetDtypesAndFreqDtypes) {
  INGOT_REQUIRE_CUDA();
  const Pair x = both(host_normal({3, 2, 4, 16}, bfloat16, 5), identity);
  for (Dtype ot : {int8, uint8, int32, uint32, int64}) {
    const Array off = astype(Array(std::vector<int32_t>{3, 100, 7}, {3}, int32), ot);
    const Array want = fast::rope(x.cpu, 16, {.offsets = off});
    const Array got = fast::rope(x.gpu, 16, {.offsets = on_cuda(off)});
    expect_rope_close(got, want, "offsets of " + std::string(dtype_name(ot)));
  }
  const Array f32(std::vector<float>{1.0f, 0.3f, 0.05f, 0.001f, 1e-4f, 0.7f, 0.2f, 0.01f}, {8},
                  float32);
  for (Dtype ft : {float32, bfloat16, float16, float64}) {
    const Array f = astype(f32, ft);
    const Array want = fast::rope(x.cpu, 16, {.offset = 11, .freqs = f});
    const Array got = fast::rope(x.gpu, 16, {.offset = 11, .freqs = on_cuda(f)});
    expect_rope_close(got, want, "freqs of " + std::string(dtype_name(ft)));
  }
}

TEST(CudaFastRope, LargeAndEmpty) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, bfloat16}) {
    const Pair x = both(host_normal({1, 512, 16, 128}, t, 3), heads_view);  // 1M elements
    expect_rope_close(fast::rope(x.gpu, 128, {.offset = 9}), fast::rope(x.cpu, 128, {.offset = 9}),
                      name(t, "[1,16,512,128] heads view"));
    const Pair e = both(host_normal({1, 2, 0, 8}, t, 4), identity);
    expect_close(fast::rope(e.gpu, 8), fast::rope(e.cpu, 8), 0, 0, name(t, "L = 0"));
    const Pair e2 = both(host_normal({0, 2, 3, 8}, t, 5), identity);
    expect_close(fast::rope(e2.gpu, 8), fast::rope(e2.cpu, 8), 0, 0, name(t, "B = 0"));
  }
}

TEST(CudaFastRope, VjpMatchesCpu) {
  INGOT_REQUIRE_CUDA();
  for (Dtype t : {float32, float64})
    for (bool trad : {false, true}) {
      const Array x = host_normal({2, 3, 5, 12}, t, 1);
      const Array ct = host_normal({2, 3, 5, 12}, t, 2);
      const Array off(std::vector<int32_t>{1, 7}, {2}, int32);
      auto make_fn = [trad](const Array& offsets) {
        return [trad, offsets](const std::vector<Array>& in) {
          return std::vector<Array>{
              fast::rope(in[0], 8, {.traditional = trad, .offset = 2, .offsets = offsets})};
        };
      };
      const auto want = vjp(make_fn(off), {x}, {ct});
      const auto got = vjp(make_fn(on_cuda(off)), {on_cuda(x)}, {on_cuda(ct)});
      const std::string what = name(t, trad ? "rope traditional vjp" : "rope vjp");
      ASSERT_EQ(got.second.size(), 1u);
      expect_rope_close(got.first[0], want.first[0], what + " output");
      expect_rope_close(got.second[0], want.second[0], what + " d/dx");
    }
}

// ---- rope_kv_update: one kernel for q/k norms, rotary and the cache writes ----

struct RopeKvCase {
  int64_t b, l, h, hk, d, c, column;
  bool norm, traditional, unit_offset, weight_f32, per_row, freqs, strided;
};

/// {fused on the GPU, fused on the CPU (the ops one at a time there)} for one case.
std::pair<std::vector<Array>, std::vector<Array>> rope_kv_pair(const RopeKvCase& c, Dtype t,
                                                               uint32_t seed) {
  const int64_t f = (c.h + 2 * c.hk) * c.d;
  // strided: qkv is the first f columns of rows of f + 16 (a sliced product), not contiguous.
  const int64_t fw = c.strided ? f + 16 : f;
  const Pair qkv = both(host_normal({c.b, c.l, fw}, t, seed), [&](const Array& x) {
    return c.strided ? slice(x, {0, 0, 0}, {c.b, c.l, f}) : x;
  });
  const Array keys = host_normal({c.b, c.hk, c.c, c.d}, t, seed + 1);
  const Array values = host_normal({c.b, c.hk, c.c, c.d}, t, seed + 2);
  std::optional<Array> qw, kw;
  if (c.norm) {
    qw = host_normal({c.d}, t, seed + 3, 1.0);
    kw = host_normal({c.d}, t, seed + 4, 1.0);
  }
  fast::RopeKvOptions o{.n_heads = static_cast<int>(c.h), .n_kv_heads = static_cast<int>(c.hk)};
  o.norm = {.eps = 1e-6f, .add_unit_offset = c.unit_offset, .weight_in_float32 = c.weight_f32};
  o.rope = {.traditional = c.traditional, .base = 1000000.0f, .offset = 40};
  if (c.per_row) {
    std::vector<int32_t> off;
    for (int64_t i = 0; i < c.b; ++i) off.push_back(static_cast<int32_t>(300 + 57 * i));
    o.rope.offsets = Array(off, {c.b}, int32);
  }
  if (c.freqs) {
    std::vector<float> fr;
    for (int64_t i = 0; i < c.d / 2; ++i) fr.push_back(1.0f / static_cast<float>(1 + i));
    o.rope.freqs = Array(fr, {c.d / 2});
  }
  const Array column = Array({static_cast<int32_t>(c.column)}, {1}, int32);
  auto dev = [](const std::optional<Array>& a) {
    return a ? std::optional<Array>(on_cuda(*a)) : std::nullopt;
  };
  fast::RopeKvOptions og = o;
  og.rope.offsets = dev(o.rope.offsets);
  og.rope.freqs = dev(o.rope.freqs);
  return {fast::rope_kv_update(qkv.gpu, dev(qw), dev(kw), on_cuda(keys), on_cuda(values),
                               on_cuda(column), og),
          fast::rope_kv_update(qkv.cpu, qw, kw, keys, values, column, o)};
}

TEST(CudaFastRopeKv, MatchesCpu) {
  INGOT_REQUIRE_CUDA();
  const RopeKvCase cases[] = {
      // Qwen3-like decode (H 16, Hkv 8, D 128), one row and four rows with per-row positions
      {1, 1, 16, 8, 128, 40, 33, true, false, false, false, true, false, false},
      {4, 1, 16, 8, 128, 40, 0, true, false, false, false, true, false, false},
      // Gemma3-like: D 256, (1 + w) in float32; Llama-like: no norm, custom frequencies
      {2, 1, 4, 1, 256, 12, 11, true, false, true, true, true, false, false},
      {2, 1, 32, 8, 64, 20, 7, false, false, false, true, true, true, false},
      // traditional pairs, several new columns, a strided qkv
      {2, 3, 4, 2, 16, 9, 4, true, true, false, false, false, false, true},
      // Many positions (prefill, classification: the many-positions kernel, kRopeKvRowsMin):
      // Qwen3-like with per-row positions, Gemma3-like D 256 (two chunks a lane in float32),
      // Llama-like without norms and with frequencies, traditional pairs with D 64.
      {4, 70, 16, 8, 128, 80, 3, true, false, false, false, true, false, false},
      {3, 100, 4, 1, 256, 112, 0, true, false, true, true, true, false, true},
      {2, 150, 32, 8, 128, 160, 5, false, false, false, true, false, true, false},
      {5, 60, 8, 2, 64, 64, 1, true, true, false, false, true, false, false},
  };
  uint32_t seed = 7;
  for (const RopeKvCase& c : cases)
    for (Dtype t : {float32, bfloat16, float16}) {
      auto [got, want] = rope_kv_pair(c, t, seed += 5);
      const std::string what = name(t, "D " + std::to_string(c.d) + " B " + std::to_string(c.b) +
                                           " L " + std::to_string(c.l));
      // q and k: a norm (sums in another order: an output ulp) then rope (an ulp more).
      if (t == float32)
        expect_close(got[0], want[0], 1e-5, 1e-5, what + " q");
      else
        expect_close(got[0], want[0], 4 * dtype_rtol(t), 4 * dtype_rtol(t), what + " q");
      if (t == float32)
        expect_close(got[1], want[1], 1e-5, 1e-5, what + " keys");
      else
        expect_close(got[1], want[1], 4 * dtype_rtol(t), 4 * dtype_rtol(t), what + " keys");
      expect_close(got[2], want[2], 0, 0, what + " values");  // a copy
    }
}

TEST(CudaFastRopeKv, OutOfRangeColumnRaisesAtTheNextRead) {
  INGOT_REQUIRE_CUDA();
  const Array qkv = on_cuda(host_normal({1, 1, 64}, float32, 1));
  const Array kv = on_cuda(host_normal({1, 1, 4, 16}, float32, 2));
  const std::vector<Array> out =
      fast::rope_kv_update(qkv, std::nullopt, std::nullopt, kv, kv, on_cuda(Array({4}, int32)),
                           {.n_heads = 2, .n_kv_heads = 1});
  try {
    out[1].to_vector<double>();
    ADD_FAILURE() << "no error for column 4 of 4";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()),
              "[put_along_axis] index 4 is out of range for axis 2 of size 4");
  }
  // The device works as before afterwards.
  const std::vector<Array> ok =
      fast::rope_kv_update(qkv, std::nullopt, std::nullopt, kv, kv, on_cuda(Array({3}, int32)),
                           {.n_heads = 2, .n_kv_heads = 1});
  EXPECT_EQ(ok[2].to_vector<double>().size(), 64u);
}

}  // namespace
