// Basic layers (see layers.h).
#include "nn/layers.h"

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/dist/ops.h"
#include "core/fast/fast.h"
#include "core/fast/lora.h"
#include "core/ops/ops.h"
#include "core/transforms/compile.h"
#include "util/env.h"
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
  if (row_group_) y = dist::all_sum(y, row_group_);  // the partial products of the ranks
  if (has_param("bias")) y = y + param("bias");
  return with_branch(y, x);
}

Array Linear::with_branch(const Array& y, const Array& x, const Array* x_cast) const {
  if (!branch_) return y;
  const LowRankBranch& r = *branch_;
  const Dtype dt = r.a.dtype();
  const bool drop = training() && r.dropout > 0.0f;
  auto dropped = [&](const Array& h) {
    Array keep = random::bernoulli(Array(1.0f - r.dropout), h.shape(), std::nullopt, h.device());
    return where(keep, h * (1.0f / (1.0f - r.dropout)), zeros_like(h));
  };
  // One primitive with a fused backward where it takes the branch: x read in its own dtype,
  // no float32 copies of x and y (x_cast, a shared cast of x, is for the composition).
  if (dt == float32 && r.b.dtype() == float32 && r.a.shape(0) <= fast::kLoraMaxRank &&
      is_floating(y.dtype()) && y.dtype() != float64 && x.dtype() != float64 &&
      fast::lora_branch_enabled(x.device()))
    return fast::lora_branch(y, drop ? dropped(astype(x, dt)) : x, r.a, r.b, r.scale);
  Array h = x_cast && x_cast->dtype() == dt ? *x_cast : astype(x, dt);
  if (drop) h = dropped(h);
  // y + scale * (h A^T) B^T as one product with the add and the scale in its epilogue (the
  // gradient scales the small factors, not the output-sized cotangent).
  return astype(addmm(astype(y, dt), matmul(h, transpose(r.a)), transpose(r.b), r.scale, 1.0f),
                y.dtype());
}

Array Linear::add_to(const Array& residual, const Array& x) const {
  if (branch_ || row_group_ || has_param("bias") || !is_floating(x.dtype()))
    return residual + (*this)(x);
  if (quant_) {
    // The add in the quantized product's epilogue where the fused op takes the operands (x,
    // scales and residual of one dtype, residual of the output's shape).
    Shape out = x.shape();
    if (!out.empty()) out.back() = out_features();
    const Array& sc = param("scales");
    if (x.dtype() == float64 || x.ndim() < 1 || sc.dtype() != x.dtype() ||
        residual.dtype() != x.dtype() || residual.shape() != out)
      return residual + (*this)(x);
    return fast::quantized_linear_add(residual, x, {param("weight"), sc, param("biases"), *quant_});
  }
  return add_matmul(residual, x, transpose(param("weight")));
}

std::optional<Array> Linear::dense_weight() const {
  if (branch_ || quant_ || row_group_ || has_param("bias")) return std::nullopt;
  return param("weight");
}

void Linear::set_row_parallel(std::shared_ptr<dist::Group> group) {
  if (group && group->size() == 1) group = nullptr;
  if (group && branch_)
    raise<Unsupported>("[linear] a low-rank branch on a row-parallel (tensor-parallel) layer");
  row_group_ = std::move(group);
}

