// fast::lora_branch: the low-rank branch of a LoRA layer (y + scale * (x A^T) B^T) as one
// primitive with a fused backward, instead of casts, two products and an epilogue add (about
// 20 graph nodes a layer forward and backward, and the float32 round trips of x and y).
#pragma once

#include "core/array.h"

namespace ingot::fast {

/// The largest rank lora_branch takes (the kernels keep a row's rank values in registers);
/// nn falls back to the composition above it.
inline constexpr int64_t kLoraMaxRank = 64;

/// y + scale * (x a^T) b^T in float32 (x and y widened exactly), rounded once to y's dtype.
/// y [..., N] and x [..., K] of float dtypes with the same leading axes, a [R, K] and b [N, R]
/// float32 with 1 <= R <= kLoraMaxRank. The result equals ref::lora_branch up to the order of
/// the float32 sums. Gradients: y's is the cotangent; x's (in x's dtype), a's and b's (float32)
/// come from one fused primitive.
Array lora_branch(const Array& y, const Array& x, const Array& a, const Array& b, float scale,
                  StreamOrDevice s = {});

/// Whether nn uses lora_branch on device d (INGOT_FUSED_LORA). Unset or empty: on CUDA only
/// (faster and lighter there: BENCHMARKS.md; on the CPU ~10% slower than the composition at
/// ~0.6x its peak memory); "0": never (the composition); "1" or anything else: everywhere. The
/// composition also serves higher-order gradients.
bool lora_branch_enabled(Device d);

namespace ref {
/// The composition lora_branch replaces: astype(addmm(astype(y, f32), astype(x, f32) a^T, b^T,
/// scale, 1), y's dtype).
Array lora_branch(const Array& y, const Array& x, const Array& a, const Array& b, float scale,
                  StreamOrDevice s = {});
}  // namespace ref

}  // namespace ingot::fast
