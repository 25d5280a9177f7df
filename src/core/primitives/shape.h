// Primitives of the shape ops that copy data: slice_update, concatenate and pad (the view ops
// live in views.h). Slices follow Python semantics (see SliceSpec).
#pragma once

#include <optional>
#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// A slice normalised against an array's shape, as Python's slice.indices() computes it:
/// per axis the first index, the step and the number of elements taken.
struct SliceSpec {
  Shape start;
  Shape step;
  Shape count;
};
/// Normalises start/stop/strides (one entry per axis of `shape`, steps nonzero, negative
/// start/stop counting from the end, clamped as in Python).
SliceSpec normalize_slice(const Shape& shape, const Shape& start, const Shape& stop,
                          const Shape& strides);

/// True when an array of shape `from` broadcasts to exactly `to` (NumPy rules).
bool broadcasts_to(const Shape& from, const Shape& to);

/// out = a with a[start:stop:strides] replaced by the update (inputs {a, update}; the update
/// already has a's dtype and the slice's shape). Parameters are the caller's raw values.
class SliceUpdate : public UnaryPrimitive {
 public:
  SliceUpdate(Stream s, Shape start, Shape stop, Shape strides)
      : UnaryPrimitive(s),
        start_(std::move(start)),
        stop_(std::move(stop)),
        strides_(std::move(strides)) {}
  INGOT_UNARY_PRIMITIVE(SliceUpdate)
  INGOT_EQUIVALENT(SliceUpdate, std::tie(p->start_, p->stop_, p->strides_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;

  const Shape start_, stop_, strides_;
};

/// The SliceUpdate nodes of `a` when it is zeros() with unit-stride slices written into it
/// (Slice's VJP pads its cotangent so; autodiff merges such cotangents), innermost last; nullopt
/// for any other array. Each node's update is its inputs()[1].
std::optional<std::vector<Array>> zero_padded(const Array& a);
/// Whether two unit-stride slice updates of an array of `shape` share no element.
bool disjoint(const Shape& shape, const SliceUpdate& a, const SliceUpdate& b);

/// Joins the inputs along axis_; inputs may have different dtypes (converted to the output's).
class Concatenate : public UnaryPrimitive {
 public:
  Concatenate(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(Concatenate)
  INGOT_EQUIVALENT(Concatenate, p->axis_)
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;

  const int axis_;
};

/// Pads every axis d with low_[d] elements before and high_[d] after, filled with the 0-d
/// second input (inputs {a, value}, value in a's dtype).
class Pad : public UnaryPrimitive {
 public:
  Pad(Stream s, Shape low, Shape high)
      : UnaryPrimitive(s), low_(std::move(low)), high_(std::move(high)) {}
  INGOT_UNARY_PRIMITIVE(Pad)
  INGOT_EQUIVALENT(Pad, std::tie(p->low_, p->high_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;

  const Shape low_, high_;
};

}  // namespace ingot
