// Primitives of the fused "fast" ops: RmsNorm, RmsNormGrad, ActivationGrad, RmsNormLinear,
// RmsNormGlu, RmsNormAddProduct, LayerNorm, Rope, RopeKvUpdate, RopeKvAttention,
// ScaledDotProductAttention, DecodeBlock, PackedAttention, ScaledDotProductAttentionGrad, AdamStep,
// SumSquares. Kernels live in backend/cpu/fast_*.cpp; their VJPs (core/fast/fast_vjp.cpp) are
// explicit gradient formulas written with public ops, so higher-order gradients work.
#pragma once

#include <memory>
#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// RMS normalisation over the last axis. Inputs {x}, {x, weight [E]}, and with has_residual a
/// last input residual (x's shape and dtype); output in x's dtype.
/// weight_in_float32: multiply by the weight in float32 and round once (Gemma3); otherwise
/// round the normalised x to x's dtype first, then multiply and round again (HF Llama/Qwen).
/// has_residual (fast::rms_norm_add): the rounded norm is added to the residual and rounded
/// again, as a separate add would.
class RmsNorm : public UnaryPrimitive {
 public:
  RmsNorm(Stream s, float eps, bool add_unit_offset, bool weight_in_float32, bool has_weight,
          bool has_residual = false)
      : UnaryPrimitive(s),
        eps_(eps),
        add_unit_offset_(add_unit_offset),
        weight_in_float32_(weight_in_float32),
        has_weight_(has_weight),
        has_residual_(has_residual) {}
  INGOT_UNARY_PRIMITIVE(RmsNorm)
  INGOT_EQUIVALENT(RmsNorm, std::make_tuple(p->eps_, p->add_unit_offset_, p->weight_in_float32_,
                                            p->has_weight_, p->has_residual_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float eps_;
  const bool add_unit_offset_;
  const bool weight_in_float32_;
  const bool has_weight_;
  const bool has_residual_;
};

/// The gradient of RmsNorm with respect to x in one pass over each row: inputs {x, g} or
/// {x, weight [E], g} (g, the output's cotangent, has x's shape and dtype), output dx in x's
/// dtype. With r = 1 / sqrt(mean(x^2) + eps), n = x r and gw = g * w (w = 1 + weight with
/// add_unit_offset): dx = r * (gw - n * mean(gw * n)), in float32 (float64 for float64) and
/// rounded once. The same math as RmsNorm's composed VJP (which serves INGOT_FUSED_NORM_GRAD=0)
/// up to the order of the row sums; its own VJP differentiates that composition.
class RmsNormGrad : public UnaryPrimitive {
 public:
  RmsNormGrad(Stream s, float eps, bool add_unit_offset, bool has_weight)
      : UnaryPrimitive(s), eps_(eps), add_unit_offset_(add_unit_offset), has_weight_(has_weight) {}
  INGOT_UNARY_PRIMITIVE(RmsNormGrad)
  INGOT_EQUIVALENT(RmsNormGrad, std::make_tuple(p->eps_, p->add_unit_offset_, p->has_weight_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float eps_;
  const bool add_unit_offset_;
  const bool has_weight_;
};

/// The VJP of an activation (act 0 silu, 1 gelu, 2 gelu_tanh): inputs {x, g} of one float dtype
/// and shape, output g * act'(x) evaluated in float32 (float64 for float64) and rounded once,
/// where the composed VJP (INGOT_FUSED_ACT_GRAD=0) rounds after each of its 6-12 ops. Its own
/// VJP differentiates that composition.
class ActivationGrad : public UnaryPrimitive {
 public:
  ActivationGrad(Stream s, int act) : UnaryPrimitive(s), act_(act) {}
  INGOT_UNARY_PRIMITIVE(ActivationGrad)
  INGOT_EQUIVALENT(ActivationGrad, std::make_tuple(p->act_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const int act_;
};

/// rms_norm(x, weight) @ wt in one primitive: inputs {x, wt} or {x, weight [E], wt} with wt
/// [E, N] (a Linear weight's transposed view), output [..., N] in x's dtype. The normalised x is
/// rounded to x's dtype before the product, so the result is the two ops' result; backends
/// may fuse the norm into the product's prologue (CUDA: the few-row GEMV).
class RmsNormLinear : public UnaryPrimitive {
 public:
  RmsNormLinear(Stream s, float eps, bool add_unit_offset, bool weight_in_float32, bool has_weight)
      : UnaryPrimitive(s),
        eps_(eps),
        add_unit_offset_(add_unit_offset),
        weight_in_float32_(weight_in_float32),
        has_weight_(has_weight) {}
  INGOT_UNARY_PRIMITIVE(RmsNormLinear)
  INGOT_EQUIVALENT(RmsNormLinear, std::make_tuple(p->eps_, p->add_unit_offset_,
                                                  p->weight_in_float32_, p->has_weight_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;
  /// The norm alone, as a primitive of its own (the first half of the computation).
  std::shared_ptr<RmsNorm> norm() const {
    return std::make_shared<RmsNorm>(stream(), eps_, add_unit_offset_, weight_in_float32_,
                                     has_weight_);
  }

  const float eps_;
  const bool add_unit_offset_;
  const bool weight_in_float32_;
  const bool has_weight_;
};

/// fast::rms_norm_glu: inputs {x, [weight], wt} with wt [E, 2I] (stacked gate|up Linear
/// weights, transposed); output [..., I] = act(y[..., :I]) * y[..., I:] for y the RmsNormLinear
/// of the same inputs, each step rounded to x's dtype as the separate ops round. act: 0 silu,
/// 1 gelu, 2 gelu_tanh (fast::GatedActivation).
class RmsNormGlu : public UnaryPrimitive {
 public:
  RmsNormGlu(Stream s, float eps, bool add_unit_offset, bool weight_in_float32, bool has_weight,
             int act)
      : UnaryPrimitive(s),
        eps_(eps),
        add_unit_offset_(add_unit_offset),
        weight_in_float32_(weight_in_float32),
        has_weight_(has_weight),
        act_(act) {}
  INGOT_UNARY_PRIMITIVE(RmsNormGlu)
  INGOT_EQUIVALENT(RmsNormGlu, std::make_tuple(p->eps_, p->add_unit_offset_, p->weight_in_float32_,
                                               p->has_weight_, p->act_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;
  /// The stacked product y as a primitive of its own.
  std::shared_ptr<RmsNormLinear> norm_linear() const {
    return std::make_shared<RmsNormLinear>(stream(), eps_, add_unit_offset_, weight_in_float32_,
                                           has_weight_);
  }
  /// The activation as its elementwise primitive (Silu, Gelu or GeluTanh).
  std::shared_ptr<UnaryPrimitive> activation() const;

  const float eps_;
  const bool add_unit_offset_;
  const bool weight_in_float32_;
  const bool has_weight_;
  const int act_;
};

/// fast::rms_norm_add_linear: inputs {y, [post_weight], residual} of add_ (an RmsNorm with
/// has_residual), then product_'s inputs after its x: {[weight], wt}. Outputs {h, p}: h =
/// add_(y, [post_weight], residual), p = product_(h, [weight], wt) with product_ an RmsNormLinear
/// or an RmsNormGlu (see fast.h). No VJP (inference only: a backend fuses the first norm into the
/// product's prologue).
class RmsNormAddProduct : public Primitive {
 public:
  RmsNormAddProduct(Stream s, std::shared_ptr<RmsNorm> add, std::shared_ptr<UnaryPrimitive> product)
      : Primitive(s), add_(std::move(add)), product_(std::move(product)) {}
  INGOT_MULTI_PRIMITIVE(RmsNormAddProduct)
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;
  /// How many of the inputs are add_'s ({y, [post_weight], residual}).
  size_t add_inputs() const { return add_->has_weight_ ? 3 : 2; }
  /// product_ as an RmsNormGlu, or null when it is an RmsNormLinear.
  const RmsNormGlu* glu() const;
  /// product_'s norm and product (the RmsNormLinear of an RmsNormGlu, or product_ itself).
  std::shared_ptr<RmsNormLinear> norm_linear() const;

  const std::shared_ptr<RmsNorm> add_;
  const std::shared_ptr<UnaryPrimitive> product_;
};

/// Layer normalisation over the last axis. Inputs {x[, weight][, bias]} (flags say which);
/// float32 inside, output in x's dtype.
class LayerNorm : public UnaryPrimitive {
 public:
  LayerNorm(Stream s, float eps, bool has_weight, bool has_bias)
      : UnaryPrimitive(s), eps_(eps), has_weight_(has_weight), has_bias_(has_bias) {}
  INGOT_UNARY_PRIMITIVE(LayerNorm)
  INGOT_EQUIVALENT(LayerNorm, std::make_tuple(p->eps_, p->has_weight_, p->has_bias_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float eps_;
  const bool has_weight_;
  const bool has_bias_;
};

/// Rotary embedding of the first dims_ features of x [..., L, D]. Inputs {x[, offsets [B]]
/// [, freqs [dims/2]]}. Angle of row l, pair i: float32(position * scale) * inv_freq[i] with
/// position = offset + l (offsets[b] + l per batch row b = index along axis 0).
/// For 16-bit x, cos/sin are rounded to x's dtype and the products and sum are each rounded,
/// exactly as Hugging Face's apply_rotary_pos_emb does in bf16.
class Rope : public UnaryPrimitive {
 public:
  Rope(Stream s, int dims, bool traditional, float base, float scale, int64_t offset,
       bool has_offsets, bool has_freqs)
      : UnaryPrimitive(s),
        dims_(dims),
        traditional_(traditional),
        base_(base),
        scale_(scale),
        offset_(offset),
        has_offsets_(has_offsets),
        has_freqs_(has_freqs) {}
  INGOT_UNARY_PRIMITIVE(Rope)
  INGOT_EQUIVALENT(Rope, std::make_tuple(p->dims_, p->traditional_, p->base_, p->scale_, p->offset_,
                                         p->has_offsets_, p->has_freqs_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  void print(std::ostream& os) const override;

  const int dims_;
  const bool traditional_;
  const float base_;
  const float scale_;
  const int64_t offset_;
  const bool has_offsets_;
  const bool has_freqs_;
};

/// Kind of mask input of ScaledDotProductAttention.
enum class SdpaMask { none, additive, boolean };

/// fast::rope_kv_update: inputs {qkv, [q_norm, k_norm], [offsets], [freqs], keys, values,
/// column}, outputs {q, keys', values'} (see fast.h). The keys/values buffers are donated to
/// the outputs when nothing else holds them. No VJP (a cache write).
class RopeKvUpdate : public Primitive {
 public:
  RopeKvUpdate(Stream s, int n_heads, int n_kv_heads, bool has_norm, float eps,
               bool add_unit_offset, bool weight_in_float32, bool traditional, float base,
               float scale, int64_t offset, bool has_offsets, bool has_freqs)
      : Primitive(s),
        n_heads_(n_heads),
        n_kv_heads_(n_kv_heads),
        has_norm_(has_norm),
        eps_(eps),
        add_unit_offset_(add_unit_offset),
        weight_in_float32_(weight_in_float32),
        traditional_(traditional),
        base_(base),
        scale_(scale),
        offset_(offset),
        has_offsets_(has_offsets),
        has_freqs_(has_freqs) {}
  INGOT_MULTI_PRIMITIVE(RopeKvUpdate)
  INGOT_EQUIVALENT(RopeKvUpdate,
                   std::make_tuple(p->n_heads_, p->n_kv_heads_, p->has_norm_, p->eps_,
                                   p->add_unit_offset_, p->weight_in_float32_, p->traditional_,
                                   p->base_, p->scale_, p->offset_, p->has_offsets_, p->has_freqs_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;
  /// The norm and rope of q and k as primitives of their own (the separate ops' kernels).
  std::shared_ptr<RmsNorm> norm() const {
    return std::make_shared<RmsNorm>(stream(), eps_, add_unit_offset_, weight_in_float32_, true);
  }
  std::shared_ptr<Rope> rope(int dims) const {
    return std::make_shared<Rope>(stream(), dims, traditional_, base_, scale_, offset_,
                                  has_offsets_, has_freqs_);
  }

  const int n_heads_;
  const int n_kv_heads_;
  const bool has_norm_;
  const float eps_;
  const bool add_unit_offset_;
  const bool weight_in_float32_;
  const bool traditional_;
  const float base_;
  const float scale_;
  const int64_t offset_;
  const bool has_offsets_;
  const bool has_freqs_;
};

/// softmax(q k^T * scale [softcap] [+ mask]) v with GQA, causal (queries aligned to the end of
/// the keys) and sliding-window masking. Inputs {q, k, v[, mask]}. Softmax in float32 (float64
/// for float64); a row whose every key is masked gives zeros.
class ScaledDotProductAttention : public UnaryPrimitive {
 public:
  ScaledDotProductAttention(Stream s, float scale, bool causal, int window, float softcap,
                            SdpaMask mask)
      : UnaryPrimitive(s),
        scale_(scale),
        causal_(causal),
        window_(window),
        softcap_(softcap),
        mask_(mask) {}
  INGOT_UNARY_PRIMITIVE(ScaledDotProductAttention)
  INGOT_EQUIVALENT(ScaledDotProductAttention,
                   std::make_tuple(p->scale_, p->causal_, p->window_, p->softcap_, p->mask_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float scale_;
  const bool causal_;
  const int window_;
  const float softcap_;
  const SdpaMask mask_;
};

/// fast::rope_kv_attention: inputs RopeKvUpdate's {qkv, [q_norm, k_norm], [offsets], [freqs],
/// keys, values, column}, then the mask unless mask_ is none; outputs {o [B, H, L, D], keys',
/// values'} (see fast.h). kv_ is the RopeKvUpdate it runs first. No VJP (a cache write).
class RopeKvAttention : public Primitive {
 public:
  RopeKvAttention(Stream s, std::shared_ptr<RopeKvUpdate> kv, float scale, SdpaMask mask)
      : Primitive(s), kv_(std::move(kv)), scale_(scale), mask_(mask) {}
  INGOT_MULTI_PRIMITIVE(RopeKvAttention)
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;
  /// The attention over the updated cache as a primitive of its own.
  std::shared_ptr<ScaledDotProductAttention> attention() const {
    return std::make_shared<ScaledDotProductAttention>(stream(), scale_, false, 0, 0.0f, mask_);
  }
  /// How many of `n` inputs are the RopeKvUpdate's (all but the mask).
  size_t kv_inputs(size_t n) const { return mask_ == SdpaMask::none ? n : n - 1; }

  const std::shared_ptr<RopeKvUpdate> kv_;
  const float scale_;
  const SdpaMask mask_;
};

/// fast::decode_block: one pre-norm decoder block of a decode step over a fixed-size cache.
/// Inputs {x, input_norm, w_qkv, [q_norm, k_norm], w_o, post_norm, w_gate_up, w_down, offsets,
/// [freqs], keys, values, column, mask} (Linear weights as stored, [out, in]; see slots()),
/// outputs {out, keys', values'}. The keys/values buffers are donated to the outputs when
/// nothing else holds them. The rotary offset is 0 (offsets give the positions). act_ as
/// RmsNormGlu's. No VJP (a cache write).
class DecodeBlock : public Primitive {
 public:
  DecodeBlock(Stream s, int n_heads, int n_kv_heads, bool has_qk_norm, float eps,
              bool add_unit_offset, bool weight_in_float32, float qk_eps, bool qk_add_unit_offset,
              bool qk_weight_in_float32, bool traditional, float base, float rope_scale,
              bool has_freqs, float scale, int act)
      : Primitive(s),
        n_heads_(n_heads),
        n_kv_heads_(n_kv_heads),
        has_qk_norm_(has_qk_norm),
        eps_(eps),
        add_unit_offset_(add_unit_offset),
        weight_in_float32_(weight_in_float32),
        qk_eps_(qk_eps),
        qk_add_unit_offset_(qk_add_unit_offset),
        qk_weight_in_float32_(qk_weight_in_float32),
        traditional_(traditional),
        base_(base),
        rope_scale_(rope_scale),
        has_freqs_(has_freqs),
        scale_(scale),
        act_(act) {}
  INGOT_MULTI_PRIMITIVE(DecodeBlock)
  INGOT_EQUIVALENT(DecodeBlock, std::make_tuple(p->n_heads_, p->n_kv_heads_, p->has_qk_norm_,
                                                p->eps_, p->add_unit_offset_, p->weight_in_float32_,
                                                p->qk_eps_, p->qk_add_unit_offset_,
                                                p->qk_weight_in_float32_, p->traditional_, p->base_,
                                                p->rope_scale_, p->has_freqs_, p->scale_, p->act_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// Throws Unsupported: the block writes the cache.
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  /// Positions of the inputs in the inputs vector (q_norm, k_norm, freqs: -1 when absent).
  struct Slots {
    int x, input_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gate_up, w_down, offsets, freqs,
        keys, values, column, mask;
  };
  Slots slots() const {
    Slots s{};
    int i = 0;
    s.x = i++;
    s.input_norm = i++;
    s.w_qkv = i++;
    s.q_norm = has_qk_norm_ ? i++ : -1;
    s.k_norm = has_qk_norm_ ? i++ : -1;
    s.w_o = i++;
    s.post_norm = i++;
    s.w_gate_up = i++;
    s.w_down = i++;
    s.offsets = i++;
    s.freqs = has_freqs_ ? i++ : -1;
    s.keys = i++;
    s.values = i++;
    s.column = i++;
    s.mask = i++;
    return s;
  }
  /// The steps as primitives of their own (the separate ops' kernels): the normed q/k/v
  /// product, the q/k norms + rotary + cache write, the attention, the normed gate/up GLU.
  std::shared_ptr<RmsNormLinear> qkv_product() const {
    return std::make_shared<RmsNormLinear>(stream(), eps_, add_unit_offset_, weight_in_float32_,
                                           true);
  }
  std::shared_ptr<RopeKvUpdate> kv_update() const {
    return std::make_shared<RopeKvUpdate>(stream(), n_heads_, n_kv_heads_, has_qk_norm_, qk_eps_,
                                          qk_add_unit_offset_, qk_weight_in_float32_, traditional_,
                                          base_, rope_scale_, 0, true, has_freqs_);
  }
  std::shared_ptr<ScaledDotProductAttention> attention() const {
    return std::make_shared<ScaledDotProductAttention>(stream(), scale_, false, 0, 0.0f,
                                                       SdpaMask::boolean);
  }
  std::shared_ptr<RmsNormGlu> glu() const {
    return std::make_shared<RmsNormGlu>(stream(), eps_, add_unit_offset_, weight_in_float32_, true,
                                        act_);
  }

  const int n_heads_;
  const int n_kv_heads_;
  const bool has_qk_norm_;
  const float eps_;
  const bool add_unit_offset_;
  const bool weight_in_float32_;
  const float qk_eps_;
  const bool qk_add_unit_offset_;
  const bool qk_weight_in_float32_;
  const bool traditional_;
  const float base_;
  const float rope_scale_;
  const bool has_freqs_;
  const float scale_;
  const int act_;
};

/// fast::packed_attention: causal self-attention of sequences packed back to back. Inputs {qkv
/// [T, (H + 2 Hkv) D], [q_norm, k_norm], starts (int32 [N + 1], the sequences' first rows and
/// T), [freqs], [prefix_keys, prefix_values] ([1, Hkv, P, D])} (see slots()); output [T, H D].
/// max_len_ is the longest sequence's row count (the host knows it; kernels size their work
/// from it). Rotary offset 0: row i of a sequence is at position P + i. No VJP.
class PackedAttention : public UnaryPrimitive {
 public:
  PackedAttention(Stream s, int n_heads, int n_kv_heads, bool has_qk_norm, float qk_eps,
                  bool qk_add_unit_offset, bool qk_weight_in_float32, bool traditional, float base,
                  float rope_scale, bool has_freqs, float scale, int window, float softcap,
                  bool has_prefix, int64_t max_len)
      : UnaryPrimitive(s),
        n_heads_(n_heads),
        n_kv_heads_(n_kv_heads),
        has_qk_norm_(has_qk_norm),
        qk_eps_(qk_eps),
        qk_add_unit_offset_(qk_add_unit_offset),
        qk_weight_in_float32_(qk_weight_in_float32),
        traditional_(traditional),
        base_(base),
        rope_scale_(rope_scale),
        has_freqs_(has_freqs),
        scale_(scale),
        window_(window),
        softcap_(softcap),
        has_prefix_(has_prefix),
        max_len_(max_len) {}
  INGOT_UNARY_PRIMITIVE(PackedAttention)
  INGOT_EQUIVALENT(PackedAttention,
                   std::make_tuple(p->n_heads_, p->n_kv_heads_, p->has_qk_norm_, p->qk_eps_,
                                   p->qk_add_unit_offset_, p->qk_weight_in_float32_,
                                   p->traditional_, p->base_, p->rope_scale_, p->has_freqs_,
                                   p->scale_, p->window_, p->softcap_, p->has_prefix_, p->max_len_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// Throws Unsupported (inference only).
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  /// Positions of the inputs in the inputs vector (-1 when absent).
  struct Slots {
    int qkv, q_norm, k_norm, starts, freqs, prefix_keys, prefix_values;
  };
  Slots slots() const {
    Slots s{};
    int i = 0;
    s.qkv = i++;
    s.q_norm = has_qk_norm_ ? i++ : -1;
    s.k_norm = has_qk_norm_ ? i++ : -1;
    s.starts = i++;
    s.freqs = has_freqs_ ? i++ : -1;
    s.prefix_keys = has_prefix_ ? i++ : -1;
    s.prefix_values = has_prefix_ ? i++ : -1;
    return s;
  }

  const int n_heads_;
  const int n_kv_heads_;
  const bool has_qk_norm_;
  const float qk_eps_;
  const bool qk_add_unit_offset_;
  const bool qk_weight_in_float32_;
  const bool traditional_;
  const float base_;
  const float rope_scale_;
  const bool has_freqs_;
  const float scale_;
  const int window_;
  const float softcap_;
  const bool has_prefix_;
  const int64_t max_len_;
};

/// The gradients of ScaledDotProductAttention (softcap 0) in one primitive: inputs {q, k, v,
/// out, d_out[, mask]}, outputs {dq, dk, dv} in the dtypes of q, k and v. The probabilities are
/// recomputed from q and k; delta_i = sum_d d_out[i, d] * out[i, d] (the forward's output as
/// given). Rows whose every key is masked give zero gradients. CPU: float64-accumulating loops
/// (a reference, slower than the composition); CUDA: flash-style tensor-core kernels for
/// bfloat16/float16 with D == Dv in {64, 128, 256} (sdpa_fused_bwd_supported).
class ScaledDotProductAttentionGrad : public Primitive {
 public:
  ScaledDotProductAttentionGrad(Stream s, float scale, bool causal, int window, SdpaMask mask)
      : Primitive(s), scale_(scale), causal_(causal), window_(window), mask_(mask) {}
  INGOT_MULTI_PRIMITIVE(ScaledDotProductAttentionGrad)
  INGOT_EQUIVALENT(ScaledDotProductAttentionGrad,
                   std::make_tuple(p->scale_, p->causal_, p->window_, p->mask_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  /// Throws Unsupported (higher-order gradients take the composition: INGOT_SDPA_FUSED_BWD=0).
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  void print(std::ostream& os) const override;

  const float scale_;
  const bool causal_;
  const int window_;
  const SdpaMask mask_;
};

/// fast::adam_step: one Adam/AdamW step over n parameters at once. Inputs {p_0..p_{n-1},
/// g_0.., m_0.., v_0..[, grad_scale]}, outputs {p'_0.., m'_0.., v'_0..} (p' in p's dtype, m' and
/// v' float32). Every operation rounds as the separate ops of fast::ref::adam_step do (see
/// AdamStepOptions), so the results are theirs bit for bit. The m/v buffers are donated to m'/v'
/// when nothing else holds them. No VJP.
class AdamStep : public Primitive {
 public:
  AdamStep(Stream s, int n, float lr, float beta1, float beta2, float one_minus_beta1,
           float one_minus_beta2, float eps, float c1, float c2, float weight_decay, float decay,
           bool decoupled, bool has_scale)
      : Primitive(s),
        n_(n),
        lr_(lr),
        beta1_(beta1),
        beta2_(beta2),
        one_minus_beta1_(one_minus_beta1),
        one_minus_beta2_(one_minus_beta2),
        eps_(eps),
        c1_(c1),
        c2_(c2),
        weight_decay_(weight_decay),
        decay_(decay),
        decoupled_(decoupled),
        has_scale_(has_scale) {}
  INGOT_MULTI_PRIMITIVE(AdamStep)
  INGOT_EQUIVALENT(AdamStep,
                   std::make_tuple(p->n_, p->lr_, p->beta1_, p->beta2_, p->one_minus_beta1_,
                                   p->one_minus_beta2_, p->eps_, p->c1_, p->c2_, p->weight_decay_,
                                   p->decay_, p->decoupled_, p->has_scale_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;

  const int n_;
  const float lr_, beta1_, beta2_, one_minus_beta1_, one_minus_beta2_, eps_, c1_, c2_;
  const float weight_decay_, decay_;
  const bool decoupled_;
  const bool has_scale_;
};

/// fast::sum_squares: the float32 sum of x^2 over every element of every input (any float
/// dtypes, widened to float32), as a scalar. The order of the sums is the backend's.
class SumSquares : public UnaryPrimitive {
 public:
  explicit SumSquares(Stream s) : UnaryPrimitive(s) {}
  INGOT_UNARY_PRIMITIVE(SumSquares)
  INGOT_EQUIVALENT(SumSquares, std::make_tuple(0))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
};

/// True when the CUDA kernels of ScaledDotProductAttentionGrad take (dtype, D, Dv).
bool sdpa_fused_bwd_supported_on_cuda(Dtype t, int64_t D, int64_t Dv);

}  // namespace ingot
