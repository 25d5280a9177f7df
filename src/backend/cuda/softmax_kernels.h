// Launchers of the CUDA Softmax (and log-softmax) and LogSumExp kernels (fmt-free).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/cuda/reduce_kernels.h"

namespace ingot::cu {

/// What a softmax-family launch writes.
enum class SoftmaxMode { softmax, log_softmax, logsumexp };

/// How it runs: a warp or a block per row, a thread per row (cols: the reduced axis is strided
/// and adjacent rows are adjacent in memory), and for few long rows `splits` chunks per row
/// whose running (max, sum) partials go to scratch.
struct SoftmaxConfig {
  enum class Kernel { warp_rows, block_rows, cols } kernel = Kernel::warp_rows;
  int splits = 1;
  size_t scratch_bytes = 0;
};
/// Chooses the kernel for plan p on `sms` multiprocessors; `in_type` sizes the scratch.
SoftmaxConfig softmax_config(const RowPlan& p, Dtype in_type, int sms);

/// Softmax / log-softmax of each row of `in` written to out (same shape, row-major; p planned
/// with same_shape_out), or logsumexp of each row written to out[row] (p planned without).
/// Float32 inside (float64 for float64); non-finite row maxima behave as on the CPU.
void launch_softmax(SoftmaxMode mode, const void* in, Dtype in_type, const RowPlan& p, void* out,
                    Dtype out_type, const SoftmaxConfig& cfg, void* scratch, cudaStream_t s);

}  // namespace ingot::cu
