// VJPs, output shapes and printing of the fast:: primitives. The VJPs are explicit gradient
// formulas written with public ops (float32 inside, float64 for float64), so grad-of-grad
// works; they differentiate the float32 math and ignore intermediate 16-bit roundings.
#include <cstdlib>
#include <cstring>
#include <optional>
#include <ostream>

#include "core/fast/fast_internal.h"
#include "core/ops/ops.h"
#include "core/primitives/elementwise.h"
#include "core/primitives/linalg.h"
#include "core/transforms/autodiff.h"
#include "util/env.h"

namespace ingot {

using fast::detail::compute_dtype;

namespace {

// Sums `a` down to `shape` (the inverse of broadcasting `shape` to a.shape()).
Array sum_to_shape(const Array& a, const Shape& shape) {
  std::vector<int> axes;
  const int lead = a.ndim() - static_cast<int>(shape.size());
  for (int d = 0; d < a.ndim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && a.shape()[d] != 1)) axes.push_back(d);
  Array r = axes.empty() ? a : sum(a, axes, true);
  return reshape(r, shape);
}

// The cotangents for argnums of f, a composition of public ops that a fused primitive
// evaluates in one pass (its higher-order gradients).
std::vector<Array> composed_vjp(const ArrayFn& f, const std::vector<Array>& primals,
                                const std::vector<Array>& cotangents,
                                const std::vector<int>& argnums) {
  const std::vector<Array> all = vjp(f, primals, cotangents).second;
  std::vector<Array> out;
  for (int a : argnums) out.push_back(all[static_cast<size_t>(a)]);
  return out;
}

// Sum over every axis but the last.
Array sum_rows(const Array& a) {
  std::vector<int> axes;
  for (int d = 0; d + 1 < a.ndim(); ++d) axes.push_back(d);
  return axes.empty() ? a : sum(a, axes);
}

}  // namespace

// ---- RmsNorm ----

std::vector<Shape> RmsNorm::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

void RmsNorm::print(std::ostream& os) const {
  os << "RmsNorm(eps=" << eps_ << (add_unit_offset_ ? ", 1+w" : "")
     << (weight_in_float32_ ? "" : ", weight after rounding")
     << (has_residual_ ? ", + residual" : "") << ")";
}

namespace {

// RmsNorm's gradient with respect to x as public ops (the composition RmsNormGrad fuses):
// r * (gw - n * mean(gw * n)) with n = x r and gw = g w, in the compute dtype.
Array rms_norm_dx_composed(const Array& x, const std::optional<Array>& weight, const Array& g,
                           float eps, bool add_unit_offset) {
  const Dtype ct = compute_dtype(x.dtype());
  Array xf = astype(x, ct);
  Array r = rsqrt(mean(square(xf), -1, true) + Array(eps, ct));
  Array n = xf * r;
  Array gn = astype(g, ct);
  if (weight) {
    Array w = astype(*weight, ct);
    if (add_unit_offset) w = Array(1.0f, ct) + w;
    gn = gn * w;
  }
  return astype(r * (gn - n * mean(gn * n, -1, true)), x.dtype());
}

// INGOT_FUSED_NORM_GRAD: unset, empty or anything but "0" = RmsNormGrad (one pass a row);
// "0" = the composition (A/B runs). Read at every call so that tests can switch it.
bool fused_norm_grad() {
  return env::flag("INGOT_FUSED_NORM_GRAD", true);
}

}  // namespace

std::vector<Array> RmsNorm::vjp(const std::vector<Array>& primals,
                                const std::vector<Array>& cotangents,
                                const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array& x = primals[0];
  const Array& g = cotangents[0];
  const Dtype ct = compute_dtype(x.dtype());
  const std::optional<Array> weight = has_weight_ ? std::optional<Array>(primals[1]) : std::nullopt;
  // A residual input (the last) gets the cotangent as it is.
  const int residual = has_residual_ ? (has_weight_ ? 2 : 1) : -1;
  std::vector<Array> out;
  for (int a : argnums) {
    if (a == 0) {
      if (fused_norm_grad() && g.dtype() == x.dtype() && g.shape() == x.shape()) {
        std::vector<Array> in{x};
        if (weight) in.push_back(*weight);
        in.push_back(g);
        out.push_back(
            Array(x.shape(), x.dtype(),
                  std::make_shared<RmsNormGrad>(stream(), eps_, add_unit_offset_, has_weight_),
                  std::move(in)));
      } else {
        out.push_back(rms_norm_dx_composed(x, weight, g, eps_, add_unit_offset_));
      }
    } else if (a == residual) {
      out.push_back(astype(g, primals[static_cast<size_t>(a)].dtype()));
    } else {  // the weight: sum over rows of g * x r
      Array xf = astype(x, ct);
      Array n = xf * rsqrt(mean(square(xf), -1, true) + Array(eps_, ct));
      out.push_back(astype(sum_rows(astype(g, ct) * n), primals[1].dtype()));
    }
  }
  return out;
}

