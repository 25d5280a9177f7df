// Warp and block reductions shared by the reduction, softmax and norm kernels.
#pragma once

#include <cuda_runtime.h>

namespace ingot::cu {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
/// `smem` holds 32 values. Contains __syncthreads: call from all threads.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const int nw = (blockDim.x + 31) >> 5;
  T r = lane < nw ? smem[lane] : T(0);
  return warp_sum(r);
}

/// Max over the block, as block_sum; `lowest` fills unused lanes.
template <typename T>
__device__ __forceinline__ T block_max(T v, T* smem, T lowest) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const int nw = (blockDim.x + 31) >> 5;
  T r = lane < nw ? smem[lane] : lowest;
  return warp_max(r);
}

}  // namespace ingot::cu
