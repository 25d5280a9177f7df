// Losses (see losses.h).
#include "nn/losses.h"

#include "core/ops/ops.h"

namespace ingot::nn {

Array cross_entropy(const Array& logits, const Array& targets, const CrossEntropyOptions& opt) {
  if (logits.ndim() != targets.ndim() + 1)
    raise("[cross_entropy] logits {} must have one more axis than targets {}",
          shape_str(logits.shape()), shape_str(targets.shape()));
  for (int i = 0; i < targets.ndim(); ++i)
    if (logits.shape(i) != targets.shape(i))
      raise("[cross_entropy] logits {} and targets {} disagree on axis {}",
            shape_str(logits.shape()), shape_str(targets.shape()), i);
  if (!is_integral(targets.dtype()) || targets.dtype() == bool_)
    raise("[cross_entropy] targets must be integers, got {}", dtype_name(targets.dtype()));
  Array lf = astype(logits, float32);
  Array valid = not_equal(targets, Array(opt.ignore_index, targets.dtype()));
  Array safe = where(valid, targets, zeros_like(targets));
  Array picked = squeeze(take_along_axis(lf, expand_dims(safe, -1), -1), -1);
  Array nll = logsumexp(lf, -1) - picked;
  Array w = astype(valid, float32);
  if (opt.mask) {
    if (opt.mask->shape() != targets.shape())
      raise("[cross_entropy] mask {} must have the targets' shape {}",
            shape_str(opt.mask->shape()), shape_str(targets.shape()));
    w = w * astype(*opt.mask, float32);
  }
  Array total = sum(nll * w);
  if (!opt.mean) return total;
  return total / maximum(sum(w), Array(1.0f));
}

Array mse(const Array& pred, const Array& target) {
  Array d = astype(pred, float32) - astype(target, float32);
  return mean(d * d);
}

}  // namespace ingot::nn