// ---- RmsNormGrad ----

std::vector<Shape> RmsNormGrad::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

void RmsNormGrad::print(std::ostream& os) const {
  os << "RmsNormGrad(eps=" << eps_ << (add_unit_offset_ ? ", 1+w" : "") << ")";
}

// The composition's own gradient (RmsNormGrad is its value computed in one pass).
std::vector<Array> RmsNormGrad::vjp(const std::vector<Array>& primals,
                                    const std::vector<Array>& cotangents,
                                    const std::vector<int>& argnums, const std::vector<Array>&) {
  const float eps = eps_;
  const bool offset = add_unit_offset_, has_weight = has_weight_;
  auto f = [eps, offset, has_weight](const std::vector<Array>& in) {
    const std::optional<Array> w = has_weight ? std::optional<Array>(in[1]) : std::nullopt;
    return std::vector<Array>{rms_norm_dx_composed(in[0], w, in.back(), eps, offset)};
  };
  return composed_vjp(f, primals, cotangents, argnums);
}

// ---- ActivationGrad ----

std::vector<Shape> ActivationGrad::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

void ActivationGrad::print(std::ostream& os) const {
  os << "ActivationGrad(" << (act_ == 0 ? "silu" : act_ == 1 ? "gelu" : "gelu_tanh") << ")";
}

// The composition's own gradient (ActivationGrad is its value computed in one pass).
std::vector<Array> ActivationGrad::vjp(const std::vector<Array>& primals,
                                       const std::vector<Array>& cotangents,
                                       const std::vector<int>& argnums, const std::vector<Array>&) {
  const int act = act_;
  auto f = [act](const std::vector<Array>& in) {
    return std::vector<Array>{multiply(in[1], activation_derivative(in[0], act))};
  };
  return composed_vjp(f, primals, cotangents, argnums);
}

// ---- RmsNormLinear ----

std::vector<Shape> RmsNormLinear::output_shapes(const std::vector<Array>& inputs) {
  Shape out = inputs[0].shape();
  out.back() = inputs.back().shape(1);
  return {out};
}

void RmsNormLinear::print(std::ostream& os) const {
  os << "RmsNormLinear(eps=" << eps_ << (add_unit_offset_ ? ", 1+w" : "")
     << (weight_in_float32_ ? "" : ", weight after rounding") << ")";
}

// The norm's output is recomputed as an RmsNorm (the fused primitive does not keep it), then
// the product's and the norm's own VJPs chain.
std::vector<Array> RmsNormLinear::vjp(const std::vector<Array>& primals,
                                      const std::vector<Array>& cotangents,
                                      const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array& x = primals[0];
  const Array& wt = primals.back();
  const int wt_arg = static_cast<int>(primals.size()) - 1;
  std::vector<Array> norm_in(primals.begin(), primals.end() - 1);
  const Array n(x.shape(), x.dtype(), norm(), norm_in);
  Matmul mm(stream());
  std::vector<int> norm_args;
  for (int a : argnums)
    if (a != wt_arg) norm_args.push_back(a);
  std::vector<Array> norm_grads;
  if (!norm_args.empty()) {
    const Array gn = mm.vjp({n, wt}, cotangents, {0}, {})[0];
    norm_grads = norm()->vjp(norm_in, {gn}, norm_args, {n});
  }
  std::vector<Array> out;
  size_t next = 0;
  for (int a : argnums) {
    if (a == wt_arg)
      out.push_back(mm.vjp({n, wt}, cotangents, {1}, {})[0]);
    else
      out.push_back(norm_grads[next++]);
  }
  return out;
}

// ---- RmsNormGlu ----

std::vector<Shape> RmsNormGlu::output_shapes(const std::vector<Array>& inputs) {
  Shape out = inputs[0].shape();
  out.back() = inputs.back().shape(1) / 2;
  return {out};
}

