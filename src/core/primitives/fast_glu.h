// Primitives of fast::gated_activation (core/fast/fast.h): a GLU feed-forward's act(gate) * up,
// and its backward in one pass over gate, up and the cotangent (the composed backward takes four
// kernels and eleven passes over tensors of that size).
#pragma once

#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// fast::gated_activation: out = act(g) * u for inputs {g, u} of one float dtype and shape (any
/// layouts), output in that dtype. act(g) is rounded to the dtype, then the product (in the
/// multiply's compute type) is rounded again, as the separate ops round: on each backend the
/// result is theirs bit for bit. act 0 silu, 1 gelu, 2 gelu_tanh (fast::GatedActivation).
class Glu : public UnaryPrimitive {
 public:
  Glu(Stream s, int act) : UnaryPrimitive(s), act_(act) {}
  INGOT_UNARY_PRIMITIVE(Glu)
  INGOT_EQUIVALENT(Glu, std::make_tuple(p->act_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// dg and du from one GluGrad (the composition when the cotangent has another dtype).
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  void print(std::ostream& os) const override;

  const int act_;
};

/// The gradients of Glu for its output's cotangent dh: inputs {g, u, dh} of one float dtype and
/// shape (any layouts), outputs {dg, du} in that dtype, each computed in float32 (float64 for
/// float64) and rounded once:
///   du = dh * round(act(g))  (the forward's rounded activation: the composition's bits)
///   dg = dh * u * act'(g)    (backend/common/activation_grad.h; the composition rounds dh * u
///                             and, with INGOT_FUSED_ACT_GRAD=0, every step of act')
/// Its own VJP differentiates that composition.
class GluGrad : public Primitive {
 public:
  GluGrad(Stream s, int act) : Primitive(s), act_(act) {}
  INGOT_MULTI_PRIMITIVE(GluGrad)
  INGOT_EQUIVALENT(GluGrad, std::make_tuple(p->act_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const int act_;
};

}  // namespace ingot
