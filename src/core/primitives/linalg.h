// Linear algebra primitives: Matmul (NumPy matmul semantics, batch broadcasting inside the
// kernel) and AddMM (fused c * beta + (a @ b) * alpha).
#pragma once

#include <tuple>

#include "core/primitive.h"

namespace ingot {

/// a @ b on inputs of one float dtype: a is [K] or [..., M, K], b is [K] or [..., K, N]; batch
/// dims broadcast (NumPy rules). 1-d operands are treated as [1, K] / [K, 1] and the added axis
/// is absent from the output.
class Matmul : public UnaryPrimitive {
 public:
  explicit Matmul(Stream stream) : UnaryPrimitive(stream) {}
  INGOT_UNARY_PRIMITIVE(Matmul)
  INGOT_EQUIVALENT(Matmul, std::make_tuple(0))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
};

/// c * beta + (a @ b) * alpha with inputs {c, a, b} of one float dtype; a and b as for Matmul,
/// c broadcastable to the matmul result.
class AddMM : public UnaryPrimitive {
 public:
  /// round_product: beta * c + round(alpha * a @ b), the product rounded to the output dtype
  /// first (add_matmul); otherwise one rounding of the whole sum.
  AddMM(Stream stream, float alpha, float beta, bool round_product = false)
      : UnaryPrimitive(stream), alpha_(alpha), beta_(beta), round_product_(round_product) {}
  INGOT_UNARY_PRIMITIVE(AddMM)
  INGOT_EQUIVALENT(AddMM, std::make_tuple(p->alpha_, p->beta_, p->round_product_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;
  float alpha() const { return alpha_; }
  float beta() const { return beta_; }
  bool round_product() const { return round_product_; }

 private:
  const float alpha_;
  const float beta_;
  const bool round_product_;
};

/// Result shape of a @ b under NumPy matmul rules; throws InvalidArgument "[op] ..." naming
/// both shapes and dtypes when they do not fit.
Shape matmul_shape(const Array& a, const Array& b, const char* op);

}  // namespace ingot
