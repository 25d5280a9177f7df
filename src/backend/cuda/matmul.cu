// Helper kernels of the CUDA matmul: the K == 0 AddMM epilogue and a plain tiled GEMM, the
// safety net for layouts or alignments cuBLASLt's heuristic offers no algorithm for.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "backend/cuda/device/ew_ops.cuh"
#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/gemv_common.cuh"
#include "backend/cuda/matmul_kernels.h"
#include "backend/cuda/quantized_kernels.h"
#include "util/env.h"

namespace ingot::cu {
namespace {

template <typename T>
using gemm_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int kTile = 16;

// One kTile x kTile block of out per (tile row, tile column, batch) with grid-stride loops on
// every axis; every thread of a block runs the same trip counts, so the barriers are uniform.
template <typename T>
__global__ void gemm_fallback_kernel(GemmProblem p) {
  using A = gemm_acc_t<T>;
  __shared__ A as[kTile][kTile + 1];
  __shared__ A bs[kTile][kTile + 1];
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* out = static_cast<T*>(p.out);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t mtiles = (p.M + kTile - 1) / kTile, ntiles = (p.N + kTile - 1) / kTile;
  for (int64_t bi = blockIdx.z; bi < p.batch; bi += gridDim.z)
    for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y)
      for (int64_t nt = blockIdx.x; nt < ntiles; nt += gridDim.x) {
        const int64_t m = mt * kTile + ty, n = nt * kTile + tx;
        A acc = 0;
        for (int64_t k0 = 0; k0 < p.K; k0 += kTile) {
          const int64_t ka = k0 + tx, kb = k0 + ty;
          as[ty][tx] =
              (m < p.M && ka < p.K) ? to_acc<A>(a[bi * p.sa_b + m * p.sa_m + ka * p.sa_k]) : A(0);
          bs[ty][tx] =
              (kb < p.K && n < p.N) ? to_acc<A>(b[bi * p.sb_b + kb * p.sb_k + n * p.sb_n]) : A(0);
          __syncthreads();
#pragma unroll
          for (int kk = 0; kk < kTile; ++kk) acc += as[ty][kk] * bs[kk][tx];
          __syncthreads();
        }
        if (m < p.M && n < p.N) {
          T* o = out + (bi * p.M + m) * p.N + n;
          A r = A(p.alpha) * acc;
          if (p.accumulate) r += A(p.beta) * to_acc<A>(*o);
          *o = cast<T>(r);
        }
      }
}

// The CPU's K == 0 epilogue: alpha times an empty sum plus beta * c, so a NaN/inf alpha or c
// propagates exactly as there.
template <typename T>
__global__ void scale_empty_k_kernel(T* out, int64_t n, float alpha, float beta) {
  using A = gemm_acc_t<T>;
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    out[i] = cast<T>(A(alpha) * A(0) + A(beta) * to_acc<A>(out[i]));
  }
}

unsigned capped(int64_t n, int64_t cap) {
  return static_cast<unsigned>(n < 1 ? 1 : (n > cap ? cap : n));
}

// ---- GEMV for decode: one warp per output column n (a weight row), every lane holding U
// 16-byte chunks of that row and of each x row in flight, and the next U chunks of the row
// requested before it consumes them (the first ones before any prologue, so their latency
// overlaps the prologue's).

template <int M>
constexpr int gemv_unroll() {
  return M <= 2 ? 4 : 2;
}

template <typename T>
__device__ __forceinline__ void gemv_prefetch(const GemvProblem& p, int64_t span) {
  gemv_prefetch_rows(p.w, p.N, p.K * int64_t(sizeof(T)), p.sw_n * int64_t(sizeof(T)), span);
}

/// Requests chunks c0, c0 + 32, ... (U of them, those below `chunks`) of weight row w.
template <int U>
__device__ __forceinline__ void gemv_load_w(uint4 (&wv)[U], const char* w, int64_t c0,
                                            int64_t chunks) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int64_t c = c0 + 32 * u;
    wv[u] = c < chunks ? load_stream16(w + c * 16) : make_uint4(0, 0, 0, 0);
  }
}

