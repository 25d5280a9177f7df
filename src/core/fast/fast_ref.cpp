// Reference compositions of the fast:: ops from public ops (namespace fast::ref): the test
// oracles of the fused kernels and the building blocks of their VJPs.
#include <cmath>
#include <limits>

#include "core/fast/fast_internal.h"
#include "core/ops/ops.h"

namespace ingot::fast {

using namespace detail;

namespace detail {

Array sdpa_probs(const Array& q, const Array& k, const SdpaOptions& opt, Array* capped) {
  const Dtype ct = compute_dtype(q.dtype());
  const int64_t B = q.shape(0), H = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int64_t Hkv = k.shape(1), S = k.shape(2), G = H / Hkv;
  const Array q5 = reshape(astype(q, ct), {B, Hkv, G, L, D});
  const Array k5 = reshape(astype(k, ct), {B, Hkv, 1, S, D});
  Array logits = matmul(q5, swapaxes(k5, -1, -2)) * Array(opt.scale, ct);  // [B, Hkv, G, L, S]
  if (opt.softcap > 0) {
    Array t = tanh(logits / Array(opt.softcap, ct));
    if (capped) *capped = t;
    logits = t * Array(opt.softcap, ct);
  }
  const Array neg_inf(-std::numeric_limits<float>::infinity(), ct);
  if (opt.mask) {
    // The mask broadcasts against [B, H, L, S]; view the logits that way to apply it.
    Array l4 = reshape(logits, {B, H, L, S});
    if (opt.mask->dtype() == Dtype::bool_)
      l4 = where(*opt.mask, l4, neg_inf);
    else
      l4 = l4 + astype(*opt.mask, ct);
    logits = reshape(l4, {B, Hkv, G, L, S});
  }
  if (opt.causal) {
    const Device dev = logits.device();
    Array qpos = reshape(arange(L, Dtype::int64, dev) + Array(S - L), {L, 1});
    Array kpos = reshape(arange(S, Dtype::int64, dev), {1, S});
    Array keep = kpos <= qpos;
    if (opt.window > 0) keep = keep && (kpos > qpos - Array(static_cast<int64_t>(opt.window)));
    logits = where(keep, logits, neg_inf);
  }
  // Rows with every key masked give zeros (not NaN).
  Array row_max = max(logits, -1, true);
  Array p = softmax(logits, -1);
  return where(equal(row_max, neg_inf), Array(0.0f, ct), p);
}

}  // namespace detail

namespace ref {

Array rms_norm(const Array& x, const std::optional<Array>& weight, RmsNormOptions opt,
               StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm");
  const Dtype ct = compute_dtype(x.dtype());
  Array xf = astype(x, ct, s);
  Array n = xf * rsqrt(mean(square(xf, s), -1, true, s) + Array(opt.eps, ct), s);
  if (!weight) return astype(n, x.dtype(), s);
  Array w = astype(*weight, ct, s);
  if (opt.add_unit_offset) w = Array(1.0f, ct) + w;
  if (!opt.weight_in_float32) n = astype(astype(n, x.dtype(), s), ct, s);
  return astype(n * w, x.dtype(), s);
}

// act(gate) * up of y's last-axis halves [gate | up].
static Array glu_halves(const Array& y, GatedActivation act, StreamOrDevice s) {
  const int64_t i = y.shape().back() / 2;
  Shape start(static_cast<size_t>(y.ndim()), 0), mid = y.shape();
  mid.back() = i;
  Shape up_start = start;
  up_start.back() = i;
  const Array g = slice(y, start, mid, s), u = slice(y, up_start, y.shape(), s);
  const Array a = act == GatedActivation::silu   ? silu(g, s)
                  : act == GatedActivation::gelu ? gelu(g, s)
                                                 : gelu_tanh(g, s);
  return multiply(a, u, s);
}

Array rms_norm_add(const Array& residual, const Array& x, const std::optional<Array>& weight,
                   RmsNormOptions opt, StreamOrDevice s) {
  return add(residual, ref::rms_norm(x, weight, opt, s), s);
}

Array rms_norm_linear(const Array& x, const std::optional<Array>& weight, const Array& w,
                      RmsNormOptions opt, StreamOrDevice s) {
  return matmul(ref::rms_norm(x, weight, opt, s), transpose(w, {1, 0}, s), s);
}

Array rms_norm_glu(const Array& x, const std::optional<Array>& weight, const Array& w,
                   GatedActivation act, RmsNormOptions opt, StreamOrDevice s) {
  return glu_halves(ref::rms_norm_linear(x, weight, w, opt, s), act, s);
}

Array rms_norm_quantized_linear(const Array& x, const std::optional<Array>& weight,
                                const QuantizedLinearWeight& w, RmsNormOptions opt,
                                StreamOrDevice s) {
  return quantized_matmul(ref::rms_norm(x, weight, opt, s), w.w, w.scales, w.biases, true, w.opt,
                          s);
}

Array rms_norm_quantized_glu(const Array& x, const std::optional<Array>& weight,
                             const QuantizedLinearWeight& w, GatedActivation act,
                             RmsNormOptions opt, StreamOrDevice s) {
  return glu_halves(ref::rms_norm_quantized_linear(x, weight, w, opt, s), act, s);
}

Array quantized_linear_add(const Array& residual, const Array& x, const QuantizedLinearWeight& w,
                           StreamOrDevice s) {
  return add(residual, quantized_matmul(x, w.w, w.scales, w.biases, true, w.opt, s), s);
}

Array layer_norm(const Array& x, const std::optional<Array>& weight,
                 const std::optional<Array>& bias, float eps, StreamOrDevice s) {
  check_norm_args(x, weight, bias, "layer_norm");
  const Dtype ct = compute_dtype(x.dtype());
  Array xf = astype(x, ct, s);
  Array xc = xf - mean(xf, -1, true, s);
  Array n = xc * rsqrt(mean(square(xc, s), -1, true, s) + Array(eps, ct), s);
  if (weight) n = n * astype(*weight, ct, s);
  if (bias) n = n + astype(*bias, ct, s);
  return astype(n, x.dtype(), s);
}

Array rope(const Array& x, int dims, const RopeOptions& opt, StreamOrDevice s) {
  check_rope_args(x, dims, opt);
  const int nd = x.ndim();
  const int64_t L = x.shape(-2), D = x.shape(-1), half = dims / 2;
  // Inverse frequencies and positions in float32, as Hugging Face computes them.
  Array inv_freq =
      opt.freqs
          ? astype(*opt.freqs, float32, s)
          : reciprocal(power(Array(opt.base),
                             arange(0, dims, 2, float32, s) / Array(static_cast<float>(dims)), s),
                       s);
  Array pos = arange(L, Dtype::int64, s) + Array(opt.offset);  // [L]
  Shape angle_shape{L, half};
  if (opt.offsets) {
    const int64_t nb = opt.offsets->size();
    pos = reshape(astype(*opt.offsets, Dtype::int64, s), {nb, 1}, s) +
          arange(L, Dtype::int64, s);  // [nb, L]
    if (nb > 1) {
      angle_shape = Shape(nd, 1);
      angle_shape[0] = nb;
      angle_shape[nd - 2] = L;
      angle_shape[nd - 1] = half;
    }
  }
  Array posf = astype(pos, float32, s);
  if (opt.scale != 1.0f) posf = posf * Array(opt.scale);
  Array angles = reshape(expand_dims(posf, -1, s) * inv_freq, angle_shape, s);
  Array c = astype(cos(angles, s), x.dtype(), s);
  Array sn = astype(sin(angles, s), x.dtype(), s);

  Array rot = slice_axis(x, -1, 0, dims, 1, s);
  Array x1 = opt.traditional ? slice_axis(rot, -1, 0, dims, 2, s) : slice_axis(rot, -1, 0, half);
  Array x2 = opt.traditional ? slice_axis(rot, -1, 1, dims, 2, s) : slice_axis(rot, -1, half, dims);
  // Each product and the sum round to x's dtype, as x * cos + rotate_half(x) * sin does.
  Array o1 = x1 * c + negative(x2, s) * sn;
  Array o2 = x2 * c + x1 * sn;
  Array out;
  if (opt.traditional) {
    Shape sh = x.shape();
    sh[nd - 1] = dims;
    out = reshape(stack({o1, o2}, -1, s), sh, s);
  } else {
    out = concatenate({o1, o2}, -1, s);
  }
  if (dims < D) out = concatenate({out, slice_axis(x, -1, dims, D, 1, s)}, -1, s);
  return out;
}

Array scaled_dot_product_attention(const Array& q, const Array& k, const Array& v,
                                   const SdpaOptions& opt, StreamOrDevice s) {
  check_sdpa_args(q, k, v, opt);
  const Dtype ct = compute_dtype(q.dtype());
  const int64_t B = q.shape(0), H = q.shape(1), L = q.shape(2);
  const int64_t Hkv = k.shape(1), S = k.shape(2), Dv = v.shape(3);
  Array p = sdpa_probs(q, k, opt, nullptr);  // [B, Hkv, G, L, S]
  Array v5 = reshape(astype(v, ct, s), {B, Hkv, 1, S, Dv}, s);
  return astype(reshape(matmul(p, v5, s), {B, H, L, Dv}, s), q.dtype(), s);
}

std::vector<Array> rope_kv_update(const Array& qkv, const std::optional<Array>& q_norm,
                                  const std::optional<Array>& k_norm, const Array& keys,
                                  const Array& values, const Array& column,
                                  const RopeKvOptions& opt, StreamOrDevice s) {
  const int64_t d = check_rope_kv_args(qkv, q_norm, k_norm, keys, values, column, opt);
  const int64_t b = qkv.shape(0), l = qkv.shape(1), h = opt.n_heads, hk = opt.n_kv_heads;
  // Heads [first, first + count) of qkv as [B, count, L, D].
  auto heads = [&](int64_t first, int64_t count) {
    const Array cols = slice(qkv, {0, 0, first * d}, {b, l, (first + count) * d}, s);
    return transpose(reshape(cols, {b, l, count, d}, s), {0, 2, 1, 3}, s);
  };
  Array q = heads(0, h), k = heads(h, hk);
  const Array v = heads(h + hk, hk);
  if (q_norm) {
    q = fast::rms_norm(q, q_norm, opt.norm, s);
    k = fast::rms_norm(k, k_norm, opt.norm, s);
  }
  q = fast::rope(q, static_cast<int>(d), opt.rope, s);
  k = fast::rope(k, static_cast<int>(d), opt.rope, s);
  const Array cols =
      reshape(astype(column, Dtype::int32, s) + arange(l, Dtype::int32, s), {1, 1, l, 1}, s);
  const Array idx = broadcast_to(cols, {b, hk, l, d}, s);
  return {q, put_along_axis(keys, idx, k, 2, s), put_along_axis(values, idx, v, 2, s)};
}

std::vector<Array> rope_kv_attention(const Array& qkv, const std::optional<Array>& q_norm,
                                     const std::optional<Array>& k_norm, const Array& keys,
                                     const Array& values, const Array& column,
                                     const std::optional<Array>& mask, const RopeKvOptions& opt,
                                     float scale, StreamOrDevice s) {
  std::vector<Array> kv = fast::rope_kv_update(qkv, q_norm, k_norm, keys, values, column, opt, s);
  const Array o =
      fast::scaled_dot_product_attention(kv[0], kv[1], kv[2], {.scale = scale, .mask = mask}, s);
  return {o, kv[1], kv[2]};
}

std::vector<Array> decode_block(const Array& x, const Array& input_norm, const Array& w_qkv,
                                const std::optional<Array>& q_norm,
                                const std::optional<Array>& k_norm, const Array& w_o,
                                const Array& post_norm, const Array& w_gate_up, const Array& w_down,
                                const Array& keys, const Array& values, const Array& column,
                                const Array& mask, const DecodeBlockOptions& opt,
                                StreamOrDevice s) {
  check_decode_block_args(x, input_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gate_up, w_down,
                          keys, values, column, mask, opt);
  const int64_t b = x.shape(0), hd = int64_t{opt.n_heads} * keys.shape(3);
  const Array qkv = fast::rms_norm_linear(x, input_norm, w_qkv, opt.norm, s);
  const RopeKvOptions ko{
      .n_heads = opt.n_heads, .n_kv_heads = opt.n_kv_heads, .norm = opt.qk_norm, .rope = opt.rope};
  std::vector<Array> qkv2 = fast::rope_kv_update(qkv, q_norm, k_norm, keys, values, column, ko, s);
  Array o = fast::scaled_dot_product_attention(qkv2[0], qkv2[1], qkv2[2],
                                               {.scale = opt.scale, .mask = mask}, s);
  o = reshape(transpose(o, {0, 2, 1, 3}, s), {b, 1, hd}, s);
  const Array h = add_matmul(x, o, transpose(w_o, s), s);
  const Array g = fast::rms_norm_glu(h, post_norm, w_gate_up, opt.act, opt.norm, s);
  return {add_matmul(h, g, transpose(w_down, s), s), qkv2[1], qkv2[2]};
}

Array packed_attention(const Array& qkv, const std::optional<Array>& q_norm,
                       const std::optional<Array>& k_norm, const std::optional<Array>& prefix_keys,
                       const std::optional<Array>& prefix_values, const PackedAttentionOptions& opt,
                       StreamOrDevice s) {
  const int64_t d =
      check_packed_attention_args(qkv, q_norm, k_norm, prefix_keys, prefix_values, opt);
  const int64_t h = opt.n_heads, hk = opt.n_kv_heads, heads = h + 2 * hk;
  const int64_t p = prefix_keys ? prefix_keys->shape(2) : 0;
  RopeOptions rope = opt.rope;
  rope.offset = p;  // row i of a sequence is at position P + i
  const SdpaOptions so{
      .scale = opt.scale, .causal = true, .window = opt.window, .softcap = opt.softcap};
  std::vector<Array> outs;
  for (size_t i = 0; i + 1 < opt.starts.size(); ++i) {
    const int64_t r0 = opt.starts[i], len = opt.starts[i + 1] - r0;
    if (len == 0) continue;
    // The sequence's heads [1, H + 2 Hkv, len, D].
    const Array rows = slice(qkv, {r0, 0}, {r0 + len, heads * d}, s);
    const Array x = transpose(reshape(rows, {1, len, heads, d}, s), {0, 2, 1, 3}, s);
    Array q = slice(x, {0, 0, 0, 0}, {1, h, len, d}, s);
    Array k = slice(x, {0, h, 0, 0}, {1, h + hk, len, d}, s);
    Array v = slice(x, {0, h + hk, 0, 0}, {1, heads, len, d}, s);
    if (q_norm) {
      q = fast::rms_norm(q, q_norm, opt.qk_norm, s);
      k = fast::rms_norm(k, k_norm, opt.qk_norm, s);
    }
    q = fast::rope(q, static_cast<int>(d), rope, s);
    k = fast::rope(k, static_cast<int>(d), rope, s);
    if (prefix_keys) {
      k = concatenate({*prefix_keys, k}, 2, s);
      v = concatenate({*prefix_values, v}, 2, s);
    }
    const Array o = fast::scaled_dot_product_attention(q, k, v, so, s);
    outs.push_back(reshape(transpose(o, {0, 2, 1, 3}, s), {len, h * d}, s));
  }
  if (outs.empty()) return zeros({0, h * d}, qkv.dtype(), s);
  return outs.size() == 1 ? outs[0] : concatenate(outs, 0, s);
}

}  // namespace ref
}  // namespace ingot::fast
