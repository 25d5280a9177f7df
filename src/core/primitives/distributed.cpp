// VJPs and shapes of the collective primitives (see distributed.h).
#include "core/primitives/distributed.h"

#include "core/ops/shape.h"

namespace ingot {

std::vector<Array> AllSum::vjp(const std::vector<Array>&, const std::vector<Array>& cotangents,
                               const std::vector<int>&, const std::vector<Array>&) {
  return {cotangents[0]};
}

std::vector<Shape> AllGather::output_shapes(const std::vector<Array>& in) {
  Shape s = in[0].shape();
  s[static_cast<size_t>(axis_)] *= group_->size();
  return {s};
}

std::vector<Array> AllGather::vjp(const std::vector<Array>& primals,
                                  const std::vector<Array>& cotangents, const std::vector<int>&,
                                  const std::vector<Array>&) {
  const int64_t n = primals[0].shape(axis_);
  const int64_t start = n * group_->rank();
  return {slice_axis(cotangents[0], axis_, start, start + n, 1, stream())};
}

}  // namespace ingot
