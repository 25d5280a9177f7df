// Fused "fast" ops with one kernel per backend, each paired with a reference composition from
// ops (namespace fast::ref) that is its test oracle and default VJP.
#pragma once

#include <optional>
#include <vector>

#include "core/array.h"
#include "core/ops/quantized.h"

namespace ingot::fast {

/// Options of rms_norm.
struct RmsNormOptions {
  float eps = 1e-6f;
  /// Scale by (1 + weight) instead of weight (Gemma); 1 + weight is computed in float32.
  bool add_unit_offset = false;
  /// true: multiply the float32 normalised x by the weight in float32 and round once (Gemma3).
  /// false: round the normalised x to x's dtype first, then multiply by the weight and round
  /// again (Hugging Face LlamaRMSNorm / Qwen2 / Qwen3 / Mistral). Same result for float32 x.
  bool weight_in_float32 = true;
};
/// x / sqrt(mean(x^2, -1) + eps) * weight over the last axis; computed in float32, output in
/// x's dtype. weight: [E] or absent.
Array rms_norm(const Array& x, const std::optional<Array>& weight, RmsNormOptions opt = {},
               StreamOrDevice s = {});

/// residual + rms_norm(x, weight, opt) (the norm rounded to x's dtype, then the add rounded, as
/// the two ops round) in one primitive: one pass over the rows instead of two. residual: x's
/// shape and dtype. For the sandwich norms of Gemma3's blocks.
Array rms_norm_add(const Array& residual, const Array& x, const std::optional<Array>& weight,
                   RmsNormOptions opt = {}, StreamOrDevice s = {});

/// rms_norm(x, weight, opt) @ transpose(w) for a Linear weight w [N, E] of x's dtype: the
/// normalised x is rounded to x's dtype, then multiplied, so the result is the two ops' result.
/// One primitive, so a backend can fuse the norm into the product (CUDA: into the few-row
/// GEMV's prologue, one launch instead of two).
Array rms_norm_linear(const Array& x, const std::optional<Array>& weight, const Array& w,
                      RmsNormOptions opt = {}, StreamOrDevice s = {});

/// The activation of a gated product (GatedMLP's gate): silu, gelu (erf) or gelu_tanh.
enum class GatedActivation { silu, gelu, gelu_tanh };

/// act(g) * u, a GLU feed-forward's gated product, as one primitive (Glu): g and u of one float
/// dtype and shape (any layouts, e.g. the column halves of a stacked gate|up product), output in
/// that dtype. act(g) is rounded to the dtype, then the product, so the result is the two ops'
/// bit for bit. Its gradient is one primitive too (GluGrad): dg and du in one pass over g, u and
/// the cotangent, each computed in float32 (float64 for float64) and rounded once.
Array gated_activation(const Array& g, const Array& u, GatedActivation act, StreamOrDevice s = {});

/// The gated product of a GLU feed-forward: with y = rms_norm_linear(x, weight, w, opt) for the
/// stacked gate|up Linear weights w [2I, E] (gate rows first), act(y[..., :I]) * y[..., I:],
/// output [..., I] in x's dtype. Each step rounds to the dtype as the separate ops do, so the
/// result is theirs. One primitive, so a backend can fuse it (CUDA, a few rows: one GEMV whose
/// warps each compute a gate and its up column, with the norm in its prologue).
Array rms_norm_glu(const Array& x, const std::optional<Array>& weight, const Array& w,
                   GatedActivation act, RmsNormOptions opt = {}, StreamOrDevice s = {});

/// h = rms_norm_add(residual, y, post_weight, post_opt), then its product: returns {h,
/// rms_norm_linear(h, weight, w, opt)}, or with act {h, rms_norm_glu(h, weight, w, *act, opt)},
/// with exactly those ops' values (errors as theirs). One primitive (RmsNormAddProduct), so that
/// a backend can compute the first norm inside the product's prologue (CUDA, a few rows: each
/// GEMV block computes h, block 0 writes it; one launch instead of two). For Gemma3's sandwich
/// norms in a decode step. Not differentiable (inference only).
std::vector<Array> rms_norm_add_linear(const Array& residual, const Array& y,
                                       const std::optional<Array>& post_weight,
                                       RmsNormOptions post_opt, const std::optional<Array>& weight,
                                       const Array& w, RmsNormOptions opt,
                                       std::optional<GatedActivation> act = std::nullopt,
                                       StreamOrDevice s = {});

/// The packed weight of a quantized Linear (core/ops/quantized.h): w uint32 [N, K * bits / 32],
/// scales and biases [N, K / group_size] of x's dtype.
struct QuantizedLinearWeight {
  Array w, scales, biases;
  QuantizeOptions opt;
};

/// rms_norm(x, weight, opt) @ dequantize(w)^T (quantized_matmul of the normalised x, rounded to
/// x's dtype first): the result is the two ops'. One primitive (a fused QuantizedMatmul), so a
/// backend can fuse the norm into the product (CUDA, a few rows: the quantized GEMV's
/// prologue). Errors as quantized_matmul's; the scales must have x's dtype.
Array rms_norm_quantized_linear(const Array& x, const std::optional<Array>& weight,
                                const QuantizedLinearWeight& w, RmsNormOptions opt = {},
                                StreamOrDevice s = {});

/// rms_norm_glu over quantized stacked gate|up weights w [2I, ...]: act(y[..., :I]) *
/// y[..., I:] for y = rms_norm_quantized_linear(x, weight, w, opt), each step rounded as the
/// separate ops round.
Array rms_norm_quantized_glu(const Array& x, const std::optional<Array>& weight,
                             const QuantizedLinearWeight& w, GatedActivation act,
                             RmsNormOptions opt = {}, StreamOrDevice s = {});

/// residual + quantized_matmul(x, w) with the product rounded to x's dtype first (the two ops'
/// result): the residual add of a quantized Linear in the product's epilogue (CUDA, a few rows:
/// one GEMV). residual must have the output's shape and x's dtype.
Array quantized_linear_add(const Array& residual, const Array& x, const QuantizedLinearWeight& w,
                           StreamOrDevice s = {});

/// (x - mean) / sqrt(var + eps) * weight + bias over the last axis (float32 inside).
Array layer_norm(const Array& x, const std::optional<Array>& weight,
                 const std::optional<Array>& bias, float eps = 1e-5f, StreamOrDevice s = {});

/// Options of rope.
struct RopeOptions {
  /// Interleaved pairs (x0,x1),(x2,x3)... when true; half-split (rotate_half, as Hugging Face
  /// Llama/Qwen/Gemma) when false.
  bool traditional = false;
  float base = 10000.0f;
  /// Positions are multiplied by scale (linear scaling uses 1/factor).
  float scale = 1.0f;
  /// Position of the first row along the sequence axis.
  int64_t offset = 0;
  /// Per-row offsets [B] (batched caches with different lengths); overrides `offset`.
  std::optional<Array> offsets;
  /// Custom inverse frequencies [dims/2] (e.g. Llama 3 scaled); overrides base.
  std::optional<Array> freqs;
};
/// Rotary position embedding of the first `dims` features of x [B, H, L, D] (or [..., L, D]),
/// position of row l = offset + l.
Array rope(const Array& x, int dims, const RopeOptions& opt = {}, StreamOrDevice s = {});

/// Options of rope_kv_update: the head counts, the q/k norms' options and the rotary options
/// (rotating all D features of every head).
struct RopeKvOptions {
  int n_heads = 0;     // H
  int n_kv_heads = 0;  // Hkv
  RmsNormOptions norm;
  RopeOptions rope;
};
/// One attention step's prologue over a fixed-size key/value cache, in one primitive (one
/// kernel on a GPU instead of up to six). From the stacked projection qkv [B, L, (H + 2 Hkv) D]
/// (q heads, then k heads, then v heads):
///   q = rope(rms_norm(q heads, q_norm))            [B, H, L, D]
///   k = rope(rms_norm(k heads, k_norm))            written into keys at columns column + l
///   v = v heads                                    written into values at columns column + l
/// q_norm and k_norm ([D], qkv's dtype) are both given or both absent (no norm). keys and values
/// are [B, Hkv, C, D] buffers of qkv's dtype; column is an integer array of one element, so the
/// write position can live on the device (a CUDA graph replays it). Returns {q, keys', values'}
/// with the values of slicing, rms_norm, rope and put_along_axis one op at a time
/// (ref::rope_kv_update); keys' and values' reuse the buffers when nothing else holds them.
/// D must be a multiple of 16 and at most 256. Not differentiable (a cache write).
std::vector<Array> rope_kv_update(const Array& qkv, const std::optional<Array>& q_norm,
                                  const std::optional<Array>& k_norm, const Array& keys,
                                  const Array& values, const Array& column,
                                  const RopeKvOptions& opt, StreamOrDevice s = {});

/// rope_kv_update, then the attention of its q over the updated cache, as one primitive (on a
/// GPU one kernel for one new token a row where the cluster decode kernel takes the attention:
/// 16-bit, head dim 64/128/256, sm_90, a fixed cache whose keys fit its clusters' shared memory):
///   {q, keys', values'} = rope_kv_update(qkv, q_norm, k_norm, keys, values, column, opt)
///   o = scaled_dot_product_attention(q, keys', values', {.scale = scale, .mask = mask})
/// Returns {o [B, H, L, D], keys', values'} with those ops' values (ref::rope_kv_attention); the
/// one kernel sums the attention in the cluster kernel's order (an output ulp apart at most,
/// like scaled_dot_product_attention's kernels among themselves). mask: boolean (true = keep)
/// or additive, broadcastable to [B, H, L, C]. Not differentiable (a cache write).
std::vector<Array> rope_kv_attention(const Array& qkv, const std::optional<Array>& q_norm,
                                     const std::optional<Array>& k_norm, const Array& keys,
                                     const Array& values, const Array& column,
                                     const std::optional<Array>& mask, const RopeKvOptions& opt,
                                     float scale, StreamOrDevice s = {});

/// Options of scaled_dot_product_attention.
struct SdpaOptions {
  float scale = 1.0f;
  /// Query i (at absolute position S - L + i) sees keys j <= S - L + i.
  bool causal = false;
  /// Additive float mask or boolean mask (true = keep), broadcastable to [B, H, L, S].
  std::optional<Array> mask;
  /// Sliding window: query at position p sees keys in (p - window, p]; 0 = none. Needs causal.
  int window = 0;
  /// tanh soft cap of the logits: cap * tanh(logits / cap); 0 = none.
  float softcap = 0.0f;
};
/// softmax(q k^T * scale [+ mask]) v for q [B, H, L, D], k and v [B, Hkv, S, D] with H a
/// multiple of Hkv (grouped-query attention). Softmax in float32; output [B, H, L, D] in q's
/// dtype (v may have its own last dim Dv: output [B, H, L, Dv]). A query row whose keys are
/// all masked gives zeros.
Array scaled_dot_product_attention(const Array& q, const Array& k, const Array& v,
                                   const SdpaOptions& opt = {}, StreamOrDevice s = {});

/// Options of decode_block.
struct DecodeBlockOptions {
  int n_heads = 0;     // H
  int n_kv_heads = 0;  // Hkv
  /// The input and post-attention norms.
  RmsNormOptions norm;
  /// The q/k norms (used when q_norm and k_norm are given).
  RmsNormOptions qk_norm;
  /// Rotary over all D features: offsets ([B] integer positions) are required, offset must be
  /// 0; freqs optional.
  RopeOptions rope;
  /// Attention scale.
  float scale = 1.0f;
  GatedActivation act = GatedActivation::silu;
};
/// One pre-norm Llama/Qwen3 decoder block of a decode step (one new token per row) over a
/// fixed-size key/value cache, as one primitive (one persistent kernel on a GPU):
///   qkv = rms_norm_linear(x, input_norm, w_qkv, opt.norm)
///   {q, keys', values'} = rope_kv_update(qkv, q_norm, k_norm, keys, values, column,
///                                        {H, Hkv, opt.qk_norm, opt.rope})
///   o = scaled_dot_product_attention(q, keys', values', {.scale, .mask}) as [B, 1, H D]
///   h = add_matmul(x, o, transpose(w_o))
///   out = add_matmul(h, rms_norm_glu(h, post_norm, w_gate_up, opt.act, opt.norm),
///                    transpose(w_down))
/// and returns {out [B, 1, E], keys', values'} with exactly those ops' values
/// (ref::decode_block). x [B, 1, E] is float32, bfloat16 or float16 and every float input has
/// its dtype: input_norm, post_norm [E]; w_qkv [(H + 2 Hkv) D, E] (q, k, v rows); q_norm and
/// k_norm [D] (both or neither); w_o [E, H D]; w_gate_up [2I, E] (gate rows first); w_down
/// [E, I]; keys, values [B, Hkv, C, D]. column: an integer array of one element (the cache
/// column written); mask: bool [B, 1, 1, C] (true = keep). Linear weights as stored ([out,
/// in]), not transposed. D must be a multiple of 16 and at most 256. keys' and values' reuse
/// the buffers when nothing else holds them. Not differentiable (a cache write).
std::vector<Array> decode_block(const Array& x, const Array& input_norm, const Array& w_qkv,
                                const std::optional<Array>& q_norm,
                                const std::optional<Array>& k_norm, const Array& w_o,
                                const Array& post_norm, const Array& w_gate_up, const Array& w_down,
                                const Array& keys, const Array& values, const Array& column,
                                const Array& mask, const DecodeBlockOptions& opt,
                                StreamOrDevice s = {});

/// Options of packed_attention.
struct PackedAttentionOptions {
  int n_heads = 0;     // H
  int n_kv_heads = 0;  // Hkv
  /// Sequence boundaries: sequence s is rows [starts[s], starts[s + 1]) of qkv. starts[0] is 0,
  /// the entries do not decrease, the last is T; at least two entries (one sequence). Empty
  /// sequences are allowed (they have no rows).
  std::vector<int64_t> starts;
  /// The q/k norms (used when q_norm and k_norm are given).
  RmsNormOptions qk_norm;
  /// Rotary over all D features (traditional, base, scale, freqs). offset must be 0 and
  /// offsets absent: row i of a sequence is at position P + i (P: the prefix's columns).
  RopeOptions rope;
  /// Attention scale, sliding window (0 = none) and logit softcap (0 = none) as in SdpaOptions.
  float scale = 1.0f;
  int window = 0;
  float softcap = 0.0f;
};
/// Causal self-attention of a packed batch: N sequences' rows back to back, no padding (bulk
/// classification and scoring). From the stacked projection qkv [T, (H + 2 Hkv) D] (q heads,
/// then k heads, then v heads), for each sequence s (rows [starts[s], starts[s + 1]), row i at
/// position P + i):
///   q, k = rope(rms_norm(q / k heads, q_norm / k_norm)) at those positions, v = v heads
///   o = scaled_dot_product_attention(q, [prefix_keys; k], [prefix_values; v],
///                                    {.scale, .causal = true, .window, .softcap})
/// Output [T, H D] in qkv's dtype: row r is the attention output of qkv's row r, heads side by
/// side (ready for the output projection), with the values of those ops run per sequence
/// (ref::packed_attention). Every sequence sees the shared prefix prefix_keys / prefix_values
/// [1, Hkv, P, D] (as a cache holds them: normalised and rotated at positions 0..P-1; both or
/// neither, P may be 0) and its own earlier rows, never another sequence's. qkv is float32,
/// bfloat16 or float16 and q_norm, k_norm ([D], both or neither) and the prefix have its dtype;
/// D is even. On a GPU, 16-bit problems with D in {64, 128, 256} run as one kernel (norms, rotary
/// and attention fused, reading qkv in place); others run as ref::packed_attention (the separate
/// ops, on the same device). Not differentiable.
Array packed_attention(const Array& qkv, const std::optional<Array>& q_norm,
                       const std::optional<Array>& k_norm, const std::optional<Array>& prefix_keys,
                       const std::optional<Array>& prefix_values, const PackedAttentionOptions& opt,
                       StreamOrDevice s = {});

/// The host scalars of one Adam/AdamW step (PyTorch semantics), computed by the caller in float
/// exactly as it would pass them to the separate ops: lr, the betas and 1 - beta, eps, the bias
/// corrections c1 = 1 - beta1^t and c2 = 1 - beta2^t (1 without correction), and the weight
/// decay: decoupled (AdamW) multiplies the parameter by `decay` (= 1 - lr * weight_decay) first;
/// otherwise (Adam) weight_decay * p is added to the gradient when weight_decay != 0.
struct AdamStepOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float one_minus_beta1 = 1.0f - 0.9f, one_minus_beta2 = 1.0f - 0.999f;
  float eps = 1e-8f;
  float c1 = 1.0f, c2 = 1.0f;
  float weight_decay = 0.0f;
  float decay = 1.0f;
  bool decoupled = true;
};
/// One Adam/AdamW step over many parameters in one primitive (one kernel per chunk of tensors
/// on the GPU instead of a dozen ops per parameter). params and grads: float32, bfloat16 or
/// float16 (each gradient of its parameter's shape); m and v: float32 state of the same shapes.
/// grad_scale (optional float32 scalar, e.g. a clipping factor) multiplies each gradient first,
/// rounded to the gradient's dtype. Per element, as ref::adam_step's separate ops round:
///   g = float(grad) [* scale]; p = float(param); AdamW: p = p * decay; Adam: g = g + wd * p
///   m' = beta1 * m + (1 - beta1) * g;   v' = beta2 * v + (1 - beta2) * (g * g)
///   p' = p - lr * ((m' / c1) / (sqrt(v' / c2) + eps)), rounded to param's dtype.
/// Returns {p'_0..p'_{n-1}, m'_0.., v'_0..}. All on one device. Not differentiable.
std::vector<Array> adam_step(const std::vector<Array>& params, const std::vector<Array>& grads,
                             const std::vector<Array>& m, const std::vector<Array>& v,
                             const AdamStepOptions& opt,
                             const std::optional<Array>& grad_scale = std::nullopt,
                             StreamOrDevice s = {});