void RmsNormGlu::print(std::ostream& os) const {
  static const char* names[] = {"silu", "gelu", "gelu_tanh"};
  os << "RmsNormGlu(eps=" << eps_ << (add_unit_offset_ ? ", 1+w" : "")
     << (weight_in_float32_ ? "" : ", weight after rounding") << ", " << names[act_] << ")";
}

bool RmsNormAddProduct::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RmsNormAddProduct*>(&other);
  return o && add_->is_equivalent(*o->add_) && product_->is_equivalent(*o->product_);
}

std::vector<Shape> RmsNormAddProduct::output_shapes(const std::vector<Array>& inputs) {
  std::vector<Array> pin{inputs[0]};
  pin.insert(pin.end(), inputs.begin() + static_cast<long>(add_inputs()), inputs.end());
  return {inputs[0].shape(), product_->output_shapes(pin)[0]};
}

void RmsNormAddProduct::print(std::ostream& os) const {
  os << "RmsNormAddProduct(";
  add_->print(os);
  os << ", ";
  product_->print(os);
  os << ")";
}

const RmsNormGlu* RmsNormAddProduct::glu() const {
  return dynamic_cast<const RmsNormGlu*>(product_.get());
}

std::shared_ptr<RmsNormLinear> RmsNormAddProduct::norm_linear() const {
  if (const RmsNormGlu* g = glu()) return g->norm_linear();
  return std::static_pointer_cast<RmsNormLinear>(product_);
}

std::shared_ptr<UnaryPrimitive> RmsNormGlu::activation() const {
  if (act_ == 0) return std::make_shared<Silu>(stream());
  if (act_ == 1) return std::make_shared<Gelu>(stream());
  return std::make_shared<GeluTanh>(stream());
}

// The stacked product y and act(gate) are recomputed as their primitives (the fused one keeps
// neither); the multiply's gradient, the activation's VJP, then RmsNormLinear's VJP chain.
std::vector<Array> RmsNormGlu::vjp(const std::vector<Array>& primals,
                                   const std::vector<Array>& cotangents,
                                   const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array& x = primals[0];
  const int64_t i = primals.back().shape(1) / 2;
  Shape y_shape = x.shape();
  y_shape.back() = 2 * i;
  const std::shared_ptr<RmsNormLinear> nl = norm_linear();
  const Array y(y_shape, x.dtype(), nl, primals);
  Shape start(static_cast<size_t>(y.ndim()), 0), mid = y_shape, up_start(start);
  mid.back() = i;
  up_start.back() = i;
  const Array g = slice(y, start, mid, stream()), u = slice(y, up_start, y_shape, stream());
  const std::shared_ptr<UnaryPrimitive> ap = activation();
  const Array a(g.shape(), g.dtype(), ap, {g});
  const Array& dh = cotangents[0];
  const Array dg = ap->vjp({g}, {multiply(dh, u, stream())}, {0}, {a})[0];
  const Array dy = concatenate({dg, multiply(dh, a, stream())}, -1, stream());
  return nl->vjp(primals, {dy}, argnums, {y});
}

// ---- LayerNorm ----

std::vector<Shape> LayerNorm::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

void LayerNorm::print(std::ostream& os) const {
  os << "LayerNorm(eps=" << eps_ << (has_weight_ ? ", weight" : "") << (has_bias_ ? ", bias" : "")
     << ")";
}

std::vector<Array> LayerNorm::vjp(const std::vector<Array>& primals,
                                  const std::vector<Array>& cotangents,
                                  const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array& x = primals[0];
  const Dtype ct = compute_dtype(x.dtype());
  Array xf = astype(x, ct);
  Array g = astype(cotangents[0], ct);
  Array xc = xf - mean(xf, -1, true);
  Array r = rsqrt(mean(square(xc), -1, true) + Array(eps_, ct));
  Array n = xc * r;
  Array gn = has_weight_ ? g * astype(primals[1], ct) : g;
  std::vector<Array> out;
  for (int a : argnums) {
    if (a == 0) {
      out.push_back(astype(r * (gn - mean(gn, -1, true) - n * mean(gn * n, -1, true)), x.dtype()));
    } else if (a == 1 && has_weight_) {
      out.push_back(astype(sum_rows(g * n), primals[1].dtype()));
    } else {
      out.push_back(astype(sum_rows(g), primals[a].dtype()));  // bias
    }
  }
  return out;
}

// ---- Rope ----

std::vector<Shape> Rope::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

