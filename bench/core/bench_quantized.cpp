// Quantized matmul (affine, MLX layout) against bf16 at Llama-3.2-1B's projection shapes:
// x [rows, K] @ W^T with W [N, K], rows 1 (decode), 4 and 8 (still the GEMV, below the GEMM
// threshold of 16), 16, 32, 64 and 128 (prefill: on AVX512_BF16 the bf16 GEMM takes over from
// the VNNI kernel at 32 rows for 8-bit and 48 for 4-bit; INGOT_CPU_BF16_GEMM=0 keeps the VNNI
// kernel, for comparison, and sends bf16 through sgemm); the head at decode. The bf16 and 8-/4-bit
// variants of one shape run in the same binary and run, so their ratios mean something on a shared
// machine (absolute rates do not). Args: rows, K, N, bits (16: bf16), group size, int8 (on the
// SIMD levels: 1 the default, the int8-activation kernels or the bf16 prefill GEMM, 0 the float32
// GEMV or dequantizing GEMM).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>

#include "backend/cpu/quantized_int8.h"
#include "core/ingot.h"
#include "util/thread_pool.h"

namespace {

using ingot::Array;

void BM_qmm(benchmark::State& state) {
  const int64_t rows = state.range(0), k = state.range(1), n = state.range(2);
  const int bits = static_cast<int>(state.range(3)), gs = static_cast<int>(state.range(4));
  // On the SIMD levels: 1 = the int8-activation kernels, 0 = the float32 GEMV (decode) or the
  // dequantizing GEMM (prefill).
  ingot::cpu::set_int8_decode(state.range(5) != 0);
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
  ingot::cpu::reset_int8_decode();
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(rows * n * k),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "K", "N", "bits", "gs", "int8"});
  // gate/up (2048 -> 8192), down (8192 -> 2048), q/o (2048 -> 2048).
  const int64_t kn[][2] = {{2048, 8192}, {8192, 2048}, {2048, 2048}};
  for (int64_t rows : {1, 4, 8, 16, 32, 64, 128})
    for (const auto& s : kn)
      for (int64_t bits : {16, 8, 4}) {
        b->Args({rows, s[0], s[1], bits, 64, 1});
        // The float32 GEMV / GEMM next to the int8 kernels (quantized weights).
        if (bits != 16) b->Args({rows, s[0], s[1], bits, 64, 0});
      }
  // The tied head (2048 -> 128256) at decode: weights far larger than the L3 cache, so this
  // one runs at DRAM bandwidth as a whole model's decode does.
  for (int64_t bits : {16, 8, 4}) {
    b->Args({1, 2048, 128256, bits, 64, 1});
    if (bits != 16) b->Args({1, 2048, 128256, bits, 64, 0});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_qmm)->Apply(shapes);

}  // namespace
