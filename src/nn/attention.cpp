// Attention block (see attention.h).
#include "nn/attention.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/transforms/autodiff.h"
#include "util/env.h"

namespace ingot::nn {

Array last_rows(const Array& x, int64_t n) {
  const int64_t l = x.shape(1);
  if (n <= 0 || n >= l) return x;
  return slice_axis(x, 1, l - n, l);
}

namespace {

/// The last row of each sequence of a packed batch (starts[s + 1] - 1), as int32 indices [N].
Array last_of_each(const std::vector<int64_t>& starts) {
  std::vector<int32_t> rows;
  for (size_t s = 1; s < starts.size(); ++s) rows.push_back(static_cast<int32_t>(starts[s] - 1));
  return Array(rows, {static_cast<int64_t>(rows.size())}, int32);
}

fast::RmsNormOptions fast_options(const RMSNormOptions& o) {
  return {.eps = o.eps, .add_unit_offset = o.unit_offset, .weight_in_float32 = o.weight_in_float32};
}

}  // namespace

Array query_rows(const Array& x, const AttentionInputs& in) {
  if (!in.starts || in.queries != 1) return last_rows(x, in.queries);
  return take(x, last_of_each(*in.starts), 1);
}

Attention::Attention(AttentionConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.n_heads <= 0 || cfg_.n_kv_heads <= 0 || cfg_.head_dim <= 0 ||
      cfg_.n_heads % cfg_.n_kv_heads != 0)
    raise("[attention] invalid heads: {} query heads, {} key/value heads, head_dim {}",
          cfg_.n_heads, cfg_.n_kv_heads, cfg_.head_dim);
  if (cfg_.rope_dims == 0) cfg_.rope_dims = cfg_.head_dim;
  if (cfg_.scale == 0.0f) cfg_.scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
  const int64_t e = cfg_.dims, hd = cfg_.head_dim;
  q_ = register_module("q_proj",
                       std::make_shared<Linear>(e, cfg_.n_heads * hd, cfg_.qkv_bias, cfg_.dtype));
  k_ = register_module(
      "k_proj", std::make_shared<Linear>(e, cfg_.n_kv_heads * hd, cfg_.qkv_bias, cfg_.dtype));
  v_ = register_module(
      "v_proj", std::make_shared<Linear>(e, cfg_.n_kv_heads * hd, cfg_.qkv_bias, cfg_.dtype));
  o_ = register_module("o_proj",
                       std::make_shared<Linear>(cfg_.n_heads * hd, e, cfg_.o_bias, cfg_.dtype));
  if (cfg_.qk_norm) {
    q_norm_ = register_module("q_norm", std::make_shared<RMSNorm>(hd, *cfg_.qk_norm, cfg_.dtype));
    k_norm_ = register_module("k_norm", std::make_shared<RMSNorm>(hd, *cfg_.qk_norm, cfg_.dtype));
  }
}

bool Attention::fuse_projections() {
  stacked_.clear();
  const std::vector<Linear*> layers{q_.get(), k_.get(), v_.get()};
  if (!qkv_.fuse(layers)) return false;
  for (const Linear* l : layers) stacked_.push_back(l->param("weight"));
  if (q_->quantization())
    for (const char* name : {"scales", "biases"})
      for (const Linear* l : layers) stacked_.push_back(l->param(name));
  return true;
}

bool Attention::packs() const {
  const Dtype t = cfg_.dtype;
  if (stacked_.empty() || cfg_.rope_dims != cfg_.head_dim || cfg_.head_dim % 2 != 0 ||
      (t != float32 && t != bfloat16 && t != float16))
    return false;
  // What StackedLinear::product computes: the stack fuse() made, still the layers' parameters.
  const std::vector<const Linear*> layers{q_.get(), k_.get(), v_.get()};
  const bool quantized = stacked_.size() == 3 * layers.size();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Linear& l = *layers[i];
    if (l.branch() || l.row_parallel() || l.has_param("bias") ||
        l.quantization().has_value() != quantized || !l.param("weight").same_node(stacked_[i]))
      return false;
    if (quantized && (!l.param("scales").same_node(stacked_[3 + i]) ||
                      !l.param("biases").same_node(stacked_[6 + i])))
      return false;
  }
  return true;
}