// NORM: the norm prologue. PAIR: each warp computes weight rows n and n + p.pair (a gate and
// its up column) and writes act(gate) * up at n, each rounded as the separate ops round.
// parts (1, 2, 4 or 8; gemv_parts): warps per output column, each summing every parts-th run of
// 32 U chunks of the row; warp 0 of the column adds the others' sums in order.
// Columns: the grid's G = gridDim.x * kGemvWarps / parts column slots each take columns g,
// g + G, ... (launch_gemv_m sizes the grid to the resident blocks, so that the norm prologue is
// paid once a block and each warp's loads run from one column into the next without a gap).
// A warp's work is one stream of steps (a column and its first chunk c0); each step requests
// the next step's weight chunks before it consumes its own, across column boundaries too.
template <typename T, int M, bool NORM, bool PAIR>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_kernel(const GemvProblem p, int64_t prefetch_span, int parts) {
  gemv_prefetch<T>(p, prefetch_span);
  pdl_prologue();
  constexpr int V = 16 / sizeof(T), U = gemv_unroll<M>(), R = PAIR ? 2 : 1;
  extern __shared__ uint4 gemv_smem[];  // NORM: the normalised rows of x
  __shared__ float part_sum[kGemvWarps][R][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % parts;
  const int64_t slots = kGemvWarps / parts, G = int64_t(gridDim.x) * slots;
  int64_t n = int64_t(blockIdx.x) * slots + warp / parts;
  const int64_t row_bytes = p.sw_n * int64_t(sizeof(T)), row_chunks = p.K / V;
  const char* const wbase = static_cast<const char*>(p.w);
  // Row r of column col (column 0's for a column past N, whose chunks are never requested).
  const auto wrow = [&](int64_t col, int r) {
    return wbase + ((col < p.N ? col : 0) + r * p.pair) * row_bytes;
  };
  const int64_t first = lane + int64_t(32 * U) * part, step = int64_t(32 * U) * parts;
  uint4 wv[R][U];
#pragma unroll
  for (int r = 0; r < R; ++r) gemv_load_w<U>(wv[r], wrow(n, r), first, n < p.N ? row_chunks : 0);
  // The accumulate operand is requested with the column's first chunks, so its latency is not
  // added at the end.
  float cin[M];
  const auto load_cin = [&](int64_t col) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      cin[m] = 0.0f;
      if (!PAIR && p.accumulate && col < p.N && lane == 0) {
        const T* out = static_cast<const T*>(p.out);
        cin[m] = to_float(p.c ? static_cast<const T*>(p.c)[m * p.sc_m + col * p.sc_n]
                              : out[m * p.N + col]);
      }
    }
  };
  load_cin(n);
  if constexpr (NORM) gemv_norm_rows<T, M>(p, reinterpret_cast<T*>(gemv_smem));
  if (n >= p.N && parts == 1) return;  // whole warps leave together (split: after the barrier)
  const char* x = NORM ? reinterpret_cast<const char*>(gemv_smem) : static_cast<const char*>(p.x);
  const int64_t xrow = (NORM ? p.K : p.sx_m) * int64_t(sizeof(T));
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  for (int64_t c0 = first;;) {
    const int64_t chunks = n < p.N ? row_chunks : 0;
    // The next step: the next run of this column, or the first of the next one.
    int64_t c1 = c0 + step, n1 = n;
    if (c1 >= chunks) {
      c1 = first;
      n1 = n + G;
    }
    uint4 xv[U][M];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 32 * u;
      if (c < chunks) {
#pragma unroll
        for (int m = 0; m < M; ++m) {
          if constexpr (NORM)
            xv[u][m] = *reinterpret_cast<const uint4*>(x + m * xrow + c * 16);
          else
            xv[u][m] = load16(x + m * xrow + c * 16);
        }
      }
    }
    uint4 wn[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r) gemv_load_w<U>(wn[r], wrow(n1, r), c1, n1 < p.N ? row_chunks : 0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + 32 * u < chunks) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wf[V];
          unpack16<T>(wv[r][u], wf);
