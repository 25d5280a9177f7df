// eval_cuda stubs of the indexing primitives (builds without CUDA).
#include "core/primitives/indexing.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_UNARY(Take)
INGOT_NO_CUDA_UNARY(Gather)
INGOT_NO_CUDA_UNARY(TakeAlongAxis)
INGOT_NO_CUDA_UNARY(PutAlongAxis)
INGOT_NO_CUDA_UNARY(ScatterAdd)
INGOT_NO_CUDA_UNARY(ScatterAddAlongAxis)
