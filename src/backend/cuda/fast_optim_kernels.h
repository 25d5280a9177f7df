// Launchers of the CUDA AdamStep / SumSquares kernels (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// One tensor of an Adam step: row-contiguous p (p_dtype), g (g_dtype), float32 m and v, and
/// the outputs (which may alias p, m and v: each element is read before it is written, by the
/// same thread).
struct AdamTensor {
  const void* p = nullptr;
  const void* g = nullptr;
  const float* m = nullptr;
  const float* v = nullptr;
  void* p_out = nullptr;
  float* m_out = nullptr;
  float* v_out = nullptr;
  int64_t n = 0;
  Dtype p_dtype = Dtype::float32;
  Dtype g_dtype = Dtype::float32;
};

/// The step's scalars (AdamStep's members); scale: a device float, or null.
struct AdamScalars {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, c1, c2, weight_decay, decay;
  bool decoupled;
  const float* scale;
};

/// Runs the step over `count` tensors (any count; launched in groups).
void launch_adam_step(const AdamTensor* tensors, int count, const AdamScalars& s,
                      cudaStream_t stream);

/// One input of a sum of squares: n row-contiguous elements of a float dtype.
struct SquaresInput {
  const void* x = nullptr;
  int64_t n = 0;
  Dtype dtype = Dtype::float32;
};

/// *out (device float) = sum over the inputs of x^2, widened to float32; deterministic (fixed
/// blocks, partial sums in float64 added in order). `partials`: device scratch of at least
/// squares_partials(inputs, count) doubles.
int64_t squares_partials(const SquaresInput* inputs, int count);
void launch_sum_squares(const SquaresInput* inputs, int count, double* partials, float* out,
                        cudaStream_t stream);

}  // namespace ingot::cu
