// Launcher of the CUDA GluGrad kernel (fmt-free, for nvcc and the host compiler). Glu's forward
// runs on launch_gated_rows (matmul_kernels.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// GluGrad's operands as `rows` rows of k elements: g, u and dh with row strides sg, su, sd
/// (unit column stride), dg and du row-contiguous.
struct GluGradRows {
  const void *g = nullptr, *u = nullptr, *dh = nullptr;
  int64_t sg = 0, su = 0, sd = 0;
  void *dg = nullptr, *du = nullptr;
  int64_t rows = 0, k = 0;
};

/// dg = dh * u * act'(g) and du = dh * round(act(g)) (round(act(g)): Glu's forward value) for
/// float dtype t, in float32 (float64 for float64), each rounded once; act 0 silu, 1 gelu,
/// 2 gelu_tanh. du may be dh's buffer when sd == k. 16-byte vectors where every row allows
/// them.
void launch_glu_grad(Dtype t, int act, const GluGradRows& p, cudaStream_t s);

}  // namespace ingot::cu
