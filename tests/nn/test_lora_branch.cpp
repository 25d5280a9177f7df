// nn's LoRA layers with fast::lora_branch (INGOT_FUSED_LORA=1, on the CPU too) against the
// composition (=0): a Linear with a branch, and branches on the layers of a stacked projection
// (each branch reads its column block of the stacked product), outputs and gradients.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "core/ingot.h"
#include "core/test_util.h"
#include "nn/layers.h"

using namespace ingot;
using namespace ingot::nn;
using namespace ingot::test;

namespace {

/// vjp of fn with INGOT_FUSED_LORA set to flag.
std::pair<std::vector<Array>, std::vector<Array>> run(const char* flag, const ArrayFn& fn,
                                                      const std::vector<Array>& primals,
                                                      const std::vector<Array>& cotangents) {
  setenv("INGOT_FUSED_LORA", flag, 1);
  auto res = vjp(fn, primals, cotangents);
  eval(res.first);
  eval(res.second);
  unsetenv("INGOT_FUSED_LORA");
  return res;
}

Array values(int64_t n, const Shape& shape, Dtype t, uint32_t seed, double lo, double hi) {
  return Array(random_values(n, t, seed, lo, hi), shape, t);
}

}  // namespace

TEST(LoraBranch, LinearLayerFusedEqualsComposition) {
  // A bf16 Linear with a rank-8 branch: INGOT_FUSED_LORA=1 (the fused primitive on the CPU
  // too) against =0 (the composition), output and the branch's gradients.
  nn::Linear lin(48, 40, false, bfloat16);
  Array a(random_values(8 * 48, float32, 3, -0.2, 0.2), {8, 48}, float32);
  Array b(random_values(40 * 8, float32, 4, -0.2, 0.2), {40, 8}, float32);
  Array x(random_values(2 * 7 * 48, bfloat16, 5, -1, 1), {2, 7, 48}, bfloat16);
  const ArrayFn fn = [&](const std::vector<Array>& in) {
    lin.set_branch(nn::LowRankBranch{in[0], in[1], 0.5f, 0.0f});
    return std::vector<Array>{lin(x)};
  };
  const Array g = values(2 * 7 * 40, {2, 7, 40}, bfloat16, 6, -1, 1);
  auto [fo, fg] = run("1", fn, {a, b}, {g});
  auto [ro, rg] = run("0", fn, {a, b}, {g});
  expect_close(values_of(fo[0]), values_of(ro[0]), eps_of(bfloat16) * 2.02, 0, "out");
  expect_close(values_of(fg[0]), values_of(rg[0]), 1e-5, 1e-5, "da");
  expect_close(values_of(fg[1]), values_of(rg[1]), 1e-5, 1e-5, "db");
}

TEST(LoraBranch, StackedLayersFusedEqualComposition) {
  // q [24] and v [16] over a 32-wide bf16 input, stacked; ranks 4 and 16; x's gradient too.
  random::seed(3);
  Linear q(32, 24, false, bfloat16), v(32, 16, false, bfloat16);
  StackedLinear s;
  ASSERT_TRUE(s.fuse({&q, &v}));
  const std::vector<Array> primals{values(4 * 32, {4, 32}, float32, 1, -0.3, 0.3),
                                   values(24 * 4, {24, 4}, float32, 2, -0.3, 0.3),
                                   values(16 * 32, {16, 32}, float32, 3, -0.3, 0.3),
                                   values(16 * 16, {16, 16}, float32, 4, -0.3, 0.3),
                                   values(2 * 5 * 32, {2, 5, 32}, bfloat16, 5, -1, 1)};
  const ArrayFn fn = [&](const std::vector<Array>& in) {
    q.set_branch(LowRankBranch{in[0], in[1], 2.0f, 0.0f});
    v.set_branch(LowRankBranch{in[2], in[3], 0.25f, 0.0f});
    std::optional<std::vector<Array>> ys = s(in[4]);
    if (!ys) throw std::runtime_error("no stacked product");
    return *ys;
  };
  const std::vector<Array> gs{values(2 * 5 * 24, {2, 5, 24}, bfloat16, 6, -1, 1),
                              values(2 * 5 * 16, {2, 5, 16}, bfloat16, 7, -1, 1)};
  auto [fo, fg] = run("1", fn, primals, gs);
  auto [ro, rg] = run("0", fn, primals, gs);
  for (size_t i = 0; i < 2; ++i)
    expect_close(values_of(fo[i]), values_of(ro[i]), eps_of(bfloat16) * 2.02, 0, "out");
  for (size_t i = 0; i < 4; ++i)
    expect_close(values_of(fg[i]), values_of(rg[i]), 1e-5, 1e-5, "factor gradient");
  // x's gradient: the fused branches round their parts to bf16 before the sum (as PEFT's
  // per-module casts do), the composition sums the branches in float32 first.
  expect_close(values_of(fg[4]), values_of(rg[4]), eps_of(bfloat16) * 4.04, 1e-2, "dx");
}
