// Launchers of the CUDA CrossEntropy / CrossEntropyGrad kernels (fmt-free).
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/indexing_kernels.h"
#include "backend/cuda/reduce_kernels.h"

namespace ingot::cu {

/// The per-row operands: the targets (int32, or int64 with targets64) and, for the gradient,
/// the loss cotangent g in the compute type (float32; float64 for float64 logits), each read at
/// elem_offset(row, layout) for rows in row-major order.
struct CeRows {
  const void* targets = nullptr;
  bool targets64 = false;
  Layout targets_layout;
  const void* g = nullptr;
  Layout g_layout;
  FaultSite site;  // where a target outside [0, V) is recorded (its row's output is NaN)
};

/// grad false (CrossEntropy): out[row] = logsumexp(row) - row[target], p planned without
/// same_shape_out over the last axis. grad true (CrossEntropyGrad): out (logits' shape,
/// row-major, p planned with same_shape_out) = (softmax(row) - onehot(target)) * g[row],
/// rounded once to out_type. A warp per row up to 1024 classes, else a block per row; float32
/// inside (float64 for float64). `out` may be `in`'s donated buffer for the gradient.
void launch_cross_entropy(bool grad, const void* in, Dtype in_type, const RowPlan& p,
                          const CeRows& rows, void* out, Dtype out_type, cudaStream_t s);

}  // namespace ingot::cu
