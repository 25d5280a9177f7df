// Launcher of the CUDA attention backward (fast_sdpa_bwd.cu): FlashAttention-2 style kernels on
// tensor cores (wmma, 16-bit inputs, float accumulators) for D == Dv in {64, 128, 256}.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/fast_sdpa_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// One attention backward problem. q, out, d_out, dq are row-major [B, H, L, D]; k, v, dk, dv
/// row-major [B, Hkv, S, D], all 16-byte aligned; the mask is read through strides broadcast to
/// [B, H, L, S] (0 = broadcast). lse and delta are float scratch of B * H * L each.
struct SdpaBwdArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* out = nullptr;
  const void* d_out = nullptr;
  const void* mask = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  float* lse = nullptr;
  float* delta = nullptr;
  Dtype dtype = Dtype::bfloat16;
  Dtype mask_dtype = Dtype::float32;
  SdpaMaskKind mask_kind = SdpaMaskKind::none;
  int64_t B = 0, H = 0, Hkv = 0, L = 0, S = 0, D = 0;
  int64_t m_st[4] = {};
  float scale = 1.0f;
  bool causal = false;
  int window = 0;
};

/// True when the kernels take (dtype, D, Dv): bfloat16/float16 with D == Dv in {64, 128, 256}.
bool sdpa_bwd_supported(Dtype t, int64_t D, int64_t Dv);

/// Dynamic shared memory per CTA of the largest backward kernel for head dim D.
size_t sdpa_bwd_smem(int64_t D);

/// Queues the three backward kernels (row statistics, dk/dv, dq) on stream s. L, S > 0.
void launch_sdpa_bwd(const SdpaBwdArgs& a, cudaStream_t s);

}  // namespace ingot::cu
