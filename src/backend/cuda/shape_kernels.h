// Launchers of the CUDA copying shape kernels (slice_update, concatenate, pad), declared for
// shape.cpp without fmt or core/array.h so that nvcc can read them too.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

/// Copy of the elements of one shape from src (read at src_strides) to dst (written at
/// dst_strides); strides in elements, pointers at the first element of each side.
struct StridedCopy {
  const void* src = nullptr;
  Dtype src_type = Dtype::float32;
  void* dst = nullptr;
  Dtype dst_type = Dtype::float32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t src_strides[kMaxDims] = {};
  int64_t dst_strides[kMaxDims] = {};
};

/// Runs the copy on stream s, converting as the CPU's cast_value does (16-bit floats through
/// float). Same-dtype copies move bytes, in 16-byte units where the layout allows.
void launch_strided_copy(const StridedCopy& c, cudaStream_t s);

/// out (row-major, out_shape) = value everywhere except the box [low, low + in_shape), which
/// holds a (read at in_strides). a, value and out share one dtype of elem_size bytes.
struct PadCopy {
  const void* a = nullptr;
  const void* value = nullptr;  // device pointer to one element
  void* out = nullptr;
  int elem_size = 4;
  int ndim = 0;
  int64_t out_shape[kMaxDims] = {};
  int64_t low[kMaxDims] = {};
  int64_t in_shape[kMaxDims] = {};
  int64_t in_strides[kMaxDims] = {};
};

/// Runs the pad on stream s (one pass: every output element is written once).
void launch_pad(const PadCopy& p, cudaStream_t s);

}  // namespace ingot::cu