Array Attention::operator()(const Array& x, const AttentionInputs& in) const {
  return run(x, in, nullptr, nullptr);
}

Array Attention::operator()(const Array& x, const AttentionInputs& in,
                            const Array& residual) const {
  return run(x, in, &residual, nullptr);
}

Array Attention::normed(const Array& x, const RMSNorm& norm, const AttentionInputs& in,
                        const Array* residual) const {
  return run(x, in, residual, &norm);
}

std::optional<std::pair<Array, Array>> Attention::add_normed(const Array& residual,
                                                             const Array& delta,
                                                             const RMSNorm& post,
                                                             const RMSNorm& norm,
                                                             const AttentionInputs& in) const {
  static const bool on = env::flag("INGOT_NORM_ADD_QKV", false);
  if (!on || delta.device().type != Device::Type::cuda || is_tracing() || in.starts ||
      delta.ndim() != 3 || delta.shape(2) != cfg_.dims)
    return std::nullopt;
  const std::optional<Array> stack = qkv_.dense_stack();
  if (!stack) return std::nullopt;
  const std::vector<Array> xq =
      fast::rms_norm_add_linear(residual, delta, post.param("weight"), fast_options(post.options()),
                                norm.param("weight"), *stack, fast_options(norm.options()));
  return std::make_pair(xq[0], run(xq[0], in, nullptr, nullptr, &xq[1]));
}

Array Attention::run(const Array& x_in, const AttentionInputs& in, const Array* residual,
                     const RMSNorm* norm, const Array* qkv_in) const {
  if (x_in.ndim() != 3 || x_in.shape(2) != cfg_.dims)
    raise("[attention] expected x of shape [B, L, {}], got {}", cfg_.dims, shape_str(x_in.shape()));
  if (in.starts) return run_packed(x_in, in, residual, norm);
  // With a norm: fused into the stacked q/k/v product when it can be (no branch reads x then);
  // otherwise x is normalised first.
  std::optional<Array> qkv = qkv_in ? std::optional<Array>(*qkv_in)
                             : norm ? qkv_.normed_product(x_in, *norm)
                                    : std::nullopt;
  const Array x = norm && !qkv ? (*norm)(x_in) : x_in;
  if (!qkv) qkv = qkv_.product(x);
  const int64_t b = x.shape(0), l = x.shape(1);
  fast::RopeOptions ro{.traditional = cfg_.rope_traditional,
                       .base = cfg_.rope_base,
                       .scale = cfg_.rope_scale,
                       .offset = in.cache ? in.cache->offset() : in.offset,
                       .offsets = in.offsets,
                       .freqs = cfg_.rope_freqs};
  std::optional<Array> mask = in.mask;
  Array q, k, v;
  if (in.cache && in.cache->attends()) {
    // A paged cache: it stores k, v and computes the attention (per-row positions in offsets).
    AttentionInputs heads_only = in;
    heads_only.cache = nullptr;
    project_heads(qkv, x, heads_only, ro, mask, q, k, v);
    Array o = in.cache->attend(q, k, v, cfg_.scale, cfg_.window, cfg_.softcap);  // [B, H, L, D]
    const int64_t nq = in.queries > 0 && in.queries < l ? in.queries : l;
    if (nq < l) o = slice_axis(o, 2, l - nq, l);
    o = reshape(transpose(o, {0, 2, 1, 3}), {b, nq, cfg_.n_heads * cfg_.head_dim});
    return residual ? o_->add_to(*residual, o) : (*o_)(o);
  }
  // q/k norms, rotary and the key/value writes in one primitive where the cache allows; for
  // one new token over a fixed-size cache with the attention too.
  bool attended = false;
  if (auto fused = fused_cache_update(qkv, in, ro, &attended)) {
    if (attended) {
      const Array o =
          reshape(transpose((*fused)[0], {0, 2, 1, 3}), {b, l, cfg_.n_heads * cfg_.head_dim});
      return residual ? o_->add_to(*residual, o) : (*o_)(o);
    }
    q = (*fused)[0];
    k = (*fused)[1];
    v = (*fused)[2];
    if (!mask) mask = in.cache->mask(l);
  } else {
    project_heads(qkv, x, in, ro, mask, q, k, v);
  }
  // Only the last `n` query rows (their mask rows too); the keys and values keep every row.
  const int64_t n = in.queries > 0 && in.queries < l ? in.queries : l;
  if (n < l) {
    q = slice_axis(q, 2, l - n, l);
    if (mask && mask->ndim() >= 2 && mask->shape(-2) == l)
      mask = slice_axis(*mask, mask->ndim() - 2, l - n, l);
  }
  fast::SdpaOptions so{.scale = cfg_.scale,
                       .causal = !mask.has_value(),
                       .mask = mask,
                       .window = mask ? 0 : cfg_.window,
                       .softcap = cfg_.softcap};
  Array o = fast::scaled_dot_product_attention(q, k, v, so);  // [B, H, n, D]
  o = reshape(transpose(o, {0, 2, 1, 3}), {b, n, cfg_.n_heads * cfg_.head_dim});
  return residual ? o_->add_to(*residual, o) : (*o_)(o);
}

