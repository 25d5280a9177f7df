// Launchers of the CUDA Scan kernels (cumulative sum / product), fmt-free.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/cuda/reduce_kernels.h"

namespace ingot::cu {

/// How a scan runs: a thread per row walking the axis (cols: the axis is strided and adjacent
/// rows are adjacent in memory), or blocks scanning tiles of a row in order, with `splits`
/// chunks per row whose totals (in scratch) seed the later chunks.
struct ScanConfig {
  bool cols = false;
  int splits = 1;
  size_t scratch_bytes = 0;
};
/// Chooses the kernel for plan p (one reduced axis, planned with same_shape_out).
ScanConfig scan_config(const RowPlan& p, int sms);

/// Cumulative sum (or product with `prod`) along the single reduced axis of p, forward or
/// `reverse`, `inclusive` or exclusive, into row-major `out` of out_type. Accumulates in float32
/// for 16-bit floats and float32, float64 for float64, wrapping 64-bit for integers and bool.
void launch_scan(bool prod, bool reverse, bool inclusive, const void* in, Dtype in_type,
                 const RowPlan& p, void* out, Dtype out_type, const ScanConfig& cfg, void* scratch,
                 cudaStream_t s);

}  // namespace ingot::cu
