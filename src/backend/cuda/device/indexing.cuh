// Device-side strided indexing: element offsets of a row-major linear index in a Layout.
#pragma once

#include <type_traits>

#include "backend/cuda/device/layout.h"
#include "backend/cuda/indexing_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Records the first out-of-range index of the device (one writer wins the claim; the host
/// resets it after raising the error).
inline __device__ __noinline__ void record_fault(const FaultSite& f, int64_t index, int64_t n) {
  if (f.claim == nullptr || atomicCAS(f.claim, 0u, 1u) != 0u) return;
  IndexFault* r = f.fault;
  r->op = f.op;
  r->axis = f.axis;
  r->index = index;
  r->size = n;
  __threadfence_system();
  *reinterpret_cast<volatile int*>(&r->set) = 1;
}

/// Element i of an integer array of dtype t (positions, columns), widened to int64.
__device__ __forceinline__ int64_t load_int(const void* p, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::int8:
      return static_cast<const int8_t*>(p)[i];
    case Dtype::uint8:
      return static_cast<const uint8_t*>(p)[i];
    case Dtype::uint32:
      return static_cast<const uint32_t*>(p)[i];
    case Dtype::int64:
      return static_cast<const int64_t*>(p)[i];
    default:
      return static_cast<const int32_t*>(p)[i];
  }
}

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

/// Storage type of a unit of `Bytes` bytes (1, 2, 4, 8 or 16), for copies that never look at
/// values.
template <int Bytes>
using unit_t = std::conditional_t<
    Bytes == 1, uint8_t,
    std::conditional_t<
        Bytes == 2, uint16_t,
        std::conditional_t<Bytes == 4, uint32_t, std::conditional_t<Bytes == 8, uint64_t, uint4>>>>;

/// Calls f(unit_t<bytes>{}) (host code; bytes other than 1, 2, 4, 8 mean 16).
template <typename F>
void dispatch_unit(int bytes, F&& f) {
  switch (bytes) {
    case 1:
      return f(unit_t<1>{});
    case 2:
      return f(unit_t<2>{});
    case 4:
      return f(unit_t<4>{});
    case 8:
      return f(unit_t<8>{});
    default:
      return f(unit_t<16>{});
  }
}

}  // namespace ingot::cu