#pragma unroll
          for (int m = 0; m < M; ++m) {
            float xf[V];
            unpack16<T>(xv[u][m], xf);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[r][m] = fmaf(wf[j], xf[j], acc[r][m]);
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r][u] = wn[r][u];
    }
    c0 = c1;
    // Column n is summed once the next step is another column's: reduce, write, and go on with
    // n1 (whose first chunks are in flight).
    if (n1 == n) continue;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) acc[r][m] = warp_sum(acc[r][m]);
    bool write = n < p.N && lane == 0;
    if (parts > 1) {  // one column a warp (the grid covers every column): one barrier
      if (lane == 0)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int m = 0; m < M; ++m) part_sum[warp][r][m] = acc[r][m];
      __syncthreads();
      write = write && part == 0;
      if (write)
        for (int j = 1; j < parts; ++j)
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int m = 0; m < M; ++m) acc[r][m] += part_sum[warp + j][r][m];
    }
    if (write) {
      T* out = static_cast<T*>(p.out);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        if constexpr (PAIR) {
          // The product's columns rounded to T, then act and the multiply as their kernels do.
          const float g = to_float(cast<T>(p.alpha * acc[0][m]));
          const float u = to_float(cast<T>(p.alpha * acc[1][m]));
          out[m * p.N + n] = gated_value<T>(g, u, p.gate);
        } else {
          float r = p.alpha * acc[0][m];
          if (p.round_product) r = to_float(cast<T>(r));
          if (p.accumulate) r = p.beta * cin[m] + r;
          out[m * p.N + n] = cast<T>(r);
        }
      }
    }
    n = n1;
    if (n >= p.N) return;
    load_cin(n);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  }
}

/// Multiprocessors of the current device (0 when unknown), cached per device.
int64_t gemv_sms() {
  static std::atomic<int> cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    (void)cudaGetLastError();
    return 0;
  }
  if (const int n = cached[dev].load(std::memory_order_relaxed)) return n;
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  cached[dev].store(n, std::memory_order_relaxed);
  return n;
}

/// Warps per output column of the GEMV. One by default. INGOT_CUDA_GEMV_SPLIT=1: long rows (K
/// of 2048 elements and more) are split over 2 or 4 warps, so that the few-column products of
/// a decode step (o and down projections, 1,024-2,048 columns: one block of 8 columns an SM)
/// keep more loads in flight; by K alone, so that products of one K (a GLU pair and its stacked
/// product) sum alike. Measured on the H100 (session 35, decode b1): Qwen3-0.6B and Gemma3-1B
/// level, Llama-3.2-1B 7% slower (its 2048-wide rows: every product of the step split, the LM
/// head included), hence off. INGOT_CUDA_GEMV_SPLIT=2: split (2 or 4 warps, K >= 2048 per
/// 2 parts) only while the weight rows read times the parts stay within the resident
/// warps of the card (24 an SM): by the rows read (N, or 2N for a GLU pair), so that a pair and
/// its stacked product still decide alike.
int gemv_parts(const GemvProblem& p) {
  static const long mode = env::get_int("INGOT_CUDA_GEMV_SPLIT", 0);
  if (mode == 1) return p.K >= 4096 ? 4 : p.K >= 2048 ? 2 : 1;
  if (mode != 2) return 1;
  const int64_t warps = 24 * gemv_sms();
  const int64_t rows = p.pair ? 2 * p.pair : p.N;
  for (int parts : {4, 2})
    if (p.K >= 1024 * parts && rows * parts <= warps) return parts;
  return 1;
}

/// Blocks of `kernel` (256 threads, `smem` dynamic bytes) resident on the current device at
/// once (the occupancy calculator's blocks per SM times the SMs), cached per (device, kernel,
/// smem); 0 when unknown (the launch then covers every column with its own warp).
int64_t gemv_resident_blocks(const void* kernel, size_t smem) {
  static std::mutex mu;
  static std::map<std::tuple<int, const void*, size_t>, int64_t> seen;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  const auto key = std::make_tuple(dev, kernel, smem);
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = seen.find(key); it != seen.end()) return it->second;
  const int64_t sms = gemv_sms();
  int per_sm = 0;
  if (sms <= 0 || cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * kGemvWarps,
                                                                smem) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;  // not cached: asked again next time
  }
  const int64_t blocks = sms * std::max(per_sm, 0);
  seen.emplace(key, blocks);
  return blocks;
}

/// INGOT_CUDA_GEMV_LOOP=0: one warp (or `parts` warps) per output column and a block per 8
/// columns, as before session 36; else (the default) at most the resident blocks, looping
/// over the columns.
bool gemv_loop() {
  static const bool on = env::flag("INGOT_CUDA_GEMV_LOOP", true);
  return on;
}

