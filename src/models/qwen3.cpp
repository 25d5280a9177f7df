// Qwen3 (Qwen3ForCausalLM, model_type "qwen3"): the Llama block plus RMSNorm over each head's D
// on q and k before rotary (q_norm, k_norm), an explicit head_dim (default 128, not
// hidden/heads), no attention bias, usually a tied head. Norms round the normalised x to the
// compute dtype before the weight multiplies (HF Qwen3RMSNorm).
#include "core/ops/ops.h"
#include "models/registry.h"
#include "models/transformer.h"

namespace ingot::models {

namespace {

// Config -> quirks:
//   rms_norm_eps (also for q_norm/k_norm), head_dim, rope_parameters / rope_theta (1e6),
//   attention_bias, layer_types / use_sliding_window + max_window_layers (sliding layers get
//   sliding_window; parsed by ModelConfig), tie_word_embeddings.
nn::RMSNormOptions qwen3_norm(const ModelConfig& c) {
  return {
      .eps = static_cast<float>(c.rms_norm_eps), .unit_offset = false, .weight_in_float32 = false};
}

// Weights (HF names): those of Llama (see llama.cpp) plus
//   model.layers.N.self_attn.q_norm.weight         [D]
//   model.layers.N.self_attn.k_norm.weight         [D]
//
// Block forward (PreNormBlock):   q = rope(q_norm(q_proj(norm(x)))), k = rope(k_norm(k_proj(..)))
//                                 h = x + o_proj(attn(q, k, v));  y = h + mlp(norm(h))
// Model forward (DecoderLM):      logits = lm_head(norm(blocks(embed(ids))))
std::shared_ptr<Model> make_qwen3(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config();
  const Dtype dtype = checkpoint_dtype(ckpt);
  const nn::RMSNormOptions norm = qwen3_norm(c);
  const nn::Activation act = config_activation(c);
  DecoderOptions opt{.dtype = dtype, .norm = norm, .tie_word_embeddings = c.tie_word_embeddings};
  auto model = std::make_shared<DecoderLM>(c, "qwen3", opt, [&](int i) {
    nn::AttentionConfig a = attention_config(c, i, dtype, ckpt.device());
    a.qk_norm = norm;
    return std::make_shared<PreNormBlock>(i, a, c.intermediate_size, act, c.mlp_bias, norm);
  });
  load_weights(*model, ckpt, {"lm_head.weight"});
  return model;
}

}  // namespace

void register_qwen3() {
  register_architecture("qwen3", make_qwen3);
}

}  // namespace ingot::models
