// Basic layers (see layers.h).
#include "nn/layers.h"

#include <cmath>

#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "util/error.h"

namespace ingot::nn {

Linear::Linear(int64_t in, int64_t out, bool bias, Dtype dtype) {
  double bound = 1.0 / std::sqrt(static_cast<double>(in));
  register_parameter("weight", random::uniform({out, in}, dtype, -bound, bound));
  if (bias) register_parameter("bias", random::uniform({out}, dtype, -bound, bound));
}

Array Linear::operator()(const Array& x) const {
  Array y =
      quant_ ? quantized_matmul(x, param("weight"), param("scales"), param("biases"), true, *quant_)
             : matmul(x, transpose(param("weight")));
  if (has_param("bias")) y = y + param("bias");
  if (!branch_) return y;
  const LowRankBranch& r = *branch_;
  Array h = astype(x, r.a.dtype());
  if (training() && r.dropout > 0.0f) {
    Array keep = random::bernoulli(Array(1.0f - r.dropout), h.shape());
    h = where(keep, h * (1.0f / (1.0f - r.dropout)), zeros_like(h));
  }
  Array d = matmul(matmul(h, transpose(r.a)), transpose(r.b)) * Array(r.scale, r.a.dtype());
  return astype(astype(y, d.dtype()) + d, y.dtype());
}

void Linear::set_branch(std::optional<LowRankBranch> branch) {
  if (branch) {
    const LowRankBranch& r = *branch;
    if (r.a.ndim() != 2 || r.b.ndim() != 2 || r.a.shape(1) != in_features() ||
        r.b.shape(0) != out_features() || r.b.shape(1) != r.a.shape(0))
      raise("[linear] low-rank branch A {} / B {} does not fit a layer of {} -> {} features",
            shape_str(r.a.shape()), shape_str(r.b.shape()), in_features(), out_features());
    if (r.dropout < 0.0f || r.dropout >= 1.0f)
      raise("[linear] low-rank branch dropout must be in [0, 1), got {}", r.dropout);
  }
  branch_ = std::move(branch);
}

Embedding::Embedding(int64_t n, int64_t dims, Dtype dtype) {
  register_parameter("weight", random::normal({n, dims}, dtype));
}

Array Embedding::operator()(const Array& ids) const {
  if (quant_)  // only the rows asked for are dequantized
    return dequantize(gather(param("weight"), ids), gather(param("scales"), ids),
                      gather(param("biases"), ids), *quant_);
  return gather(param("weight"), ids);
}

Array Embedding::as_linear(const Array& x) const {
  if (quant_)
    return quantized_matmul(x, param("weight"), param("scales"), param("biases"), true, *quant_);
  return matmul(x, transpose(param("weight")));
}

RMSNorm::RMSNorm(int64_t dims, RMSNormOptions opt, Dtype dtype) : opt_(opt) {
  register_parameter("weight", opt.unit_offset ? zeros({dims}, dtype) : ones({dims}, dtype));
}

Array RMSNorm::operator()(const Array& x) const {
  return fast::rms_norm(x, param("weight"),
                        fast::RmsNormOptions{.eps = opt_.eps,
                                             .add_unit_offset = opt_.unit_offset,
                                             .weight_in_float32 = opt_.weight_in_float32});
}

LayerNorm::LayerNorm(int64_t dims, float eps, bool affine, bool bias, Dtype dtype) : eps_(eps) {
  if (affine) register_parameter("weight", ones({dims}, dtype));
  if (affine && bias) register_parameter("bias", zeros({dims}, dtype));
}

Array LayerNorm::operator()(const Array& x) const {
  std::optional<Array> w, b;
  if (has_param("weight")) w = param("weight");
  if (has_param("bias")) b = param("bias");
  return fast::layer_norm(x, w, b, eps_);
}

Dropout::Dropout(float p) : p_(p) {
  if (p < 0.0f || p >= 1.0f) raise("[dropout] probability must be in [0, 1), got {}", p);
}

Array Dropout::operator()(const Array& x) const {
  if (!training() || p_ == 0.0f) return x;
  Array keep = random::bernoulli(Array(1.0f - p_), x.shape());
  return where(keep, x * (1.0f / (1.0f - p_)), zeros_like(x));
}

Activation activation_from_name(const std::string& name) {
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_pytorch_tanh" || name == "gelu_tanh" || name == "gelu_new" ||
      name == "gelu_fast")
    return Activation::gelu_tanh;
  raise("[activation] unknown activation '{}' (known: silu, gelu, gelu_pytorch_tanh)", name);
}

Array activate(const Array& x, Activation a) {
  switch (a) {
    case Activation::silu:
      return silu(x);
    case Activation::gelu:
      return gelu(x);
    case Activation::gelu_tanh:
      return gelu_tanh(x);
  }
  return x;
}

GatedMLP::GatedMLP(int64_t dims, int64_t hidden, Activation act, bool bias, Dtype dtype)
    : act_(act) {
  gate_ = register_module("gate_proj", std::make_shared<Linear>(dims, hidden, bias, dtype));
  up_ = register_module("up_proj", std::make_shared<Linear>(dims, hidden, bias, dtype));
  down_ = register_module("down_proj", std::make_shared<Linear>(hidden, dims, bias, dtype));
}

Array GatedMLP::operator()(const Array& x) const {
  return (*down_)(activate((*gate_)(x), act_) * (*up_)(x));
}

}  // namespace ingot::nn
