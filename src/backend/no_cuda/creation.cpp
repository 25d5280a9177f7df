// eval_cuda stubs of the creation primitives for builds without CUDA.
#include "core/primitives/creation.h"
#include "backend/no_cuda/stubs.h"

namespace ingot {
INGOT_NO_CUDA_UNARY(Full)
INGOT_NO_CUDA_UNARY(Arange)
INGOT_NO_CUDA_UNARY(Linspace)
INGOT_NO_CUDA_UNARY(Eye)
INGOT_NO_CUDA_UNARY(Copy)
INGOT_NO_CUDA_UNARY(Contiguous)
INGOT_NO_CUDA_UNARY(ToDevice)
}  // namespace ingot
