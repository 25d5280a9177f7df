// Launcher of the CUDA Prefetch kernel (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ingot::cu {

/// Byte ranges of device memory to queue into L2 (16-byte aligned starts, sizes multiples of 16).
struct PrefetchList {
  static constexpr int kMax = 32;
  const char* ptr[kMax];
  int64_t bytes[kMax];
  int count = 0;
};

/// Queues every range of `list` into L2 (cp.async.bulk.prefetch, sm_90+; nothing before) from
/// up to `max_blocks` blocks, each taking its share in 128 KB pieces, on stream s. chain: a
/// link of s's PDL chain (the next kernel launches at once; the grid still ends after the
/// previous one); else a plain launch (on a graph branch).
void launch_prefetch(const PrefetchList& list, int max_blocks, cudaStream_t s, bool chain);

}  // namespace ingot::cu
