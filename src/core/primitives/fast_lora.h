// Primitives of fast::lora_branch (core/fast/lora.h): the low-rank branch of a LoRA layer and
// its fused backward.
#pragma once

#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// fast::lora_branch: out = y + scale * (x a^T) b^T, computed in float32 and rounded once to y's
/// dtype. Inputs {y [..., N], x [..., K], a [R, K], b [N, R]} (a and b float32; y and x any
/// float dtypes, x's leading axes those of y), output y's shape and dtype.
class LoraBranch : public UnaryPrimitive {
 public:
  LoraBranch(Stream s, float scale) : UnaryPrimitive(s), scale_(scale) {}
  INGOT_UNARY_PRIMITIVE(LoraBranch)
  INGOT_EQUIVALENT(LoraBranch, std::make_tuple(p->scale_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// dy = the cotangent; dx, da, db from one LoraBranchGrad.
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float scale_;
};

/// The gradients of LoraBranch given its output's cotangent g: inputs {g [..., N], x [..., K],
/// a [R, K], b [N, R]}, outputs {dx (x's shape and dtype), da [R, K], db [N, R] (float32)}.
/// With t = x a^T and dt = scale * g b (float32): dx = dt a (rounded to x's dtype),
/// da = dt^T x, db = scale * g^T t. Sums in float32 in a fixed order (the same bits every run).
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