void Linear::set_branch(std::optional<LowRankBranch> branch) {
  if (branch && row_group_)
    raise<Unsupported>("[linear] a low-rank branch on a row-parallel (tensor-parallel) layer");
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

namespace {
fast::RmsNormOptions norm_options(const RMSNorm& norm) {
  return {.eps = norm.options().eps,
          .add_unit_offset = norm.options().unit_offset,
          .weight_in_float32 = norm.options().weight_in_float32};
}

/// The fused ops' name of an activation.
fast::GatedActivation fast_act(Activation act) {
  return act == Activation::silu   ? fast::GatedActivation::silu
         : act == Activation::gelu ? fast::GatedActivation::gelu
                                   : fast::GatedActivation::gelu_tanh;
}
}  // namespace

bool StackedLinear::fuse(const std::vector<Linear*>& layers) {
  if (layers.size() < 2) return false;
  std::optional<QuantizeOptions> q;
  std::vector<Array> ws, ss, bs;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Linear* l = layers[i];
    if (!l || l->has_param("bias")) return false;
    const std::optional<QuantizeOptions>& lq = l->quantization();
    if (i == 0) {
      q = lq;
    } else if (lq.has_value() != q.has_value() ||
               (lq && (lq->bits != q->bits || lq->group_size != q->group_size))) {
      return false;
    }
    const Array& w = l->param("weight");
    if (w.ndim() != 2 || (!lq && !is_floating(w.dtype()))) return false;
    if (!ws.empty() && (w.dtype() != ws[0].dtype() || w.shape(1) != ws[0].shape(1) ||
                        w.device() != ws[0].device()))
      return false;
    ws.push_back(w);
    if (lq) {
      const Array &sc = l->param("scales"), &bi = l->param("biases");
      if (sc.ndim() != 2 || bi.shape() != sc.shape() || bi.dtype() != sc.dtype() ||
          (!ss.empty() && (sc.dtype() != ss[0].dtype() || sc.shape(1) != ss[0].shape(1))))
        return false;
      ss.push_back(sc);
      bs.push_back(bi);
    }
  }
  // Row slices of a stack, one per layer (rows counted by the weights).
  const auto split = [&](const Array& stack) {
    std::vector<Array> parts;
    int64_t row = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const int64_t n = ws[i].shape(0);
      parts.push_back(slice(stack, {row, 0}, {row + n, stack.shape(1)}));
      row += n;
    }
    return parts;
  };
  Array stack = concatenate(ws, 0);
  std::vector<Array> to_eval{stack};
  Array scales, biases;
  if (q) {
    scales = concatenate(ss, 0);
    biases = concatenate(bs, 0);
    to_eval.push_back(scales);
    to_eval.push_back(biases);
  }
  eval(to_eval);
  std::vector<Array> parts = split(stack), scale_parts, bias_parts;
  std::vector<Array> all = parts;
  if (q) {
    scale_parts = split(scales);
    bias_parts = split(biases);
    all.insert(all.end(), scale_parts.begin(), scale_parts.end());
    all.insert(all.end(), bias_parts.begin(), bias_parts.end());
  }
  eval(all);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (q)
      layers[i]->update(
          {{"weight", parts[i]}, {"scales", scale_parts[i]}, {"biases", bias_parts[i]}});
    else
      layers[i]->update({{"weight", parts[i]}});
  }
  layers_ = layers;
  parts_ = std::move(parts);
  stack_ = std::move(stack);
  quant_ = q;
  scale_parts_ = std::move(scale_parts);
  bias_parts_ = std::move(bias_parts);
  scales_ = std::move(scales);
  biases_ = std::move(biases);
  return true;
}

bool StackedLinear::current() const {
  if (layers_.empty()) return false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Linear& l = *layers_[i];
    const std::optional<QuantizeOptions>& lq = l.quantization();
    if (l.has_param("bias") || lq.has_value() != quant_.has_value() ||
        !l.param("weight").same_node(parts_[i]))
      return false;
    if (quant_ && (lq->bits != quant_->bits || lq->group_size != quant_->group_size ||
                   !l.param("scales").same_node(scale_parts_[i]) ||
                   !l.param("biases").same_node(bias_parts_[i])))
      return false;
  }
  return true;
}

std::optional<Array> StackedLinear::product(const Array& x) const {
  if (!current()) return std::nullopt;
  if (quant_) return quantized_matmul(x, stack_, scales_, biases_, true, *quant_);
  return matmul(x, transpose(stack_));
}

std::optional<Array> StackedLinear::normed_product(const Array& x, const RMSNorm& norm) const {
  if (layers_.empty() || has_branch(0, layers_.size()) || !current()) return std::nullopt;
  if (quant_) {
    // The fused op wants x, the scales and the norm weight in one dtype.
    const Dtype t = x.dtype();
    if ((t != float32 && t != bfloat16 && t != float16) || scales_.dtype() != t ||
        norm.param("weight").dtype() != t)
      return std::nullopt;
    return fast::rms_norm_quantized_linear(x, norm.param("weight"),
                                           {stack_, scales_, biases_, *quant_}, norm_options(norm));
  }
  return norm.linear(x, stack_);
}

std::optional<Array> StackedLinear::normed_glu(const Array& x, const RMSNorm& norm,
                                               Activation act) const {
  if (layers_.size() != 2 || parts_[0].shape(0) != parts_[1].shape(0) || !normed_product(x, norm))
    return std::nullopt;
  if (quant_) {
    const auto a = fast_act(act);
    return fast::rms_norm_quantized_glu(x, norm.param("weight"),
                                        {stack_, scales_, biases_, *quant_}, a, norm_options(norm));
  }
  return norm.glu(x, stack_, act);
}

