// Collective ops on arrays over a dist::Group. On a single-rank group each returns its input
// (no node, no copy). Every rank must call the same collectives in the same order with the same
// shapes and dtypes.
#pragma once

#include <memory>

#include "core/array.h"
#include "core/device.h"
#include "core/dist/group.h"

namespace ingot::dist {

/// Sum of `x` over the ranks of `group` (default: world()); float32/float64/bf16/f16/int32.
/// Every rank gets identical bytes.
Array all_sum(const Array& x, std::shared_ptr<Group> group = nullptr, StreamOrDevice s = {});

/// The ranks' `x` concatenated along `axis` in rank order: shape[axis] * size.
Array all_gather(const Array& x, int axis = 0, std::shared_ptr<Group> group = nullptr,
                 StreamOrDevice s = {});

}  // namespace ingot::dist