template <typename T, int M, bool NORM, bool PAIR>
void launch_gemv_k(const GemvProblem& p, cudaStream_t s, int sms) {
  const auto kernel = gemv_kernel<T, M, NORM, PAIR>;
  const int parts = gemv_parts(p);
  const int64_t cols = kGemvWarps / parts;
  const size_t smem = NORM ? size_t(p.pre_res ? 2 : 1) * M * p.K * sizeof(T) : 0;
  int64_t blocks = (p.N + cols - 1) / cols;
  if (parts == 1 && gemv_loop()) {  // a split GEMV keeps one column a warp (one barrier)
    const int64_t resident = gemv_resident_blocks(reinterpret_cast<const void*>(kernel), smem);
    if (resident > 0) blocks = std::min(blocks, resident);
  }
  // The first `sms` blocks (the ones scheduled early under PDL) prefetch all weight rows.
  int64_t span = 0;
  if (pdl_enabled() && sms > 0) span = (p.N + sms - 1) / sms;
  launch_pdl(kernel, dim3(static_cast<unsigned>(blocks)), dim3(32 * kGemvWarps), smem, s, p, span,
             parts);
}

template <typename T, int M>
void launch_gemv_m(const GemvProblem& p, cudaStream_t s, int sms) {
  if (p.norm && p.pair)
    launch_gemv_k<T, M, true, true>(p, s, sms);
  else if (p.norm)
    launch_gemv_k<T, M, true, false>(p, s, sms);
  else if (p.pair)
    launch_gemv_k<T, M, false, true>(p, s, sms);
  else
    launch_gemv_k<T, M, false, false>(p, s, sms);
}

template <typename T>
void launch_gemv_t(const GemvProblem& p, cudaStream_t s, int sms) {
  switch (p.M) {
    case 1:
      return launch_gemv_m<T, 1>(p, s, sms);
    case 2:
      return launch_gemv_m<T, 2>(p, s, sms);
    case 3:
      return launch_gemv_m<T, 3>(p, s, sms);
    case 4:
      return launch_gemv_m<T, 4>(p, s, sms);
    case 5:
      return launch_gemv_m<T, 5>(p, s, sms);
    case 6:
      return launch_gemv_m<T, 6>(p, s, sms);
    case 7:
      return launch_gemv_m<T, 7>(p, s, sms);
    case 8:
      return launch_gemv_m<T, 8>(p, s, sms);
    default:
      return;
  }
}

}  // namespace

void launch_gemm_fallback(Dtype t, const GemmProblem& p, cudaStream_t s) {
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  const dim3 block(kTile, kTile);
  const dim3 grid(capped((p.N + kTile - 1) / kTile, 65535),
                  capped((p.M + kTile - 1) / kTile, 65535), capped(p.batch, 65535));
  dispatch_cuda_float(t, [&](auto v) {
    using T = decltype(v);
    gemm_fallback_kernel<T><<<grid, block, 0, s>>>(p);
  });
  check_launch("gemm_fallback_kernel");
}

bool gemv_supported(Dtype t, const GemvProblem& p) {
  if (t != Dtype::float16 && t != Dtype::bfloat16 && t != Dtype::float32) return false;
  if (p.M < 1 || p.M > kGemvMaxRows || p.N < 1 || p.K < 1) return false;
  const int64_t es = t == Dtype::float32 ? 4 : 2;
  const auto aligned = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  if (p.norm &&
      ((p.M > 1 && p.sx_m != p.K) || (p.pre_res ? 2 : 1) * p.M * p.K * es > kGemvNormSmem ||
       (p.norm_w && !aligned(p.norm_w))))
    return false;
  // (pre_out: a fresh allocation, set after this check)
  if (p.pre_res &&
      (!p.norm || p.bits != 0 || !aligned(p.pre_res) || (p.pre_norm_w && !aligned(p.pre_norm_w))))
    return false;
  if (p.pair && (p.pair < p.N || p.gate < 1 || p.gate > 3 || p.accumulate)) return false;
  if (p.bits != 0) {
    if ((p.bits != 4 && p.bits != 8) ||
        (p.group_size != 32 && p.group_size != 64 && p.group_size != 128) ||
        p.K % p.group_size != 0 || !p.scales || !p.biases || (p.pair && !p.norm))
      return false;
    return aligned(p.x) && aligned(p.w) && (p.sw_n * 4) % 16 == 0 &&
           (p.M == 1 || (p.sx_m * es) % 16 == 0) &&
           (p.N + kGemvWarps - 1) / kGemvWarps <= int64_t(0x7fffffff);
  }
  return (p.K * es) % 16 == 0 && aligned(p.x) && aligned(p.w) && (p.sw_n * es) % 16 == 0 &&
         (p.M == 1 || (p.sx_m * es) % 16 == 0) &&
         (p.N + kGemvWarps - 1) / kGemvWarps <= int64_t(0x7fffffff);
}

