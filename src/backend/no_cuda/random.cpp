// eval_cuda stubs of the random primitives (builds without CUDA).
#include "core/primitives/random.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_UNARY(RandomBits)
INGOT_NO_CUDA_UNARY(Uniform)
INGOT_NO_CUDA_UNARY(Normal)
INGOT_NO_CUDA_UNARY(RandInt)
INGOT_NO_CUDA_UNARY(Bernoulli)
INGOT_NO_CUDA_UNARY(Gumbel)
INGOT_NO_CUDA_UNARY(Categorical)
