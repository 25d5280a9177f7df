// eval_cuda stubs of the copying shape primitives (builds without CUDA).
#include "core/primitives/shape.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_UNARY(SliceUpdate)
INGOT_NO_CUDA_UNARY(Concatenate)
INGOT_NO_CUDA_UNARY(Pad)