Array StackedLinear::output(const Array& y, const Array& x, size_t i, const Array* x_cast) const {
  return layers_.at(i)->with_branch(columns(y, i, 1), x, x_cast);
}

std::optional<Array> StackedLinear::branch_input(const Array& x, size_t first, size_t count) const {
  for (size_t i = first; i < first + count; ++i)
    if (const auto& b = layers_.at(i)->branch())
      return b->a.dtype() == x.dtype() ? x : astype(x, b->a.dtype());
  return std::nullopt;
}

bool StackedLinear::has_branch(size_t first, size_t count) const {
  for (size_t i = first; i < first + count; ++i)
    if (layers_.at(i)->branch()) return true;
  return false;
}

std::optional<Array> StackedLinear::dense_stack() const {
  if (quant_ || !current() || has_branch(0, layers_.size())) return std::nullopt;
  for (const Linear* l : layers_)
    if (l->row_parallel()) return std::nullopt;
  return stack_;
}

Array StackedLinear::columns(const Array& y, size_t first, size_t count) const {
  int64_t col = 0, n = 0;
  for (size_t i = 0; i < first + count; ++i) (i < first ? col : n) += parts_.at(i).shape(0);
  Shape start(static_cast<size_t>(y.ndim()), 0), stop = y.shape();
  start.back() = col;
  stop.back() = col + n;
  return slice(y, start, stop);
}

