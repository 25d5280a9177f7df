// Launcher of the CUDA attention backward (fast_sdpa_bwd.cu): FlashAttention-2 style kernels on
// tensor cores (wmma, 16-bit inputs, float accumulators) for D == Dv in {64, 128, 256}.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/fast_sdpa_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// One attention backward problem. q, out, d_out [B, H, L, D] and k, v [B, Hkv, S, D] are
/// read through element strides of (batch, head, position) with a unit stride on the last axis
/// (row-major for the wmma kernels, which ignore the strides; any multiple of 8 elements for the
/// mma kernels), all 16-byte aligned; dq is written row-major [B, H, L, D], dk and dv
/// [B, Hkv, S, D]. The mask is read through strides broadcast to [B, H, L, S] (0 = broadcast).
/// lse and delta are float scratch of B * H * L each.
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
  int64_t q_st[3] = {}, k_st[3] = {}, v_st[3] = {}, o_st[3] = {}, g_st[3] = {};  // out, d_out
  int64_t m_st[4] = {};
  float scale = 1.0f;
  bool causal = false;
  int window = 0;
};

/// True when the kernels take (dtype, D, Dv): bfloat16/float16 with D == Dv in {64, 128, 256}.
bool sdpa_bwd_supported(Dtype t, int64_t D, int64_t Dv);

/// Dynamic shared memory per CTA of the largest backward kernel for head dim D.
size_t sdpa_bwd_smem(int64_t D);

/// Queues the three backward kernels (row statistics, dk/dv, dq) on stream s. L, S > 0. Problems
/// that sdpa_bwd_mma_takes go to fast_sdpa_bwd_mma.cu's kernels unless INGOT_SDPA_BWD_MMA=0.
void launch_sdpa_bwd(const SdpaBwdArgs& a, cudaStream_t s);

/// True when fast_sdpa_bwd_mma.cu's kernels take the problem: no mask, 16-bit, D in {64, 128},
/// and INGOT_SDPA_BWD_MMA is not "0". Only those kernels read strided inputs.
bool sdpa_bwd_mma_takes(const SdpaBwdArgs& a);

/// Those kernels (rows, dk/dv, dq) on stream s; lse holds log2 units there.
void launch_sdpa_bwd_mma(const SdpaBwdArgs& a, cudaStream_t s);

}  // namespace ingot::cu
