// CUDA kernel of Prefetch: a grid of one-warp blocks, each queueing its 128 KB pieces of the
// ranges into L2 with bulk prefetches (one instruction a piece, from its lane 0). The prefetch
// unit of a multiprocessor makes the requests, so the pieces are spread over many blocks.
#include <algorithm>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/fast_prefetch_kernels.h"

namespace ingot::cu {
namespace {

constexpr int64_t kPiece = int64_t{128} << 10;

/// This block's pieces: piece p lies in the range whose ceil(bytes / kPiece) pieces hold it.
__device__ __forceinline__ void issue(const PrefetchList& list, int64_t pieces) {
  for (int64_t p = blockIdx.x; p < pieces; p += gridDim.x) {
    int64_t first = 0;
    for (int r = 0; r < list.count; ++r) {
      const int64_t n = (list.bytes[r] + kPiece - 1) / kPiece;
      if (p < first + n) {
        const int64_t off = (p - first) * kPiece;
        const int64_t len = list.bytes[r] - off < kPiece ? list.bytes[r] - off : kPiece;
        prefetch_l2(list.ptr[r] + off, len);
        break;
      }
      first += n;
    }
  }
}

// kChain: launched in the main chain under PDL. It lets the next kernel launch at once, queues
// its pieces without waiting (hints on data the previous kernel does not write), then waits for
// the previous grid, so that the next kernel's own wait still orders it after that grid.
template <bool kChain>
__global__ void prefetch_kernel(const PrefetchList list, int64_t pieces) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (kChain) asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
  if (threadIdx.x == 0) issue(list, pieces);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (kChain) asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

}  // namespace

void launch_prefetch(const PrefetchList& list, int max_blocks, cudaStream_t s, bool chain) {
  int64_t pieces = 0;
  for (int r = 0; r < list.count; ++r) pieces += (list.bytes[r] + kPiece - 1) / kPiece;
  if (pieces == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(pieces, std::max(max_blocks, 1)));
  if (chain)
    launch_pdl(prefetch_kernel<true>, dim3(blocks), dim3(32), 0, s, list, pieces);
  else
    prefetch_kernel<false><<<blocks, 32, 0, s>>>(list, pieces);
  check_launch("prefetch_kernel");
}

}  // namespace ingot::cu