Array Attention::run_packed(const Array& x_in, const AttentionInputs& in, const Array* residual,
                            const RMSNorm* norm) const {
  const std::vector<int64_t>& starts = *in.starts;
  const int64_t t = x_in.shape(1);
  if (x_in.shape(0) != 1)
    raise("[attention] a packed batch is one row [1, T, {}], got x of shape {}", cfg_.dims,
          shape_str(x_in.shape()));
  if (in.cache || in.mask || in.offsets)
    raise("[attention] a packed batch (starts) takes no cache, mask or per-row offsets");
  if (in.queries != 0 && in.queries != 1)
    raise(
        "[attention] a packed batch computes every row (queries 0) or each sequence's last (1), "
        "got queries {}",
        in.queries);
  if (starts.size() < 2 || starts.front() != 0 || starts.back() != t)
    raise("[attention] packed batch starts must go from 0 to the {} rows of x, got {} entries ({})",
          t, starts.size(), starts.empty() ? "none" : std::to_string(starts.back()) + " last");
  for (size_t s = 1; s < starts.size(); ++s)
    if (starts[s] <= starts[s - 1])
      raise("[attention] packed batch sequence {} is empty or reversed (starts {} then {})", s - 1,
            starts[s - 1], starts[s]);
  if (in.prefix_keys.has_value() != in.prefix_values.has_value())
    raise("[attention] a packed batch's prefix needs both keys and values");
  if (cfg_.rope_dims != cfg_.head_dim)
    raise("[attention] packed batches need full rotary, got {} of {} features rotated",
          cfg_.rope_dims, cfg_.head_dim);
  // The stacked q|k|v product (the norm fused in where it can be).
  std::optional<Array> qkv = norm ? qkv_.normed_product(x_in, *norm) : std::nullopt;
  if (!qkv) qkv = qkv_.product(norm ? (*norm)(x_in) : x_in);
  if (!qkv || qkv_.has_branch(0, 3))
    raise(
        "[attention] packed batches need the q/k/v projections stacked (fuse_projections) "
        "without low-rank branches");
  fast::PackedAttentionOptions opt{.n_heads = cfg_.n_heads,
                                   .n_kv_heads = cfg_.n_kv_heads,
                                   .starts = starts,
                                   .rope = {.traditional = cfg_.rope_traditional,
                                            .base = cfg_.rope_base,
                                            .scale = cfg_.rope_scale,
                                            .freqs = cfg_.rope_freqs},
                                   .scale = cfg_.scale,
                                   .window = cfg_.window,
                                   .softcap = cfg_.softcap};
  std::optional<Array> qw, kw;
  if (q_norm_) {
    opt.qk_norm = fast_options(*cfg_.qk_norm);
    qw = q_norm_->param("weight");
    kw = k_norm_->param("weight");
  }
  Array o = fast::packed_attention(reshape(*qkv, {t, qkv->shape(2)}), qw, kw, in.prefix_keys,
                                   in.prefix_values, opt);  // [T, H D]
  // Only each sequence's last row goes on (the output projection, the MLP after it).
  if (in.queries == 1) o = take(o, last_of_each(starts), 0);
  o = reshape(o, {1, o.shape(0), cfg_.n_heads * cfg_.head_dim});
  return residual ? o_->add_to(*residual, o) : (*o_)(o);
}

