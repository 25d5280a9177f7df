// Launchers of the CUDA Sort, ArgSort, Partition, ArgPartition and TopK kernels (fmt-free).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

/// What a sort launch writes: values or uint32 indices, ascending (sort) or the first m of
/// the descending order (topk). Partitions are written as full sorts.
enum class SortJob { sort, argsort, topk, topk_indices };

/// Rows along the sorted axis of the input and where their outputs go.
struct SortPlan {
  Layout kept;        // input strides of the other axes (row-major row index), collapsed
  int64_t rows = 0;   // number of rows
  int64_t n = 0;      // elements per row (< 2^32)
  int64_t sx = 0;     // input stride along the axis
  int64_t m = 0;      // outputs per row: n, or k for topk
  int64_t inner = 1;  // product of the dims after the axis (the output's stride along it)
};

/// Device scratch bytes launch_sort needs for this job (0 when none).
size_t sort_scratch_bytes(SortJob job, Dtype t, const SortPlan& p);

/// Orders each row under the CPU's total order: NaN after every number, -0 equal to +0, ties
/// by index (stable); topk is descending by value with ties by ascending index. Values are
/// copied bit for bit from the input. `scratch` holds sort_scratch_bytes bytes.
void launch_sort(SortJob job, const void* in, Dtype t, const SortPlan& p, void* out, void* scratch,
                 size_t scratch_bytes, cudaStream_t s);

}  // namespace ingot::cu
