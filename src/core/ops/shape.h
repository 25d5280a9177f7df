// Shape ops: reshape, transpose, broadcast, slice, concatenate, split, pad... Views (reshape of
// contiguous data, transpose, slice, broadcast, expand/squeeze) share the input's buffer.
#pragma once

#include <vector>

#include "core/array.h"

namespace ingot {

/// New shape with the same number of elements; one dimension may be -1 (inferred).
Array reshape(const Array& a, Shape shape, StreamOrDevice s = {});
/// Merges axes [start_axis, end_axis] into one.
Array flatten(const Array& a, int start_axis = 0, int end_axis = -1, StreamOrDevice s = {});
/// Permutes axes; `axes` must be a permutation of 0..ndim-1 (negatives allowed).
Array transpose(const Array& a, const std::vector<int>& axes, StreamOrDevice s = {});
/// Reverses the axes.
Array transpose(const Array& a, StreamOrDevice s = {});
Array swapaxes(const Array& a, int axis1, int axis2, StreamOrDevice s = {});
Array moveaxis(const Array& a, int source, int destination, StreamOrDevice s = {});
/// Inserts size-1 axes at the given positions (positions in the output).
Array expand_dims(const Array& a, const std::vector<int>& axes, StreamOrDevice s = {});
Array expand_dims(const Array& a, int axis, StreamOrDevice s = {});
/// Removes size-1 axes (all of them when `axes` is empty); a non-1 axis throws.
Array squeeze(const Array& a, const std::vector<int>& axes, StreamOrDevice s = {});
Array squeeze(const Array& a, StreamOrDevice s = {});
Array squeeze(const Array& a, int axis, StreamOrDevice s = {});
/// Broadcasts to `shape` (NumPy rules) as a view with zero strides.
Array broadcast_to(const Array& a, const Shape& shape, StreamOrDevice s = {});
std::vector<Array> broadcast_arrays(const std::vector<Array>& arrays, StreamOrDevice s = {});

/// a[start:stop:step] per axis (all axes given). Negative start/stop count from the end and
/// are clamped as in Python; steps may be negative, never 0.
Array slice(const Array& a, Shape start, Shape stop, Shape strides, StreamOrDevice s = {});
Array slice(const Array& a, Shape start, Shape stop, StreamOrDevice s = {});
/// Slice along one axis only.
Array slice_axis(const Array& a, int axis, int64_t start, int64_t stop, int64_t step = 1,
                 StreamOrDevice s = {});
/// Copy of `a` with a[start:stop:strides] replaced by `update` (broadcast to the slice).
Array slice_update(const Array& a, const Array& update, Shape start, Shape stop, Shape strides,
                   StreamOrDevice s = {});
Array slice_update(const Array& a, const Array& update, Shape start, Shape stop,
                   StreamOrDevice s = {});

/// Joins arrays along an existing axis (dtypes promoted).
Array concatenate(const std::vector<Array>& arrays, int axis = 0, StreamOrDevice s = {});
/// Joins arrays along a new axis.
Array stack(const std::vector<Array>& arrays, int axis = 0, StreamOrDevice s = {});
/// Splits into `num` equal parts along an axis (throws if not divisible).
std::vector<Array> split(const Array& a, int num, int axis = 0, StreamOrDevice s = {});
/// Splits at the given indices along an axis.
std::vector<Array> split(const Array& a, const std::vector<int64_t>& indices, int axis = 0,
                         StreamOrDevice s = {});
/// Pads axes[i] with low_pad[i] before and high_pad[i] after, filled with `value`.
Array pad(const Array& a, const std::vector<int>& axes, const Shape& low_pad, const Shape& high_pad,
          const Array& value = Array(0.0f), StreamOrDevice s = {});
/// Pads every axis by (pad_width[i].first, pad_width[i].second).
Array pad(const Array& a, const std::vector<std::pair<int64_t, int64_t>>& pad_width,
          const Array& value = Array(0.0f), StreamOrDevice s = {});
/// Repeats the array `reps` times per axis.
Array tile(const Array& a, const Shape& reps, StreamOrDevice s = {});
/// Repeats each element `repeats` times along an axis.
Array repeat(const Array& a, int repeats, int axis, StreamOrDevice s = {});

}  // namespace ingot
