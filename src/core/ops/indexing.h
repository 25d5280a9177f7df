// Indexing ops: take, take_along_axis, put_along_axis, gather (embedding lookup), scatter_add.
// Indices may be any integer dtype; negative indices count from the end; out-of-range indices
// throw InvalidArgument at eval time naming the index and the axis size.
#pragma once

#include "core/array.h"

namespace ingot {

/// Elements of `a` at `indices` along `axis`: output shape is
/// a.shape[:axis] + indices.shape + a.shape[axis+1:].
Array take(const Array& a, const Array& indices, int axis, StreamOrDevice s = {});
/// Same over the flattened array.
Array take(const Array& a, const Array& indices, StreamOrDevice s = {});
/// Embedding lookup: rows of table [V, E] for ids of any shape -> ids.shape + [E].
Array gather(const Array& table, const Array& ids, StreamOrDevice s = {});
/// out[..., i, ...] = a[..., indices[..., i, ...], ...] along axis; indices broadcast
/// against a except on `axis`.
Array take_along_axis(const Array& a, const Array& indices, int axis, StreamOrDevice s = {});
/// Copy of `a` with values written at indices along axis (later duplicates win).
Array put_along_axis(const Array& a, const Array& indices, const Array& values, int axis,
                     StreamOrDevice s = {});
/// Copy of `a` with `updates` added at `indices` along `axis` (duplicates accumulate);
/// updates.shape = a.shape[:axis] + indices.shape + a.shape[axis+1:]. Used by take's VJP.
Array scatter_add(const Array& a, const Array& indices, const Array& updates, int axis,
                  StreamOrDevice s = {});
/// Copy of `a` with `values` added along axis at indices (duplicates accumulate), the
/// take_along_axis counterpart used by its VJP.
Array scatter_add_along_axis(const Array& a, const Array& indices, const Array& values, int axis,
                             StreamOrDevice s = {});

}  // namespace ingot
