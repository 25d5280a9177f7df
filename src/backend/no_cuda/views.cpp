// eval_cuda stubs of the view primitives (build without CUDA).
#include "core/primitives/views.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_UNARY(Reshape)
INGOT_NO_CUDA_UNARY(Transpose)
INGOT_NO_CUDA_UNARY(Broadcast)
INGOT_NO_CUDA_UNARY(Slice)
