// Compiled: a fused chain of elementwise ops evaluated in one pass over blocks of elements,
// intermediates kept in small per-block scratch buffers.
#pragma once

#include <memory>
#include <vector>

#include "core/primitive.h"
#include "core/primitives/elementwise.h"

namespace ingot {

/// One step of a fused program: an elementwise primitive applied to earlier values.
struct FusedStep {
  std::shared_ptr<Primitive> prim;  // an Elementwise
  EwOp op;
  /// Arguments: >= 0 an external input index, < 0 step -(k+1).
  std::vector<int> args;
  Dtype in_dtype;   // dtype the kernel reads (for Where: of x/y; for AsType: the source)
  Dtype out_dtype;
};

/// Fused elementwise program; all values have the output shape.
class Compiled : public Primitive {
 public:
  /// `outputs` are indices of steps whose values are outputs, in output order.
  Compiled(Stream s, std::vector<FusedStep> steps, std::vector<int> outputs)
      : Primitive(s), steps_(std::move(steps)), outputs_(std::move(outputs)) {}
  INGOT_MULTI_PRIMITIVE(Compiled)
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return std::vector<Shape>(outputs_.size(), in.at(0).shape());
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  const std::vector<FusedStep>& steps() const { return steps_; }
  const std::vector<int>& output_steps() const { return outputs_; }
  /// Rebuilds the unfused graph on `inputs` (for vjp and reference checks).
  std::vector<Array> unfused(const std::vector<Array>& inputs) const;

 private:
  const std::vector<FusedStep> steps_;
  const std::vector<int> outputs_;
};

}  // namespace ingot
