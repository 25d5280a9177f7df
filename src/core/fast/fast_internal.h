// Internal helpers shared by the fast:: ops, their reference compositions and their VJPs.
#pragma once

#include <optional>

#include "core/fast/fast.h"
#include "core/primitives/fast.h"

namespace ingot::fast::detail {

/// Argument checks shared by the fused ops and their references (throw InvalidArgument).
void check_norm_args(const Array& x, const std::optional<Array>& weight,
                     const std::optional<Array>& bias, const char* op);
void check_rope_args(const Array& x, int dims, const RopeOptions& opt);
/// Validates rope_kv_update's arguments (see fast.h); returns the head dimension D.
int64_t check_rope_kv_args(const Array& qkv, const std::optional<Array>& q_norm,
                           const std::optional<Array>& k_norm, const Array& keys,
                           const Array& values, const Array& column, const RopeKvOptions& opt);
/// Validates decode_block's arguments (see fast.h); returns the head dimension D.
int64_t check_decode_block_args(const Array& x, const Array& input_norm, const Array& w_qkv,
                                const std::optional<Array>& q_norm,
                                const std::optional<Array>& k_norm, const Array& w_o,
                                const Array& post_norm, const Array& w_gate_up, const Array& w_down,
                                const Array& keys, const Array& values, const Array& column,
                                const Array& mask, const DecodeBlockOptions& opt);
/// Validates packed_attention's arguments (see fast.h); returns the head dimension D.
int64_t check_packed_attention_args(const Array& qkv, const std::optional<Array>& q_norm,
                                    const std::optional<Array>& k_norm,
                                    const std::optional<Array>& prefix_keys,
                                    const std::optional<Array>& prefix_values,
                                    const PackedAttentionOptions& opt);
/// check_rope_args without x's dtype check, for an x of this shape.
void check_rope_shape(const Shape& shape, int dims, const RopeOptions& opt);
SdpaMask check_sdpa_args(const Array& q, const Array& k, const Array& v, const SdpaOptions& opt);
/// The attention mask's checks (boolean or floating, broadcastable to `full` = [B, H, L, S]);
/// `op` names the op in the error.
SdpaMask check_sdpa_mask(const std::optional<Array>& mask, const Shape& full, const char* op);

/// float64 for float64 inputs, else float32: the dtype the fast ops compute in.
inline Dtype compute_dtype(Dtype t) {
  return t == Dtype::float64 ? Dtype::float64 : Dtype::float32;
}

/// Attention probabilities of the reference composition in the compute dtype, shaped
/// [B, Hkv, G, L, S] (G = H / Hkv); `capped` (when softcap > 0) receives tanh(logits / cap)
/// of the same shape, for the VJP.
Array sdpa_probs(const Array& q, const Array& k, const SdpaOptions& opt, Array* capped);

}  // namespace ingot::fast::detail
