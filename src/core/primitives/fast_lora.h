// Primitives of fast::lora_branch (core/fast/lora.h): the low-rank branch of a LoRA layer and
// its fused backward.
#pragma once

#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// fast::lora_branch: out = y + scale * (x a^T) b^T, computed in float32 and rounded once to y's
/// dtype. Inputs {y [..., N], x [..., K], a [R, K], b [N, R]} (a and b float32; y and x any
/// float dtypes, x's leading axes those of y). Outputs {out (y's shape and dtype), t = x a^T
/// [..., R] float32}: t is the product the backward needs, kept (rows x R floats) so that the
/// backward does not read x a second time to recompute it.
class LoraBranch : public Primitive {
 public:
  LoraBranch(Stream s, float scale) : Primitive(s), scale_(scale) {}
  INGOT_MULTI_PRIMITIVE(LoraBranch)
  INGOT_EQUIVALENT(LoraBranch, std::make_tuple(p->scale_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// dy = out's cotangent; dx, da, db from one LoraBranchGrad over the kept t (t's own
  /// cotangent is not used: t is internal to lora_branch).
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float scale_;
};

/// The gradients of LoraBranch given its output's cotangent g: inputs {g [..., N], x [..., K],
/// a [R, K], b [N, R], t [..., R]} (t = x a^T, LoraBranch's second output; without t, as
/// under INGOT_LORA_KEEP_PRODUCT=0, the backward recomputes it from x), outputs {dx (x's
/// shape and dtype), da [R, K], db [N, R] (float32)}. With dt = scale * g b (float32):
/// dx = dt a (rounded to x's dtype), da = dt^T x, db = scale * g^T t. Sums in float32 in a fixed
/// order (the same bits every run).
class LoraBranchGrad : public Primitive {
 public:
  LoraBranchGrad(Stream s, float scale) : Primitive(s), scale_(scale) {}
  INGOT_MULTI_PRIMITIVE(LoraBranchGrad)
  INGOT_EQUIVALENT(LoraBranchGrad, std::make_tuple(p->scale_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// Throws Unsupported (higher-order gradients take the composition: INGOT_FUSED_LORA=0).
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float scale_;
};

}  // namespace ingot