void launch_gemv(Dtype t, const GemvProblem& p, cudaStream_t s, int sms) {
  if (p.bits != 0) return launch_qgemv(t, p, s, sms);
  switch (t) {
    case Dtype::float16:
      launch_gemv_t<__half>(p, s, sms);
      break;
    case Dtype::bfloat16:
      launch_gemv_t<__nv_bfloat16>(p, s, sms);
      break;
    default:
      launch_gemv_t<float>(p, s, sms);
      break;
  }
  check_launch("gemv_kernel");
}

namespace {
/// Vectorised when every row starts 16-byte aligned (k, the strides and the pointers), else one
/// element a thread.
template <typename T, bool VEC>
__global__ void gated_rows_kernel(int act, const T* g, int64_t sg, const T* u, int64_t su, T* out,
                                  int64_t rows, int64_t k) {
  pdl_prologue();
  constexpr int V = VEC ? 16 / sizeof(T) : 1;
  const int64_t per_row = k / V;
  INGOT_CUDA_KERNEL_LOOP(i, rows * per_row) {
    const int64_t r = i / per_row, j = (i - r * per_row) * V;
    if constexpr (VEC) {
      float gf[V], uf[V];
      unpack16<T>(load16(g + r * sg + j), gf);
      unpack16<T>(load16(u + r * su + j), uf);
      alignas(16) T o[V];
#pragma unroll
      for (int e = 0; e < V; ++e) o[e] = gated_value<T>(gf[e], uf[e], act);
      *reinterpret_cast<uint4*>(out + r * k + j) = *reinterpret_cast<const uint4*>(o);
    } else {
      using C = ew::compute_t<T>;
      out[r * k + j] =
          gated_value<T>(ew::to_compute<C>(g[r * sg + j]), ew::to_compute<C>(u[r * su + j]), act);
    }
  }
}
// ---- 16-bit gated rows through a table of the activation ----
//
// A 16-bit gate has 65,536 possible values, so act(g) rounded to T (the first rounding of
// gated_value) is a table lookup: act_table[a][d][bits(g)], filled once per device by
// act_table_fill_kernel with gated_value's own functors, so the lookup gives the same bits.
// The gated-rows kernel copies the 128 KiB table into shared memory (one block of 1,024
// threads per SM), then streams the rows: per element a shared-memory load, a multiply and a
// rounding instead of gelu_tanh's float evaluation and rounding-interval check (issue-bound
// in the per-element kernel above: 61% of the copy rate on Gemma3's rows).

constexpr int kActTableSize = 65536;
constexpr int kActTableThreads = 1024;
// [act 1..3 - 1][0 half, 1 bfloat16][bits]
__device__ uint16_t act_table[3][2][kActTableSize];

template <typename T>
__device__ __forceinline__ uint16_t bits_of(T v) {
  if constexpr (std::is_same_v<T, __half>)
    return __half_as_ushort(v);
  else
    return __bfloat16_as_ushort(v);
}

template <typename T>
__device__ __forceinline__ T from_bits(uint16_t b) {
  if constexpr (std::is_same_v<T, __half>)
    return __ushort_as_half(b);
  else
    return __ushort_as_bfloat16(b);
}

template <typename T>
__global__ void act_table_fill_kernel(int act) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= kActTableSize) return;
  using C = ew::compute_t<T>;
  const C g = ew::to_compute<C>(from_bits<T>(static_cast<uint16_t>(i)));
  T a;
  if (act == 1)
    a = ew::from_compute<T>(ew::SiluOp{}(g));
  else if (act == 2)
    a = ew::from_compute<T>(ew::GeluOp{}(g));
  else
    a = ew::gelu_tanh_to<T>(g);
  act_table[act - 1][std::is_same_v<T, __half> ? 0 : 1][i] = bits_of(a);
}

