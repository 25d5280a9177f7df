// Llama (LlamaForCausalLM, model_type "llama"): pre-norm blocks, grouped-query attention with
// half-split rotary (Llama 3 per-band frequency scaling when rope_type is "llama3"), SiLU gated
// MLP, RMSNorm that rounds the normalised x to the compute dtype before the weight multiplies
// (HF LlamaRMSNorm), tied or untied head.
#include "core/ops/ops.h"
#include "models/registry.h"
#include "models/transformer.h"

namespace ingot::models {

namespace {

// Config -> quirks. Everything Llama-specific is here; the rest is the shared decoder.
//   rms_norm_eps, hidden_act (silu), attention_bias, mlp_bias, head_dim, rope_parameters /
//   rope_theta + rope_scaling ({rope_type: llama3, factor, low_freq_factor, high_freq_factor,
//   original_max_position_embeddings}), tie_word_embeddings.
nn::RMSNormOptions llama_norm(const ModelConfig& c) {
  return {
      .eps = static_cast<float>(c.rms_norm_eps), .unit_offset = false, .weight_in_float32 = false};
}

// Weights (HF names):
//   model.embed_tokens.weight                      [V, E]
//   model.layers.N.input_layernorm.weight          [E]
//   model.layers.N.self_attn.q_proj.weight         [H*D, E]    (+ .bias with attention_bias)
//   model.layers.N.self_attn.k_proj.weight         [Hkv*D, E]
//   model.layers.N.self_attn.v_proj.weight         [Hkv*D, E]
//   model.layers.N.self_attn.o_proj.weight         [E, H*D]
//   model.layers.N.post_attention_layernorm.weight [E]
//   model.layers.N.mlp.{gate,up}_proj.weight       [F, E]
//   model.layers.N.mlp.down_proj.weight            [E, F]
//   model.norm.weight                              [E]
//   lm_head.weight                                 [V, E]      (absent when tied)
//
// Block forward (PreNormBlock):   h = x + o_proj(attn(rope(q), rope(k), v))   on norm(x)
//                                 y = h + down(silu(gate(norm(h))) * up(norm(h)))
// Model forward (DecoderLM):      logits = lm_head(norm(blocks(embed(ids))))
std::shared_ptr<Model> make_llama(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config();
  const Dtype dtype = checkpoint_dtype(ckpt);
  const nn::RMSNormOptions norm = llama_norm(c);
  const nn::Activation act = config_activation(c);
  DecoderOptions opt{.dtype = dtype, .norm = norm, .tie_word_embeddings = c.tie_word_embeddings};
  auto model = std::make_shared<DecoderLM>(c, "llama", opt, [&](int i) {
    nn::AttentionConfig a = attention_config(c, i, dtype, ckpt.device());
    return std::make_shared<PreNormBlock>(i, a, c.intermediate_size, act, c.mlp_bias, norm);
  });
  load_weights(*model, ckpt, {"lm_head.weight"});
  return model;
}

}  // namespace

void register_llama() {
  register_architecture("llama", make_llama);
}

}  // namespace ingot::models
