// Decode-step latency probe (issue 10): what a chain of dependent GPU launches costs, apart from
// ingot. A single-row decode step is ~6-8 dependent kernels a layer, each reading a weight
// matrix once; BENCHMARKS.md shows them far from the bytes/bandwidth floor. This program times,
// inside CUDA graphs (replayed, device events, median of the replays):
//   A. chains of empty kernels: plain launches against programmatic dependent launch (PDL);
//   B. chains of bf16 GEMVs y = W x (square W, the next kernel's x is this one's y), each with
//      its own weights (read from HBM) or all sharing one matrix (read from L2), with PDL, and
//      with the first weight loads issued before the PDL wait;
//   C. one persistent kernel doing the same GEMVs as phases separated by grid-wide barriers,
//      and the barrier alone.
// Each GEMV result is checked against a float64 host product (relative error). Standalone:
//   nvcc -O3 -std=c++17 -arch=sm_90 bench/cuda/probe_decode_latency.cu -o probe && ./probe
// (scripts/device_check.sh STEPS=latencyprobe builds and runs it). Prints one table.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CHECK(call)                                                                       \
  do {                                                                                    \
    cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call,                   \
                   cudaGetErrorString(e_));                                               \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

namespace {

constexpr int kThreads = 128;  // four warps a block, one output column a warp at a time

__device__ __forceinline__ void pdl_wait() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}
__device__ __forceinline__ void pdl_release() {
  asm volatile("griddepcontrol.launch_dependents;" :::);
}

template <bool kPdl>
__global__ void empty_kernel(int* sink) {
  if constexpr (kPdl) {
    pdl_wait();
    pdl_release();
  }
  if (sink && threadIdx.x == 0 && blockIdx.x == 0) atomicAdd(sink, 0);
}

__device__ __forceinline__ uint4 load_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float dot8(uint4 w, const __nv_bfloat16* x) {
  const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(x);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 a = __bfloat1622float2(wp[i]), b = __bfloat1622float2(xp[i]);
    s = fmaf(a.x, b.x, s);
    s = fmaf(a.y, b.y, s);
  }
  return s;
}

// Warp w of the grid's warps computes columns w, w + warps, ...: lane l reads 16-byte chunks
// l, l + 32, ... of the column's K / 8 (four chunks in flight a lane). x comes from shared
// memory (loaded after the PDL wait). kEarly: a lane's first chunks of its first column are
// requested before the wait (weights are never written by the previous kernel).
template <bool kPdl, bool kEarly>
__device__ __forceinline__ void gemv_body(const __nv_bfloat16* __restrict__ w,
                                          const __nv_bfloat16* __restrict__ x,
                                          __nv_bfloat16* __restrict__ y, int n, int k,
                                          __nv_bfloat16* xs, int warp0, int warps) {
  const int lane = threadIdx.x & 31;
  const int chunks = k / 8;
  const int first = warp0 + static_cast<int>(threadIdx.x >> 5);
  uint4 pre[4];
  if constexpr (kEarly) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int c = lane + 32 * u;
      pre[u] = first < n && c < chunks
                   ? load_stream(w + static_cast<int64_t>(first) * k + 8 * c)
                   : make_uint4(0, 0, 0, 0);
    }
  }
  if constexpr (kPdl) {
    pdl_wait();
    pdl_release();
  }
  // __ldcg: from L2, never a stale read-only-cache line (a persistent kernel's earlier phase
  // wrote x).
  for (int i = threadIdx.x; i < k / 8; i += blockDim.x)
    reinterpret_cast<uint4*>(xs)[i] = __ldcg(reinterpret_cast<const uint4*>(x) + i);
  __syncthreads();
  bool use_pre = kEarly;
  for (int col = first; col < n; col += warps) {
    const __nv_bfloat16* wc = w + static_cast<int64_t>(col) * k;
    float s = 0.0f;
    for (int c0 = 0; c0 < chunks; c0 += 128) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = c0 + lane + 32 * u;
        if (use_pre && c0 == 0)
          v[u] = pre[u];
        else
          v[u] = c < chunks ? load_stream(wc + 8 * c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = c0 + lane + 32 * u;
        if (c < chunks) s += dot8(v[u], xs + 8 * c);
      }
    }
    use_pre = false;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[col] = __float2bfloat16(s);
  }
}

template <bool kPdl, bool kEarly>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const __nv_bfloat16* w,
                                                        const __nv_bfloat16* x, __nv_bfloat16* y,
                                                        int n, int k) {
  extern __shared__ __nv_bfloat16 xs[];
  gemv_body<kPdl, kEarly>(w, x, y, n, k, xs, blockIdx.x * (kThreads / 32),
                          gridDim.x * (kThreads / 32));
}

// A grid-wide barrier for co-resident blocks: arrival counter plus generation word.
__device__ __forceinline__ void grid_barrier(unsigned* count, volatile unsigned* gen,
                                             unsigned blocks) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned g = *gen;
    __threadfence();
    if (atomicAdd(count, 1u) == blocks - 1) {
      *count = 0;
      __threadfence();
      *gen = g + 1;
    } else {
      while (*gen == g) {
      }
    }
    __threadfence();
  }
  __syncthreads();
}

