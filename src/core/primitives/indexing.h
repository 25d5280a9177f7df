// Primitives of the indexing ops: take, gather (embedding lookup), take_along_axis,
// put_along_axis, scatter_add and scatter_add_along_axis. Indices are any integer dtype;
// negative ones count from the end; kernels throw InvalidArgument for out-of-range ones.
#pragma once

#include <vector>

#include "core/primitive.h"

namespace ingot {

/// Declares output_shapes, vjp and jvp of an indexing primitive.
#define INGOT_INDEXING_TRANSFORMS                                                                 \
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;                    \
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents, \
                         const std::vector<int>& argnums, const std::vector<Array>& outputs)      \
      override;                                                                                   \
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,   \
                         const std::vector<int>& argnums) override;

/// out = a[..., indices, ...] along axis_ (inputs {a, indices});
/// out.shape = a.shape[:axis] + indices.shape + a.shape[axis+1:].
class Take : public UnaryPrimitive {
 public:
  Take(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(Take)
  INGOT_EQUIVALENT(Take, p->axis_)
  INGOT_INDEXING_TRANSFORMS
  const int axis_;
};

/// Embedding lookup: rows of table [V, E] at ids (inputs {table, ids}) -> ids.shape + [E].
class Gather : public UnaryPrimitive {
 public:
  explicit Gather(Stream s) : UnaryPrimitive(s) {}
  INGOT_UNARY_PRIMITIVE(Gather)
  bool is_equivalent(const Primitive& other) const override {
    return dynamic_cast<const Gather*>(&other) != nullptr;
  }
  INGOT_INDEXING_TRANSFORMS
};

/// out[i.., j, k..] = a[i.., indices[i.., j, k..], k..] (inputs {a, indices}, already
/// broadcast against each other except on axis_).
class TakeAlongAxis : public UnaryPrimitive {
 public:
  TakeAlongAxis(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(TakeAlongAxis)
  INGOT_EQUIVALENT(TakeAlongAxis, p->axis_)
  INGOT_INDEXING_TRANSFORMS
  const int axis_;
};

/// Copy of a with out[i.., indices[i.., j, k..], k..] = values[i.., j, k..] (inputs
/// {a, indices, values}; indices and values share a shape equal to a's except on axis_).
/// Among duplicates the last in row-major order wins.
class PutAlongAxis : public UnaryPrimitive {
 public:
  PutAlongAxis(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(PutAlongAxis)
  INGOT_EQUIVALENT(PutAlongAxis, p->axis_)
  INGOT_INDEXING_TRANSFORMS
  const int axis_;
};

/// Copy of a with updates added at indices along axis_ (inputs {a, indices, updates},
/// updates.shape = a.shape[:axis] + indices.shape + a.shape[axis+1:]); duplicates accumulate.
class ScatterAdd : public UnaryPrimitive {
 public:
  ScatterAdd(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(ScatterAdd)
  INGOT_EQUIVALENT(ScatterAdd, p->axis_)
  INGOT_INDEXING_TRANSFORMS
  const int axis_;
};

/// Like PutAlongAxis but adding (duplicates accumulate).
class ScatterAddAlongAxis : public UnaryPrimitive {
 public:
  ScatterAddAlongAxis(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(ScatterAddAlongAxis)
  INGOT_EQUIVALENT(ScatterAddAlongAxis, p->axis_)
  INGOT_INDEXING_TRANSFORMS
  const int axis_;
};

#undef INGOT_INDEXING_TRANSFORMS

}  // namespace ingot
