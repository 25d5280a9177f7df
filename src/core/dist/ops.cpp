// Collective ops (see ops.h): validation, then AllSum / AllGather nodes on contiguous inputs.
#include "core/dist/ops.h"

#include "core/ops/creation.h"
#include "core/ops/shape.h"
#include "core/primitives/distributed.h"
#include "util/error.h"

namespace ingot::dist {

namespace {
std::shared_ptr<Group> or_world(std::shared_ptr<Group> g) {
  return g ? g : world();
}
}  // namespace

Array all_sum(const Array& x, std::shared_ptr<Group> group, StreamOrDevice s) {
  group = or_world(std::move(group));
  const Dtype t = x.dtype();
  if (t != float32 && t != float64 && t != bfloat16 && t != float16 && t != int32)
    raise("[all_sum] dtype {} is not supported (float32, float64, bfloat16, float16, int32)",
          dtype_name(t));
  if (group->size() == 1) return x;
  const Stream st = resolve_stream(s, {&x});
  return Array(x.shape(), t, std::make_shared<AllSum>(st, group), {contiguous(x, st)});
}

Array all_gather(const Array& x, int axis, std::shared_ptr<Group> group, StreamOrDevice s) {
  group = or_world(std::move(group));
  if (x.ndim() == 0) raise("[all_gather] cannot gather a 0-d array along an axis");
  const int ax = normalize_axis(axis, x.ndim(), "all_gather");
  if (group->size() == 1) return x;
  const Stream st = resolve_stream(s, {&x});
  Shape shape = x.shape();
  shape[static_cast<size_t>(ax)] *= group->size();
  return Array(shape, x.dtype(), std::make_shared<AllGather>(st, group, ax), {contiguous(x, st)});
}

}  // namespace ingot::dist
