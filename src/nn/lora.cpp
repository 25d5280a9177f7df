// LoRALinear (see lora.h).
#include "nn/lora.h"

#include "core/ops/ops.h"

namespace ingot::nn {

LoRALinear::LoRALinear(const Linear& base, LoRAOptions opt)
    : Linear(1, 1, false), scale_(opt.alpha / static_cast<float>(opt.rank)) {
  if (opt.rank <= 0) raise("[lora] rank must be positive, got {}", opt.rank);
  register_parameter("weight", base.param("weight"));
  if (base.has_param("bias")) register_parameter("bias", base.param("bias"));
  const int64_t in = base.in_features(), out = base.out_features();
  Dtype t = base.param("weight").dtype();
  Dtype ad = is_floating(t) && t != float64 ? float32 : t;  // adapters train in float32
  a_ = register_module("lora_A", std::make_shared<Linear>(in, opt.rank, false, ad));
  b_ = register_module("lora_B", std::make_shared<Linear>(opt.rank, out, false, ad));
  b_->update({{"weight", zeros({out, opt.rank}, ad, base.param("weight").device())}});
  dropout_ = std::make_shared<Dropout>(opt.dropout);
  freeze("weight");
  freeze("bias");
}

Array LoRALinear::operator()(const Array& x) const {
  Array y = Linear::operator()(x);
  Array xa = training() ? (*dropout_)(x) : x;
  Array upd = (*b_)((*a_)(astype(xa, a_->param("weight").dtype())));
  return y + astype(upd * scale_, y.dtype());
}

Array LoRALinear::fused_weight() const {
  Array w = param("weight");
  Array delta = matmul(b_->param("weight"), a_->param("weight")) * scale_;
  return astype(astype(w, float32) + delta, w.dtype());
}

}  // namespace ingot::nn