// kPhases GEMVs (weights ws[i], x of phase i+1 = y of phase i) with a barrier after each;
// kGemv false: barriers only.
template <bool kGemv>
__global__ void __launch_bounds__(kThreads) persistent_kernel(const __nv_bfloat16* const* ws,
                                                              __nv_bfloat16* const* vs, int n,
                                                              int phases, unsigned* count,
                                                              unsigned* gen) {
  extern __shared__ __nv_bfloat16 xs[];
  for (int p = 0; p < phases; ++p) {
    if constexpr (kGemv)
      gemv_body<false, false>(ws[p], vs[p], vs[p + 1], n, n, xs, blockIdx.x * (kThreads / 32),
                              gridDim.x * (kThreads / 32));
    grid_barrier(count, gen, gridDim.x);
  }
}

template <typename... P, typename... A>
void launch(bool pdl, void (*kernel)(P...), int grid, size_t smem, cudaStream_t s, A... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

/// Median microseconds of one replay of the graph `record` captures on s.
template <typename F>
double time_graph(cudaStream_t s, F record, int replays = 30) {
  cudaGraph_t g;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  record();
  CHECK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t ex;
  CHECK(cudaGraphInstantiate(&ex, g, 0));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) CHECK(cudaGraphLaunch(ex, s));
  std::vector<double> t;
  for (int i = 0; i < replays; ++i) {
    CHECK(cudaEventRecord(a, s));
    CHECK(cudaGraphLaunch(ex, s));
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.0);
  }
  std::sort(t.begin(), t.end());
  CHECK(cudaGraphExecDestroy(ex));
  CHECK(cudaGraphDestroy(g));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return t[t.size() / 2];
}

std::vector<__nv_bfloat16> random_bf16(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<__nv_bfloat16> v(n);
  for (auto& e : v) e = __float2bfloat16(d(rng));
  return v;
}

