// eval_cuda stub of PagedAttention for builds without CUDA.
#include "core/primitives/paged_attention.h"
#include "backend/no_cuda/stubs.h"

namespace ingot {
INGOT_NO_CUDA_MULTI(PagedAttention)
}  // namespace ingot
