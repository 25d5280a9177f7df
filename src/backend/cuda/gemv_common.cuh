// Device pieces shared by the float GEMV (matmul.cu) and the quantized-weight GEMV
// (quantized.cu): the RmsNorm prologue, the rounding of a GLU pair's act(gate) * up, and the L2
// prefetch of weight rows under PDL.
#pragma once

#include "backend/cuda/device/ew_ops.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/matmul_kernels.h"

namespace ingot::cu {

/// Warps (weight rows, or groups of rows) per block of the GEMV kernels.
inline constexpr int kGemvWarps = 8;

/// 16 bytes of a row: a generic load (shared memory) or load16 (global memory).
template <bool SHARED>
__device__ __forceinline__ uint4 gemv_row_load(const char* p) {
  if constexpr (SHARED)
    return *reinterpret_cast<const uint4*>(p);
  else
    return load16(p);
}

/// One RmsNorm of rows into xs: the first `rows` (<= M) rows of x (rows xrow bytes apart, K
/// elements; X_SHARED: x in shared memory, read with generic loads, not load16's global ones)
/// normalised with norm weight nw (null: none) and, with res (rows K apart), added to it, into xs
/// (rows of K elements), as RmsNorm's register kernel computes them: each thread sums the squares
/// of its 16-byte vectors, then the warps' sums are added as block_sum adds them, so rows up to 256
/// vectors get that kernel's exact sums. All rows go through each step together (one block-wide
/// reduction).
template <typename T, int M, bool X_SHARED = false>
__device__ __forceinline__ void gemv_rms_rows(const char* x, int64_t xrow, const T* res,
                                              const void* nw_ptr, float eps, bool unit, bool f32,
                                              int64_t K, T* xs, int rows) {
  __shared__ float part[M][32];
  __shared__ float inv[M];
  constexpr int V = 16 / sizeof(T);
  const int64_t chunks = K / V;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  const char* nwc = static_cast<const char*>(nw_ptr);
  float ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) ss[m] = 0.0f;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    uint4 v[M];
#pragma unroll
    for (int m = 0; m < M; ++m)
      if (m < rows) v[m] = gemv_row_load<X_SHARED>(x + m * xrow + c * 16);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m < rows) {
        float f[V];
        unpack16<T>(v[m], f);
#pragma unroll
        for (int j = 0; j < V; ++j) ss[m] += f[j] * f[j];
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    ss[m] = warp_sum(ss[m]);
    if (lane == 0) part[m][warp] = ss[m];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float r = warp_sum(lane < nw ? part[m][lane] : 0.0f);
      if (lane == 0) inv[m] = 1.0f / sqrtf(r / static_cast<float>(K) + eps);
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    float w[V];
    if (nwc) unpack16<T>(load16(nwc + c * 16), w);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= rows) continue;
      float f[V], rf[V];
      unpack16<T>(gemv_row_load<X_SHARED>(x + m * xrow + c * 16), f);
      if (res) unpack16<T>(load16(res + m * K + c * V), rf);
      alignas(16) T o[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        o[j] = rms_value<T>(f[j], inv[m], nwc != nullptr, nwc ? w[j] : 0.0f, unit, f32);
        if (res) o[j] = cast<T>(add_rn(to_float(o[j]), rf[j]));  // fast::rms_norm_add's add
      }
      *reinterpret_cast<uint4*>(xs + m * K + c * V) = *reinterpret_cast<const uint4*>(o);
    }
  }
  __syncthreads();
}

/// The norm prologue: the first `rows` (<= M) of x's rows normalised into xs (rows of p.K
/// elements; gemv_rms_rows). With p.pre_res: first h = pre_res + rms_norm(x, pre_norm_w) into
/// xs + M * K (block 0 also writes it to pre_out), then h normalised into xs.
template <typename T, int M>
__device__ __forceinline__ void gemv_norm_rows(const GemvProblem& p, T* xs, int rows = M) {
  const char* x = static_cast<const char*>(p.x);
  int64_t xrow = p.sx_m * int64_t(sizeof(T));
  if (p.pre_res) {
    T* hs = xs + M * p.K;
    gemv_rms_rows<T, M>(x, xrow, static_cast<const T*>(p.pre_res), p.pre_norm_w, p.pre_eps,
                        p.pre_unit_offset, p.pre_weight_in_float32, p.K, hs, rows);
    if (blockIdx.x == 0) {
      constexpr int V = 16 / sizeof(T);
      for (int64_t i = threadIdx.x; i < rows * (p.K / V); i += blockDim.x)
        reinterpret_cast<uint4*>(p.pre_out)[i] = reinterpret_cast<const uint4*>(hs)[i];
    }
    gemv_rms_rows<T, M, true>(reinterpret_cast<const char*>(hs), p.K * int64_t(sizeof(T)), nullptr,
                              p.norm_w, p.eps, p.add_unit_offset, p.weight_in_float32, p.K, xs,
                              rows);
    return;
  }
  gemv_rms_rows<T, M>(x, xrow, nullptr, p.norm_w, p.eps, p.add_unit_offset, p.weight_in_float32,
                      p.K, xs, rows);
}

/// act(g) as the activation's kernel computes it: its functor in float, the value rounded to T
/// (returned widened back to T's compute type; act: 1 silu, 2 gelu, 3 gelu_tanh).
template <typename T>
__device__ __forceinline__ ew::compute_t<T> gated_act(ew::compute_t<T> g, int act) {
  using C = ew::compute_t<T>;
  if (act == 1) return ew::to_compute<C>(ew::from_compute<T>(ew::SiluOp{}(g)));
  if (act == 2) return ew::to_compute<C>(ew::from_compute<T>(ew::GeluOp{}(g)));
  return ew::to_compute<C>(ew::gelu_tanh_to<T>(g));
}

/// act(g) * u rounded as the separate kernels round: gated_act, then the multiply in float,
/// rounded to T (act: 1 silu, 2 gelu, 3 gelu_tanh).
template <typename T>
__device__ __forceinline__ T gated_value(ew::compute_t<T> g, ew::compute_t<T> u, int act) {
  return ew::from_compute<T>(ew::MultiplyOp{}(gated_act<T>(g, act), u));
}

/// Before waiting for the previous kernel, block b queues weight rows [b, b + 1) * span into
/// L2 (lane l of warp 0 one row in 32 when the rows are not contiguous): blocks resident while
/// the previous kernel runs fetch the whole matrix, and the reads after the wait hit L2. Rows
/// hold `row` bytes, `stride` bytes apart.
__device__ __forceinline__ void gemv_prefetch_rows(const void* wp, int64_t n_rows, int64_t row,
                                                   int64_t stride, int64_t span) {
  const int64_t n0 = int64_t(blockIdx.x) * span;
  if (span <= 0 || threadIdx.x >= 32 || n0 >= n_rows) return;
  const int64_t n1 = n0 + span < n_rows ? n0 + span : n_rows;
  const char* w = static_cast<const char*>(wp);
  if (stride == row) {
    if (threadIdx.x == 0) prefetch_l2(w + n0 * row, (n1 - n0) * row);
  } else {
    for (int64_t n = n0 + threadIdx.x; n < n1; n += 32) prefetch_l2(w + n * stride, row);
  }
}

}  // namespace ingot::cu
