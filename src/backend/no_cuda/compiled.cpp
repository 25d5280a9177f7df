// eval_cuda stub of the fused elementwise primitive (build without CUDA).
#include "backend/no_cuda/stubs.h"
#include "core/primitives/compiled.h"

INGOT_NO_CUDA_MULTI(Compiled)
