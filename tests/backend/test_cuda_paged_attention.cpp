// CUDA fast::paged_attention against the CPU kernel (itself checked against a float64 naive loop
// and the contiguous sdpa in tests/core/test_paged_attention.cpp): decode and prefill chunks,
// GQA (G = 1, 2, 4, 6), shared blocks, left padding (negative positions and the padding input),
// sliding window, softcap, strided q/k/v, head dims 64 and 128, the pool writes (exact) and the
// in-place update of a pool nothing else holds. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/fast/paged_attention.h"
#include "core/ingot.h"
#include "cuda_test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

struct Case {
  int64_t B, H, Hkv, L, D, P, N;
  std::vector<int32_t> pos;
  std::vector<int32_t> pad;  // empty: no padding input
  int window = 0;
  float softcap = 0;
};

Array host_uniform(const Shape& shape, Dtype t, uint32_t seed, double lo, double hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (auto& x : v) x = u(g);
  return Array(v, shape, t);
}

// Tables over shuffled blocks; row 1 shares row 0's first block.
Array tables(const Case& c, int64_t m, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(c.N));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  std::vector<int32_t> t(static_cast<size_t>(c.B * m), 0);
  size_t next = 0;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j * c.P <= c.pos[static_cast<size_t>(b)] + c.L - 1; ++j)
      t[static_cast<size_t>(b * m + j)] = b == 1 && j == 0 ? t[0] : ids[next++ % ids.size()];
  return Array(t, {c.B, m}, int32);
}

TEST(CudaPagedAttention, MatchesTheCpuKernel) {
  INGOT_REQUIRE_CUDA();
  const std::vector<Case> cases = {
      {3, 8, 2, 1, 128, 16, 16, {40, 17, 3}, {}},           // decode
      {3, 4, 2, 7, 64, 4, 32, {9, 4, -3}, {}},              // prefill chunk, negative pad
      {3, 4, 4, 5, 64, 4, 32, {6, 2, 9}, {0, 2, 4}, 4, 0},  // padding input, window
      {2, 12, 2, 3, 128, 8, 16, {30, 12}, {}, 0, 50.0f},    // G = 6, softcap
      {2, 8, 2, 1, 64, 16, 64, {700, 300}, {}, 128, 0},     // long rows, window
  };
  uint32_t seed = 1;
  for (const Case& c : cases)
    for (Dtype t : {float32, bfloat16, float16})
      for (bool strided : {false, true}) {
        const std::string what = "B" + std::to_string(c.B) + " H" + std::to_string(c.H) + " L" +
                                 std::to_string(c.L) + " D" + std::to_string(c.D) + " " +
                                 std::string(dtype_name(t)) + (strided ? " strided" : "");
        int64_t m = 1;
        for (int32_t p : c.pos) m = std::max<int64_t>(m, (p + c.L - 1) / c.P + 1);
        Array q = host_uniform({c.B, c.H, c.L, c.D}, t, seed++, -1, 1);
        Array k = host_uniform({c.B, c.Hkv, c.L, c.D}, t, seed++, -1, 1);
        Array v = host_uniform({c.B, c.Hkv, c.L, c.D}, t, seed++, -3, 3);
        if (strided) {  // [B, L, H, D] viewed as [B, H, L, D]
          q = transpose(contiguous(transpose(q, {0, 2, 1, 3})), {0, 2, 1, 3});
          k = transpose(contiguous(transpose(k, {0, 2, 1, 3})), {0, 2, 1, 3});
          v = transpose(contiguous(transpose(v, {0, 2, 1, 3})), {0, 2, 1, 3});
        }
        const Array kp = host_uniform({c.N, c.Hkv, c.P, c.D}, t, seed++, -1, 1);
        const Array vp = host_uniform({c.N, c.Hkv, c.P, c.D}, t, seed++, -3, 3);
        const Array table = tables(c, m, seed++);
        const Array pos(c.pos, {c.B}, int32);
        fast::PagedAttentionOptions o{.scale = 1.0f / std::sqrt(static_cast<float>(c.D)),
                                      .window = c.window,
                                      .softcap = c.softcap};
        fast::PagedAttentionOptions og = o;
        if (!c.pad.empty()) {
          o.padding = Array(c.pad, {c.B}, int32);
          og.padding = on_cuda(*o.padding);
        }
        auto want = fast::paged_attention(q, k, v, kp, vp, table, pos, o);
        auto got = fast::paged_attention(on_cuda(q), on_cuda(k), on_cuda(v), on_cuda(kp),
                                         on_cuda(vp), on_cuda(table), on_cuda(pos), og);
        expect_close(got[1], want[1], 0, 0, what + " keys");
        expect_close(got[2], want[2], 0, 0, what + " values");
        const double tol = t == float32 ? 2e-5 : t == bfloat16 ? 1.0 / 64 : 1.0 / 256;
        expect_close(got[0], want[0], tol, tol, what + " output");
      }
}

TEST(CudaPagedAttention, WritesThePoolInPlaceWhenNothingElseHoldsIt) {
  INGOT_REQUIRE_CUDA();
  const Case c{2, 4, 2, 1, 64, 8, 8, {5, 9}, {}};
  Array q = on_cuda(host_uniform({2, 4, 1, 64}, bfloat16, 1, -1, 1));
  Array k = on_cuda(host_uniform({2, 2, 1, 64}, bfloat16, 2, -1, 1));
  Array kp = on_cuda(host_uniform({8, 2, 8, 64}, bfloat16, 3, -1, 1));
  Array vp = on_cuda(host_uniform({8, 2, 8, 64}, bfloat16, 4, -1, 1));
  eval({q, k, kp, vp});
  const void* before = kp.raw_ptr();
  auto out = fast::paged_attention(q, k, k, kp, vp, on_cuda(tables(c, 2, 5)),
                                   on_cuda(Array(c.pos, {2}, int32)), {.scale = 0.125f});
  kp = Array();
  vp = Array();
  eval(out);
  EXPECT_EQ(out[1].raw_ptr(), before);
}

}  // namespace