namespace {

/// INGOT_PREFILL_FUSED_KV=0: growing caches take their new keys/values through
/// update_and_fetch (the separate norm, rope and copy kernels) instead of rope_kv_update.
bool append_fused() {
  static const bool on = env::flag("INGOT_PREFILL_FUSED_KV", true);
  return on;
}

/// INGOT_DECODE_FUSED_KV=0: a fixed-size cache of a model without q/k norms runs the separate
/// rope and cache-write ops (static_cache.cpp reads the same switch for every model).
bool fused_kv_without_norms() {
  static const bool on = env::flag("INGOT_DECODE_FUSED_KV", true);
  return on;
}

/// INGOT_DECODE_ROPE_KV_ATTENTION=1: a decode step over a fixed-size cache runs rope_kv_update
/// and the attention as one primitive, fast::rope_kv_attention (one kernel on a GPU). Off by
/// default: on the H100 (session 35, decode b1) it was +1.5% for Qwen3-0.6B but -2% for
/// Llama-3.2-1B and -2.5% for Gemma3-1B against the two kernels (BENCHMARKS.md).
bool attend_fixed() {
  static const bool on = env::flag("INGOT_DECODE_ROPE_KV_ATTENTION", false);
  return on;
}

}  // namespace

std::optional<std::vector<Array>> Attention::fused_cache_update(const std::optional<Array>& qkv,
                                                                const AttentionInputs& in,
                                                                const fast::RopeOptions& ro,
                                                                bool* attended) const {
  if (!qkv || !in.cache || qkv_.has_branch(0, 3) || cfg_.rope_dims != cfg_.head_dim ||
      cfg_.head_dim % 16 != 0 || cfg_.head_dim > 256)
    return std::nullopt;
  const Dtype t = qkv->dtype();
  if (t != float32 && t != bfloat16 && t != float16) return std::nullopt;
  if (q_norm_ && (q_norm_->param("weight").dtype() != t || k_norm_->param("weight").dtype() != t))
    return std::nullopt;
  const int64_t b = qkv->shape(0), l = qkv->shape(1);
  Array keys, values, column;
  const bool fixed = in.cache->fixed(&keys, &values, &column);
  if (fixed) {
    // A fixed-size cache (decode). With q/k norms (Qwen3, Gemma3) six launches become one,
    // decode +20% / +9% on the H200. Without them (Llama) three become one: 5% slower on the
    // H200 in session 8, but +5.6% for Llama-3.2-1B single-stream decode on the H100 in
    // session 35 (BENCHMARKS.md), so it is taken there too (INGOT_DECODE_FUSED_KV=0: not).
    if ((!q_norm_ && !fused_kv_without_norms()) || keys.dtype() != t ||
        keys.shape() != Shape{b, cfg_.n_kv_heads, keys.shape(2), cfg_.head_dim})
      return std::nullopt;
  } else if (!append_fused() || is_tracing() ||
             !in.cache->prepare_append({b, cfg_.n_kv_heads, l, cfg_.head_dim}, t, qkv->device(),
                                       &keys, &values, &column)) {
    // A growing cache (prefill, scoring, classification): the new columns written in place,
    // one kernel instead of the q/k norms, rotations, head transposes and cache copies.
    return std::nullopt;
  }
  fast::RopeKvOptions opt{.n_heads = cfg_.n_heads, .n_kv_heads = cfg_.n_kv_heads, .rope = ro};
  std::optional<Array> qw, kw;
  if (q_norm_) {
    opt.norm = fast::RmsNormOptions{.eps = cfg_.qk_norm->eps,
                                    .add_unit_offset = cfg_.qk_norm->unit_offset,
                                    .weight_in_float32 = cfg_.qk_norm->weight_in_float32};
    qw = q_norm_->param("weight");
    kw = k_norm_->param("weight");
  }
  if (fixed && attended && attend_fixed() && l == 1 && cfg_.softcap == 0.0f &&
      (in.queries <= 0 || in.queries >= l)) {
    // One new token a row: rope_kv_update and the attention over the updated cache as one
    // primitive (one kernel on a GPU; INGOT_DECODE_ROPE_KV_ATTENTION=1 only).
    const std::optional<Array> mask = in.mask ? in.mask : in.cache->mask(l);
    if (mask) {
      std::vector<Array> out = fast::rope_kv_attention(
          *qkv, qw, kw, std::move(keys), std::move(values), column, mask, opt, cfg_.scale);
      in.cache->set_fixed(out[1], out[2]);
      *attended = true;
      return out;
    }
  }
  std::vector<Array> out =
      fast::rope_kv_update(*qkv, qw, kw, std::move(keys), std::move(values), column, opt);
  if (fixed) {
    in.cache->set_fixed(out[1], out[2]);
  } else {
    auto kv = in.cache->finish_append(out[1], out[2], l);
    out[1] = kv.first;
    out[2] = kv.second;
  }
  return out;
}

