// Helper kernels of the CUDA matmul: the K == 0 AddMM epilogue and a plain tiled GEMM, the
// safety net for layouts or alignments cuBLASLt's heuristic offers no algorithm for.
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/matmul_kernels.h"

namespace ingot::cu {
namespace {

template <typename T>
using gemm_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename A, typename T>
__device__ __forceinline__ A to_acc(T v) {
  if constexpr (is_half_v<T>)
    return static_cast<A>(to_float(v));
  else
    return static_cast<A>(v);
}

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
