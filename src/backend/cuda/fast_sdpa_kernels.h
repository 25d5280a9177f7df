// Launchers of the CUDA attention kernels (fast_sdpa.cu): a tensor-core flash kernel for 16-bit
// inputs with D == Dv in {64, 80, 96, 128, 256}, a generic SIMT flash kernel for the rest, and
// split-K over the keys (with a combine pass) when there are too few (batch, head, row-tile) CTAs;
// decode problems (few rows per kv head) on a cluster or a split kernel (fast_sdpa_decode.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/fast_rope_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Kind of the mask input (mirrors SdpaMask without core/array.h).
enum class SdpaMaskKind : int { none, additive, boolean };

/// One attention problem. q [B, H, L, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv] are read through
/// element strides of (batch, head, position) with a unit stride on the last axis; `out` is
/// row-major [B, H, L, Dv]; the mask through strides broadcast to [B, H, L, S] (0 = broadcast).
struct SdpaArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* mask = nullptr;
  void* out = nullptr;
  Dtype dtype = Dtype::float32;
  Dtype mask_dtype = Dtype::float32;
  SdpaMaskKind mask_kind = SdpaMaskKind::none;
  int64_t B = 0, H = 0, Hkv = 0, L = 0, S = 0, D = 0, Dv = 0;
  int64_t q_st[3] = {}, k_st[3] = {}, v_st[3] = {};
  int64_t m_st[4] = {};
  float scale = 1.0f;
  float softcap = 0.0f;
  bool causal = false;
  int window = 0;
};

/// How one problem is cut into CTAs (from plan_sdpa).
struct SdpaPlan {
  bool mma = false;            // tensor-core kernel
  bool decode = false;         // few-row kernel (sdpa_uses_decode)
  int threads = 128;           // threads per CTA
  int rows_per_cta = 16;       // rows of the G * L (position-major) rows of one (b, kv head)
  int64_t row_tiles = 0;       // CTAs along those rows
  int splits = 1;              // key ranges combined afterwards
  int64_t keys_per_split = 0;  // a multiple of the key tile
  size_t smem = 0;             // dynamic shared memory per CTA
  size_t partial_bytes = 0;    // scratch for the split partials (0 when splits == 1)
  // Tensor-core problems with many CTAs whose keys all fit one tile and no splits run on a
  // persistent kernel (at most as many CTAs as fit on the sm_count SMs).
  bool short_rows = false;
  int sm_count = 0;
  // Decode on the cluster kernel (sm_90; by default when its clusters fill the card, see
  // plan_sdpa; INGOT_CUDA_DECODE_KERNEL=1 always, =0 never):
  // CTAs per (batch, kv head) in one thread-block cluster (splits == cluster, no partials), keys
  // per shared-memory stage and stages (1 or 2). 0: another kernel.
  int cluster = 0;
  int stage_keys = 0;
  int stages = 0;
};

/// Head dim largest of D and Dv the kernels take.
inline constexpr int64_t kSdpaMaxHeadDim = 256;

/// True when (dtype, D, Dv) runs on the tensor-core kernel, which then needs 16-byte aligned
/// q/k/v pointers and (batch, head, position) strides that are multiples of 8 elements.
bool sdpa_uses_mma(Dtype t, int64_t D, int64_t Dv);

/// True when the problem runs on a few-row decode kernel (16-bit or float32, D == Dv of 64,
/// 128 or 256 16-bit / 32, 64 or 128 float32 elements, G * L <= 8 rows per kv head), which
/// needs 16-byte aligned q/k/v pointers and strides. INGOT_CUDA_DECODE_ATTENTION=0 turns it off.
/// 16-bit problems on sm_90 with enough (batch, kv head) pairs to fill the card, or with at
/// most 2048 keys, run on the cluster kernel (INGOT_CUDA_DECODE_KERNEL=1: all of them, =0:
/// none), the others on the split kernel; plan_sdpa decides.
bool sdpa_uses_decode(const SdpaArgs& a);

/// Tiles, splits and memory of a problem (S > 0 and a non-empty output) for a device with
/// `sm_count` multiprocessors.
SdpaPlan plan_sdpa(const SdpaArgs& a, int sm_count);

/// Queues the attention kernels of `plan` on stream s; `partials` holds plan.partial_bytes.
void launch_sdpa(const SdpaArgs& a, const SdpaPlan& plan, void* partials, cudaStream_t s);

/// fast::rope_kv_attention as one kernel: the cluster decode kernel (plan.cluster > 0) with
/// rope_kv_update's work for its kv head in its prologue. Each CTA normalises and rotates its G
/// query rows from kv.qkv [B, 1, (H + 2 Hkv) D] (as rope_kv_kernel does, into shared memory);
/// the CTA whose key span holds column kv.column[0] also normalises and rotates the new key,
/// writes it and the new value to kv.keys / kv.values (= a.k / a.v, [B, Hkv, C, D]
/// row-contiguous) and over the old column in its shared-memory stage once that stage's copy
/// has landed. a describes the attention over the written cache (a.q unused, L = 1). False (nothing
/// queued) when the kernel does not take the problem: not a cluster plan, L != 1, not 16-bit.
bool launch_rope_kv_attention(const SdpaArgs& a, const SdpaPlan& plan, const RopeKvArgs& kv,
                              const RopeInvFreqs& inv, cudaStream_t s);

}  // namespace ingot::cu
