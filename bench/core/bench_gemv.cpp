// Decode GEMVs (issue 14): y = x @ W^T with W stored [N, K] (a Linear weight), through
// ingot::matmul (bf16) and ingot::quantized_matmul (8-/4-bit, group 64), at the Qwen3-0.6B /
// Llama-3.2-1B decode shapes (lm_head included), reported in GB/s of weight bytes read, next to
// a streaming read of the same bytes in the same run (AVX-512 loads where the CPU has them; the
// GEMV's ceiling). Every benchmark cycles through copies of its weights totalling >= 256 MiB, so
// W comes from DRAM as in decode, never from the 32 MiB L3 (except BM_gemv_q_cached, which
// measures the kernel without DRAM). BM_decode_step runs every projection of every layer plus
// the head, as one decode step does (one weight set per layer, so the pool wakes as often as in
// decode): its time per iteration is a step's GEMV time.
// The last argument is the thread count (ScopedPoolThreads), so 1 and 2 threads of one shape run
// back to back in one process; 0 keeps INGOT_NUM_THREADS (or the physical cores).
// GCC 12 flags the _mm512_undefined_* inside its own intrinsics headers as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
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

/// set_pool_threads(t) for a benchmark (t > 0), labelled with the count in use.
std::unique_ptr<ingot::ScopedPoolThreads> threads_of(benchmark::State& state, int64_t t) {
  std::unique_ptr<ingot::ScopedPoolThreads> s;
  if (t > 0) s = std::make_unique<ingot::ScopedPoolThreads>(static_cast<int>(t));
  state.SetLabel(std::to_string(ingot::pool_threads()) + " threads");
  return s;
}

/// args: K, N, rows of x, threads.
void BM_gemv_bf16(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1), m = state.range(2);
  auto pool = threads_of(state, state.range(3));
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

/// The same bytes as BM_gemv_bf16 (K, N), summed: ~128 KB row blocks handed out over the pool
/// as the GEMV hands them out, one sequential pass per block. args: K, N, threads.
void BM_stream_read(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1);
  auto pool = threads_of(state, state.range(2));
  std::vector<Array> w = weights(n, k);
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const int64_t row_bytes = k * 2;
  std::vector<uint64_t> partial(static_cast<size_t>(n));
  size_t c = 0;
  for (auto _ : state) {
    const uint8_t* base = static_cast<const uint8_t*>(w[c].raw_ptr());
    ingot::parallel_for_dynamic(n, std::max<int64_t>(1, 65536 / k), [&](int64_t r0, int64_t r1) {
      const uint8_t* p = base + r0 * row_bytes;
      const int64_t bytes = (r1 - r0) * row_bytes;
      partial[static_cast<size_t>(r0)] = avx512 ? sum_avx512(p, bytes) : sum_plain(p, bytes);
    });
    benchmark::DoNotOptimize(partial.data());
    c = (c + 1) % w.size();
  }
  set_bytes(state, static_cast<double>(n * k * 2));
}

/// A quantized [n, k] weight (group 64) of random values.
struct QWeight {
  Array w, scales, biases;
};
QWeight qweight(int64_t n, int64_t k, int bits) {
  Array a = ingot::random::uniform({n, k}, ingot::bfloat16, -0.05f, 0.05f);
  ingot::QuantizedWeight q = ingot::quantize(a, {.group_size = 64, .bits = bits});
  ingot::eval({q.w, q.scales, q.biases});
  return {q.w, q.scales, q.biases};
}
double qbytes(const QWeight& q) {
  return static_cast<double>(q.w.nbytes() + q.scales.nbytes() + q.biases.nbytes());
}
/// x @ q^T (group 64), the decode call.
Array qmatmul(const Array& x, const QWeight& q, int bits) {
  return ingot::quantized_matmul(x, q.w, q.scales, q.biases, true,
                                 {.group_size = 64, .bits = bits});
}

/// Quantized decode GEMV (int8-activation kernels where they run, as in decode). args: K, N,
/// bits, threads.
void BM_gemv_q(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1);
  const int bits = static_cast<int>(state.range(2));
  auto pool = threads_of(state, state.range(3));
  std::vector<QWeight> w{qweight(n, k, bits)};
  const double bytes = qbytes(w[0]);
  while (static_cast<double>(w.size()) * bytes < static_cast<double>(kMinBytes))
    w.push_back(qweight(n, k, bits));
  Array x = ingot::random::uniform({1, k}, ingot::bfloat16, -1.0f, 1.0f);
  x.eval();
  size_t c = 0;
  for (auto _ : state) {
    Array y = qmatmul(x, w[c], bits);
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
    c = (c + 1) % w.size();
  }
  set_bytes(state, bytes);
}

