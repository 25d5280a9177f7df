// Launchers of the creation kernels (creation.cu), callable from host .cpp files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// Values of an Arange or Linspace: element i is start + i * step, computed in double (or in
/// wrapping int64 when `integral`) and converted once to the output dtype as AsType does.
struct RangeFill {
  int64_t n = 0;
  bool integral = false;  // start_i + i * step_i modulo 2^64 (integer outputs only)
  int64_t start_i = 0, step_i = 0;
  double start = 0, step = 0;
  int64_t exact_index = -1;  // this element is exact_value instead (Linspace's last = stop)
  double exact_value = 0;
};

/// Writes f's n values of dtype t into row-major device memory `out` on stream s.
void launch_range_fill(Dtype t, void* out, const RangeFill& f, cudaStream_t s);

/// Ones where column - row == k in a row-major [rows, cols] matrix, zeros elsewhere.
struct EyeFill {
  int64_t rows = 0, cols = 0, k = 0;
};

/// Writes the identity-like matrix e of dtype t into `out` on stream s.
void launch_eye(Dtype t, void* out, const EyeFill& e, cudaStream_t s);

}  // namespace ingot::cu
