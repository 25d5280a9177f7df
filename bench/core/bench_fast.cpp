// Fused fast ops (rms_norm, rope, sdpa) and softmax, each next to its reference composition
// from ops in the same run: GB/s of compulsory traffic or GFLOP/s.
#include <benchmark/benchmark.h>

#include <cmath>

#include "core/ingot.h"

namespace {

using namespace ingot;

Array rand(const Shape& shape, Dtype t, uint64_t seed) {
  Array a = random::normal(shape, t, 0.0, 1.0, random::key(seed));
  a.eval();
  return a;
}

template <typename F>
void run(benchmark::State& state, F&& fn, double bytes, double flops = 0) {
  for (auto _ : state) {
    Array y = fn();
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
  }
  state.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  if (flops > 0)
    state.counters["FLOP/s"] =
        benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

Dtype dt(int64_t code) {
  return code == 16 ? bfloat16 : float32;
}

// ---- softmax: rows x n; arg 2: 16 = bfloat16, 32 = float32 ----

void BM_softmax(benchmark::State& st) {
  Array x = rand({st.range(0), st.range(1)}, dt(st.range(2)), 1);
  run(
      st, [&] { return softmax(x, -1); }, 2.0 * x.nbytes());
}
void BM_softmax_ref(benchmark::State& st) {
  Array x = rand({st.range(0), st.range(1)}, dt(st.range(2)), 1);
  run(
      st,
      [&] {
        Array xf = astype(x, float32);
        Array e = exp(xf - max(xf, -1, true));
        return astype(e / sum(e, -1, true), x.dtype());
      },
      2.0 * x.nbytes());
}
BENCHMARK(BM_softmax)
    ->Args({64, 4096, 32})
    ->Args({64, 4096, 16})
    ->Args({8, 32768, 32})
    ->Args({8, 32768, 16})
    ->UseRealTime();
BENCHMARK(BM_softmax_ref)
    ->Args({64, 4096, 32})
    ->Args({64, 4096, 16})
    ->Args({8, 32768, 32})
    ->Args({8, 32768, 16})
    ->UseRealTime();

// ---- rms_norm: rows x E with weight ----

void BM_rms_norm(benchmark::State& st) {
  Array x = rand({st.range(0), st.range(1)}, dt(st.range(2)), 2);
  Array w = rand({st.range(1)}, dt(st.range(2)), 3);
  run(
      st, [&] { return fast::rms_norm(x, w); }, 2.0 * x.nbytes() + w.nbytes());
}
void BM_rms_norm_ref(benchmark::State& st) {
  Array x = rand({st.range(0), st.range(1)}, dt(st.range(2)), 2);
  Array w = rand({st.range(1)}, dt(st.range(2)), 3);
  run(
      st, [&] { return fast::ref::rms_norm(x, w); }, 2.0 * x.nbytes() + w.nbytes());
}
BENCHMARK(BM_rms_norm)->Args({64, 4096, 32})->Args({64, 4096, 16})->UseRealTime();
BENCHMARK(BM_rms_norm_ref)->Args({64, 4096, 32})->Args({64, 4096, 16})->UseRealTime();

// ---- rope: [1, 32, L, 128] bfloat16, half-split ----

void BM_rope(benchmark::State& st) {
  Array x = rand({1, 32, st.range(0), 128}, bfloat16, 4);
  run(
      st, [&] { return fast::rope(x, 128, {.offset = 7}); }, 2.0 * x.nbytes());
}
void BM_rope_ref(benchmark::State& st) {
  Array x = rand({1, 32, st.range(0), 128}, bfloat16, 4);
  run(
      st, [&] { return fast::ref::rope(x, 128, {.offset = 7}); }, 2.0 * x.nbytes());
}
BENCHMARK(BM_rope)->Arg(1)->Arg(512)->UseRealTime();
BENCHMARK(BM_rope_ref)->Arg(1)->Arg(512)->UseRealTime();

// ---- sdpa bfloat16, H = 32, Hkv = 8, D = 128: decode (L = 1) and causal prefill (L = S) ----

template <bool Ref>
void sdpa_bench(benchmark::State& st) {
  const int64_t L = st.range(0), S = st.range(1);
  Array q = rand({1, 32, L, 128}, bfloat16, 5);
  Array k = rand({1, 8, S, 128}, bfloat16, 6);
  Array v = rand({1, 8, S, 128}, bfloat16, 7);
  fast::SdpaOptions o{.scale = 1.0f / std::sqrt(128.0f), .causal = L > 1};
  // Causal prefill computes about half of the L x S scores.
  const double pairs = L > 1 ? 0.5 * L * (S + 1) : static_cast<double>(S);
  const double flops = 4.0 * 32 * pairs * 128;
  run(
      st,
      [&] {
        return Ref ? fast::ref::scaled_dot_product_attention(q, k, v, o)
                   : fast::scaled_dot_product_attention(q, k, v, o);
      },
      static_cast<double>(q.nbytes() + k.nbytes() + v.nbytes() + q.nbytes()), flops);
}
void BM_sdpa(benchmark::State& st) {
  sdpa_bench<false>(st);
}
void BM_sdpa_ref(benchmark::State& st) {
  sdpa_bench<true>(st);
}
BENCHMARK(BM_sdpa)
    ->Args({1, 1024})
    ->Args({1, 4096})
    ->Args({512, 512})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_sdpa_ref)
    ->Args({1, 1024})
    ->Args({1, 4096})
    ->Args({512, 512})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
