// eval: runs the graph behind a set of arrays in topological order, iteratively.
#pragma once

#include <vector>

#include "core/array.h"

namespace ingot {

/// Evaluates the arrays and everything they depend on; evaluated nodes are detached so the
/// graph frees itself. Safe on graphs of any depth (no recursion).
void eval(const std::vector<Array>& arrays);

/// Waits for queued device work of the arrays' devices (no-op on the CPU).
void synchronize(Device d = default_device());

}  // namespace ingot