/// Relative error of the device's y = W x (W [n, n] row-major) against float64, from the host
/// copies of w and x.
double check_gemv(const std::vector<__nv_bfloat16>& w, const std::vector<__nv_bfloat16>& x,
                  const __nv_bfloat16* y_dev, int n) {
  std::vector<__nv_bfloat16> y(n);
  CHECK(cudaMemcpy(y.data(), y_dev, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (int r = 0; r < n; ++r) {
    double s = 0;
    for (int c = 0; c < n; ++c)
      s += double(__bfloat162float(w[size_t(r) * n + c])) * __bfloat162float(x[c]);
    const double e = __bfloat162float(y[r]) - s;
    num += e * e;
    den += s * s;
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

int main() {
  int dev = 0, sms = 0;
  CHECK(cudaSetDevice(dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::printf("card: %s, %d SMs, L2 %d MB\n", prop.name, sms, prop.l2CacheSize >> 20);

  // Copy ceiling (bytes read + written) for the floors.
  const size_t copy_bytes = size_t(1) << 30;
  void *ca, *cb;
  CHECK(cudaMalloc(&ca, copy_bytes));
  CHECK(cudaMalloc(&cb, copy_bytes));
  CHECK(cudaMemset(ca, 1, copy_bytes));
  const double copy_us = time_graph(
      s, [&] { CHECK(cudaMemcpyAsync(cb, ca, copy_bytes, cudaMemcpyDeviceToDevice, s)); }, 10);
  const double bw = 2.0 * copy_bytes / (copy_us * 1e-6) / 1e9;  // GB/s
  CHECK(cudaFree(ca));
  CHECK(cudaFree(cb));
  std::printf("device copy: %.0f GB/s (read + write)\n\n", bw);

  const int chain = 64;
  int* sink;
  CHECK(cudaMalloc(&sink, sizeof(int)));
  std::printf("| probe | per link, us |\n|---|---|\n");
  // A. Empty kernels.
  for (int grid : {1, sms, 4 * sms}) {
    const double plain = time_graph(s, [&] {
      for (int i = 0; i < chain; ++i) launch(false, empty_kernel<false>, grid, 0, s, sink);
    });
    const double pdl = time_graph(s, [&] {
      for (int i = 0; i < chain; ++i) launch(true, empty_kernel<true>, grid, 0, s, sink);
    });
    std::printf("| empty kernel, %d blocks, plain | %.2f |\n", grid, plain / chain);
    std::printf("| empty kernel, %d blocks, PDL | %.2f |\n", grid, pdl / chain);
  }

  // B. GEMV chains.
  for (int n : {1024, 2048, 2896, 4096}) {
    const size_t wn = size_t(n) * n;
    const double mb = wn * 2 / 1e6;
    const auto host_w = random_bf16(wn, 7, 1.0f / std::sqrt(float(n)));
    const auto host_x = random_bf16(n, 8, 1.0f);
    // Distinct weights a link (each read from HBM; the set is many times L2): as many as fit 2 GB.
    const int distinct = std::min(chain, std::max(8, int((size_t(2) << 30) / (wn * 2))));
    std::vector<__nv_bfloat16*> ws(distinct);
    for (auto& p : ws) {
      CHECK(cudaMalloc(&p, wn * 2));
      CHECK(cudaMemcpy(p, host_w.data(), wn * 2, cudaMemcpyHostToDevice));
    }
    std::vector<__nv_bfloat16*> vs(chain + 1);
    for (auto& p : vs) {
      CHECK(cudaMalloc(&p, n * 2));
      CHECK(cudaMemcpy(p, host_x.data(), n * 2, cudaMemcpyHostToDevice));
    }
    const size_t smem = size_t(n) * 2;
    for (int mode = 0; mode < 3; ++mode) {  // 0 plain, 1 PDL, 2 PDL + early weight loads
      for (bool shared_w : {false, true}) {
        for (int per_sm : {1, 4}) {
          const int grid = std::min(per_sm * sms, (n + 3) / 4);
          const auto rec = [&] {
            for (int i = 0; i < chain; ++i) {
              const __nv_bfloat16* w = shared_w ? ws[0] : ws[i % distinct];
              if (mode == 0)
                launch(false, gemv_kernel<false, false>, grid, smem, s, w, vs[i], vs[i + 1], n, n);
              else if (mode == 1)
                launch(true, gemv_kernel<true, false>, grid, smem, s, w, vs[i], vs[i + 1], n, n);
              else
                launch(true, gemv_kernel<true, true>, grid, smem, s, w, vs[i], vs[i + 1], n, n);
            }
          };
          const double us = time_graph(s, rec) / chain;
          const char* name[] = {"plain", "PDL", "PDL, early loads"};
          std::printf("| GEMV %dx%d (%.1f MB), %s weights, %d blocks, %s | %.2f (%.0f GB/s; HBM floor %.2f) |\n",
                      n, n, mb, shared_w ? "one L2-resident" : "distinct", grid, name[mode], us,
                      wn * 2 / (us * 1e-6) / 1e9, wn * 2 / (bw * 1e9) * 1e6);
        }
      }
    }
    // The first link's product against float64 (every link has the same W and x as inputs
    // only for link 0: its x is the host x).
    CHECK(cudaMemcpy(vs[0], host_x.data(), n * 2, cudaMemcpyHostToDevice));
    launch(false, gemv_kernel<false, false>, std::min(sms, (n + 3) / 4), smem, s, ws[0], vs[0],
           vs[1], n, n);
    CHECK(cudaStreamSynchronize(s));
    const double err = check_gemv(host_w, host_x, vs[1], n);
    std::printf("| GEMV %dx%d check: relative error against float64 | %.2e %s |\n", n, n, err,
                err < 1e-2 ? "ok" : "FAIL");

    // C. Persistent kernel: the same GEMVs as phases with grid barriers, and barriers alone.
    unsigned* bar;
    CHECK(cudaMalloc(&bar, 2 * sizeof(unsigned)));
    CHECK(cudaMemset(bar, 0, 2 * sizeof(unsigned)));
    const __nv_bfloat16** dws;
    __nv_bfloat16** dvs;
    CHECK(cudaMalloc(&dws, chain * sizeof(void*)));
    CHECK(cudaMalloc(&dvs, (chain + 1) * sizeof(void*)));
    std::vector<const __nv_bfloat16*> wl(chain);
    for (int i = 0; i < chain; ++i) wl[i] = ws[i % distinct];
    CHECK(cudaMemcpy(dws, wl.data(), chain * sizeof(void*), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dvs, vs.data(), (chain + 1) * sizeof(void*), cudaMemcpyHostToDevice));
    if (smem > 48 * 1024)
      CHECK(cudaFuncSetAttribute(persistent_kernel<true>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    for (int per_sm : {1, 2}) {
      const int grid = per_sm * sms;  // co-resident: 128 threads and <= 8 KB of smem a block
      const double g = time_graph(s, [&] {
        persistent_kernel<true><<<grid, kThreads, smem, s>>>(dws, dvs, n, chain, bar, bar + 1);
      });
      std::printf("| persistent, GEMV %dx%d phases + grid barrier, %d blocks | %.2f (%.0f GB/s) |\n",
                  n, n, grid, g / chain, wn * 2 / (g / chain * 1e-6) / 1e9);
      if (n == 1024) {
        const double b = time_graph(s, [&] {
          persistent_kernel<false><<<grid, kThreads, 0, s>>>(dws, dvs, n, chain, bar, bar + 1);
        });
        std::printf("| persistent, grid barrier alone, %d blocks | %.2f |\n", grid, b / chain);
      }
    }
    CHECK(cudaGetLastError());
    CHECK(cudaFree(bar));
    CHECK(cudaFree(dws));
    CHECK(cudaFree(dvs));
    for (auto p : ws) CHECK(cudaFree(p));
    for (auto p : vs) CHECK(cudaFree(p));
  }
  CHECK(cudaFree(sink));
  return 0;
}
