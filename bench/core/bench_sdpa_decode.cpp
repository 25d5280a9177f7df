// CPU decode attention (one query position, K/V read in place by the direct loops): GB/s of
// K/V read. Arguments: query heads H, KV heads, head dim D, keys S; bfloat16 K/V as in a KV
// cache. Large S (the K/V past the last-level cache) shows the memory-bound rate.
#include <benchmark/benchmark.h>

#include <cmath>

#include "core/ingot.h"

namespace {

using namespace ingot;

void BM_sdpa_decode(benchmark::State& st) {
  const int64_t H = st.range(0), Hkv = st.range(1), D = st.range(2), S = st.range(3);
  auto rand = [](const Shape& shape, uint64_t seed) {
    Array a = random::normal(shape, bfloat16, 0.0, 1.0, random::key(seed));
    a.eval();
    return a;
  };
  Array q = rand({1, H, 1, D}, 5);
  Array k = rand({1, Hkv, S, D}, 6);
  Array v = rand({1, Hkv, S, D}, 7);
  const fast::SdpaOptions o{.scale = 1.0f / std::sqrt(static_cast<float>(D))};
  for (auto _ : st) {
    Array y = fast::scaled_dot_product_attention(q, k, v, o);
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(k.nbytes() + v.nbytes()),
                                           benchmark::Counter::kIsIterationInvariantRate);
}
// Qwen3-0.6B (G = 2) and Llama-3.2-1B (G = 4) at D = 128; D = 64 and 256; 16 MB and 128 MB.
BENCHMARK(BM_sdpa_decode)
    ->Args({16, 8, 128, 4096})
    ->Args({16, 8, 128, 32768})
    ->Args({32, 8, 128, 4096})
    ->Args({32, 8, 128, 32768})
    ->Args({8, 8, 128, 32768})
    ->Args({32, 8, 64, 32768})
    ->Args({8, 4, 256, 32768})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
