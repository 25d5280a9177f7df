// Elementwise primitives: one class per unary/binary op, Where and AsType. All derive from
// Elementwise, whose op() names the operation (EwOp) so that a fused-loop interpreter (compile)
// can apply any of them to a block of elements through the backend's kernel table.
#pragma once

#include <cstdint>
#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

// X-macro lists of the ops; the backend maps each NAME to its functor NAME##Op.
#define INGOT_EW_UNARY_OPS(X)                                                                    \
  X(Abs)                                                                                         \
  X(Negative)                                                                                    \
  X(Sign)                                                                                        \
  X(Floor) X(Ceil) X(Round) X(Square) X(Reciprocal) X(Exp) X(Expm1) X(Log) X(Log1p) X(Sqrt)      \
      X(Rsqrt) X(Sin) X(Cos) X(Tanh) X(Sigmoid) X(Erf) X(Silu) X(Gelu) X(GeluTanh) X(LogicalNot) \
          X(IsNan) X(IsInf)
#define INGOT_EW_BINARY_OPS(X)                                                              \
  X(Add)                                                                                    \
  X(Subtract)                                                                               \
  X(Multiply)                                                                               \
  X(Divide) X(FloorDivide) X(Remainder) X(Power) X(Maximum) X(Minimum) X(Equal) X(NotEqual) \
      X(Less) X(LessEqual) X(Greater) X(GreaterEqual) X(LogicalAnd) X(LogicalOr)

/// Identity of an elementwise operation (unary ops, then binary ops, then Where, AsType).
enum class EwOp : uint8_t {
#define INGOT_EW_ENUM(NAME) NAME,
  INGOT_EW_UNARY_OPS(INGOT_EW_ENUM) INGOT_EW_BINARY_OPS(INGOT_EW_ENUM)
#undef INGOT_EW_ENUM
      Where,
  AsType,
};

/// Number of inputs of an op: 1 (unary, AsType), 2 (binary) or 3 (Where).
int ew_arity(EwOp op);
/// Class name of the op, e.g. "Add".
const char* ew_name(EwOp op);

class Array;
/// act'(x) as public ops in x's dtype (act 0 silu, 1 gelu, 2 gelu_tanh): the composition that
/// ActivationGrad evaluates in one pass, and its second-order gradients.
Array activation_derivative(const Array& x, int act);

/// Base of every elementwise primitive. Its inputs all have the output's shape (ops broadcast
/// them first with broadcast_to views) and, except for Where's condition (bool) and AsType,
/// the same dtype; the output dtype is the node's. Inputs may be any strided layout.
class Elementwise : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  /// Which operation this is (fusion hook: the backend's kernel table is indexed by it).
  virtual EwOp op() const = 0;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override {
    return {inputs.at(0).shape()};
  }
};

// One class per op, with its vjp/jvp written with public ops (core/primitives/elementwise.cpp).
#define INGOT_EW_CLASS(NAME)                                                                      \
  class NAME : public Elementwise {                                                               \
   public:                                                                                        \
    using Elementwise::Elementwise;                                                               \
    INGOT_UNARY_PRIMITIVE(NAME)                                                                   \
    EwOp op() const override { return EwOp::NAME; }                                               \
    bool is_equivalent(const Primitive& other) const override {                                   \
      return dynamic_cast<const NAME*>(&other) != nullptr;                                        \
    }                                                                                             \
    std::vector<Array> vjp(const std::vector<Array>& primals,                                     \
                           const std::vector<Array>& cotangents, const std::vector<int>& argnums, \
                           const std::vector<Array>& outputs) override;                           \
    std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents, \
                           const std::vector<int>& argnums) override;                             \
  };
INGOT_EW_UNARY_OPS(INGOT_EW_CLASS)
INGOT_EW_BINARY_OPS(INGOT_EW_CLASS)
/// cond ? a : b; inputs {cond (bool), a, b}.
INGOT_EW_CLASS(Where)
#undef INGOT_EW_CLASS

/// Conversion to the output dtype (round-to-nearest-even into 16-bit floats; float to integer
/// truncates toward zero, NaN gives 0, values beyond int64 saturate, then wrap modulo 2^bits).
class AsType : public Elementwise {
 public:
  AsType(Stream s, Dtype dtype) : Elementwise(s), dtype_(dtype) {}
  INGOT_UNARY_PRIMITIVE(AsType)
  INGOT_EQUIVALENT(AsType, std::tie(p->dtype_))
  EwOp op() const override { return EwOp::AsType; }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  Dtype dtype() const { return dtype_; }
  void print(std::ostream& os) const override { os << "AsType(" << dtype_name(dtype_) << ")"; }

 private:
  const Dtype dtype_;
};

}  // namespace ingot
