// eval_cuda stubs of the fast:: primitives for builds without CUDA.
#include "core/primitives/fast.h"
#include "backend/no_cuda/stubs.h"
#include "core/primitives/fast_glu.h"
#include "core/primitives/fast_lora.h"

namespace ingot {
INGOT_NO_CUDA_UNARY(RmsNorm)
INGOT_NO_CUDA_UNARY(RmsNormGrad)
INGOT_NO_CUDA_UNARY(ActivationGrad)
INGOT_NO_CUDA_UNARY(Glu)
INGOT_NO_CUDA_MULTI(GluGrad)
INGOT_NO_CUDA_UNARY(RmsNormLinear)
INGOT_NO_CUDA_UNARY(RmsNormGlu)
INGOT_NO_CUDA_MULTI(RmsNormAddProduct)
INGOT_NO_CUDA_UNARY(LayerNorm)
INGOT_NO_CUDA_UNARY(Rope)
INGOT_NO_CUDA_MULTI(RopeKvUpdate)
INGOT_NO_CUDA_MULTI(RopeKvAttention)
INGOT_NO_CUDA_UNARY(ScaledDotProductAttention)
INGOT_NO_CUDA_MULTI(DecodeBlock)
INGOT_NO_CUDA_UNARY(PackedAttention)
INGOT_NO_CUDA_MULTI(ScaledDotProductAttentionGrad)
INGOT_NO_CUDA_MULTI(AdamStep)
INGOT_NO_CUDA_UNARY(SumSquares)
INGOT_NO_CUDA_MULTI(LoraBranch)
INGOT_NO_CUDA_MULTI(LoraBranchGrad)
}  // namespace ingot
