// Losses (see losses.h).
#include "nn/losses.h"

#include "core/ops/ops.h"
#include "util/env.h"

namespace ingot::nn {

Array cross_entropy(const Array& logits, const Array& targets, const CrossEntropyOptions& opt) {
  // softmax_cross_entropy checks the shapes and dtypes (same messages).
  Array valid = not_equal(targets, Array(opt.ignore_index, targets.dtype()));
  Array safe = where(valid, targets, zeros_like(targets));
  // One fused pass per row (and one fused gradient): no float32 copy of the [..., V] logits.
  // INGOT_FUSED_CE=0: the composition (logsumexp - take_along_axis over float32 logits).
  static const bool fused = env::get_int("INGOT_FUSED_CE", 1) != 0;
  Array nll;
  if (fused) {
    nll = astype(softmax_cross_entropy(logits, safe), float32);
  } else {
    Array lf = astype(logits, float32);
    nll = logsumexp(lf, -1) - squeeze(take_along_axis(lf, expand_dims(safe, -1), -1), -1);
  }
  Array w = astype(valid, float32);
  if (opt.mask) {
    if (opt.mask->shape() != targets.shape())
      raise("[cross_entropy] mask {} must have the targets' shape {}", shape_str(opt.mask->shape()),
            shape_str(targets.shape()));
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
