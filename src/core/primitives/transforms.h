// Primitives used by the transforms: Identity (a fresh node sharing the buffer, used to mark
// traced inputs), StopGradient, and CustomVjp (outputs computed by a wrapped graph, derivative
// given by a user function).
#pragma once

#include "core/primitive.h"
#include "core/transforms/autodiff.h"

namespace ingot {

/// Shares the input's buffer; gradient passes through.
class Identity : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  INGOT_UNARY_PRIMITIVE(Identity)
  INGOT_EQUIVALENT(Identity, std::make_tuple(0))
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in[0].shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
};

/// Shares the input's buffer; gradient is zero.
class StopGradient : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  INGOT_UNARY_PRIMITIVE(StopGradient)
  INGOT_EQUIVALENT(StopGradient, std::make_tuple(0))
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in[0].shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
};

/// Inputs: the n primals followed by the wrapped outputs (behind stop_gradient); outputs share
/// the wrapped outputs' buffers. vjp calls the user rule.
class CustomVjp : public Primitive {
 public:
  CustomVjp(Stream s, int num_primals, VjpFn fn)
      : Primitive(s), num_primals_(num_primals), fn_(std::move(fn)) {}
  INGOT_MULTI_PRIMITIVE(CustomVjp)
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    std::vector<Shape> r;
    for (size_t i = num_primals_; i < in.size(); ++i) r.push_back(in[i].shape());
    return r;
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;

 private:
  const int num_primals_;
  const VjpFn fn_;
};

/// Outputs share the first n inputs' buffers; the remaining inputs are dependencies only, so
/// whatever reads the outputs is scheduled after them (used by checkpoint to recompute a block
/// only once its cotangents exist).
class Depends : public Primitive {
 public:
  Depends(Stream s, int num_inputs) : Primitive(s), num_inputs_(num_inputs) {}
  INGOT_MULTI_PRIMITIVE(Depends)
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    std::vector<Shape> r;
    for (int i = 0; i < num_inputs_; ++i) r.push_back(in[i].shape());
    return r;
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;

 private:
  const int num_inputs_;
};

/// Copies of `inputs` (sharing buffers) that are evaluated only after `deps`.
std::vector<Array> depends(const std::vector<Array>& inputs, const std::vector<Array>& deps);

}  // namespace ingot
