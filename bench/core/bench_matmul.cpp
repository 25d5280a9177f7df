// matmul benchmarks: float32 GEMM against direct cblas_sgemm (same binary, same run), bf16/f16
// GEMV decode shapes in weight GB/s next to a streaming-read bandwidth ceiling, bf16 GEMM.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/ingot.h"
#include "util/thread_pool.h"

namespace {

using ingot::Array;

void set_blas_threads() {
  openblas_set_num_threads(ingot::pool_threads());
}

Array filled(const ingot::Shape& shape, ingot::Dtype t, float v) {
  Array a = ingot::full(shape, Array(v), t);
  a.eval();
  return a;
}

void flops_counter(benchmark::State& state, double m, double n, double k) {
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- float32 square GEMM: ingot vs OpenBLAS ----

void BM_matmul_f32_ingot(benchmark::State& state) {
  const int64_t n = state.range(0);
  set_blas_threads();
  Array a = filled({n, n}, ingot::float32, 0.5f), b = filled({n, n}, ingot::float32, 0.25f);
  for (auto _ : state) {
    Array c = ingot::matmul(a, b);
    c.eval();
    benchmark::DoNotOptimize(c.raw_ptr());
  }
  flops_counter(state, n, n, n);
}

void BM_matmul_f32_openblas(benchmark::State& state) {
  const int64_t n = state.range(0);
  set_blas_threads();
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const int ni = static_cast<int>(n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, a.data(), ni, b.data(),
                ni, 0.0f, c.data(), ni);
    benchmark::DoNotOptimize(c.data());
  }
  flops_counter(state, n, n, n);
}

void square_sizes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {64, 128, 256, 512, 1024, 2048}) b->Arg(n);
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_matmul_f32_ingot)->Apply(square_sizes);
BENCHMARK(BM_matmul_f32_openblas)->Apply(square_sizes);
// 4096^3: the done-criterion (ingot >= 95% of OpenBLAS), measured in the same run.
BENCHMARK(BM_matmul_f32_ingot)
    ->Arg(4096)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_matmul_f32_openblas)
    ->Arg(4096)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- GEMV (decode): x [1, K] @ W^T, W stored [N, K]; weight bytes per second ----

void gemv_bench(benchmark::State& state, ingot::Dtype t, bool weight_nk) {
  const int64_t k = state.range(0), n = state.range(1);
  Array x = filled({1, k}, t, 0.5f);
  Array w = weight_nk ? filled({n, k}, t, 0.01f) : filled({k, n}, t, 0.01f);
  Array wt = weight_nk ? ingot::transpose(w) : w;
  for (auto _ : state) {
    Array y = ingot::matmul(x, wt);
    y.eval();
    benchmark::DoNotOptimize(y.raw_ptr());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w.nbytes()) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
void BM_matmul_gemv_bf16(benchmark::State& s) {
  gemv_bench(s, ingot::bfloat16, true);
}
void BM_matmul_gemv_f16(benchmark::State& s) {
  gemv_bench(s, ingot::float16, true);
}
void BM_matmul_gemv_f32(benchmark::State& s) {
  gemv_bench(s, ingot::float32, true);
}
void BM_matmul_gemv_bf16_kn(benchmark::State& s) {
  gemv_bench(s, ingot::bfloat16, false);
}

void decode_shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 4096})->Args({2048, 8192})->Args({8192, 2048})->Args({2048, 128256});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_matmul_gemv_bf16)->Apply(decode_shapes);
BENCHMARK(BM_matmul_gemv_f16)->Apply(decode_shapes);
BENCHMARK(BM_matmul_gemv_f32)->Args({4096, 4096})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_matmul_gemv_bf16_kn)->Args({4096, 4096})->Unit(benchmark::kMicrosecond)->UseRealTime();

/// OpenBLAS sgemv on the same float32 shape, for reference.
void BM_matmul_gemv_f32_openblas(benchmark::State& state) {
  const int64_t k = state.range(0), n = state.range(1);
  set_blas_threads();
  std::vector<float> w(n * k, 0.01f), x(k, 0.5f), y(n);
  for (auto _ : state) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f,
                w.data(), static_cast<int>(k), x.data(), 1, 0.0f, y.data(), 1);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n * k * 4) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_matmul_gemv_f32_openblas)
    ->Args({4096, 4096})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

