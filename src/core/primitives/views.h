// View primitives: outputs share the input's buffer with new shape/strides/offset
// (Reshape copies only when the layout cannot be expressed with strides).
#pragma once

#include "core/primitive.h"

namespace ingot {

/// New shape, same elements in row-major order.
class Reshape : public UnaryPrimitive {
 public:
  Reshape(Stream s, Shape shape) : UnaryPrimitive(s), shape_(std::move(shape)) {}
  INGOT_UNARY_PRIMITIVE(Reshape)
  INGOT_EQUIVALENT(Reshape, std::tie(p->shape_))
  std::vector<Shape> output_shapes(const std::vector<Array>&) override { return {shape_}; }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;

 private:
  const Shape shape_;
};

/// Axis permutation.
class Transpose : public UnaryPrimitive {
 public:
  Transpose(Stream s, std::vector<int> axes) : UnaryPrimitive(s), axes_(std::move(axes)) {}
  INGOT_UNARY_PRIMITIVE(Transpose)
  INGOT_EQUIVALENT(Transpose, std::tie(p->axes_))
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    Shape out;
    for (int a : axes_) out.push_back(in[0].shape()[a]);
    return {out};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  const std::vector<int>& axes() const { return axes_; }

 private:
  const std::vector<int> axes_;
};

/// Broadcast to a larger shape with zero strides.
class Broadcast : public UnaryPrimitive {
 public:
  Broadcast(Stream s, Shape shape) : UnaryPrimitive(s), shape_(std::move(shape)) {}
  INGOT_UNARY_PRIMITIVE(Broadcast)
  INGOT_EQUIVALENT(Broadcast, std::tie(p->shape_))
  /// The fixed target shape; throws if the input no longer broadcasts to it (shapeless
  /// compile replaying a trace made for other sizes).
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;

 private:
  const Shape shape_;
};

/// Strided slice; start is normalised (in range), steps non-zero, out shape precomputed.
class Slice : public UnaryPrimitive {
 public:
  Slice(Stream s, Shape start, Shape stop, Shape strides, Shape out_shape)
      : UnaryPrimitive(s),
        start_(std::move(start)),
        stop_(std::move(stop)),
        strides_(std::move(strides)),
        out_shape_(std::move(out_shape)) {}
  INGOT_UNARY_PRIMITIVE(Slice)
  INGOT_EQUIVALENT(Slice, std::tie(p->start_, p->stop_, p->strides_))
  std::vector<Shape> output_shapes(const std::vector<Array>&) override { return {out_shape_}; }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  const Shape& start() const { return start_; }
  const Shape& stop() const { return stop_; }
  const Shape& strides() const { return strides_; }

 private:
  const Shape start_, stop_, strides_, out_shape_;
};

}  // namespace ingot