namespace {

// set_decode_block's override: -1 none (the environment), 0 off, 1 on.
std::atomic<int> decode_block_override{-1};
std::atomic<int64_t> decode_block_builds{0};

bool decode_block_on() {
  // Off by default: on the H200 the persistent kernel is not faster yet (Llama-3.2-1B decode
  // 722 against 852 tok/s, Qwen3-0.6B level; BENCHMARKS.md). INGOT_DECODE_BLOCK=1 turns it on.
  static const bool from_env = env::flag("INGOT_DECODE_BLOCK", false);
  const int o = decode_block_override.load();
  return o < 0 ? from_env : o == 1;
}

bool same_options(const RMSNormOptions& a, const RMSNormOptions& b) {
  return a.eps == b.eps && a.unit_offset == b.unit_offset &&
         a.weight_in_float32 == b.weight_in_float32;
}

}  // namespace

void set_decode_block(std::optional<bool> on) {
  decode_block_override.store(on ? (*on ? 1 : 0) : -1);
}

int64_t decode_blocks_built() {
  return decode_block_builds.load();
}

std::optional<Array> Attention::decode_block(const Array& x, const RMSNorm& input_norm,
                                             const AttentionInputs& in, const GatedMLP& mlp,
                                             const RMSNorm& post_norm) const {
  // The call: decode (one row per sequence, a few sequences) of a 16-bit model on the GPU.
  const Dtype t = x.dtype();
  if (!decode_block_on() || x.device().type != Device::Type::cuda || is_tracing() ||
      (t != bfloat16 && t != float16) || x.ndim() != 3 || x.shape(1) != 1 || x.shape(0) < 1 ||
      x.shape(0) > kDecodeBlockMaxRows || x.shape(2) != cfg_.dims)
    return std::nullopt;
  const int64_t b = x.shape(0), d = cfg_.head_dim;
  // The cache: fixed buffers written at a device column, with a bool mask [B, 1, 1, C]; the
  // positions per row; no mask of the caller's.
  Array keys, values, column;
  if (!in.cache || !in.cache->fixed(&keys, &values, &column) || !in.offsets || in.mask)
    return std::nullopt;
  const std::optional<Array> mask = in.cache->mask(1);
  if (!mask || mask->dtype() != bool_ || mask->shape() != Shape{b, 1, 1, keys.shape(2)} ||
      keys.dtype() != t || values.dtype() != t ||
      keys.shape() != Shape{b, cfg_.n_kv_heads, keys.shape(2), d} ||
      in.offsets->shape() != Shape{b} || !is_integral(in.offsets->dtype()) ||
      in.offsets->dtype() == bool_)
    return std::nullopt;
  // The block: full rotary, no softcap, a head size the kernel takes, the same norm options.
  if (cfg_.softcap != 0 || cfg_.rope_dims != cfg_.head_dim || (d != 64 && d != 128 && d != 256) ||
      !same_options(input_norm.options(), post_norm.options()))
    return std::nullopt;
  // The weights: dense, of x's dtype, on x's device.
  Array w_gate_up, w_down;
  fast::GatedActivation act{};
  const std::optional<Array> w_qkv = qkv_.dense_stack();
  const std::optional<Array> w_o = o_->dense_weight();
  if (!w_qkv || !w_o || !mlp.dense_glu(&w_gate_up, &w_down, &act)) return std::nullopt;
  std::optional<Array> qw, kw;
  if (q_norm_) {
    qw = q_norm_->param("weight");
    kw = k_norm_->param("weight");
  }
  for (const std::optional<Array>& w :
       {w_qkv, w_o, std::optional<Array>(w_gate_up), std::optional<Array>(w_down),
        std::optional<Array>(input_norm.param("weight")),
        std::optional<Array>(post_norm.param("weight")), qw, kw})
    if (w && (w->dtype() != t || w->device() != x.device())) return std::nullopt;
  if (cfg_.rope_freqs && cfg_.rope_freqs->device() != x.device()) return std::nullopt;
  if (w_qkv->shape(0) != (cfg_.n_heads + 2 * int64_t{cfg_.n_kv_heads}) * d) return std::nullopt;

  fast::DecodeBlockOptions opt{.n_heads = cfg_.n_heads,
                               .n_kv_heads = cfg_.n_kv_heads,
                               .norm = fast_options(input_norm.options()),
                               .rope = {.traditional = cfg_.rope_traditional,
                                        .base = cfg_.rope_base,
                                        .scale = cfg_.rope_scale,
                                        .offsets = in.offsets,
                                        .freqs = cfg_.rope_freqs},
                               .scale = cfg_.scale,
                               .act = act};
  if (cfg_.qk_norm) opt.qk_norm = fast_options(*cfg_.qk_norm);
  std::vector<Array> out = fast::decode_block(
      x, input_norm.param("weight"), *w_qkv, qw, kw, *w_o, post_norm.param("weight"), w_gate_up,
      w_down, std::move(keys), std::move(values), column, *mask, opt);
  in.cache->set_fixed(out[1], out[2]);
  decode_block_builds.fetch_add(1);
  return out[0];
}

