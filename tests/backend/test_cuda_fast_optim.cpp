// CUDA fast::adam_step against the CPU backend (bit for bit: every operation rounds on its own
// on both) over more tensors than one launch takes, every parameter/gradient dtype pair,
// strided inputs, a device gradient scale and sizes around the kernel's chunk; fast::sum_squares
// against float64 sums and against itself (the same bits every run); nn's AdamW on the GPU,
// fused against the separate ops.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/fast/fast.h"
#include "core/ingot.h"
#include "cuda_test_util.h"
#include "nn/optimizers.h"

using namespace ingot;
using namespace ingot::test;

namespace {

const Dtype kOptimDtypes[] = {float32, bfloat16, float16};

void expect_bits(const Array& got, const Array& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = to_device(got, cpu_device).to_vector<double>();
  const auto w = to_device(want, cpu_device).to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i]) << what << " at " << i;
}

fast::AdamStepOptions options(int step, bool decoupled) {
  fast::AdamStepOptions o;
  o.lr = 3e-3f;
  o.c1 = 1.0f - std::pow(o.beta1, static_cast<float>(step));
  o.c2 = 1.0f - std::pow(o.beta2, static_cast<float>(step));
  o.weight_decay = 0.02f;
  o.decay = 1.0f - o.lr * o.weight_decay;
  o.decoupled = decoupled;
  return o;
}

}  // namespace

TEST(CudaFastOptim, AdamStepEqualsCpu) {
  INGOT_REQUIRE_CUDA();
  // 60 tensors (three launches of up to 24), sizes below, at and above the 1,024-element chunk.
  const int64_t sizes[] = {1, 7, 1023, 1024, 1025, 4096 + 3, 0, 33000};
  std::vector<Array> ps, gs, ms, vs;
  uint32_t seed = 1;
  for (int i = 0; i < 60; ++i) {
    const Dtype pt = kOptimDtypes[i % 3], gt = kOptimDtypes[(i / 3) % 3];
    const int64_t n = sizes[i % 8];
    ps.push_back(normal_host({n}, pt, seed++));
    Array g = normal_host({2 * n}, gt, seed++, 0.1);
    // Every third gradient strided (a slice of every other element): copied before the kernel.
    gs.push_back(i % 3 == 0 ? slice(g, {0}, {2 * n}, {2}) : slice(g, {0}, {n}));
    ms.push_back(abs(normal_host({n}, float32, seed++, 0.01)));
    vs.push_back(abs(normal_host({n}, float32, seed++, 1e-4)));
  }
  auto gpu = [](const std::vector<Array>& xs) {
    std::vector<Array> r;
    for (const Array& x : xs) r.push_back(on_cuda(x));
    return r;
  };
  for (bool decoupled : {true, false})
    for (bool scaled : {false, true}) {
      std::optional<Array> scale, scale_gpu;
      if (scaled) {
        scale = Array(0.71f);
        scale_gpu = on_cuda(*scale);
      }
      const auto o = options(3, decoupled);
      const auto c = fast::adam_step(ps, gs, ms, vs, o, scale);
      const auto d = fast::adam_step(gpu(ps), gpu(gs), gpu(ms), gpu(vs), o, scale_gpu);
      ASSERT_EQ(d.size(), c.size());
      for (size_t i = 0; i < c.size(); ++i) {
        EXPECT_EQ(d[i].device(), kCuda);
        expect_bits(d[i], c[i],
                    "output " + std::to_string(i) + (decoupled ? " adamw" : " adam") +
                        (scaled ? " scaled" : ""));
      }
    }
}

TEST(CudaFastOptim, SumSquaresMatchesFloat64AndRepeats) {
  INGOT_REQUIRE_CUDA();
  std::vector<Array> xs;
  double want = 0.0;
  uint32_t seed = 50;
  for (int i = 0; i < 40; ++i) {
    const int64_t n = i % 5 == 0 ? 0 : 37 * i + (i % 7) * 1000;
    Array x = normal_host({n}, kOptimDtypes[i % 3], seed++);
    for (double v : x.to_vector<double>()) want += v * v;
    xs.push_back(on_cuda(x));
  }
  xs.push_back(on_cuda(transpose(normal_host({30, 50}, bfloat16, seed++))));
  for (double v : transpose(to_device(xs.back(), cpu_device)).to_vector<double>()) want += v * v;
  const Array a = fast::sum_squares(xs), b = fast::sum_squares(xs);
  EXPECT_EQ(a.device(), kCuda);
  const float fa = to_device(a, cpu_device).item<float>();
  EXPECT_NEAR(fa, want, 1e-6 * want);
  EXPECT_EQ(fa, to_device(b, cpu_device).item<float>());
  EXPECT_EQ(to_device(fast::sum_squares({on_cuda(zeros({0}))}), cpu_device).item<float>(), 0.0f);
}

TEST(CudaFastOptim, AdamWOnTheGpuEqualsTheSeparateOps) {
  INGOT_REQUIRE_CUDA();
  // nn::AdamW's fused step on CUDA parameters (with clipping's scale) against
  // fast::ref::adam_step's separate ops on the same device, three steps.
  ParamMap p{{"w", on_cuda(normal_host({64, 48}, float32, 1))},
             {"b", on_cuda(normal_host({48}, bfloat16, 2))}};
  nn::AdamW opt(nn::constant_schedule(1e-2f));
  std::vector<Array> rp{p.at("b"), p.at("w")}, rm, rv;
  for (const Array& x : rp) {
    rm.push_back(on_cuda(zeros(x.shape(), float32)));
    rv.push_back(on_cuda(zeros(x.shape(), float32)));
  }
  for (int step = 1; step <= 3; ++step) {
    ParamMap g{{"w", on_cuda(normal_host({64, 48}, float32, 10 + step))},
               {"b", on_cuda(normal_host({48}, bfloat16, 20 + step))}};
    auto [scale, norm] = nn::clip_grad_scale(g, 1.0f);
    EXPECT_EQ(scale.device(), kCuda);
    p = opt.apply(p, g, scale);
    fast::AdamStepOptions o;
    o.lr = 1e-2f;
    o.one_minus_beta1 = 1.0f - o.beta1;
    o.one_minus_beta2 = 1.0f - o.beta2;
    o.c1 = 1.0f - std::pow(o.beta1, static_cast<float>(step));
    o.c2 = 1.0f - std::pow(o.beta2, static_cast<float>(step));
    o.weight_decay = 0.01f;
    o.decay = 1.0f - o.lr * o.weight_decay;
    const auto r = fast::ref::adam_step(rp, {g.at("b"), g.at("w")}, rm, rv, o, scale);
    rp = {r[0], r[1]}, rm = {r[2], r[3]}, rv = {r[4], r[5]};
    expect_bits(p.at("b"), rp[0], "b step " + std::to_string(step));
    expect_bits(p.at("w"), rp[1], "w step " + std::to_string(step));
    expect_bits(opt.state().at("w.m"), rm[1], "w.m step " + std::to_string(step));
    expect_bits(opt.state().at("b.v"), rv[0], "b.v step " + std::to_string(step));
  }
}
