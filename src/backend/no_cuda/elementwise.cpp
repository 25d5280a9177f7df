// eval_cuda stubs of the elementwise primitives for builds without CUDA.
#include "core/primitives/elementwise.h"
#include "backend/no_cuda/stubs.h"

namespace ingot {
INGOT_EW_UNARY_OPS(INGOT_NO_CUDA_UNARY)
INGOT_EW_BINARY_OPS(INGOT_NO_CUDA_UNARY)
INGOT_NO_CUDA_UNARY(Where)
INGOT_NO_CUDA_UNARY(AsType)
}  // namespace ingot