void Rope::print(std::ostream& os) const {
  os << "Rope(dims=" << dims_ << (traditional_ ? ", traditional" : "") << ", base=" << base_
     << ", scale=" << scale_ << ", offset=" << offset_ << (has_offsets_ ? ", offsets" : "")
     << (has_freqs_ ? ", freqs" : "") << ")";
}

std::vector<Shape> RopeKvUpdate::output_shapes(const std::vector<Array>& inputs) {
  const Array& qkv = inputs[0];
  const Array& keys = inputs[inputs.size() - 3];
  return {{qkv.shape(0), n_heads_, qkv.shape(1), keys.shape(3)}, keys.shape(), keys.shape()};
}

void RopeKvUpdate::print(std::ostream& os) const {
  os << "RopeKvUpdate(heads=" << n_heads_ << ", kv_heads=" << n_kv_heads_
     << (has_norm_ ? ", norm" : "") << (traditional_ ? ", traditional" : "") << ", base=" << base_
     << ", scale=" << scale_ << ", offset=" << offset_ << (has_offsets_ ? ", offsets" : "")
     << (has_freqs_ ? ", freqs" : "") << ")";
}

bool RopeKvAttention::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RopeKvAttention*>(&other);
  return o && kv_->is_equivalent(*o->kv_) && scale_ == o->scale_ && mask_ == o->mask_;
}

std::vector<Shape> RopeKvAttention::output_shapes(const std::vector<Array>& inputs) {
  const std::vector<Array> kin(inputs.begin(),
                               inputs.begin() + static_cast<long>(kv_inputs(inputs.size())));
  return kv_->output_shapes(kin);
}

void RopeKvAttention::print(std::ostream& os) const {
  os << "RopeKvAttention(";
  kv_->print(os);
  os << ", scale=" << scale_
     << (mask_ == SdpaMask::boolean    ? ", boolean mask"
         : mask_ == SdpaMask::additive ? ", additive mask"
                                       : "")
     << ")";
}

std::vector<Array> Rope::vjp(const std::vector<Array>& primals,
                             const std::vector<Array>& cotangents, const std::vector<int>& argnums,
                             const std::vector<Array>&) {
  // The rotation is orthogonal: its transpose rotates by the negated angle (scale -> -scale).
  std::vector<Array> out;
  for (int a : argnums) {
    if (a != 0) {
      const Array& p = primals[a];
      if (is_floating(p.dtype()))
        raise<Unsupported>("[rope] the gradient with respect to freqs is not implemented");
      out.push_back(zeros_like(p));  // integer offsets
      continue;
    }
    fast::RopeOptions o{
        .traditional = traditional_, .base = base_, .scale = -scale_, .offset = offset_};
    size_t i = 1;
    if (has_offsets_) o.offsets = primals[i++];
    if (has_freqs_) o.freqs = primals[i++];
    out.push_back(fast::rope(cotangents[0], dims_, o, stream()));
  }
  return out;
}

std::vector<Array> Rope::jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                             const std::vector<int>& argnums) {
  // Linear in x: the tangent is rotated like x (offsets and freqs take no tangents).
  for (int a : argnums)
    if (a != 0) raise<Unsupported>("[rope] jvp with respect to offsets or freqs is not defined");
  fast::RopeOptions o{
      .traditional = traditional_, .base = base_, .scale = scale_, .offset = offset_};
  size_t i = 1;
  if (has_offsets_) o.offsets = primals[i++];
  if (has_freqs_) o.freqs = primals[i++];
  return {fast::rope(tangents[0], dims_, o, stream())};
}

// ---- ScaledDotProductAttention ----

std::vector<Shape> ScaledDotProductAttention::output_shapes(const std::vector<Array>& inputs) {
  const Array &q = inputs[0], &v = inputs[2];
  return {{q.shape(0), q.shape(1), q.shape(2), v.shape(3)}};
}

void ScaledDotProductAttention::print(std::ostream& os) const {
  os << "ScaledDotProductAttention(scale=" << scale_ << (causal_ ? ", causal" : "");
  if (window_) os << ", window=" << window_;
  if (softcap_) os << ", softcap=" << softcap_;
  if (mask_ == SdpaMask::additive) os << ", additive mask";
  if (mask_ == SdpaMask::boolean) os << ", boolean mask";
  os << ")";
}

// ---- DecodeBlock ----

std::vector<Shape> DecodeBlock::output_shapes(const std::vector<Array>& inputs) {
  const Slots s = slots();
  return {inputs[s.x].shape(), inputs[s.keys].shape(), inputs[s.values].shape()};
}