/// Streaming read of 512 MiB with the same thread count: the GEMV bandwidth ceiling. Each
/// thread reads four sequential streams at once, as the GEMV kernel reads four weight rows.
void BM_matmul_stream_read(benchmark::State& state) {
  const int64_t n = int64_t{64} << 20;  // uint64 words
  std::vector<uint64_t> buf(static_cast<size_t>(n), 1);
  std::vector<uint64_t> partial(64);
  const int64_t rows = n / 1024;  // 8 KiB "rows"
  for (auto _ : state) {
    ingot::parallel_for(rows / 4, rows / 256, [&](int64_t b, int64_t e) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t r = b * 4; r < e * 4; r += 4) {
        const uint64_t* p = buf.data() + r * 1024;
        for (int64_t i = 0; i < 1024; ++i) {
          s0 += p[i];
          s1 += p[i + 1024];
          s2 += p[i + 2048];
          s3 += p[i + 3072];
        }
      }
      partial[(b * 64) / (rows / 4)] = s0 + s1 + s2 + s3;
    });
    benchmark::DoNotOptimize(partial.data());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n * 8) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_matmul_stream_read)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- bf16 GEMM (prefill): AVX512_BF16 kernel (route 1) vs convert to float32 + sgemm (route 0,
// INGOT_CPU_BF16_GEMM=0), next to float32 sgemm on the same shape (route 2), same run ----

/// Runs the benchmark body with INGOT_CPU_BF16_GEMM set for `route` (0 old, 1 new).
struct RouteScope {
  explicit RouteScope(int64_t route) { setenv("INGOT_CPU_BF16_GEMM", route == 0 ? "0" : "1", 1); }
  ~RouteScope() { unsetenv("INGOT_CPU_BF16_GEMM"); }
};

/// x [m, k] @ W^T with W stored [n, k] (Linear layout); route 2 is the same product in float32.
void linear_bench(benchmark::State& state, int64_t m, int64_t k, int64_t n, int64_t route) {
  set_blas_threads();
  RouteScope scope(route);
  const ingot::Dtype t = route == 2 ? ingot::float32 : ingot::bfloat16;
  Array x = filled({m, k}, t, 0.5f), w = filled({n, k}, t, 0.25f);
  Array wt = ingot::transpose(w);
  for (auto _ : state) {
    Array c = ingot::matmul(x, wt);
    c.eval();
    benchmark::DoNotOptimize(c.raw_ptr());
  }
  flops_counter(state, m, n, k);
  state.SetLabel(route == 0 ? "bf16 convert+sgemm" : route == 1 ? "bf16 direct" : "f32 sgemm");
}

void BM_matmul_bf16_gemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  linear_bench(state, n, n, n, state.range(1));
}
BENCHMARK(BM_matmul_bf16_gemm)
    ->ArgsProduct({{256, 512, 1024, 2048}, {1, 0, 2}})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

/// a [n, n] @ b [n, n] with b contiguous ([K, N] row-major, e.g. attention's p @ v): the direct
/// kernel copies b into rows of b^T per call.
void BM_matmul_bf16_gemm_kn(benchmark::State& state) {
  const int64_t n = state.range(0);
  set_blas_threads();
  RouteScope scope(state.range(1));
  Array a = filled({n, n}, ingot::bfloat16, 0.5f), b = filled({n, n}, ingot::bfloat16, 0.25f);
  for (auto _ : state) {
    Array c = ingot::matmul(a, b);
    c.eval();
    benchmark::DoNotOptimize(c.raw_ptr());
  }
  flops_counter(state, n, n, n);
  state.SetLabel(state.range(1) == 0 ? "bf16 convert+sgemm" : "bf16 direct");
}
BENCHMARK(BM_matmul_bf16_gemm_kn)
    ->ArgsProduct({{256, 1024}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

/// Prefill Linear shapes: x [M, K] @ W^T, args (M, K, N, route).
void BM_matmul_bf16_linear(benchmark::State& state) {
  linear_bench(state, state.range(0), state.range(1), state.range(2), state.range(3));
}
void linear_shapes(benchmark::internal::Benchmark* b) {
  const int64_t kn[][2] = {{1024, 2048}, {1024, 3072}, {3072, 1024},
                           {2048, 8192}, {8192, 2048}, {2048, 128256}};
  for (auto& s : kn)
    for (int64_t route : {1, 0, 2}) b->Args({128, s[0], s[1], route});
  for (int64_t m : {4, 5, 8, 16, 32, 64, 256, 512})
    for (int64_t route : {1, 0}) b->Args({m, 1024, 3072, route});
  b->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
}
BENCHMARK(BM_matmul_bf16_linear)->Apply(linear_shapes);

}  // namespace
