// CUDA stubs of the quantization primitives (builds without CUDA).
#include "core/primitives/quantized.h"
#include "backend/no_cuda/stubs.h"

INGOT_NO_CUDA_MULTI(AffineQuantize)
INGOT_NO_CUDA_UNARY(AffineDequantize)
INGOT_NO_CUDA_UNARY(QuantizedMatmul)