template <typename T>
__global__ void __launch_bounds__(kActTableThreads, 1)
    gated_rows_table_kernel(int act, const T* g, int64_t sg, const T* u, int64_t su, T* out,
                            int64_t rows, int64_t k) {
  extern __shared__ uint4 table_smem[];
  // The table is constant once filled (before any launch that reads it), so it is copied
  // before the PDL wait, overlapping the previous kernel's tail.
  const uint4* src =
      reinterpret_cast<const uint4*>(act_table[act - 1][std::is_same_v<T, __half> ? 0 : 1]);
  for (int i = threadIdx.x; i < kActTableSize * 2 / 16; i += blockDim.x) table_smem[i] = src[i];
  pdl_prologue();
  __syncthreads();
  const uint16_t* table = reinterpret_cast<const uint16_t*>(table_smem);
  constexpr int V = 8;
  const int64_t per_row = k / V, n = rows * per_row;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  // Element e = r * per_row + j/V is tracked as (r, j), advanced by `stride` without dividing.
  const int64_t dr = stride / per_row, dj = stride % per_row * V;
  const auto advance = [&](int64_t& r, int64_t& j) {
    r += dr;
    j += dj;
    if (j >= k) {
      j -= k;
      ++r;
    }
  };
  const auto product = [&](const uint4& gv, const uint4& uv, T* o) {
    const uint16_t* gb = reinterpret_cast<const uint16_t*>(&gv);
    float uf[V], of[V];
    unpack16<T>(uv, uf);
#pragma unroll
    for (int e = 0; e < V; ++e)
      of[e] = to_float(
          ew::from_compute<T>(ew::MultiplyOp{}(to_float(from_bits<T>(table[gb[e]])), uf[e])));
    *reinterpret_cast<uint4*>(o) = pack16<T>(of);
  };
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t r = i / per_row, j = (i - r * per_row) * V;
  // Two vectors in flight per thread.
  for (; i + stride < n; i += 2 * stride) {
    int64_t r1 = r, j1 = j;
    advance(r1, j1);
    const uint4 g0 = load16(g + r * sg + j), u0 = load16(u + r * su + j);
    const uint4 g1 = load16(g + r1 * sg + j1), u1 = load16(u + r1 * su + j1);
    product(g0, u0, out + r * k + j);
    product(g1, u1, out + r1 * k + j1);
    r = r1;
    j = j1;
    advance(r, j);
  }
  if (i < n) product(load16(g + r * sg + j), load16(u + r * su + j), out + r * k + j);
}

/// The current device's SM count once act_table[act][T] holds its values there: filled (and
/// waited for) on the first call outside a stream capture. 0 while capturing before that, or
/// when the kernel cannot have its shared memory: the caller takes the per-element kernel,
/// which gives the same bits.
template <typename T>
int act_table_ready(int act, cudaStream_t s) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> ready[kMaxDevices][3][2];
  static std::mutex mu;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return 0;
  std::atomic<int>& r = ready[dev][act - 1][std::is_same_v<T, __half> ? 0 : 1];
  if (const int sms = r.load(std::memory_order_acquire)) return sms;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return 0;
  std::lock_guard<std::mutex> lock(mu);
  if (const int sms = r.load(std::memory_order_relaxed)) return sms;
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaFuncSetAttribute(gated_rows_table_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           kActTableSize * 2) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  act_table_fill_kernel<T><<<kActTableSize / 256, 256, 0, s>>>(act);
  check_launch("act_table_fill_kernel");
  INGOT_CUDA_CHECK(cudaStreamSynchronize(s));
  r.store(sms, std::memory_order_release);
  return sms;
}

/// INGOT_CUDA_GLU_TABLE=0 turns the table kernel off (the per-element kernel, same bits).
bool glu_table_enabled() {
  static const bool on = env::flag("INGOT_CUDA_GLU_TABLE", true);
  return on;
}

}  // namespace