/// sum(x^2) over every element of every array in xs (float dtypes, squared in float32), a
/// float32 scalar: a global gradient norm's square in one primitive. Empty xs gives 0.
Array sum_squares(const std::vector<Array>& xs, StreamOrDevice s = {});

/// Reference compositions from ops (oracles and default VJPs).
namespace ref {
Array gated_activation(const Array& g, const Array& u, GatedActivation act, StreamOrDevice s = {});
Array rms_norm(const Array& x, const std::optional<Array>& weight, RmsNormOptions opt = {},
               StreamOrDevice s = {});
Array rms_norm_add(const Array& residual, const Array& x, const std::optional<Array>& weight,
                   RmsNormOptions opt = {}, StreamOrDevice s = {});
Array rms_norm_linear(const Array& x, const std::optional<Array>& weight, const Array& w,
                      RmsNormOptions opt = {}, StreamOrDevice s = {});
Array rms_norm_glu(const Array& x, const std::optional<Array>& weight, const Array& w,
                   GatedActivation act, RmsNormOptions opt = {}, StreamOrDevice s = {});
Array rms_norm_quantized_linear(const Array& x, const std::optional<Array>& weight,
                                const QuantizedLinearWeight& w, RmsNormOptions opt = {},
                                StreamOrDevice s = {});
Array rms_norm_quantized_glu(const Array& x, const std::optional<Array>& weight,
                             const QuantizedLinearWeight& w, GatedActivation act,
                             RmsNormOptions opt = {}, StreamOrDevice s = {});
Array quantized_linear_add(const Array& residual, const Array& x, const QuantizedLinearWeight& w,
                           StreamOrDevice s = {});
Array layer_norm(const Array& x, const std::optional<Array>& weight,
                 const std::optional<Array>& bias, float eps = 1e-5f, StreamOrDevice s = {});
Array rope(const Array& x, int dims, const RopeOptions& opt = {}, StreamOrDevice s = {});
std::vector<Array> rope_kv_update(const Array& qkv, const std::optional<Array>& q_norm,
                                  const std::optional<Array>& k_norm, const Array& keys,
                                  const Array& values, const Array& column,
                                  const RopeKvOptions& opt, StreamOrDevice s = {});
std::vector<Array> rope_kv_attention(const Array& qkv, const std::optional<Array>& q_norm,
                                     const std::optional<Array>& k_norm, const Array& keys,
                                     const Array& values, const Array& column,
                                     const std::optional<Array>& mask, const RopeKvOptions& opt,
                                     float scale, StreamOrDevice s = {});
Array scaled_dot_product_attention(const Array& q, const Array& k, const Array& v,
                                   const SdpaOptions& opt = {}, StreamOrDevice s = {});
std::vector<Array> decode_block(const Array& x, const Array& input_norm, const Array& w_qkv,
                                const std::optional<Array>& q_norm,
                                const std::optional<Array>& k_norm, const Array& w_o,
                                const Array& post_norm, const Array& w_gate_up, const Array& w_down,
                                const Array& keys, const Array& values, const Array& column,
                                const Array& mask, const DecodeBlockOptions& opt,
                                StreamOrDevice s = {});
Array packed_attention(const Array& qkv, const std::optional<Array>& q_norm,
                       const std::optional<Array>& k_norm, const std::optional<Array>& prefix_keys,
                       const std::optional<Array>& prefix_values, const PackedAttentionOptions& opt,
                       StreamOrDevice s = {});
std::vector<Array> adam_step(const std::vector<Array>& params, const std::vector<Array>& grads,
                             const std::vector<Array>& m, const std::vector<Array>& v,
                             const AdamStepOptions& opt,
                             const std::optional<Array>& grad_scale = std::nullopt,
                             StreamOrDevice s = {});
Array sum_squares(const std::vector<Array>& xs, StreamOrDevice s = {});
}  // namespace ref

}  // namespace ingot::fast