void Attention::project_heads(const std::optional<Array>& qkv, const Array& x,
                              const AttentionInputs& in, const fast::RopeOptions& ro,
                              std::optional<Array>& mask, Array& q, Array& k, Array& v) const {
  const int64_t b = x.shape(0), l = x.shape(1);
  const int64_t hd = cfg_.head_dim;
  // [B, L, H*D] -> [B, H, L, D]
  auto heads = [&](const Array& t, int h) {
    return transpose(reshape(t, {b, l, h, hd}), {0, 2, 1, 3});
  };
  // Without q/k norms (and branches on q/k), q and k rotate in one pass over the stacked
  // product's q|k columns.
  const bool rope_together = qkv && !q_norm_ && !qkv_.has_branch(0, 2);
  if (qkv) {
    // One cast of x for every low-rank branch of q, k and v.
    const std::optional<Array> xc =
        qkv_.branch_input(x, rope_together ? 2 : 0, rope_together ? 1 : 3);
    const Array* xcp = xc ? &*xc : nullptr;
    v = heads(qkv_.output(*qkv, x, 2, xcp), cfg_.n_kv_heads);
    if (!rope_together) {
      q = heads(qkv_.output(*qkv, x, 0, xcp), cfg_.n_heads);
      k = heads(qkv_.output(*qkv, x, 1, xcp), cfg_.n_kv_heads);
    }
  } else {
    q = heads((*q_)(x), cfg_.n_heads);
    k = heads((*k_)(x), cfg_.n_kv_heads);
    v = heads((*v_)(x), cfg_.n_kv_heads);
  }
  if (q_norm_) {
    q = (*q_norm_)(q);
    k = (*k_norm_)(k);
  }
  if (rope_together) {
    const Array qk = fast::rope(heads(qkv_.columns(*qkv, 0, 2), cfg_.n_heads + cfg_.n_kv_heads),
                                cfg_.rope_dims, ro);
    const int64_t h = cfg_.n_heads, hk = cfg_.n_kv_heads;
    q = slice(qk, {0, 0, 0, 0}, {b, h, l, hd});
    k = slice(qk, {0, h, 0, 0}, {b, h + hk, l, hd});
  } else {
    q = fast::rope(q, cfg_.rope_dims, ro);
    k = fast::rope(k, cfg_.rope_dims, ro);
  }
  if (in.cache) {
    auto kv = in.cache->update_and_fetch(k, v);
    k = kv.first;
    v = kv.second;
    if (!mask) mask = in.cache->mask(l);
  }
}

}  // namespace ingot::nn