void DecodeBlock::print(std::ostream& os) const {
  os << "DecodeBlock(heads=" << n_heads_ << ", kv_heads=" << n_kv_heads_ << ", eps=" << eps_
     << (add_unit_offset_ ? ", unit_offset" : "") << (weight_in_float32_ ? ", weight_f32" : "");
  if (has_qk_norm_)
    os << ", qk_norm(eps=" << qk_eps_ << (qk_add_unit_offset_ ? ", unit_offset" : "")
       << (qk_weight_in_float32_ ? ", weight_f32" : "") << ")";
  os << (traditional_ ? ", traditional" : "") << ", base=" << base_
     << ", rope_scale=" << rope_scale_ << (has_freqs_ ? ", freqs" : "") << ", scale=" << scale_
     << ", act=" << act_ << ")";
}

std::vector<Array> DecodeBlock::vjp(const std::vector<Array>&, const std::vector<Array>&,
                                    const std::vector<int>&, const std::vector<Array>&) {
  raise<Unsupported>(
      "[decode_block] is not differentiable (it writes the key/value cache); differentiate the "
      "separate ops instead");
}

// ---- PackedAttention ----

std::vector<Shape> PackedAttention::output_shapes(const std::vector<Array>& inputs) {
  const Array& qkv = inputs[slots().qkv];
  const int64_t d = qkv.shape(1) / (n_heads_ + 2 * int64_t{n_kv_heads_});
  return {{qkv.shape(0), n_heads_ * d}};
}

void PackedAttention::print(std::ostream& os) const {
  os << "PackedAttention(heads=" << n_heads_ << ", kv_heads=" << n_kv_heads_;
  if (has_qk_norm_)
    os << ", qk_norm(eps=" << qk_eps_ << (qk_add_unit_offset_ ? ", unit_offset" : "")
       << (qk_weight_in_float32_ ? ", weight_f32" : "") << ")";
  os << (traditional_ ? ", traditional" : "") << ", base=" << base_
     << ", rope_scale=" << rope_scale_ << (has_freqs_ ? ", freqs" : "") << ", scale=" << scale_
     << ", window=" << window_ << ", softcap=" << softcap_ << (has_prefix_ ? ", prefix" : "")
     << ", max_len=" << max_len_ << ")";
}

std::vector<Array> PackedAttention::vjp(const std::vector<Array>&, const std::vector<Array>&,
                                        const std::vector<int>&, const std::vector<Array>&) {
  raise<Unsupported>(
      "[packed_attention] is not differentiable (inference only); differentiate the separate "
      "ops (ref::packed_attention) instead");
}

// ---- ScaledDotProductAttentionGrad ----

std::vector<Shape> ScaledDotProductAttentionGrad::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape(), inputs[1].shape(), inputs[2].shape()};
}

void ScaledDotProductAttentionGrad::print(std::ostream& os) const {
  os << "ScaledDotProductAttentionGrad(scale=" << scale_ << (causal_ ? ", causal" : "");
  if (window_) os << ", window=" << window_;
  if (mask_ == SdpaMask::additive) os << ", additive mask";
  if (mask_ == SdpaMask::boolean) os << ", boolean mask";
  os << ")";
}

bool sdpa_fused_bwd_supported_on_cuda(Dtype t, int64_t D, int64_t Dv) {
  return (t == Dtype::bfloat16 || t == Dtype::float16) && D == Dv &&
         (D == 64 || D == 128 || D == 256);
}

std::vector<Array> ScaledDotProductAttentionGrad::vjp(const std::vector<Array>&,
                                                      const std::vector<Array>&,
                                                      const std::vector<int>&,
                                                      const std::vector<Array>&) {
  raise<Unsupported>(
      "[scaled_dot_product_attention] the fused backward has no gradient of its own; set "
      "INGOT_SDPA_FUSED_BWD=0 for higher-order gradients of attention");
}

