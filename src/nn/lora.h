// LoRALinear: a frozen base Linear plus a low-rank update scale * B(A(dropout(x))), with
// PEFT's layout (lora_A.weight [r, in], lora_B.weight [out, r], scale = alpha / r).
#pragma once

#include "nn/layers.h"

namespace ingot::nn {

/// Options of a LoRA adapter.
struct LoRAOptions {
  int rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;
};

/// Linear with a trainable low-rank update; the base weight (and bias) are frozen.
class LoRALinear : public Linear {
 public:
  /// Takes over the base layer's weight (and bias); lora_A ~ PyTorch Kaiming-uniform, lora_B =
  /// 0, so the adapted layer starts equal to the base.
  LoRALinear(const Linear& base, LoRAOptions opt);
  Array operator()(const Array& x) const override;
  float scale() const { return scale_; }
  /// W + scale * B A (the fused weight, for export).
  Array fused_weight() const;

 private:
  float scale_;
  std::shared_ptr<Linear> a_, b_;
  std::shared_ptr<Dropout> dropout_;
};

}  // namespace ingot::nn
