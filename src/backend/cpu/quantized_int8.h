// The int8-activation GEMV of quantized_matmul (see backend/cpu/quantized.cpp), callable
// directly so tests can check the scheme on every CPU: the portable row kernel computes the same
// integer sums as the AVX-512 VNNI one (which quantized_matmul uses under
// INGOT_CPU_ISA=avx512vnni).
#pragma once

#include <cstdint>

namespace ingot::cpu {

/// out [m, n] = x [m, k] @ dequantize(w)^T with each group of each row of x rounded to int8
/// (step max|x_g| / 127) and the group dot products formed in int32; w, scales and biases in
/// the MLX layout ([n, k * bits / 32] uint32, [n, k / group_size] float32). vnni selects the
/// AVX512_VNNI kernel (Unsupported where the CPU lacks it), else the portable one.
void quantized_gemv_int8(const float* x, int64_t m, int64_t k, const uint32_t* w,
                         const float* scales, const float* biases, int64_t n, int group_size,
                         int bits, bool vnni, float* out);

}  // namespace ingot::cpu
