// fast:: ops: validate arguments and build RmsNorm / LayerNorm / Rope /
// ScaledDotProductAttention / PackedAttention nodes (kernels in backend/*/fast_*).
#include "core/fast/fast.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/fast/fast_internal.h"
#include "core/ops/ops.h"
#include "core/primitives/fast.h"
#include "core/primitives/quantized.h"

namespace ingot::fast::detail {

namespace {

void check_float(const Array& a, const char* op, const char* what) {
  if (!is_floating(a.dtype()))
    raise("[{}] {} must be a floating-point array, got {} {}", op, what, dtype_name(a.dtype()),
          shape_str(a.shape()));
}

// weight/bias of a norm: 1-d [E] matching x's last axis.
void check_norm_param(const Array& x, const Array& p, const char* op, const char* what) {
  check_float(p, op, what);
  if (p.ndim() != 1 || p.shape(0) != x.shape(-1))
    raise("[{}] {} must have shape [{}] to match x {}, got {}", op, what, x.shape(-1),
          shape_str(x.shape()), shape_str(p.shape()));
}

}  // namespace

void check_norm_args(const Array& x, const std::optional<Array>& weight,
                     const std::optional<Array>& bias, const char* op) {
  check_float(x, op, "x");
  if (x.ndim() < 1) raise("[{}] x must have at least one dimension, got a scalar", op);
  if (weight) check_norm_param(x, *weight, op, "weight");
  if (bias) check_norm_param(x, *bias, op, "bias");
}

void check_rope_args(const Array& x, int dims, const RopeOptions& opt) {
  check_float(x, "rope", "x");
  check_rope_shape(x.shape(), dims, opt);
}

void check_rope_shape(const Shape& shape, int dims, const RopeOptions& opt) {
  const int nd = static_cast<int>(shape.size());
  if (nd < 2)
    raise("[rope] x must have at least 2 dimensions [..., L, D], got {}", shape_str(shape));
  const int64_t d = shape.back();
  if (dims <= 0 || dims % 2 != 0 || dims > d)
    raise("[rope] dims must be even and in [2, D = {}], got dims {} for x {}", d, dims,
          shape_str(shape));
  if (opt.offsets) {
    const Array& o = *opt.offsets;
    if (!is_integral(o.dtype()) || o.dtype() == Dtype::bool_)
      raise("[rope] offsets must be an integer array, got {} {}", dtype_name(o.dtype()),
            shape_str(o.shape()));
    const bool one = o.size() == 1 && o.ndim() <= 1;
    const bool per_row = o.ndim() == 1 && nd >= 3 && o.shape(0) == shape[0];
    if (!one && !per_row)
      raise("[rope] offsets must have shape [B] = [{}] (the first axis of x {}) or [1], got {}",
            nd >= 3 ? shape[0] : 1, shape_str(shape), shape_str(o.shape()));
  }
  if (opt.freqs) {
    const Array& f = *opt.freqs;
    check_float(f, "rope", "freqs");
    if (f.ndim() != 1 || f.shape(0) != dims / 2)
      raise("[rope] freqs must have shape [dims / 2] = [{}], got {}", dims / 2,
            shape_str(f.shape()));
  }
}

SdpaMask check_sdpa_args(const Array& q, const Array& k, const Array& v, const SdpaOptions& opt) {
  constexpr const char* op = "scaled_dot_product_attention";
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4)
    raise("[{}] q, k and v must be 4-d [B, H, L, D] and [B, Hkv, S, D], got q {}, k {}, v {}", op,
          shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  check_float(q, op, "q");
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype())
    raise("[{}] q, k and v must have one dtype, got {}, {} and {}", op, dtype_name(q.dtype()),
          dtype_name(k.dtype()), dtype_name(v.dtype()));
  if (k.shape(0) != q.shape(0) || v.shape(0) != q.shape(0) || k.shape(1) != v.shape(1) ||
      k.shape(2) != v.shape(2))
    raise(
        "[{}] shapes do not match: q {}, k {}, v {} (need q [B, H, L, D], k [B, Hkv, S, D], "
        "v [B, Hkv, S, Dv])",
        op, shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  if (k.shape(3) != q.shape(3))
    raise("[{}] head dims differ: q {} has D = {}, k {} has D = {}", op, shape_str(q.shape()),
          q.shape(3), shape_str(k.shape()), k.shape(3));
  if (k.shape(1) == 0 || q.shape(1) % k.shape(1) != 0)
    raise("[{}] query heads H = {} must be a multiple of key/value heads Hkv = {} (q {}, k {})", op,
          q.shape(1), k.shape(1), shape_str(q.shape()), shape_str(k.shape()));
  if (opt.window < 0) raise("[{}] window must be >= 0, got {}", op, opt.window);
  if (opt.window > 0 && !opt.causal)
    raise("[{}] a sliding window ({}) needs causal = true", op, opt.window);
  if (opt.softcap < 0) raise("[{}] softcap must be >= 0, got {}", op, opt.softcap);
  return check_sdpa_mask(opt.mask, {q.shape(0), q.shape(1), q.shape(2), k.shape(2)}, op);
}

SdpaMask check_sdpa_mask(const std::optional<Array>& mask, const Shape& full, const char* op) {
  if (!mask) return SdpaMask::none;
  const Array& m = *mask;
  bool ok = m.ndim() <= 4;
  for (int i = 1; ok && i <= m.ndim(); ++i) {
    int64_t md = m.shape()[m.ndim() - i];
    ok = md == 1 || md == full[4 - i];
  }
  if (!ok)
    raise("[{}] mask {} does not broadcast to [B, H, L, S] = {}", op, shape_str(m.shape()),
          shape_str(full));
  if (m.dtype() == Dtype::bool_) return SdpaMask::boolean;
  if (!is_floating(m.dtype()))
    raise("[{}] mask must be boolean or floating point (additive), got {}", op,
          dtype_name(m.dtype()));
  return SdpaMask::additive;
}

// The arguments of rope_kv_update (see fast.h); returns D.
int64_t check_rope_kv_args(const Array& qkv, const std::optional<Array>& q_norm,
                           const std::optional<Array>& k_norm, const Array& keys,
                           const Array& values, const Array& column, const RopeKvOptions& opt) {
  const char* op = "rope_kv_update";
  check_float(qkv, op, "qkv");
  const Dtype t = qkv.dtype();
  if (t != Dtype::float32 && t != Dtype::bfloat16 && t != Dtype::float16)
    raise("[{}] qkv must be float32, bfloat16 or float16, got {}", op, dtype_name(t));
  if (opt.n_heads <= 0 || opt.n_kv_heads <= 0)
    raise("[{}] n_heads and n_kv_heads must be positive, got {} and {}", op, opt.n_heads,
          opt.n_kv_heads);
  if (keys.ndim() != 4 || values.shape() != keys.shape() || keys.shape(1) != opt.n_kv_heads)
    raise("[{}] keys and values must both be [B, Hkv = {}, C, D], got {} and {}", op,
          opt.n_kv_heads, shape_str(keys.shape()), shape_str(values.shape()));
  if (keys.dtype() != t || values.dtype() != t)
    raise("[{}] keys and values must have qkv's dtype {}, got {} and {}", op, dtype_name(t),
          dtype_name(keys.dtype()), dtype_name(values.dtype()));
  const int64_t d = keys.shape(3), heads = opt.n_heads + 2 * int64_t{opt.n_kv_heads};
  if (d % 16 != 0 || d > 256)
    raise("[{}] the head dimension must be a multiple of 16 and at most 256, got {}", op, d);
  if (qkv.ndim() != 3 || qkv.shape(0) != keys.shape(0) || qkv.shape(2) != heads * d)
    raise("[{}] qkv must be [B = {}, L, (H + 2 Hkv) D = {}], got {}", op, keys.shape(0), heads * d,
          shape_str(qkv.shape()));
  if (q_norm.has_value() != k_norm.has_value())
    raise("[{}] q_norm and k_norm must both be given or both be absent", op);
  for (const std::optional<Array>* w : {&q_norm, &k_norm})
    if (*w && ((*w)->ndim() != 1 || (*w)->shape(0) != d || (*w)->dtype() != t))
      raise("[{}] q_norm and k_norm must be [D = {}] of qkv's dtype {}, got {} {}", op, d,
            dtype_name(t), dtype_name((*w)->dtype()), shape_str((*w)->shape()));
  if (column.size() != 1 || column.ndim() > 1 || !is_integral(column.dtype()) ||
      column.dtype() == Dtype::bool_)
    raise("[{}] column must be an integer array of one element, got {} {}", op,
          dtype_name(column.dtype()), shape_str(column.shape()));
  if (qkv.shape(1) > keys.shape(2))
    raise("[{}] {} new columns do not fit in a cache of {} columns", op, qkv.shape(1),
          keys.shape(2));
  // The rotary checks of rope, on q's shape.
  check_rope_shape({qkv.shape(0), opt.n_heads, qkv.shape(1), d}, static_cast<int>(d), opt.rope);
  return d;
}

// The arguments of decode_block (see fast.h); returns D.
int64_t check_decode_block_args(const Array& x, const Array& input_norm, const Array& w_qkv,
                                const std::optional<Array>& q_norm,
                                const std::optional<Array>& k_norm, const Array& w_o,
                                const Array& post_norm, const Array& w_gate_up, const Array& w_down,
                                const Array& keys, const Array& values, const Array& column,
                                const Array& mask, const DecodeBlockOptions& opt) {
  const char* op = "decode_block";
  check_float(x, op, "x");
  const Dtype t = x.dtype();
  if (t != Dtype::float32 && t != Dtype::bfloat16 && t != Dtype::float16)
    raise("[{}] x must be float32, bfloat16 or float16, got {}", op, dtype_name(t));
  if (x.ndim() != 3 || x.shape(1) != 1)
    raise("[{}] x must be [B, 1, E] (one new token per row), got {}", op, shape_str(x.shape()));
  const int64_t b = x.shape(0), e = x.shape(2);
  if (opt.n_heads <= 0 || opt.n_kv_heads <= 0 || opt.n_heads % opt.n_kv_heads != 0)
    raise(
        "[{}] n_heads and n_kv_heads must be positive with n_heads a multiple of n_kv_heads, got "
        "{} and {}",
        op, opt.n_heads, opt.n_kv_heads);
  if (keys.ndim() != 4 || values.shape() != keys.shape() || keys.shape(0) != b ||
      keys.shape(1) != opt.n_kv_heads)
    raise("[{}] keys and values must both be [B = {}, Hkv = {}, C, D], got {} and {}", op, b,
          opt.n_kv_heads, shape_str(keys.shape()), shape_str(values.shape()));
  const int64_t d = keys.shape(3), c = keys.shape(2);
  if (d % 16 != 0 || d > 256)
    raise("[{}] the head dimension must be a multiple of 16 and at most 256, got {}", op, d);
  if (c < 1)
    raise("[{}] the cache must have at least one column, got {}", op, shape_str(keys.shape()));
  // Every float input: its shape and x's dtype.
  auto check = [&](const Array& a, const char* what, const Shape& want) {
    if (a.shape() != want || a.dtype() != t)
      raise("[{}] {} must be {} of x's dtype {}, got {} {}", op, what, shape_str(want),
            dtype_name(t), dtype_name(a.dtype()), shape_str(a.shape()));
  };
  const int64_t h = opt.n_heads, hk = opt.n_kv_heads;
  check(keys, "keys", keys.shape());
  check(values, "values", keys.shape());
  check(input_norm, "input_norm", {e});
  check(post_norm, "post_norm", {e});
  check(w_qkv, "w_qkv [(H + 2 Hkv) D, E]", {(h + 2 * hk) * d, e});
  if (q_norm.has_value() != k_norm.has_value())
    raise("[{}] q_norm and k_norm must both be given or both be absent", op);
  if (q_norm) {
    check(*q_norm, "q_norm", {d});
    check(*k_norm, "k_norm", {d});
  }
  check(w_o, "w_o [E, H D]", {e, h * d});
  if (w_gate_up.ndim() != 2 || w_gate_up.shape(0) % 2 != 0 || w_gate_up.shape(0) == 0)
    raise("[{}] w_gate_up must be stacked gate|up Linear weights [2I, E = {}], got {}", op, e,
          shape_str(w_gate_up.shape()));
  const int64_t inter = w_gate_up.shape(0) / 2;
  check(w_gate_up, "w_gate_up [2I, E]", {2 * inter, e});
  check(w_down, "w_down [E, I]", {e, inter});
  if (column.size() != 1 || column.ndim() > 1 || !is_integral(column.dtype()) ||
      column.dtype() == Dtype::bool_)
    raise("[{}] column must be an integer array of one element, got {} {}", op,
          dtype_name(column.dtype()), shape_str(column.shape()));
  if (mask.dtype() != Dtype::bool_ || mask.shape() != Shape{b, 1, 1, c})
    raise("[{}] mask must be bool [B, 1, 1, C] = [{}, 1, 1, {}], got {} {}", op, b, c,
          dtype_name(mask.dtype()), shape_str(mask.shape()));
  const RopeOptions& r = opt.rope;
  if (!r.offsets) raise("[{}] rope.offsets (the [B] positions of the new tokens) are required", op);
  if (r.offset != 0)
    raise("[{}] rope.offset must be 0 (rope.offsets give the positions), got {}", op, r.offset);
  if (r.offsets->ndim() != 1 || r.offsets->shape(0) != b)
    raise("[{}] rope.offsets must have shape [B] = [{}], got {}", op, b,
          shape_str(r.offsets->shape()));
  // The rotary checks of rope (offsets' dtype, freqs), on q's shape.
  check_rope_shape({b, h, 1, d}, static_cast<int>(d), r);
  const int act = static_cast<int>(opt.act);
  if (act < 0 || act > 2) raise("[{}] unknown activation {}", op, act);
  return d;
}

// The arguments of packed_attention (see fast.h); returns D.
int64_t check_packed_attention_args(const Array& qkv, const std::optional<Array>& q_norm,
                                    const std::optional<Array>& k_norm,
                                    const std::optional<Array>& prefix_keys,
                                    const std::optional<Array>& prefix_values,
                                    const PackedAttentionOptions& opt) {
  const char* op = "packed_attention";
  check_float(qkv, op, "qkv");
  const Dtype t = qkv.dtype();
  if (t != Dtype::float32 && t != Dtype::bfloat16 && t != Dtype::float16)
    raise("[{}] qkv must be float32, bfloat16 or float16, got {}", op, dtype_name(t));
  if (opt.n_heads <= 0 || opt.n_kv_heads <= 0 || opt.n_heads % opt.n_kv_heads != 0)
    raise(
        "[{}] n_heads and n_kv_heads must be positive with n_heads a multiple of n_kv_heads, got "
        "{} and {}",
        op, opt.n_heads, opt.n_kv_heads);
  const int64_t h = opt.n_heads, hk = opt.n_kv_heads, heads = h + 2 * hk;
  if (qkv.ndim() != 2 || qkv.shape(1) % heads != 0 || qkv.shape(1) == 0)
    raise("[{}] qkv must be [T, (H + 2 Hkv) D] with H + 2 Hkv = {} and D > 0, got {}", op, heads,
          shape_str(qkv.shape()));
  const int64_t rows = qkv.shape(0), d = qkv.shape(1) / heads;
  if (d % 2 != 0)
    raise("[{}] the head dimension D must be even, got {} (qkv {})", op, d, shape_str(qkv.shape()));
  if (rows > std::numeric_limits<int32_t>::max())
    raise("[{}] qkv has {} rows, more than int32 positions hold", op, rows);
  if (q_norm.has_value() != k_norm.has_value())
    raise("[{}] q_norm and k_norm must both be given or both be absent", op);
  for (const std::optional<Array>* w : {&q_norm, &k_norm})
    if (*w && ((*w)->ndim() != 1 || (*w)->shape(0) != d || (*w)->dtype() != t))
      raise("[{}] q_norm and k_norm must be [D = {}] of qkv's dtype {}, got {} {}", op, d,
            dtype_name(t), dtype_name((*w)->dtype()), shape_str((*w)->shape()));
  // Sequence boundaries.
  const std::vector<int64_t>& st = opt.starts;
  if (st.size() < 2)
    raise("[{}] starts must have at least two entries (one sequence), got {}", op, st.size());
  if (st.front() != 0) raise("[{}] starts[0] must be 0, got {}", op, st.front());
  for (size_t i = 1; i < st.size(); ++i)
    if (st[i] < st[i - 1])
      raise("[{}] starts must not decrease, got starts[{}] = {} after starts[{}] = {}", op, i,
            st[i], i - 1, st[i - 1]);
  if (st.back() != rows)
    raise("[{}] the last entry of starts must be T = {} (qkv's rows), got {}", op, rows, st.back());
  // Rotary: positions are P + i, so no offset of any kind; freqs [D / 2].
  const RopeOptions& r = opt.rope;
  if (r.offset != 0)
    raise("[{}] rope.offset must be 0 (row i of a sequence is at position P + i), got {}", op,
          r.offset);
  if (r.offsets) raise("[{}] rope.offsets must be absent (row i of a sequence is at P + i)", op);
  if (r.freqs &&
      (!is_floating(r.freqs->dtype()) || r.freqs->ndim() != 1 || r.freqs->shape(0) != d / 2))
    raise("[{}] rope.freqs must be a floating-point [D / 2] = [{}], got {} {}", op, d / 2,
          dtype_name(r.freqs->dtype()), shape_str(r.freqs->shape()));
  // The shared prefix.
  if (prefix_keys.has_value() != prefix_values.has_value())
    raise("[{}] prefix_keys and prefix_values must both be given or both be absent", op);
  if (prefix_keys) {
    const Array &pk = *prefix_keys, &pv = *prefix_values;
    if (pk.ndim() != 4 || pk.shape(0) != 1 || pk.shape(1) != hk || pk.shape(3) != d ||
        pv.shape() != pk.shape())
      raise(
          "[{}] prefix_keys and prefix_values must both be [1, Hkv = {}, P, D = {}], got {} and "
          "{}",
          op, hk, d, shape_str(pk.shape()), shape_str(pv.shape()));
    if (pk.dtype() != t || pv.dtype() != t)
      raise("[{}] prefix_keys and prefix_values must have qkv's dtype {}, got {} and {}", op,
            dtype_name(t), dtype_name(pk.dtype()), dtype_name(pv.dtype()));
  }
  if (opt.window < 0) raise("[{}] window must be >= 0, got {}", op, opt.window);
  if (!(opt.softcap >= 0)) raise("[{}] softcap must be >= 0, got {}", op, opt.softcap);
  return d;
}

}  // namespace ingot::fast::detail

