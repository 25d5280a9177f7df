// Elementwise kernel table and driver. ew_kernel(op, in, out) resolves an EwOp (see
// core/primitives/elementwise.h) to a loop over n elements; compile's fused interpreter calls
// the same function pointers on small blocks (intermediates contiguous, inputs strided).
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.h"
#include "core/primitives/elementwise.h"

namespace ingot::cpu {

/// One input of a kernel call: first element and stride in elements (0 = one value broadcast,
/// 1 = contiguous, anything else = strided).
struct EwArg {
  const void* ptr;
  int64_t stride;
};

/// Computes n outputs into contiguous `out` from ew_arity(op) inputs.
using EwKernel = void (*)(const EwArg* in, void* out, int64_t n);

/// The kernel of `op` reading `in` (the dtype of the data inputs; for Where the dtype of x and
/// y, its condition being bool; for AsType the source dtype) and writing `out`. Throws
/// Unsupported for a combination the op does not accept (the ops never build one).
EwKernel ew_kernel(EwOp op, Dtype in, Dtype out);

/// Runs `k` over every element of `out` (inputs have out's shape, any layout): allocates out
/// or, when `donate` and an input is donatable with out's dtype, reuses that input's buffer.
/// Contiguous and broadcast-scalar inputs take a flat loop, others go run by run
/// (StridedRuns); both split across threads above ~64k elements.
void ew_eval(EwKernel k, const std::vector<Array>& inputs, Array& out, bool donate = true);

}  // namespace ingot::cpu
