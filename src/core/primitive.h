// Primitive: one operation of the graph. One class per primitive: eval_cpu (defined in
// backend/cpu), eval_cuda (backend/cuda or the no_cuda stubs), vjp written with public ops,
// name, is_equivalent and output_shapes.
#pragma once

#include <ostream>
#include <vector>

#include "core/array.h"
#include "core/device.h"

namespace ingot {

/// Base of every primitive. Parameters are const members of the subclass.
class Primitive {
 public:
  explicit Primitive(Stream stream) : stream_(stream) {}
  virtual ~Primitive() = default;
  Primitive(const Primitive&) = delete;
  Primitive& operator=(const Primitive&) = delete;

  Stream stream() const { return stream_; }
  Device device() const { return stream_.device; }
  /// True for the one primitive whose input may live on another device (ToDevice); every
  /// other primitive's inputs must be on its device.
  virtual bool crosses_devices() const { return false; }

  /// Computes all outputs from evaluated inputs on the CPU. Outputs arrive without storage.
  virtual void eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) = 0;
  /// Same on a CUDA stream (asynchronous).
  virtual void eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) = 0;

  /// Vector-Jacobian product: cotangents of the inputs listed in argnums, given the
  /// cotangents of every output. Default throws Unsupported.
  virtual std::vector<Array> vjp(const std::vector<Array>& primals,
                                 const std::vector<Array>& cotangents,
                                 const std::vector<int>& argnums,
                                 const std::vector<Array>& outputs);
  /// Jacobian-vector product for the inputs in argnums. Default throws Unsupported.
  virtual std::vector<Array> jvp(const std::vector<Array>& primals,
                                 const std::vector<Array>& tangents,
                                 const std::vector<int>& argnums);

  /// Class name, e.g. "Add".
  virtual const char* name() const = 0;
  /// Same class and parameters (used by compile's common-subexpression elimination).
  virtual bool is_equivalent(const Primitive& other) const { return false; }
  /// Output shapes for given inputs (shapeless compile). Default throws Unsupported.
  virtual std::vector<Shape> output_shapes(const std::vector<Array>& inputs);
  /// Prints name and parameters.
  virtual void print(std::ostream& os) const { os << name(); }

 private:
  Stream stream_;
};

/// A primitive with exactly one output.
class UnaryPrimitive : public Primitive {
 public:
  using Primitive::Primitive;
  virtual void eval_cpu(const std::vector<Array>& inputs, Array& out) = 0;
  virtual void eval_cuda(const std::vector<Array>& inputs, Array& out) = 0;
  void eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) final {
    eval_cpu(inputs, outputs[0]);
  }
  void eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) final {
    eval_cuda(inputs, outputs[0]);
  }
};

/// Declares the backend hooks and name of a single-output primitive.
#define INGOT_UNARY_PRIMITIVE(NAME)                                      \
  void eval_cpu(const std::vector<Array>& inputs, Array& out) override;  \
  void eval_cuda(const std::vector<Array>& inputs, Array& out) override; \
  using UnaryPrimitive::eval_cpu;                                        \
  using UnaryPrimitive::eval_cuda;                                       \
  const char* name() const override {                                    \
    return #NAME;                                                        \
  }

/// Declares the backend hooks and name of a multi-output primitive.
#define INGOT_MULTI_PRIMITIVE(NAME)                                                       \
  void eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) override;  \
  void eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) override; \
  const char* name() const override {                                                     \
    return #NAME;                                                                         \
  }

/// is_equivalent for a primitive whose parameters compare with ==; PARAMS is a tuple of the
/// members read through `p`, e.g. INGOT_EQUIVALENT(Reduce, std::tie(p->type_, p->axes_)).
#define INGOT_EQUIVALENT(CLASS, PARAMS)                       \
  bool is_equivalent(const Primitive& other) const override { \
    auto* o = dynamic_cast<const CLASS*>(&other);             \
    if (!o) return false;                                     \
    auto mine = [](const CLASS* p) { return PARAMS; };        \
    return mine(this) == mine(o);                             \
  }

}  // namespace ingot
