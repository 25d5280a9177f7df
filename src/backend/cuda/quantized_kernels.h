// Launchers of the CUDA affine quantization kernels (fmt-free, for nvcc and the host compiler).
// All arrays are row-contiguous; layout as in core/primitives/quantized.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/matmul_kernels.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Quantizes `groups` groups of w (dtype t) into wq, scales and biases (dtype t).
void launch_affine_quantize(Dtype t, const void* w, int64_t groups, int gs, int bits, uint32_t* wq,
                            void* scales, void* biases, cudaStream_t s);
/// Dequantizes `groups` groups into out (the scales' dtype t).
void launch_affine_dequantize(Dtype t, const uint32_t* wq, const void* scales, const void* biases,
                              int64_t groups, int gs, int bits, void* out, cudaStream_t s);
/// out[m, n] = sum_k x[m, k] * (s * q + b), x and out of dtype tx, scales/biases of dtype ts;
/// one warp per output element row n (fused dequantize-GEMV), float32 accumulation.
void launch_qmv(Dtype tx, Dtype ts, const void* x, int64_t m, int64_t k, const uint32_t* wq,
                const void* scales, const void* biases, int64_t n, int gs, int bits, void* out,
                cudaStream_t s);
/// The decode GEMV of matmul_kernels.h for quantized weights (p.bits 4 or 8; gemv_supported(t,
/// p) must hold): launch_gemv calls it.
void launch_qgemv(Dtype t, const GemvProblem& p, cudaStream_t s, int sms);

}  // namespace ingot::cu
