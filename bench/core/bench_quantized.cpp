// Quantized matmul (affine, MLX layout) against bf16 at Llama-3.2-1B's projection shapes:
// x [rows, K] @ W^T with W [N, K], rows 1 (decode), 4 and 8 (still the GEMV, below the GEMM
// threshold of 16), 16 and 128 (prefill GEMM). The bf16 and 8-/4-bit variants of one shape run
// in the same binary and run, so their ratios mean something on a shared machine (absolute
// rates do not). Args: rows, K, N, bits (16: bf16), group size.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>

#include "core/ingot.h"
#include "util/thread_pool.h"

namespace {

using ingot::Array;

void BM_qmm(benchmark::State& state) {
  const int64_t rows = state.range(0), k = state.range(1), n = state.range(2);
  const int bits = static_cast<int>(state.range(3)), gs = static_cast<int>(state.range(4));
  openblas_set_num_threads(ingot::pool_threads());
  ingot::random::seed(1);
  Array w = ingot::random::uniform({n, k}, ingot::bfloat16, -0.05, 0.05);
  Array x = ingot::random::uniform({rows, k}, ingot::bfloat16, -1.0, 1.0);
  x.eval();
  const ingot::QuantizeOptions opt{.group_size = gs, .bits = bits == 16 ? 4 : bits};
  ingot::QuantizedWeight q;
  Array wt;
  if (bits == 16) {
    w.eval();
    wt = ingot::transpose(w);
  } else {
    q = ingot::quantize(w, opt);
    ingot::eval({q.w, q.scales, q.biases});
  }
  for (auto _ : state) {
    Array y = bits == 16 ? ingot::matmul(x, wt)
                         : ingot::quantized_matmul(x, q.w, q.scales, q.biases, true, opt);
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(rows * n * k),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "K", "N", "bits", "gs"});
  // gate/up (2048 -> 8192), down (8192 -> 2048), q/o (2048 -> 2048).
  const int64_t kn[][2] = {{2048, 8192}, {8192, 2048}, {2048, 2048}};
  for (int64_t rows : {1, 4, 8, 16, 128})
    for (const auto& s : kn)
      for (int64_t bits : {16, 8, 4}) b->Args({rows, s[0], s[1], bits, 64});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_qmm)->Apply(shapes);

}  // namespace
