// checkpoint(fn): same gradients as without, lower peak memory on a deep stack of blocks.
#include <cstdio>

#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

// y = x + tanh(gelu(x W1) W2): four activations per block, W1 widens 4x.
std::vector<Array> block(const std::vector<Array>& v) {
  return {v[0] + tanh(matmul(gelu(matmul(v[0], v[1])), v[2]))};
}

struct Result {
  std::vector<std::vector<float>> grads;
  size_t peak;
};

Result run(bool use_checkpoint) {
  const int depth = 12, rows = 256, width = 64;
  random::seed(7);
  Array x = random::normal({rows, width});
  std::vector<Array> ws;
  for (int i = 0; i < depth; ++i) {
    ws.push_back(random::normal({width, 4 * width}, float32, 0, 0.1));
    ws.push_back(random::normal({4 * width, width}, float32, 0, 0.1));
  }
  eval(ws);
  x.eval();
  ArrayFn blk = use_checkpoint ? checkpoint(block) : ArrayFn(block);
  auto loss = [&](const std::vector<Array>& p) {
    Array h = x;
    for (int i = 0; i < depth; ++i) h = blk({h, p[2 * i], p[2 * i + 1]})[0];
    return std::vector<Array>{sum(h * h)};
  };
  std::vector<int> argnums(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) argnums[i] = static_cast<int>(i);
  memory::clear_cache();
  memory::reset_peak();
  size_t base = memory::active();
  auto [v, g] = value_and_grad(loss, argnums)(ws);
  eval(g);
  Result r;
  r.peak = memory::peak() - base;
  for (auto& a : g) r.grads.push_back(a.to_vector<float>());
  return r;
}

}  // namespace

TEST(Checkpoint, SameGradientsLessPeakMemory) {
  Result plain = run(false);
  Result ck = run(true);
  ASSERT_EQ(plain.grads.size(), ck.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    std::vector<double> a(plain.grads[i].begin(), plain.grads[i].end());
    std::vector<double> b(ck.grads[i].begin(), ck.grads[i].end());
    expect_close(b, a, 1e-5, 1e-6, "grad " + std::to_string(i));
  }
  // Each block keeps one activation instead of four (two of them 4x wide).
  EXPECT_LT(ck.peak * 2, plain.peak) << "checkpoint peak " << ck.peak << " vs " << plain.peak;
  std::printf("peak memory: %zu B with checkpoint, %zu B without\n", ck.peak, plain.peak);
}