namespace {

// INGOT_SDPA_FUSED_BWD: unset or empty = the fused backward where the CUDA kernels take the
// problem; "0" = always the composition (A/B runs); anything else = the fused backward on the
// CPU too (its CPU eval is a float64 reference loop, slower than the composition: for tests).
// Read at every call so that tests can switch it.
int fused_bwd_mode() {
  const char* v = std::getenv("INGOT_SDPA_FUSED_BWD");
  if (v == nullptr || *v == '\0') return -1;
  return std::strcmp(v, "0") == 0 ? 0 : 1;
}

// The gradients for argnums through ScaledDotProductAttentionGrad, or nothing where the
// composition must run: softcap, no forward output at hand, an additive mask's gradient, a
// problem the CUDA kernels do not take, or the CPU without INGOT_SDPA_FUSED_BWD=1.
std::optional<std::vector<Array>> fused_sdpa_vjp(const ScaledDotProductAttention& p,
                                                 const std::vector<Array>& primals,
                                                 const std::vector<Array>& cotangents,
                                                 const std::vector<int>& argnums,
                                                 const std::vector<Array>& outputs) {
  const Array &q = primals[0], &k = primals[1], &v = primals[2];
  if (p.softcap_ != 0 || outputs.empty()) return std::nullopt;
  for (int a : argnums)
    if (a == 3 && p.mask_ == SdpaMask::additive) return std::nullopt;
  const int mode = fused_bwd_mode();
  const bool use =
      p.stream().device.type == Device::Type::cuda
          ? mode != 0 && sdpa_fused_bwd_supported_on_cuda(q.dtype(), q.shape(3), v.shape(3))
          : mode == 1;
  if (!use) return std::nullopt;
  std::vector<Array> in{q, k, v, outputs[0], astype(cotangents[0], q.dtype(), p.stream())};
  if (p.mask_ != SdpaMask::none) in.push_back(primals[3]);
  const std::vector<Array> g =
      Array::make_arrays({q.shape(), k.shape(), v.shape()}, {q.dtype(), k.dtype(), v.dtype()},
                         std::make_shared<ScaledDotProductAttentionGrad>(
                             p.stream(), p.scale_, p.causal_, p.window_, p.mask_),
                         std::move(in));
  std::vector<Array> out;
  for (int a : argnums) out.push_back(a < 3 ? g[a] : zeros_like(primals[3]));  // boolean mask
  return out;
}

}  // namespace

std::vector<Array> ScaledDotProductAttention::vjp(const std::vector<Array>& primals,
                                                  const std::vector<Array>& cotangents,
                                                  const std::vector<int>& argnums,
                                                  const std::vector<Array>& outputs) {
  if (auto g = fused_sdpa_vjp(*this, primals, cotangents, argnums, outputs)) return *g;
  const Array &q = primals[0], &k = primals[1], &v = primals[2];
  const Dtype ct = compute_dtype(q.dtype());
  const int64_t B = q.shape(0), H = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int64_t Hkv = k.shape(1), S = k.shape(2), Dv = v.shape(3), G = H / Hkv;
  fast::SdpaOptions opt{.scale = scale_, .causal = causal_, .window = window_, .softcap = softcap_};
  if (mask_ != SdpaMask::none) opt.mask = primals[3];
  // Recompute the probabilities, then the standard attention backward per KV group.
  Array capped;
  Array p = fast::detail::sdpa_probs(q, k, opt, &capped);  // [B, Hkv, G, L, S]
  Array g5 = reshape(astype(cotangents[0], ct), {B, Hkv, G, L, Dv});
  Array q5 = reshape(astype(q, ct), {B, Hkv, G, L, D});
  Array k5 = reshape(astype(k, ct), {B, Hkv, 1, S, D});
  Array v5 = reshape(astype(v, ct), {B, Hkv, 1, S, Dv});
  Array dp = matmul(g5, swapaxes(v5, -1, -2));
  Array dt = p * (dp - sum(dp * p, -1, true));  // d(logits after softcap and mask)
  Array ds = dt;
  if (softcap_ > 0) ds = ds * (Array(1.0f, ct) - square(capped));
  ds = ds * Array(scale_, ct);
  std::vector<Array> out;
  for (int a : argnums) {
    switch (a) {
      case 0:
        out.push_back(astype(reshape(matmul(ds, k5), {B, H, L, D}), q.dtype()));
        break;
      case 1:
        out.push_back(astype(sum(matmul(swapaxes(ds, -1, -2), q5), 2), k.dtype()));
        break;
      case 2:
        out.push_back(astype(sum(matmul(swapaxes(p, -1, -2), g5), 2), v.dtype()));
        break;
      default:
        if (mask_ == SdpaMask::boolean)
          out.push_back(zeros_like(primals[3]));
        else
          out.push_back(astype(sum_to_shape(reshape(dt, {B, H, L, S}), primals[3].shape()),
                               primals[3].dtype()));
    }
  }
  return out;
}

}  // namespace ingot
