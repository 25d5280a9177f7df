// CUDA fast::gated_activation (Glu, on the gated-rows kernel) and its one-pass backward (GluGrad)
// against the CPU backend's kernels (which test_fast_glu checks against float64 loops) and
// against the separate CUDA ops (the forward and du bit for bit): every float dtype and
// activation; contiguous operands, the column halves of a stacked [R, 2I] product (rows 2I
// apart, read in place), an unaligned start, transposed (copied) operands; odd row lengths,
// zero sizes, Llama-3.2-1B's 4096 x 8192; a fresh cotangent (du may take its buffer); nn's
// gated MLP over stacked projections on the GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "core/primitive.h"
#include "core/test_util.h"
#include "cuda_test_util.h"
#include "nn/layers.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kFloats[] = {float32, bfloat16, float16, float64};

struct Act {
  const char* name;
  fast::GatedActivation act;
};
const Act kActs[] = {{"silu", fast::GatedActivation::silu},
                     {"gelu", fast::GatedActivation::gelu},
                     {"gelu_tanh", fast::GatedActivation::gelu_tanh}};

struct Pair {
  Array cpu, gpu;
};
using View = std::function<Array(const Array&)>;
Pair both(const Array& base, const View& view) {
  return {view(base), view(on_cuda(base))};
}

/// g, u and the cotangent dh of logical shape [R, I], laid out as `layout`.
struct Operands {
  Pair g, u, dh;
};

Operands operands(const std::string& layout, int64_t R, int64_t I, Dtype t, uint32_t seed) {
  const auto same = [](const Array& a) { return a; };
  const Pair dh = both(normal_host({R, I}, t, seed + 2), same);
  if (layout == "stacked halves") {
    const Array y = normal_host({R, 2 * I}, t, seed, 2.0);
    return {both(y,
                 [=](const Array& a) {
                   return slice(a, {0, 0}, {R, I});
                 }),
            both(y,
                 [=](const Array& a) {
                   return slice(a, {0, I}, {R, 2 * I});
                 }),
            dh};
  }
  if (layout == "offset by one") {
    const auto view = [=](const Array& a) { return reshape(slice(a, {1}, {R * I + 1}), {R, I}); };
    return {both(normal_host({R * I + 1}, t, seed, 2.0), view),
            both(normal_host({R * I + 1}, t, seed + 1), view), dh};
  }
  if (layout == "transposed") {
    const auto view = [](const Array& a) { return transpose(a); };
    return {both(normal_host({I, R}, t, seed, 2.0), view),
            both(normal_host({I, R}, t, seed + 1), view), dh};
  }
  return {both(normal_host({R, I}, t, seed, 2.0), same),
          both(normal_host({R, I}, t, seed + 1), same), dh};
}

/// {dg, du} of fn(g, u) for the cotangent dh, evaluated; `prim` (if given) gets the name of
/// dg's primitive, read before the evaluation drops it.
using GluFn = Array (*)(const Array&, const Array&, fast::GatedActivation, StreamOrDevice);
std::vector<Array> glu_grads(GluFn fn, fast::GatedActivation act, const Array& g, const Array& u,
                             const Array& dh, std::string* prim = nullptr) {
  auto f = [&](const std::vector<Array>& in) {
    return std::vector<Array>{fn(in[0], in[1], act, {})};
  };
  std::vector<Array> d = vjp(f, {g, u}, {dh}).second;
  if (prim) *prim = d[0].has_primitive() ? d[0].primitive().name() : "";
  eval(d);
  return d;
}

/// One rounding of t apart, after float32 (float64) math on two libraries' exp/erf/tanh; for
/// float32, a few ulps of act' (gelu_tanh's terms cancel for g < -3).
void expect_rounded_close(const Array& got, const Array& want, const std::string& what) {
  const Dtype t = want.dtype();
  if (t == float64)
    expect_close(got, want, 1e-13, 1e-12, what);
  else if (t == float32)
    expect_close(got, want, 1e-5, 1e-5, what);
  else
    expect_close(got, want, 1e-5, 2 * dtype_rtol(t), what);
}

void check_case(const Act& a, Dtype t, int64_t R, int64_t I, const std::string& layout,
                uint32_t seed) {
  const std::string what = std::string(dtype_name(t)) + " " + a.name + " [" + std::to_string(R) +
                           ", " + std::to_string(I) + "] " + layout;
  const Operands o = operands(layout, R, I, t, seed);
  const Array out = fast::gated_activation(o.g.gpu, o.u.gpu, a.act);
  ASSERT_STREQ(out.primitive().name(), "Glu") << what;
  // The separate CUDA kernels' bits, and the CPU's values.
  expect_close(out, fast::ref::gated_activation(o.g.gpu, o.u.gpu, a.act), 0, 0, what + " out");
  expect_rounded_close(out, fast::gated_activation(o.g.cpu, o.u.cpu, a.act), what + " out vs CPU");
  std::string prim;
  const auto got = glu_grads(fast::gated_activation, a.act, o.g.gpu, o.u.gpu, o.dh.gpu, &prim);
  ASSERT_EQ(prim, "GluGrad") << what;
  const auto cpu = glu_grads(fast::gated_activation, a.act, o.g.cpu, o.u.cpu, o.dh.cpu);
  const auto sep = glu_grads(fast::ref::gated_activation, a.act, o.g.gpu, o.u.gpu, o.dh.gpu);
  expect_rounded_close(got[0], cpu[0], what + " dg vs CPU");
  expect_rounded_close(got[1], cpu[1], what + " du vs CPU");
  expect_close(got[1], sep[1], 0, 0, what + " du vs the separate CUDA ops");
}

