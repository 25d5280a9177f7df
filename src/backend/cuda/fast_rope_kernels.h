// Launcher of the CUDA Rope kernel (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
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

/// Rope on x of float dtype t. Inverse frequency i is freqs[i] when set, else inv.v[i] when
/// i < inv.n, else 1 / base^(2i / dims) computed on the device.
void launch_rope(Dtype t, const RopeArgs& a, const RopeInvFreqs& inv, cudaStream_t s);

}  // namespace ingot::cu
