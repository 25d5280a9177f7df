// Strided-to-row-major copies by element size (the copy never looks at values, so four
// instantiations serve every dtype).
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

}  // namespace

void launch_copy_strided(const void* src, Layout src_layout, void* dst, int64_t n, int elem_size,
                         cudaStream_t s) {
  if (n == 0) return;
  switch (elem_size) {
    case 1:
      return launch<uint8_t>(src, src_layout, dst, n, s);
    case 2:
      return launch<uint16_t>(src, src_layout, dst, n, s);
    case 4:
      return launch<uint32_t>(src, src_layout, dst, n, s);
    default:
      return launch<unsigned long long>(src, src_layout, dst, n, s);
  }
}

}  // namespace ingot::cu
