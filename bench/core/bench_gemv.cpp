// bf16 decode GEMV (issue 14): y = x @ W^T with W stored [N, K] bf16 (a Linear weight), through
// ingot::matmul, at the Qwen3-0.6B / Llama-3.2-1B decode shapes (lm_head included), reported
// in GB/s of W bytes read, next to a streaming read of the same bytes in the same run (AVX-512
// loads where the CPU has them; the GEMV's ceiling). Every benchmark cycles through copies of
// its weights totalling >= 256 MiB, so W comes from DRAM as in decode, never from the 32 MiB L3.
// Threads: INGOT_NUM_THREADS (the pool splits the rows in both cases).
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/ingot.h"
#include "util/thread_pool.h"

namespace {

using ingot::Array;

constexpr int64_t kMinBytes = int64_t{256} << 20;

/// Copies of a [n, k] bf16 weight (distinct buffers), enough of them to total kMinBytes.
std::vector<Array> weights(int64_t n, int64_t k) {
  const int64_t bytes = n * k * 2;
  const int64_t copies = std::max<int64_t>(1, (kMinBytes + bytes - 1) / bytes);
  std::vector<Array> w;
  for (int64_t c = 0; c < copies; ++c) {
    Array a = ingot::random::uniform({n, k}, ingot::bfloat16, -0.05f, 0.05f);
    a.eval();
    w.push_back(a);
  }
  return w;
}

void set_bytes(benchmark::State& state, double bytes) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

/// args: K, N, rows of x.
void BM_gemv_bf16(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1), m = state.range(2);
  std::vector<Array> w = weights(n, k);
  std::vector<Array> wt;
  for (const Array& a : w) wt.push_back(ingot::transpose(a));
  Array x = ingot::random::uniform({m, k}, ingot::bfloat16, -1.0f, 1.0f);
  x.eval();
  size_t c = 0;
  for (auto _ : state) {
    Array y = ingot::matmul(x, wt[c]);
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
    c = (c + 1) % wt.size();
  }
  set_bytes(state, static_cast<double>(n * k * 2));
}

__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint8_t* p, int64_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    a0 = _mm512_add_epi32(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi32(a1, _mm512_loadu_si512(p + i + 64));
    a2 = _mm512_add_epi32(a2, _mm512_loadu_si512(p + i + 128));
    a3 = _mm512_add_epi32(a3, _mm512_loadu_si512(p + i + 192));
  }
  uint64_t s = static_cast<uint64_t>(_mm512_reduce_add_epi32(
      _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3))));
  for (; i < bytes; ++i) s += p[i];
  return s;
}

uint64_t sum_plain(const uint8_t* p, int64_t bytes) {
  uint64_t s = 0;
  for (int64_t i = 0; i < bytes; ++i) s += p[i];
  return s;
}

/// The same bytes as BM_gemv_bf16 (K, N), summed: row blocks split over the pool as the GEMV
/// splits them, one sequential pass per block.
void BM_stream_read(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1);
  std::vector<Array> w = weights(n, k);
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const int64_t row_bytes = k * 2;
  std::vector<uint64_t> partial(static_cast<size_t>(n));
  size_t c = 0;
  for (auto _ : state) {
    const uint8_t* base = static_cast<const uint8_t*>(w[c].raw_ptr());
    ingot::parallel_for(n, std::max<int64_t>(1, 65536 / k), [&](int64_t r0, int64_t r1) {
      const uint8_t* p = base + r0 * row_bytes;
      const int64_t bytes = (r1 - r0) * row_bytes;
      partial[static_cast<size_t>(r0)] = avx512 ? sum_avx512(p, bytes) : sum_plain(p, bytes);
    });
    benchmark::DoNotOptimize(partial.data());
    c = (c + 1) % w.size();
  }
  set_bytes(state, static_cast<double>(n * k * 2));
}

/// {K, N}: Qwen3-0.6B (hidden 1024: q 2048, k/v 1024, o 2048 -> 1024, gate/up 3072, down,
/// lm_head 151936) and Llama-3.2-1B (hidden 2048: k/v 512, q/o 2048, gate/up 8192, down,
/// lm_head 128256).
constexpr int64_t kShapes[][2] = {{1024, 1024}, {1024, 2048},   {2048, 1024},  {1024, 3072},
                                  {3072, 1024}, {1024, 151936}, {2048, 512},   {2048, 2048},
                                  {2048, 8192}, {8192, 2048},   {2048, 128256}};

void gemv_args(benchmark::internal::Benchmark* b) {
  for (auto& s : kShapes) b->Args({s[0], s[1], 1});
  for (int64_t m : {2, 4, 8}) b->Args({1024, 3072, m})->Args({2048, 8192, m});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void stream_args(benchmark::internal::Benchmark* b) {
  for (auto& s : kShapes) b->Args({s[0], s[1]});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_gemv_bf16)->Apply(gemv_args);
BENCHMARK(BM_stream_read)->Apply(stream_args);

}  // namespace