void launch_gated_rows(Dtype t, int act, const void* g, int64_t sg, const void* u, int64_t su,
                       void* out, int64_t rows, int64_t k, cudaStream_t s) {
  if (rows == 0 || k == 0) return;
  constexpr int threads = 256;
  const int64_t es = t == Dtype::float64 ? 8 : t == Dtype::float32 ? 4 : 2;
  const auto a16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  const bool vec = t != Dtype::float64 && (k * es) % 16 == 0 && (sg * es) % 16 == 0 &&
                   (su * es) % 16 == 0 && a16(g) && a16(u) && a16(out);
  const int64_t work = vec ? rows * (k * es / 16) : rows * k;
  // The table kernel pays a 128 KiB copy per block: only for batches worth it (every SM's
  // block streams at least 64 vectors).
  if (vec && es == 2 && act >= 1 && act <= 3 && glu_table_enabled() &&
      work >= int64_t(64) * kActTableThreads) {
    const auto table = [&](auto v) {
      using T = decltype(v);
      const int sms = act_table_ready<T>(act, s);
      if (sms == 0) return false;
      const int64_t blocks =
          std::min<int64_t>(sms, (work + kActTableThreads - 1) / kActTableThreads);
      launch_pdl(gated_rows_table_kernel<T>, static_cast<unsigned>(blocks), kActTableThreads,
                 size_t(kActTableSize) * 2, s, act, static_cast<const T*>(g), sg,
                 static_cast<const T*>(u), su, static_cast<T*>(out), rows, k);
      check_launch("gated_rows_table_kernel");
      return true;
    };
    if (t == Dtype::bfloat16 ? table(__nv_bfloat16{}) : table(__half{})) return;
  }
  const auto go = [&](auto v) {
    using T = decltype(v);
    const auto* gp = static_cast<const T*>(g);
    const auto* up = static_cast<const T*>(u);
    auto* op = static_cast<T*>(out);
    if constexpr (!std::is_same_v<T, double>) {
      if (vec) {
        launch_pdl(gated_rows_kernel<T, true>, grid_for(work, threads), threads, 0, s, act, gp, sg,
                   up, su, op, rows, k);
        return;
      }
    }
    launch_pdl(gated_rows_kernel<T, false>, grid_for(work, threads), threads, 0, s, act, gp, sg, up,
               su, op, rows, k);
  };
  if (t == Dtype::float16)
    go(__half{});
  else if (t == Dtype::bfloat16)
    go(__nv_bfloat16{});
  else if (t == Dtype::float64)
    go(0.0);
  else
    go(0.0f);
  check_launch("gated_rows_kernel");
}

namespace {
// out = beta * c + prod (c: out itself when null).
template <typename T>
__global__ void add_product_kernel(T* out, const T* c, const T* prod, int64_t n, float beta) {
  using A = gemm_acc_t<T>;
  const T* src = c ? c : out;
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    out[i] = cast<T>(A(beta) * to_acc<A>(src[i]) + to_acc<A>(prod[i]));
  }
}

// The same over 16-byte vectors (16-bit and float32 dtypes, aligned, n a multiple of V).
template <typename T>
__global__ void add_product_vec_kernel(T* out, const T* c, const T* prod, int64_t nvec,
                                       float beta) {
  pdl_prologue();
  constexpr int V = 16 / sizeof(T);
  const T* src = c ? c : out;
  INGOT_CUDA_KERNEL_LOOP(i, nvec) {
    float o[V], q[V];
    unpack16<T>(load16(src + i * V), o);
    unpack16<T>(load16(prod + i * V), q);
#pragma unroll
    for (int e = 0; e < V; ++e) o[e] = to_float(cast<T>(beta * o[e] + q[e]));
    *reinterpret_cast<uint4*>(out + i * V) = pack16<T>(o);
  }
}
}  // namespace

void launch_add_product(Dtype t, void* out, const void* c, const void* prod, int64_t n, float beta,
                        cudaStream_t s) {
  if (n == 0) return;
  constexpr int threads = 256;
  dispatch_cuda_float(t, [&](auto v) {
    using T = decltype(v);
    if constexpr (!std::is_same_v<T, double>) {
      constexpr int64_t V = 16 / sizeof(T);
      if (n % V == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
          reinterpret_cast<uintptr_t>(c) % 16 == 0 && reinterpret_cast<uintptr_t>(prod) % 16 == 0) {
        launch_pdl(add_product_vec_kernel<T>, grid_for(n / V, threads), threads, 0, s,
                   static_cast<T*>(out), static_cast<const T*>(c), static_cast<const T*>(prod),
                   n / V, beta);
        return;
      }
    }
    add_product_kernel<T><<<grid_for(n, threads), threads, 0, s>>>(
        static_cast<T*>(out), static_cast<const T*>(c), static_cast<const T*>(prod), n, beta);
  });
  check_launch("add_product_kernel");
}

void launch_scale_empty_k(Dtype t, void* out, int64_t n, float alpha, float beta, cudaStream_t s) {
  if (n == 0) return;
  constexpr int threads = 256;
  dispatch_cuda_float(t, [&](auto v) {
    using T = decltype(v);
    scale_empty_k_kernel<T>
        <<<grid_for(n, threads), threads, 0, s>>>(static_cast<T*>(out), n, alpha, beta);
  });
  check_launch("scale_empty_k_kernel");
}

}  // namespace ingot::cu
