// Reductions (accumulating in float32 for 16-bit floats), softmax family, scans and sorting.
#pragma once

#include <vector>

#include "core/array.h"

namespace ingot {

/// Axes may be negative; an empty axes list reduces nothing... except in the overloads
/// without axes, which reduce over all axes. Repeated or out-of-range axes throw.
Array sum(const Array& a, const std::vector<int>& axes, bool keepdims = false,
          StreamOrDevice s = {});
Array sum(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array sum(const Array& a, bool keepdims = false, StreamOrDevice s = {});
Array mean(const Array& a, const std::vector<int>& axes, bool keepdims = false,
           StreamOrDevice s = {});
Array mean(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array mean(const Array& a, bool keepdims = false, StreamOrDevice s = {});
Array max(const Array& a, const std::vector<int>& axes, bool keepdims = false,
          StreamOrDevice s = {});
Array max(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array max(const Array& a, bool keepdims = false, StreamOrDevice s = {});
Array min(const Array& a, const std::vector<int>& axes, bool keepdims = false,
          StreamOrDevice s = {});
Array min(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array min(const Array& a, bool keepdims = false, StreamOrDevice s = {});
Array prod(const Array& a, const std::vector<int>& axes, bool keepdims = false,
           StreamOrDevice s = {});
Array prod(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array prod(const Array& a, bool keepdims = false, StreamOrDevice s = {});
/// Variance with `ddof` delta degrees of freedom.
Array var(const Array& a, const std::vector<int>& axes, bool keepdims = false, int ddof = 0,
          StreamOrDevice s = {});
Array var(const Array& a, int axis, bool keepdims = false, int ddof = 0, StreamOrDevice s = {});
Array stddev(const Array& a, const std::vector<int>& axes, bool keepdims = false, int ddof = 0,
             StreamOrDevice s = {});
Array all(const Array& a, const std::vector<int>& axes, bool keepdims = false,
          StreamOrDevice s = {});
Array all(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array all(const Array& a, bool keepdims = false, StreamOrDevice s = {});
Array any(const Array& a, const std::vector<int>& axes, bool keepdims = false,
          StreamOrDevice s = {});
Array any(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array any(const Array& a, bool keepdims = false, StreamOrDevice s = {});
/// Index (uint32) of the first maximum / minimum along an axis.
Array argmax(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
Array argmin(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
/// log(sum(exp(a))) computed stably (max-subtracted), in float32 for 16-bit inputs.
Array logsumexp(const Array& a, const std::vector<int>& axes, bool keepdims = false,
                StreamOrDevice s = {});
Array logsumexp(const Array& a, int axis, bool keepdims = false, StreamOrDevice s = {});
/// Softmax over the axes (float32 accumulation; output in the input dtype).
Array softmax(const Array& a, const std::vector<int>& axes, StreamOrDevice s = {});
Array softmax(const Array& a, int axis = -1, StreamOrDevice s = {});
Array log_softmax(const Array& a, int axis = -1, StreamOrDevice s = {});

/// Cross-entropy of each row of `logits` [..., V] (a float dtype) against integer `targets`
/// [...] in [0, V): logsumexp(row) - row[target], computed in float32 (float64 for float64
/// logits) in one pass without a float32 copy of the logits; output [...] float32 (float64).
/// Differentiable in the logits (the gradient is one fused primitive as well). A target
/// outside [0, V) raises InvalidArgument (on CUDA at the next synchronisation).
Array softmax_cross_entropy(const Array& logits, const Array& targets, StreamOrDevice s = {});

/// Cumulative sum along an axis.
Array cumsum(const Array& a, int axis, bool reverse = false, bool inclusive = true,
             StreamOrDevice s = {});

/// Sorted copy along an axis (ascending; NaNs last).
Array sort(const Array& a, int axis = -1, StreamOrDevice s = {});
/// Indices (uint32) that sort along an axis (stable).
Array argsort(const Array& a, int axis = -1, StreamOrDevice s = {});
/// The k largest values along an axis, in descending order.
Array topk(const Array& a, int k, int axis = -1, StreamOrDevice s = {});
/// Indices (uint32) of the k largest values along an axis, in descending order of value.
Array topk_indices(const Array& a, int k, int axis = -1, StreamOrDevice s = {});
/// Indices (uint32) such that the element at kth is where a full sort puts it, smaller ones
/// before it and larger ones after (in no particular order).
Array argpartition(const Array& a, int kth, int axis = -1, StreamOrDevice s = {});
/// Values rearranged as argpartition orders them.
Array partition(const Array& a, int kth, int axis = -1, StreamOrDevice s = {});

}  // namespace ingot
