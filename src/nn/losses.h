// Losses, computed in float32 whatever the activation dtype.
#pragma once

#include <optional>

#include "core/array.h"

namespace ingot::nn {

/// Options of cross_entropy.
struct CrossEntropyOptions {
  /// Targets equal to this are ignored (as PyTorch's ignore_index).
  int64_t ignore_index = -100;
  /// Optional weights per target position (0/1 mask or bool), same shape as targets.
  std::optional<Array> mask;
  /// Mean over counted positions (true) or their sum (false).
  bool mean = true;
};
/// Cross-entropy of logits [..., V] against integer targets [...]: mean over unmasked,
/// non-ignored positions of logsumexp(logits) - logits[target], in float32.
Array cross_entropy(const Array& logits, const Array& targets, const CrossEntropyOptions& opt = {});

/// Mean squared error (float32).
Array mse(const Array& pred, const Array& target);

}  // namespace ingot::nn
