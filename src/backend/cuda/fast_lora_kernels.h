// Launchers of the CUDA LoraBranch / LoraBranchGrad kernels (fmt-free, for nvcc and the host
// compiler). Row-major operands with a row stride; factors float32; rank r <= 64.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ingot::cu {

/// Rows of a matrix: element (m, c) at ptr[m * ld + c].
struct LoraRows {
  const void* ptr = nullptr;
  int64_t ld = 0;
  Dtype dtype = Dtype::float32;
};

/// Scratch floats launch_lora_project / launch_lora_colsum need for `rows` x `cols` (0: none).
int64_t lora_project_scratch(int64_t rows, int64_t cols, int r);
int64_t lora_colsum_scratch(int64_t rows, int64_t cols, int r);

/// out[m, j] = alpha * sum_c v(m, c) * p[c * ps + j * js] (float32 [rows, r], row-major).
void launch_lora_project(LoraRows v, int64_t rows, int64_t cols, const float* p, int64_t ps,
                         int64_t js, int r, float alpha, float* scratch, float* out,
                         cudaStream_t s);

/// out(m, n) = base(m, n) + alpha * sum_j w[m * r + j] * q[j * qj + n * qn], rounded to
/// out_dtype; out row-major [rows, cols]; base absent when base.ptr is null (0).
void launch_lora_expand(LoraRows base, const float* w, int64_t rows, int64_t cols, const float* q,
                        int64_t qj, int64_t qn, int r, float alpha, void* out, Dtype out_dtype,
                        cudaStream_t s);

/// sum over m of w[m * r + j] * v(m, c), times alpha, written at out[j * cols + c] or, with
/// transposed, at out[c * r + j] (float32). The row sums are split over blocks and the partial
/// sums added in a fixed order.
void launch_lora_colsum(LoraRows v, const float* w, int64_t rows, int64_t cols, int r, float alpha,
                        bool transposed, float* scratch, float* out, cudaStream_t s);

}  // namespace ingot::cu
