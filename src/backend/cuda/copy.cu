// Strided-to-row-major copies by unit size (the copy never looks at values, so five
// instantiations serve every dtype; contiguous rows move in units of up to 16 bytes).
#include <cstdint>
#include <cstring>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"

namespace ingot::cu {
namespace {

template <typename W>
__global__ void copy_strided_kernel(const W* __restrict__ src, Layout l, W* __restrict__ dst,
                                    int64_t n) {
  pdl_prologue();
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    dst[i] = src[elem_offset(i, l)];
  }
}

template <typename W>
void launch(const void* src, const Layout& l, void* dst, int64_t n, cudaStream_t s) {
  constexpr int kThreads = 256;
  launch_pdl(copy_strided_kernel<W>, grid_for(n, kThreads), kThreads, 0, s,
             static_cast<const W*>(src), l, static_cast<W*>(dst), n);
  check_launch("copy_strided_kernel");
}

/// A broadcast scalar (every stride 0) written out: the element replicated into 16-byte stores
/// (a cache's zeros, materialised before its first slice update).
template <typename W>
__global__ void fill_kernel(const W* __restrict__ src, uint4* __restrict__ dst, int64_t n16) {
  pdl_prologue();
  constexpr int R = static_cast<int>(sizeof(uint4) / sizeof(W));
  W rep[R];
  const W x = *src;
#pragma unroll
  for (int j = 0; j < R; ++j) rep[j] = x;
  uint4 v;
  memcpy(&v, rep, sizeof(v));
  INGOT_CUDA_KERNEL_LOOP(i, n16) {
    dst[i] = v;
  }
}

template <typename W>
void launch_fill(const void* src, void* dst, int64_t n16, cudaStream_t s) {
  constexpr int kThreads = 256;
  launch_pdl(fill_kernel<W>, grid_for(n16, kThreads), kThreads, 0, s, static_cast<const W*>(src),
             static_cast<uint4*>(dst), n16);
  check_launch("fill_kernel");
}

}  // namespace

void launch_copy_strided(const void* src, Layout src_layout, void* dst, int64_t n, int elem_size,
                         cudaStream_t s) {
  if (n == 0) return;
  bool broadcast_scalar = true;
  for (int d = 0; d < src_layout.ndim; ++d)
    broadcast_scalar = broadcast_scalar && src_layout.strides[d] == 0;
  if (broadcast_scalar && elem_size <= 8 && (n * elem_size) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    const int64_t n16 = n * elem_size / 16;
    switch (elem_size) {
      case 1:
        return launch_fill<uint8_t>(src, dst, n16, s);
      case 2:
        return launch_fill<uint16_t>(src, dst, n16, s);
      case 4:
        return launch_fill<uint32_t>(src, dst, n16, s);
      default:
        return launch_fill<unsigned long long>(src, dst, n16, s);
    }
  }
  // Rows that are contiguous in the source (innermost stride 1) move in the widest unit (up to
  // 16 bytes) that divides the row and every other stride and that both pointers are aligned
  // to: fewer index computations and vector loads (q/k/v head views, transposes back).
  Layout& l = src_layout;
  int unit = elem_size;
  if (l.ndim > 0 && l.strides[l.ndim - 1] == 1) {
    const auto fits = [&](int u) {
      if ((l.shape[l.ndim - 1] * elem_size) % u != 0) return false;
      if (reinterpret_cast<uintptr_t>(src) % u != 0 || reinterpret_cast<uintptr_t>(dst) % u != 0)
        return false;
      for (int d = 0; d + 1 < l.ndim; ++d)
        if ((l.strides[d] * elem_size) % u != 0) return false;
      return true;
    };
    for (int u : {16, 8, 4})
      if (u > elem_size && fits(u)) {
        unit = u;
        break;
      }
    if (unit != elem_size) {
      const int64_t r = unit / elem_size;
      l.shape[l.ndim - 1] /= r;
      for (int d = 0; d + 1 < l.ndim; ++d) l.strides[d] /= r;
      n /= r;
    }
  }
  switch (unit) {
    case 1:
      return launch<uint8_t>(src, l, dst, n, s);
    case 2:
      return launch<uint16_t>(src, l, dst, n, s);
    case 4:
      return launch<uint32_t>(src, l, dst, n, s);
    case 8:
      return launch<unsigned long long>(src, l, dst, n, s);
    default:
      return launch<uint4>(src, l, dst, n, s);
  }
}

}  // namespace ingot::cu
