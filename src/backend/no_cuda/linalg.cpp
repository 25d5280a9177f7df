// CUDA stubs of the linear algebra primitives (builds without CUDA).
#include "core/primitives/linalg.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_UNARY(Matmul)
INGOT_NO_CUDA_UNARY(AddMM)
