// View layouts shared by the CPU and CUDA backends (no data is touched).
#pragma once

#include <vector>

#include "core/array.h"

namespace ingot::backend {

/// Makes `out` a view of `in` in row-major element order; false when strides cannot express
/// it (the caller copies).
bool reshape_view(const Array& in, Array& out);
/// Makes `out` the axis permutation `axes` of `in`.
void transpose_view(const Array& in, Array& out, const std::vector<int>& axes);
/// Makes `out` `in` broadcast to out's shape (stride 0 on broadcast axes).
void broadcast_view(const Array& in, Array& out);
/// Makes `out` the slice of `in` from `start` with `steps` per axis (out.size() > 0).
void slice_view(const Array& in, Array& out, const Shape& start, const Shape& steps);

}  // namespace ingot::backend
