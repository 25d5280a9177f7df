// Launcher of the fused decoder-block kernel (decode_block.cu): one decode step (one new token
// per row) of a pre-norm Llama/Qwen3 block over a fixed-size KV cache as ONE persistent kernel,
// the phases separated by grid-wide barriers instead of kernel boundaries.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/fast_rope_kernels.h"
#include "backend/cuda/indexing_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Rows (batch) the kernel takes.
inline constexpr int kDecodeBlockMaxRows = 1;

/// One block's step (see fast::decode_block). All float operands have `dtype` (bfloat16 or
/// float16), are row-contiguous and 16-byte aligned; the weights are the Linear weights
/// (w_qkv [(H + 2 Hkv) D, E], w_o [E, H D], w_gu [2 I, E] gate rows first, w_down [E, I]).
struct DecodeBlockArgs {
  Dtype dtype = Dtype::bfloat16;
  int B = 0, E = 0, H = 0, Hkv = 0, D = 0, I = 0, C = 0;
  const void* x = nullptr;  // [B, E]
  const void* in_norm = nullptr;
  const void* w_qkv = nullptr;
  const void* q_norm = nullptr;  // [D] or null (no q/k norms)
  const void* k_norm = nullptr;
  const void* w_o = nullptr;
  const void* post_norm = nullptr;
  const void* w_gu = nullptr;
  const void* w_down = nullptr;
  void* keys = nullptr;  // [B, Hkv, C, D], written at column `column` and read up to it
  void* values = nullptr;
  const void* column = nullptr;  // one integer
  Dtype column_dtype = Dtype::int32;
  const void* positions = nullptr;  // [B] integers: the rotary position of each row
  Dtype positions_dtype = Dtype::int32;
  int64_t positions_stride = 1;
  const void* freqs = nullptr;  // [D / 2] inverse frequencies (float32) or null (then `inv`)
  int64_t freqs_stride = 1;
  const bool* mask = nullptr;  // [B, C] keep-mask
  float eps = 1e-6f;
  bool add_unit_offset = false, weight_in_float32 = true;
  float qk_eps = 1e-6f;
  bool qk_add_unit_offset = false, qk_weight_in_float32 = true;
  bool traditional = false;
  float rope_scale = 1.0f;
  float scale = 1.0f;   // attention
  int gate = 1;         // 1 silu, 2 gelu, 3 gelu_tanh (GemvProblem::gate)
  void* out = nullptr;  // [B, E]
  FaultSite site;       // a column outside [0, C)
};

/// Whether the kernel takes the problem on a device with `sm_count` SMs (dtype, rows, head
/// dimension 64/128/256, sizes in 16-byte vectors, shared memory).
bool decode_block_supported(const DecodeBlockArgs& a, int sm_count);

/// Bytes of device scratch launch_decode_block needs (the q/k/v, attention, residual and gated
/// rows, the attention splits' partials).
size_t decode_block_scratch_bytes(const DecodeBlockArgs& a, int sm_count);

/// Queues the kernel on s (a supported problem; scratch of decode_block_scratch_bytes).
void launch_decode_block(const DecodeBlockArgs& a, const RopeInvFreqs& inv, void* scratch,
                         cudaStream_t s, int sm_count);

}  // namespace ingot::cu
