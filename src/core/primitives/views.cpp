// VJPs and JVPs of the view primitives, written with public ops.
#include "core/primitives/views.h"

#include "core/ops/creation.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"

namespace ingot {

std::vector<Array> Reshape::vjp(const std::vector<Array>& primals,
                                const std::vector<Array>& cotangents, const std::vector<int>&,
                                const std::vector<Array>&) {
  return {reshape(cotangents[0], primals[0].shape(), stream())};
}
std::vector<Array> Reshape::jvp(const std::vector<Array>&, const std::vector<Array>& tangents,
                                const std::vector<int>&) {
  return {reshape(tangents[0], shape_, stream())};
}

std::vector<Array> Transpose::vjp(const std::vector<Array>&, const std::vector<Array>& cotangents,
                                  const std::vector<int>&, const std::vector<Array>&) {
  std::vector<int> inv(axes_.size());
  for (size_t i = 0; i < axes_.size(); ++i) inv[axes_[i]] = static_cast<int>(i);
  return {transpose(cotangents[0], inv, stream())};
}
std::vector<Array> Transpose::jvp(const std::vector<Array>&, const std::vector<Array>& tangents,
                                  const std::vector<int>&) {
  return {transpose(tangents[0], axes_, stream())};
}

std::vector<Shape> Broadcast::output_shapes(const std::vector<Array>& in) {
  const Shape& a = in[0].shape();
  bool ok = a.size() <= shape_.size();
  for (size_t i = 0; ok && i < a.size(); ++i) {
    int64_t d = a[a.size() - 1 - i], t = shape_[shape_.size() - 1 - i];
    ok = d == t || d == 1;
  }
  if (!ok)
    raise("[compile] shapeless replay: a broadcast traced to {} cannot take an input of shape {} "
          "(broadcast shapes are fixed at trace time; compile without shapeless)",
          shape_str(shape_), shape_str(a));
  return {shape_};
}

std::vector<Array> Broadcast::vjp(const std::vector<Array>& primals,
                                  const std::vector<Array>& cotangents, const std::vector<int>&,
                                  const std::vector<Array>&) {
  // Sum over the axes that were added or stretched, then restore the input shape.
  const Shape& in = primals[0].shape();
  const int lead = static_cast<int>(shape_.size()) - static_cast<int>(in.size());
  std::vector<int> axes;
  for (int i = 0; i < static_cast<int>(shape_.size()); ++i)
    if (i < lead || (in[i - lead] == 1 && shape_[i] != 1)) axes.push_back(i);
  Array g = axes.empty() ? cotangents[0] : sum(cotangents[0], axes, true, stream());
  return {reshape(g, in, stream())};
}
std::vector<Array> Broadcast::jvp(const std::vector<Array>&, const std::vector<Array>& tangents,
                                  const std::vector<int>&) {
  return {broadcast_to(tangents[0], shape_, stream())};
}

std::vector<Array> Slice::vjp(const std::vector<Array>& primals,
                              const std::vector<Array>& cotangents, const std::vector<int>&,
                              const std::vector<Array>&) {
  return {slice_update(zeros_like(primals[0], stream()), cotangents[0], start_, stop_, strides_,
                       stream())};
}
std::vector<Array> Slice::jvp(const std::vector<Array>&, const std::vector<Array>& tangents,
                              const std::vector<int>&) {
  return {slice(tangents[0], start_, stop_, strides_, stream())};
}

}  // namespace ingot
