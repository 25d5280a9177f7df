// Launcher of the CUDA ActivationGrad kernel (fmt-free, for nvcc and the host compiler).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// out[i] = g[i] * act'(x[i]) for n contiguous elements of float dtype t (float32 math,
/// float64 for float64), rounded once; act 0 silu, 1 gelu, 2 gelu_tanh. out may alias g.
void launch_activation_grad(Dtype t, int act, const void* x, const void* g, void* out, int64_t n,
                            cudaStream_t s);

}  // namespace ingot::cu
