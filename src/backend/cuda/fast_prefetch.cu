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

__global__ void prefetch_kernel(const PrefetchList list, int64_t pieces) {
  if (threadIdx.x != 0) return;
  for (int64_t p = blockIdx.x; p < pieces; p += gridDim.x) {
    // Piece p's range: ranges hold ceil(bytes / kPiece) pieces each, in order.
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

}  // namespace

void launch_prefetch(const PrefetchList& list, int max_blocks, cudaStream_t s) {
  int64_t pieces = 0;
  for (int r = 0; r < list.count; ++r) pieces += (list.bytes[r] + kPiece - 1) / kPiece;
  if (pieces == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(pieces, std::max(max_blocks, 1)));
  prefetch_kernel<<<blocks, 32, 0, s>>>(list, pieces);
  check_launch("prefetch_kernel");
}

}  // namespace ingot::cu
