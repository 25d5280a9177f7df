// Launchers of the CUDA PagedAttention kernels (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// fast::paged_attention on the device. q, k, v row-major ([B, H, L, D], [B, Hkv, L, D]); pools
/// row-major [N, Hkv, P, D] (written in place); block_table [B, M] and q_pos [B] int32 row-major;
/// out row-major [B, H, L, D]. Query i of row b is at q_pos[b] + i; padding queries (negative
/// positions, i < padding[b]) are not written and give zeros. A block id outside [0, N) is skipped
/// (not written, not read).
struct PagedAttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* k_pool = nullptr;
  void* v_pool = nullptr;
  const int32_t* table = nullptr;
  const int32_t* q_pos = nullptr;
  const int32_t* padding = nullptr;  // [B] or null: the first padding[b] queries are padding
  void* out = nullptr;
  int64_t B = 0, H = 0, L = 0, D = 0, Hkv = 0, N = 0, P = 0, M = 0;
  float scale = 1.0f;
  int window = 0;
  float softcap = 0.0f;
  Dtype dtype = Dtype::float32;
};

/// Writes the new keys/values into the pools, then computes the attention (two launches on s).
void launch_paged_attention(const PagedAttentionArgs& a, cudaStream_t s);

}  // namespace ingot::cu
