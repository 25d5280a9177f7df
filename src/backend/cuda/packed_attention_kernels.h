// Launcher of the packed attention kernel (packed_attention.cu; fmt-free, for nvcc and the host
// compiler): fast::packed_attention's q/k norms, rotary and causal attention of sequences packed
// back to back, in one tensor-core kernel that reads the stacked q|k|v projection in place.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// One packed attention problem. qkv [T, (H + 2 Hkv) D] rows (16-byte aligned, row stride
/// `row_stride` elements, a multiple of 8), sequence s = rows [starts[s], starts[s + 1]), row i
/// of a sequence at position P + i. cs / sn: the rotation's cos / sin [max_len][D / 2] for
/// positions P, P + 1, ... (launch_rope_table). The prefix keys / values (P columns, already
/// normalised and rotated) are read through element strides along (kv head, position) with a
/// unit stride along D (16-byte aligned). out: [T, H D] row-major.
struct PackedAttentionArgs {
  const void* qkv = nullptr;
  int64_t row_stride = 0;
  const int32_t* starts = nullptr;
  int64_t N = 0, H = 0, Hkv = 0, D = 0;
  const void* q_norm = nullptr;  // [D] contiguous, 16-byte aligned, or null (no norms)
  const void* k_norm = nullptr;
  float eps = 0.0f;
  bool add_unit_offset = false;
  bool weight_in_float32 = true;
  bool traditional = false;
  const float* cs = nullptr;
  const float* sn = nullptr;
  const void* prefix_k = nullptr;
  const void* prefix_v = nullptr;
  int64_t P = 0;
  int64_t pk_st[2] = {}, pv_st[2] = {};
  void* out = nullptr;
  float scale = 1.0f;
  float softcap = 0.0f;
  int window = 0;
  int64_t max_len = 0;  // the longest sequence's rows
  /// 0: the resident kernel where the keys fit in shared memory (P + max_len <= 128), else the
  /// streaming one; 1: the streaming kernel always (INGOT_CUDA_PACKED_KERNEL, for comparisons).
  int kernel = 0;
};

/// True when the kernel takes (dtype t, head dim D): bfloat16 / float16 with D in {64, 128, 256}.
bool packed_attention_supported(Dtype t, int64_t D);

/// Queues the kernel for dtype t on stream s (a device with sm_count multiprocessors).
void launch_packed_attention(Dtype t, const PackedAttentionArgs& a, int sm_count, cudaStream_t s);

}  // namespace ingot::cu
