// Creation ops: zeros, ones, full, arange, linspace, eye, and copies.
#pragma once

#include "core/array.h"

namespace ingot {

/// Array of `shape` filled with `value` (a scalar array, converted to dtype).
Array full(const Shape& shape, const Array& value, Dtype dtype, StreamOrDevice s = {});
/// Same with the value's dtype.
Array full(const Shape& shape, const Array& value, StreamOrDevice s = {});
Array zeros(const Shape& shape, Dtype dtype = float32, StreamOrDevice s = {});
Array ones(const Shape& shape, Dtype dtype = float32, StreamOrDevice s = {});
Array zeros_like(const Array& a, StreamOrDevice s = {});
Array ones_like(const Array& a, StreamOrDevice s = {});
Array full_like(const Array& a, const Array& value, StreamOrDevice s = {});
/// Values start, start+step, ... below stop (above for negative step).
Array arange(double start, double stop, double step, Dtype dtype = float32, StreamOrDevice s = {});
/// 0, 1, ..., n-1 as int32 (or dtype).
Array arange(int64_t n, Dtype dtype = int32, StreamOrDevice s = {});
/// `num` evenly spaced values from start to stop inclusive.
Array linspace(double start, double stop, int64_t num, Dtype dtype = float32,
               StreamOrDevice s = {});
/// n x m matrix with ones on diagonal k (m = n when m < 0).
Array eye(int64_t n, int64_t m = -1, int64_t k = 0, Dtype dtype = float32, StreamOrDevice s = {});
/// A row-contiguous copy (a new buffer, also for views).
Array copy(const Array& a, StreamOrDevice s = {});
/// Row-contiguous version of a (no copy when already row contiguous).
Array contiguous(const Array& a, StreamOrDevice s = {});
/// `a` on device `d`: itself when it lives there already (a host constant is pinned there by a
/// copy, so ops on it run on `d`). The only way arrays change device; differentiable (the
/// cotangent moves back).
Array to_device(const Array& a, Device d);

}  // namespace ingot
