// Device-side strided indexing: element offsets of a row-major linear index in a Layout.
#pragma once

#include "backend/cuda/device/layout.h"

namespace ingot::cu {

/// Offset (in elements) of the element with row-major index `i` in layout `l`.
__device__ __forceinline__ int64_t elem_offset(int64_t i, const Layout& l) {
  int64_t off = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    int64_t n = l.shape[d];
    off += (i % n) * l.strides[d];
    i /= n;
  }
  return off;
}

/// Grid-stride loop over [0, n).
#define INGOT_CUDA_KERNEL_LOOP(i, n)                                                     \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace ingot::cu
