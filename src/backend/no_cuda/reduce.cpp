// eval_cuda stubs of the reduction family for builds without CUDA.
#include "core/primitives/reduce.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_UNARY(Reduce)
INGOT_NO_CUDA_UNARY(ArgReduce)
INGOT_NO_CUDA_UNARY(LogSumExp)
INGOT_NO_CUDA_UNARY(Softmax)
INGOT_NO_CUDA_UNARY(CrossEntropy)
INGOT_NO_CUDA_UNARY(CrossEntropyGrad)
INGOT_NO_CUDA_UNARY(Scan)
INGOT_NO_CUDA_UNARY(Sort)
INGOT_NO_CUDA_UNARY(ArgSort)
INGOT_NO_CUDA_UNARY(Partition)
INGOT_NO_CUDA_UNARY(ArgPartition)
INGOT_NO_CUDA_UNARY(TopK)
