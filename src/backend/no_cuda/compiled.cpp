// eval_cuda stub of the fused elementwise primitive and the JIT counter (build without CUDA).
#include <cstddef>

#include "backend/cuda/jit/nvrtc.h"
#include "backend/no_cuda/stubs.h"
#include "core/primitives/compiled.h"

INGOT_NO_CUDA_MULTI(Compiled)

namespace ingot::cu {
/// Kernels the NVRTC path compiled so far: none without CUDA.
size_t jit_cache_size() {
  return 0;
}
}  // namespace ingot::cu