namespace ingot::fast {

using namespace detail;

Array rms_norm(const Array& x, const std::optional<Array>& weight, RmsNormOptions opt,
               StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm");
  std::vector<Array> inputs{x};
  if (weight) inputs.push_back(*weight);
  return Array(x.shape(), x.dtype(),
               std::make_shared<RmsNorm>(resolve_stream(s, {&x}), opt.eps, opt.add_unit_offset,
                                         opt.weight_in_float32, weight.has_value()),
               std::move(inputs));
}

Array rms_norm_add(const Array& residual, const Array& x, const std::optional<Array>& weight,
                   RmsNormOptions opt, StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm_add");
  if (residual.shape() != x.shape() || residual.dtype() != x.dtype())
    raise("[rms_norm_add] residual must have x's shape and dtype {} {}, got {} {}",
          dtype_name(x.dtype()), shape_str(x.shape()), dtype_name(residual.dtype()),
          shape_str(residual.shape()));
  std::vector<Array> inputs{x};
  if (weight) inputs.push_back(*weight);
  inputs.push_back(residual);
  return Array(
      x.shape(), x.dtype(),
      std::make_shared<RmsNorm>(resolve_stream(s, {&x, &residual}), opt.eps, opt.add_unit_offset,
                                opt.weight_in_float32, weight.has_value(), true),
      std::move(inputs));
}

namespace {
/// Inputs {x, [weight], w^T} of a norm-then-product primitive (w [N, E] of x's dtype).
std::vector<Array> norm_product_inputs(const Array& x, const std::optional<Array>& weight,
                                       const Array& w, const Stream& st, const char* op) {
  if (w.dtype() != x.dtype())
    raise("[{}] w must have x's dtype {}, got {}", op, dtype_name(x.dtype()),
          dtype_name(w.dtype()));
  std::vector<Array> inputs{x};
  if (weight) inputs.push_back(*weight);
  inputs.push_back(transpose(w, {1, 0}, st));
  return inputs;
}
}  // namespace

Array rms_norm_linear(const Array& x, const std::optional<Array>& weight, const Array& w,
                      RmsNormOptions opt, StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm_linear");
  if (w.ndim() != 2 || w.shape(1) != x.shape(-1))
    raise(
        "[rms_norm_linear] w must be a Linear weight [N, E] with E = {} (the last axis of x {}), "
        "got {}",
        x.shape(-1), shape_str(x.shape()), shape_str(w.shape()));
  const Stream st = resolve_stream(s, {&x, &w});
  std::vector<Array> inputs = norm_product_inputs(x, weight, w, st, "rms_norm_linear");
  Shape out = x.shape();
  out.back() = w.shape(0);
  return Array(std::move(out), x.dtype(),
               std::make_shared<RmsNormLinear>(st, opt.eps, opt.add_unit_offset,
                                               opt.weight_in_float32, weight.has_value()),
               std::move(inputs));
}

Array rms_norm_glu(const Array& x, const std::optional<Array>& weight, const Array& w,
                   GatedActivation act, RmsNormOptions opt, StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm_glu");
  if (w.ndim() != 2 || w.shape(1) != x.shape(-1) || w.shape(0) % 2 != 0)
    raise(
        "[rms_norm_glu] w must be stacked gate|up Linear weights [2I, E] with E = {} (the last "
        "axis of x {}), got {}",
        x.shape(-1), shape_str(x.shape()), shape_str(w.shape()));
  const Stream st = resolve_stream(s, {&x, &w});
  std::vector<Array> inputs = norm_product_inputs(x, weight, w, st, "rms_norm_glu");
  Shape out = x.shape();
  out.back() = w.shape(0) / 2;
  return Array(std::move(out), x.dtype(),
               std::make_shared<RmsNormGlu>(st, opt.eps, opt.add_unit_offset, opt.weight_in_float32,
                                            weight.has_value(), static_cast<int>(act)),
               std::move(inputs));
}

std::vector<Array> rms_norm_add_linear(const Array& residual, const Array& y,
                                       const std::optional<Array>& post_weight,
                                       RmsNormOptions post_opt, const std::optional<Array>& weight,
                                       const Array& w, RmsNormOptions opt,
                                       std::optional<GatedActivation> act, StreamOrDevice s) {
  // The separate ops check the arguments and give the two primitives and their inputs.
  const Stream st = resolve_stream(s, {&residual, &y, &w});
  const Array h = rms_norm_add(residual, y, post_weight, post_opt, st);
  const Array p =
      act ? rms_norm_glu(h, weight, w, *act, opt, st) : rms_norm_linear(h, weight, w, opt, st);
  std::vector<Array> inputs = h.inputs();
  inputs.insert(inputs.end(), p.inputs().begin() + 1, p.inputs().end());
  auto prim = std::make_shared<RmsNormAddProduct>(
      st, std::static_pointer_cast<RmsNorm>(h.primitive_ptr()),
      std::static_pointer_cast<UnaryPrimitive>(p.primitive_ptr()));
  return Array::make_arrays({h.shape(), p.shape()}, {h.dtype(), p.dtype()}, std::move(prim),
                            std::move(inputs));
}

namespace {

/// Checks a quantized Linear weight against x (x [..., K] of float32/bfloat16/float16, w
/// [N, K * bits / 32] uint32, scales and biases [N, K / gs] of x's dtype).
void check_quantized_weight(const Array& x, const QuantizedLinearWeight& w, const char* op) {
  check_quantize_options(w.opt, op);
  if (x.dtype() != float32 && x.dtype() != bfloat16 && x.dtype() != float16)
    raise("[{}] x must be float32, bfloat16 or float16, got {} {}", op, dtype_name(x.dtype()),
          shape_str(x.shape()));
  if (x.ndim() < 1) raise("[{}] x must have at least one dimension, got a scalar", op);
  if (w.w.dtype() != uint32 || w.w.ndim() != 2)
    raise("[{}] the quantized weight must be 2-d uint32, got {} {}", op, dtype_name(w.w.dtype()),
          shape_str(w.w.shape()));
  const int64_t k = w.w.shape(1) * (32 / w.opt.bits);
  if (k != x.shape(-1))
    raise("[{}] x {} does not fit the quantized weight {} holding {} x {} values", op,
          shape_str(x.shape()), shape_str(w.w.shape()), w.w.shape(0), k);
  const Shape ss{w.w.shape(0), k / w.opt.group_size};
  if (w.scales.shape() != ss || w.biases.shape() != ss)
    raise("[{}] scales {} and biases {} must have shape {} for the quantized weight {}", op,
          shape_str(w.scales.shape()), shape_str(w.biases.shape()), shape_str(ss),
          shape_str(w.w.shape()));
  if (w.scales.dtype() != x.dtype() || w.biases.dtype() != x.dtype())
    raise("[{}] scales ({}) and biases ({}) must have x's dtype {}", op,
          dtype_name(w.scales.dtype()), dtype_name(w.biases.dtype()), dtype_name(x.dtype()));
}

Array quantized_node(const Array& x, const QuantizedLinearWeight& w, QuantizedMatmulFusion f,
                     const std::optional<Array>& norm_weight, const std::optional<Array>& residual,
                     StreamOrDevice s) {
  std::vector<Array> inputs{x, w.w, w.scales, w.biases};
  if (norm_weight) inputs.push_back(*norm_weight);
  if (residual) inputs.push_back(*residual);
  const Stream st = resolve_stream(s, inputs);
  Shape out = x.shape();
  out.back() = w.w.shape(0) / (f.gate > 0 ? 2 : 1);
  return Array(std::move(out), x.dtype(),
               std::make_shared<QuantizedMatmul>(st, w.opt.group_size, w.opt.bits, f),
               std::move(inputs));
}

QuantizedMatmulFusion norm_fusion(const std::optional<Array>& weight, const RmsNormOptions& opt) {
  QuantizedMatmulFusion f;
  f.norm = true;
  f.norm_weight = weight.has_value();
  f.eps = opt.eps;
  f.add_unit_offset = opt.add_unit_offset;
  f.weight_in_float32 = opt.weight_in_float32;
  return f;
}

}  // namespace

Array rms_norm_quantized_linear(const Array& x, const std::optional<Array>& weight,
                                const QuantizedLinearWeight& w, RmsNormOptions opt,
                                StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm_quantized_linear");
  check_quantized_weight(x, w, "rms_norm_quantized_linear");
  if (weight && weight->dtype() != x.dtype())
    raise("[rms_norm_quantized_linear] the norm weight must have x's dtype {}, got {}",
          dtype_name(x.dtype()), dtype_name(weight->dtype()));
  return quantized_node(x, w, norm_fusion(weight, opt), weight, std::nullopt, s);
}

Array rms_norm_quantized_glu(const Array& x, const std::optional<Array>& weight,
                             const QuantizedLinearWeight& w, GatedActivation act,
                             RmsNormOptions opt, StreamOrDevice s) {
  check_norm_args(x, weight, std::nullopt, "rms_norm_quantized_glu");
  check_quantized_weight(x, w, "rms_norm_quantized_glu");
  if (w.w.shape(0) % 2 != 0)
    raise("[rms_norm_quantized_glu] w must be stacked gate|up rows [2I, ...], got {} rows",
          w.w.shape(0));
  if (weight && weight->dtype() != x.dtype())
    raise("[rms_norm_quantized_glu] the norm weight must have x's dtype {}, got {}",
          dtype_name(x.dtype()), dtype_name(weight->dtype()));
  QuantizedMatmulFusion f = norm_fusion(weight, opt);
  f.gate = static_cast<int>(act) + 1;
  return quantized_node(x, w, f, weight, std::nullopt, s);
}

Array quantized_linear_add(const Array& residual, const Array& x, const QuantizedLinearWeight& w,
                           StreamOrDevice s) {
  check_quantized_weight(x, w, "quantized_linear_add");
  Shape out = x.shape();
  out.back() = w.w.shape(0);
  if (residual.shape() != out || residual.dtype() != x.dtype())
    raise("[quantized_linear_add] residual {} ({}) must have the output's shape {} and dtype {}",
          shape_str(residual.shape()), dtype_name(residual.dtype()), shape_str(out),
          dtype_name(x.dtype()));
  QuantizedMatmulFusion f;
  f.residual = true;
  return quantized_node(x, w, f, std::nullopt, residual, s);
}

Array layer_norm(const Array& x, const std::optional<Array>& weight,
                 const std::optional<Array>& bias, float eps, StreamOrDevice s) {
  check_norm_args(x, weight, bias, "layer_norm");
  std::vector<Array> inputs{x};
  if (weight) inputs.push_back(*weight);
  if (bias) inputs.push_back(*bias);
  return Array(x.shape(), x.dtype(),
               std::make_shared<LayerNorm>(resolve_stream(s, {&x}), eps, weight.has_value(),
                                           bias.has_value()),
               std::move(inputs));
}

Array rope(const Array& x, int dims, const RopeOptions& opt, StreamOrDevice s) {
  check_rope_args(x, dims, opt);
  std::vector<Array> inputs{x};
  if (opt.offsets) inputs.push_back(*opt.offsets);
  if (opt.freqs) inputs.push_back(*opt.freqs);
  return Array(
      x.shape(), x.dtype(),
      std::make_shared<Rope>(resolve_stream(s, {&x}), dims, opt.traditional, opt.base, opt.scale,
                             opt.offset, opt.offsets.has_value(), opt.freqs.has_value()),
      std::move(inputs));
}

namespace {

/// RopeKvUpdate's primitive and inputs for rope_kv_update's (checked) arguments.
std::pair<std::shared_ptr<RopeKvUpdate>, std::vector<Array>> rope_kv_primitive(
    const Array& qkv, const std::optional<Array>& q_norm, const std::optional<Array>& k_norm,
    const Array& keys, const Array& values, const Array& column, const RopeKvOptions& opt,
    const Stream& st) {
  std::vector<Array> inputs{qkv};
  if (q_norm) {
    inputs.push_back(*q_norm);
    inputs.push_back(*k_norm);
  }
  if (opt.rope.offsets) inputs.push_back(*opt.rope.offsets);
  if (opt.rope.freqs) inputs.push_back(*opt.rope.freqs);
  inputs.push_back(keys);
  inputs.push_back(values);
  inputs.push_back(column);
  const RopeOptions& r = opt.rope;
  auto p = std::make_shared<RopeKvUpdate>(
      st, opt.n_heads, opt.n_kv_heads, q_norm.has_value(), opt.norm.eps, opt.norm.add_unit_offset,
      opt.norm.weight_in_float32, r.traditional, r.base, r.scale, r.offset, r.offsets.has_value(),
      r.freqs.has_value());
  return {std::move(p), std::move(inputs)};
}

}  // namespace

std::vector<Array> rope_kv_update(const Array& qkv, const std::optional<Array>& q_norm,
                                  const std::optional<Array>& k_norm, const Array& keys,
                                  const Array& values, const Array& column,
                                  const RopeKvOptions& opt, StreamOrDevice s) {
  const int64_t d = check_rope_kv_args(qkv, q_norm, k_norm, keys, values, column, opt);
  const Stream st = resolve_stream(s, {&qkv, &keys, &values, &column});
  auto [p, inputs] = rope_kv_primitive(qkv, q_norm, k_norm, keys, values, column, opt, st);
  return Array::make_arrays(
      {{qkv.shape(0), opt.n_heads, qkv.shape(1), d}, keys.shape(), values.shape()},
      {qkv.dtype(), keys.dtype(), values.dtype()}, std::move(p), std::move(inputs));
}

std::vector<Array> rope_kv_attention(const Array& qkv, const std::optional<Array>& q_norm,
                                     const std::optional<Array>& k_norm, const Array& keys,
                                     const Array& values, const Array& column,
                                     const std::optional<Array>& mask, const RopeKvOptions& opt,
                                     float scale, StreamOrDevice s) {
  const int64_t d = check_rope_kv_args(qkv, q_norm, k_norm, keys, values, column, opt);
  const Shape q_shape{qkv.shape(0), opt.n_heads, qkv.shape(1), d};
  if (opt.n_heads % opt.n_kv_heads != 0)
    raise("[rope_kv_attention] n_heads {} must be a multiple of n_kv_heads {}", opt.n_heads,
          opt.n_kv_heads);
  const SdpaMask mk = check_sdpa_mask(mask, {q_shape[0], q_shape[1], q_shape[2], keys.shape(2)},
                                      "rope_kv_attention");
  const Stream st = resolve_stream(s, {&qkv, &keys, &values, &column});
  auto [kv, inputs] = rope_kv_primitive(qkv, q_norm, k_norm, keys, values, column, opt, st);
  if (mask) inputs.push_back(*mask);
  auto p = std::make_shared<RopeKvAttention>(st, std::move(kv), scale, mk);
  return Array::make_arrays({q_shape, keys.shape(), values.shape()},
                            {qkv.dtype(), keys.dtype(), values.dtype()}, std::move(p),
                            std::move(inputs));
}

Array scaled_dot_product_attention(const Array& q, const Array& k, const Array& v,
                                   const SdpaOptions& opt, StreamOrDevice s) {
  SdpaMask mk = check_sdpa_args(q, k, v, opt);
  std::vector<Array> inputs{q, k, v};
  if (opt.mask) inputs.push_back(*opt.mask);
  Shape out{q.shape(0), q.shape(1), q.shape(2), v.shape(3)};
  return Array(out, q.dtype(),
               std::make_shared<ScaledDotProductAttention>(resolve_stream(s, {&q}), opt.scale,
                                                           opt.causal, opt.window, opt.softcap, mk),
               std::move(inputs));
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
  const Stream st = resolve_stream(s, {&x, &w_qkv, &keys, &values, &column, &mask});
  // The order of DecodeBlock::slots().
  std::vector<Array> inputs{x, input_norm, w_qkv};
  if (q_norm) {
    inputs.push_back(*q_norm);
    inputs.push_back(*k_norm);
  }
  inputs.insert(inputs.end(), {w_o, post_norm, w_gate_up, w_down, *opt.rope.offsets});
  if (opt.rope.freqs) inputs.push_back(*opt.rope.freqs);
  inputs.insert(inputs.end(), {keys, values, column, mask});
  const RopeOptions& r = opt.rope;
  auto p = std::make_shared<DecodeBlock>(
      st, opt.n_heads, opt.n_kv_heads, q_norm.has_value(), opt.norm.eps, opt.norm.add_unit_offset,
      opt.norm.weight_in_float32, opt.qk_norm.eps, opt.qk_norm.add_unit_offset,
      opt.qk_norm.weight_in_float32, r.traditional, r.base, r.scale, r.freqs.has_value(), opt.scale,
      static_cast<int>(opt.act));
  return Array::make_arrays({x.shape(), keys.shape(), values.shape()},
                            {x.dtype(), keys.dtype(), values.dtype()}, std::move(p),
                            std::move(inputs));
}

Array packed_attention(const Array& qkv, const std::optional<Array>& q_norm,
                       const std::optional<Array>& k_norm, const std::optional<Array>& prefix_keys,
                       const std::optional<Array>& prefix_values, const PackedAttentionOptions& opt,
                       StreamOrDevice s) {
  const int64_t d =
      check_packed_attention_args(qkv, q_norm, k_norm, prefix_keys, prefix_values, opt);
  const Stream st = resolve_stream(
      s, {&qkv, prefix_keys ? &*prefix_keys : nullptr, prefix_values ? &*prefix_values : nullptr});
  const int64_t t = qkv.shape(0), hd = int64_t{opt.n_heads} * d;
  if (t == 0) return zeros({0, hd}, qkv.dtype(), st);
  // The GPU kernel covers 16-bit problems with D in {64, 128, 256}; others run as the ops.
  const bool half = qkv.dtype() == Dtype::bfloat16 || qkv.dtype() == Dtype::float16;
  if (st.device.type == Device::Type::cuda && !(half && (d == 64 || d == 128 || d == 256)))
    return ref::packed_attention(qkv, q_norm, k_norm, prefix_keys, prefix_values, opt, st);
  std::vector<int32_t> starts(opt.starts.size());
  int64_t max_len = 0;
  for (size_t i = 0; i < starts.size(); ++i) {
    starts[i] = static_cast<int32_t>(opt.starts[i]);
    if (i > 0) max_len = std::max(max_len, opt.starts[i] - opt.starts[i - 1]);
  }
  // The order of PackedAttention::slots().
  std::vector<Array> inputs{qkv};
  if (q_norm) {
    inputs.push_back(*q_norm);
    inputs.push_back(*k_norm);
  }
  inputs.emplace_back(starts, Shape{static_cast<int64_t>(starts.size())}, Dtype::int32);
  if (opt.rope.freqs) inputs.push_back(*opt.rope.freqs);
  if (prefix_keys) {
    inputs.push_back(*prefix_keys);
    inputs.push_back(*prefix_values);
  }
  const RopeOptions& r = opt.rope;
  const RmsNormOptions& n = opt.qk_norm;
  auto p = std::make_shared<PackedAttention>(
      st, opt.n_heads, opt.n_kv_heads, q_norm.has_value(), n.eps, n.add_unit_offset,
      n.weight_in_float32, r.traditional, r.base, r.scale, r.freqs.has_value(), opt.scale,
      opt.window, opt.softcap, prefix_keys.has_value(), max_len);
  return Array({t, hd}, qkv.dtype(), std::move(p), std::move(inputs));
}

}  // namespace ingot::fast