std::optional<std::vector<Array>> StackedLinear::operator()(const Array& x) const {
  const std::optional<Array> y = product(x);
  if (!y) return std::nullopt;
  std::vector<Array> out;
  const std::optional<Array> xc = branch_input(x, 0, parts_.size());
  for (size_t i = 0; i < parts_.size(); ++i) out.push_back(output(*y, x, i, xc ? &*xc : nullptr));
  return out;
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

Array RMSNorm::add_to(const Array& residual, const Array& x) const {
  static const bool fused = env::flag("INGOT_NORM_ADD", true);
  if (!fused) return residual + (*this)(x);
  return fast::rms_norm_add(residual, x, param("weight"),
                            fast::RmsNormOptions{.eps = opt_.eps,
                                                 .add_unit_offset = opt_.unit_offset,
                                                 .weight_in_float32 = opt_.weight_in_float32});
}

Array RMSNorm::linear(const Array& x, const Array& w) const {
  return fast::rms_norm_linear(x, param("weight"), w,
                               fast::RmsNormOptions{.eps = opt_.eps,
                                                    .add_unit_offset = opt_.unit_offset,
                                                    .weight_in_float32 = opt_.weight_in_float32});
}

Array RMSNorm::glu(const Array& x, const Array& w, Activation act) const {
  const auto a = fast_act(act);
  return fast::rms_norm_glu(x, param("weight"), w, a,
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
  Array keep = random::bernoulli(Array(1.0f - p_), x.shape(), std::nullopt, x.device());
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

bool GatedMLP::fuse_projections() {
  return gate_up_.fuse({gate_.get(), up_.get()});
}

namespace {
/// INGOT_FUSED_GLU_GRAD: unset or anything but "0" = act(g) * u traced as one fast op (below);
/// "0" = the separate ops (A/B runs). Read once.
bool fused_glu_grad() {
  static const bool on = env::flag("INGOT_FUSED_GLU_GRAD", true);
  return on;
}

// gated() casts one activation enum to the other.
static_assert(static_cast<int>(Activation::silu) == static_cast<int>(fast::GatedActivation::silu) &&
              static_cast<int>(Activation::gelu) == static_cast<int>(fast::GatedActivation::gelu) &&
              static_cast<int>(Activation::gelu_tanh) ==
                  static_cast<int>(fast::GatedActivation::gelu_tanh));

/// act(g) * u, each step rounded as the separate ops round: one compiled elementwise kernel on
/// the GPU for inference, one fast op under a gradient transform, else the separate ops.
Array gated(const Array& g, const Array& u, Activation act) {
  // Under a gradient transform: fast::gated_activation, the same values, whose backward reads
  // g, u and the cotangent once and writes dg and du once (the separate ops' backward: four
  // kernels, eleven passes over tensors of g's size). Not the compiled function: its VJP under
  // an outer trace gave wrong LoRA gradients on the GPU.
  if (is_tracing()) {
    if (fused_glu_grad() && g.shape() == u.shape() && g.dtype() == u.dtype() &&
        is_floating(g.dtype()))
      return fast::gated_activation(g, u, static_cast<fast::GatedActivation>(act));
    return activate(g, act) * u;
  }
  // Any row count: the separate ops read the strided column slices of a stacked gate/up
  // product element by element too, in two passes (measured on an H200: their two kernels
  // were 18% of a Qwen3 classify batch's kernel time).
  if (g.device().type != Device::Type::cuda) return activate(g, act) * u;
  static const std::array<ArrayFn, 3> fns = [] {
    std::array<ArrayFn, 3> f;
    for (int a = 0; a < 3; ++a)
      f[static_cast<size_t>(a)] = compile(
          [a](const std::vector<Array>& in) {
            return std::vector<Array>{activate(in[0], static_cast<Activation>(a)) * in[1]};
          },
          {.shapeless = true});
    return f;
  }();
  return fns[static_cast<size_t>(act)]({g, u})[0];
}

}  // namespace

bool GatedMLP::dense_glu(Array* gate_up, Array* down, fast::GatedActivation* act) const {
  const std::optional<Array> gu = gate_up_.dense_stack();
  const std::optional<Array> dw = down_->dense_weight();
  // gate and up of one width (the stack's rows split in halves).
  if (!gu || !dw || gate_->param("weight").shape(0) != up_->param("weight").shape(0)) return false;
  *gate_up = *gu;
  *down = *dw;
  *act = fast_act(act_);
  return true;
}

Array GatedMLP::operator()(const Array& x) const {
  if (auto gu = gate_up_(x)) return (*down_)(gated((*gu)[0], (*gu)[1], act_));
  return (*down_)(gated((*gate_)(x), (*up_)(x), act_));
}

Array GatedMLP::normed(const Array& x, const RMSNorm& norm, const Array* residual) const {
  std::optional<Array> h;
  // On the GPU, for inference: the norm, the gate/up product, the activation and the multiply
  // as one primitive (fast::rms_norm_glu: one GEMV for a few rows). INGOT_GLU_FUSED=0: off.
  static const bool glu = env::flag("INGOT_GLU_FUSED", true);
  if (glu && x.device().type == Device::Type::cuda && !is_tracing())
    h = gate_up_.normed_glu(x, norm, act_);
  if (!h) {
    if (auto y = gate_up_.normed_product(x, norm))
      h = gated(gate_up_.columns(*y, 0, 1), gate_up_.columns(*y, 1, 1), act_);
  }
  if (h) return residual ? down_->add_to(*residual, *h) : (*down_)(*h);
  return residual ? (*this)(norm(x), *residual) : (*this)(norm(x));
}

std::optional<std::pair<Array, Array>> GatedMLP::add_normed(const Array& residual, const Array& y,
                                                            const RMSNorm& post,
                                                            const RMSNorm& norm) const {
  // Opt-in (INGOT_NORM_ADD_GLU=1): its first GPU run (session 36) found a fault in the
  // prologue (fixed since, not yet re-run on a GPU).
  static const bool on = env::flag("INGOT_NORM_ADD_GLU", false) &&
                         env::flag("INGOT_GLU_FUSED", true) && env::flag("INGOT_NORM_ADD", true);
  if (!on || y.device().type != Device::Type::cuda || is_tracing()) return std::nullopt;
  const std::optional<Array> gu = gate_up_.dense_stack();
  if (!gu || gate_->param("weight").shape(0) != up_->param("weight").shape(0)) return std::nullopt;
  const auto a = fast_act(act_);
  std::vector<Array> hg =
      fast::rms_norm_add_linear(residual, y, post.param("weight"), norm_options(post),
                                norm.param("weight"), *gu, norm_options(norm), a);
  return std::make_pair(hg[0], (*down_)(hg[1]));
}

Array GatedMLP::operator()(const Array& x, const Array& residual) const {
  if (auto gu = gate_up_(x)) return down_->add_to(residual, gated((*gu)[0], (*gu)[1], act_));
  return down_->add_to(residual, gated((*gate_)(x), (*up_)(x), act_));
}

}  // namespace ingot::nn