/// The same GEMV on one weight copy that stays in L2 (no DRAM): the kernel's compute rate.
/// Next to BM_gemv_q (DRAM) it tells how far a decode GEMV is from compute-bound: at rates C
/// (here) and M (stream), no overlap of compute and memory would give 1 / (1/C + 1/M). args: K,
/// N, bits (threads: 1).
void BM_gemv_q_cached(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1);
  const int bits = static_cast<int>(state.range(2));
  auto pool = threads_of(state, 1);
  const QWeight w = qweight(n, k, bits);
  Array x = ingot::random::uniform({1, k}, ingot::bfloat16, -1.0f, 1.0f);
  x.eval();
  for (auto _ : state) {
    Array y = qmatmul(x, w, bits);
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
  }
  set_bytes(state, qbytes(w));
}
void cached_args(benchmark::internal::Benchmark* b) {
  for (int64_t bits : {8, 4}) b->Args({2048, 256, bits})->Args({8192, 64, bits});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_gemv_q_cached)->Apply(cached_args);

/// The projections of one decoder layer ({K, N}: q, k, v, o, gate, up, down) and the head.
struct ModelShape {
  int64_t layers;
  std::vector<std::array<int64_t, 2>> proj;
  std::array<int64_t, 2> head;
};
const ModelShape kModels[] = {{28,
                               {{1024, 2048},
                                {1024, 1024},
                                {1024, 1024},
                                {2048, 1024},
                                {1024, 3072},
                                {1024, 3072},
                                {3072, 1024}},
                               {1024, 151936}},  // Qwen3-0.6B
                              {16,
                               {{2048, 2048},
                                {2048, 512},
                                {2048, 512},
                                {2048, 2048},
                                {2048, 8192},
                                {2048, 8192},
                                {8192, 2048}},
                               {2048, 128256}}};  // Llama-3.2-1B

/// Every GEMV of one decode step (all layers' projections, then the head), each on its own
/// weights. args: model (0 Qwen3-0.6B, 1 Llama-3.2-1B), bits (16: bf16), threads.
void BM_decode_step(benchmark::State& state) {
  const ModelShape& ms = kModels[state.range(0)];
  const int bits = static_cast<int>(state.range(1));
  auto pool = threads_of(state, state.range(2));
  std::vector<std::array<int64_t, 2>> shapes;
  for (int64_t l = 0; l < ms.layers; ++l)
    for (const auto& p : ms.proj) shapes.push_back(p);
  shapes.push_back(ms.head);
  std::vector<Array> wt;
  std::vector<QWeight> wq;
  double bytes = 0;
  for (const auto& [k, n] : shapes) {
    if (bits == 16) {
      Array a = ingot::random::uniform({n, k}, ingot::bfloat16, -0.05f, 0.05f);
      a.eval();
      wt.push_back(ingot::transpose(a));
      bytes += static_cast<double>(a.nbytes());
    } else {
      wq.push_back(qweight(n, k, bits));
      bytes += qbytes(wq.back());
    }
  }
  std::vector<Array> xs;
  for (int64_t k : {1024, 2048, 3072, 8192}) {
    xs.push_back(ingot::random::uniform({1, k}, ingot::bfloat16, -1.0f, 1.0f));
    xs.back().eval();
  }
  auto x_of = [&](int64_t k) -> const Array& {
    return xs[k == 1024 ? 0 : k == 2048 ? 1 : k == 3072 ? 2 : 3];
  };
  for (auto _ : state) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Array& x = x_of(shapes[i][0]);
      Array y = bits == 16 ? ingot::matmul(x, wt[i]) : qmatmul(x, wq[i], bits);
      y.eval();
      benchmark::DoNotOptimize(y.raw_ptr());
    }
  }
  set_bytes(state, bytes);
  state.counters["steps/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

/// {K, N}: Qwen3-0.6B (hidden 1024: q 2048, k/v 1024, o 2048 -> 1024, gate/up 3072, down,
/// lm_head 151936) and Llama-3.2-1B (hidden 2048: k/v 512, q/o 2048, gate/up 8192, down,
/// lm_head 128256).
constexpr int64_t kShapes[][2] = {{1024, 1024}, {1024, 2048},   {2048, 1024},  {1024, 3072},
                                  {3072, 1024}, {1024, 151936}, {2048, 512},   {2048, 2048},
                                  {2048, 8192}, {8192, 2048},   {2048, 128256}};

void gemv_args(benchmark::internal::Benchmark* b) {
  for (int64_t t : {1, 2}) {
    for (auto& s : kShapes) b->Args({s[0], s[1], 1, t});
    for (int64_t m : {2, 4, 8}) b->Args({1024, 3072, m, t})->Args({2048, 8192, m, t});
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void stream_args(benchmark::internal::Benchmark* b) {
  for (int64_t t : {1, 2})
    for (auto& s : kShapes) b->Args({s[0], s[1], t});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void q_args(benchmark::internal::Benchmark* b) {
  for (int64_t bits : {8, 4})
    for (int64_t t : {1, 2})
      for (auto& s : kShapes) b->Args({s[0], s[1], bits, t});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void step_args(benchmark::internal::Benchmark* b) {
  for (int64_t model : {0, 1})
    for (int64_t bits : {16, 8, 4})
      for (int64_t t : {1, 2}) b->Args({model, bits, t});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_gemv_bf16)->Apply(gemv_args);
BENCHMARK(BM_stream_read)->Apply(stream_args);
BENCHMARK(BM_gemv_q)->Apply(q_args);
BENCHMARK(BM_decode_step)->Apply(step_args);

}  // namespace
