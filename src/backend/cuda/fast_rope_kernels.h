// Launcher of the CUDA Rope kernel (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "backend/cuda/indexing_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Rotary embedding of x [..., L, D] into row-contiguous out. Row r of x (row-major over the
/// leading axes) has position start[r / rows_per_b] + r % L, with start = offsets[b] when
/// offsets is set, else `offset`.
struct RopeArgs {
  const void* x = nullptr;
  Layout rows;     // x's leading axes (L included): row r starts at elem_offset(r, rows)
  int64_t sx = 1;  // stride of x along D
  void* out = nullptr;
  int64_t n_rows = 0, L = 0, D = 0, dims = 0;
  int64_t nb = 1;          // start positions: 1, or B with per-row offsets
  int64_t rows_per_b = 0;  // rows of x per start position
  bool traditional = false;
  float base = 10000.0f;
  float scale = 1.0f;
  int64_t offset = 0;
  const void* offsets = nullptr;  // integer [nb] (any integer dtype) or null
  Dtype offsets_dtype = Dtype::int32;
  int64_t offsets_stride = 0;
  const void* freqs = nullptr;  // inverse frequencies [dims / 2] (any float dtype) or null
  Dtype freqs_dtype = Dtype::float32;
  int64_t freqs_stride = 0;
};

/// Most inverse frequencies passed by value (head dims up to 1024).
inline constexpr int kRopeMaxInvFreqs = 512;

/// Inverse frequencies computed on the host exactly as the CPU backend does (n = 0: absent).
/// Passed as a kernel argument, so a captured CUDA graph replays them without a copy.
struct RopeInvFreqs {
  int n = 0;
  float v[kRopeMaxInvFreqs];
};

/// The inverse frequencies by value, computed on the host as the CPU backend computes them
/// (empty with custom freqs, or beyond kRopeMaxInvFreqs: the device computes those).
RopeInvFreqs host_inv_freqs(int dims, float base, bool has_freqs);

/// Rope on x of float dtype t. Inverse frequency i is freqs[i] when set, else inv.v[i] when
/// i < inv.n, else 1 / base^(2i / dims) computed on the device.
void launch_rope(Dtype t, const RopeArgs& a, const RopeInvFreqs& inv, cudaStream_t s);

/// fast::rope_kv_update on the device: one warp per (b, l, head) row of qkv [B, L, (H + 2 Hkv) D]
/// (rows 16-byte aligned, contiguous along the last axis, D a multiple of 16 and at most 256).
/// q and k rows are normalised (q_norm/k_norm set) and rotated as RmsNorm's and Rope's kernels
/// compute them; q goes to q_out [B, H, L, D], k and v rows to keys/values [B, Hkv, C, D] at
/// column column[0] + l (an out-of-range column is recorded at `site` and not written).
struct RopeKvArgs {
  const void* qkv = nullptr;
  int64_t sb = 0, sl = 0;  // qkv's strides (elements) along B and L
  int64_t B = 0, L = 0, D = 0, H = 0, Hkv = 0, C = 0;
  const void* q_norm = nullptr;  // [D] contiguous, 16-byte aligned, or null (no norm)
  const void* k_norm = nullptr;
  float eps = 0.0f;
  bool add_unit_offset = false;
  bool weight_in_float32 = true;
  RopeArgs rope;  // traditional, base, scale, offset(s), freqs and dims (= D) of the rotation
  void* q_out = nullptr;
  void* keys = nullptr;
  void* values = nullptr;
  const void* column = nullptr;
  Dtype column_dtype = Dtype::int32;
  FaultSite site;
};

/// Positions (B * L) from which rope_kv_update runs its many-positions kernel (a block per few
/// positions, all their heads) instead of a block per (position, four heads).
inline constexpr int64_t kRopeKvRowsMin = 256;

/// Queues the rope_kv_update kernel for dtype t (float32, bfloat16 or float16).
void launch_rope_kv(Dtype t, const RopeKvArgs& a, const RopeInvFreqs& inv, cudaStream_t s);

/// cos and sin of rope_kv_update's rotation at positions first, first + 1, ..., first + n - 1
/// into cs / sn [n][D / 2] (float, rounded through dtype t exactly as its kernels round them):
/// angle = (position * a.scale) * inverse frequency k, the frequencies as launch_rope takes them
/// (a.D, a.dims = D, a.base, a.freqs). For kernels that rotate many rows at few positions.
void launch_rope_table(Dtype t, const RopeArgs& a, const RopeInvFreqs& inv, int64_t first,
                       int64_t n, float* cs, float* sn, cudaStream_t s);

}  // namespace ingot::cu