TEST(CudaFastGlu, MatchesCpuAndTheSeparateOps) {
  INGOT_REQUIRE_CUDA();
  const std::pair<int64_t, int64_t> shapes[] = {{5, 1}, {64, 72}, {3, 1001}, {1, 4099}, {33, 24}};
  uint32_t seed = 1;
  for (const Act& a : kActs)
    for (Dtype t : kFloats)
      for (const auto& [R, I] : shapes)
        for (const char* layout : {"contiguous", "stacked halves", "offset by one", "transposed"}) {
          check_case(a, t, R, I, layout, seed);
          seed += 3;
        }
}

TEST(CudaFastGlu, Llama1bTrainingShape) {
  INGOT_REQUIRE_CUDA();
  // 8 x 512 tokens' gate|up product of Llama-3.2-1B (I = 8192) as one stacked bf16 array.
  check_case(kActs[0], bfloat16, 4096, 8192, "stacked halves", 7);
  check_case(kActs[2], bfloat16, 4096, 8192, "contiguous", 8);
}

TEST(CudaFastGlu, ZeroSizes) {
  INGOT_REQUIRE_CUDA();
  for (const auto& [R, I] : {std::pair<int64_t, int64_t>{0, 8}, {4, 0}}) {
    const Array g = on_cuda(zeros({R, I}, bfloat16)), h = on_cuda(ones({R, I}, bfloat16));
    const Array y = fast::gated_activation(g, h, fast::GatedActivation::silu);
    EXPECT_EQ(y.to_vector<float>().size(), 0u);
    const auto d = glu_grads(fast::gated_activation, fast::GatedActivation::gelu, g, h, h);
    for (const Array& x : d) {
      EXPECT_EQ(x.shape(), (Shape{R, I}));
      EXPECT_EQ(x.to_vector<float>().size(), 0u);
    }
  }
}

TEST(CudaFastGlu, FreshCotangent) {
  INGOT_REQUIRE_CUDA();
  // dh computed just before, held by nothing else: du may be written into its buffer.
  const Operands o = operands("stacked halves", 96, 520, bfloat16, 40);
  for (const Act& a : kActs) {
    const auto want = glu_grads(fast::gated_activation, a.act, o.g.gpu, o.u.gpu, o.dh.gpu);
    const auto got = glu_grads(fast::gated_activation, a.act, o.g.gpu, o.u.gpu,
                               o.dh.gpu * Array(1.0f, bfloat16));
    expect_close(got[0], want[0], 0, 0, std::string(a.name) + " dg");
    expect_close(got[1], want[1], 0, 0, std::string(a.name) + " du");
  }
}

TEST(CudaFastGlu, GatedMlpOverStackedProjections) {
  INGOT_REQUIRE_CUDA();
  // Under vjp the MLP's gate|up product is one stacked matmul whose column halves go to one Glu
  // (rows 2F apart); its gradients against the separate ops on the same GPU.
  const int64_t E = 256, F = 768;
  random::seed(21);
  nn::GatedMLP mlp(E, F, nn::Activation::silu, false, bfloat16);
  nn::RMSNorm norm(E, {.eps = 1e-5f, .weight_in_float32 = false}, bfloat16);
  for (nn::Module* m : {static_cast<nn::Module*>(&mlp), static_cast<nn::Module*>(&norm)}) {
    ParamMap p = m->parameters();
    for (auto& kv : p) kv.second = on_cuda(kv.second);
    m->update(p);
  }
  ASSERT_TRUE(mlp.fuse_projections());
  const Array x = on_cuda(normal_host({4, 37, E}, bfloat16, 1));
  const Array w = on_cuda(normal_host({4, 37, E}, bfloat16, 2));
  auto grad_of = [&](const std::function<Array(const Array&)>& f) {
    return vjp([&](const std::vector<Array>& in) { return std::vector<Array>{f(in[0])}; }, {x}, {w})
        .second[0];
  };
  const Array got = grad_of([&](const Array& y) { return mlp.normed(y, norm, nullptr); });
  const char* env = std::getenv("INGOT_FUSED_GLU_GRAD");
  EXPECT_EQ(count_primitives({got}, "GluGrad"), env && std::string(env) == "0" ? 0 : 1);
  const Array want = grad_of([&](const Array& y) {
    const Array n = norm(y);
    return mlp.down_proj()(silu(mlp.gate_proj()(n)) * mlp.up_proj()(n));
  });
  const double big = max(abs(astype(want, float32))).item<float>();
  expect_close(got, want, big / 128, 1.0 / 64, "dx");
}

}  // namespace
