// Gemma3 text (Gemma3ForCausalLM "gemma3_text", and the text model of multimodal "gemma3"
// checkpoints): sliding-window and global layers with their own rope bases (linear scaling on
// global layers), (1+w) RMSNorms computed in float32, four norms per block, embedding scaled by
// sqrt(hidden) rounded to the compute dtype, q/k norms, query_pre_attn_scalar^-0.5 attention
// scale, GELU-tanh MLP and a final logit softcap.
#include <cmath>

#include "core/ops/ops.h"

#include "models/registry.h"
#include "models/trace.h"
#include "models/transformer.h"

namespace ingot::models {

namespace {

// Config -> quirks:
//   layer_types (or sliding_window_pattern: layer i is global when (i+1) % pattern == 0),
//   sliding_window, rope_parameters {full_attention, sliding_attention} (or rope_theta +
//   rope_scaling for global layers, rope_local_base_freq for sliding ones), rms_norm_eps,
//   hidden_activation (gelu_pytorch_tanh), query_pre_attn_scalar, final_logit_softcapping.
//   attn_logit_softcapping is read by ModelConfig but NOT applied: transformers 5.17's
//   Gemma3Attention never passes it to the attention function (Gemma2 does), so applying it
//   would break parity (tests/data/models/README.md). Real Gemma3 checkpoints set it to null.
nn::RMSNormOptions gemma3_norm(const ModelConfig& c) {
  return {
      .eps = static_cast<float>(c.rms_norm_eps), .unit_offset = true, .weight_in_float32 = true};
}

// Weights (HF names; multimodal checkpoints store them under language_model.model.*, which the
// Checkpoint maps to model.*):
//   model.embed_tokens.weight                        [V, E]  (also the head: always tied)
//   model.layers.N.input_layernorm.weight            [E]
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight   [H*D, E], [Hkv*D, E] x2, [E, H*D]
//   model.layers.N.self_attn.{q,k}_norm.weight       [D]
//   model.layers.N.post_attention_layernorm.weight   [E]
//   model.layers.N.pre_feedforward_layernorm.weight  [E]
//   model.layers.N.post_feedforward_layernorm.weight [E]
//   model.layers.N.mlp.{gate,up,down}_proj.weight    [F, E] x2, [E, F]
//   model.norm.weight                                [E]
class Gemma3Block : public Block {
 public:
  Gemma3Block(int layer, const nn::AttentionConfig& attn, int64_t ffn, nn::Activation act,
              nn::RMSNormOptions norm)
      : Block(layer) {
    const int64_t e = attn.dims;
    auto rms = [&] { return std::make_shared<nn::RMSNorm>(e, norm, attn.dtype); };
    input_norm_ = register_module("input_layernorm", rms());
    attn_ = register_module("self_attn", std::make_shared<nn::Attention>(attn));
    post_attn_norm_ = register_module("post_attention_layernorm", rms());
    pre_ffn_norm_ = register_module("pre_feedforward_layernorm", rms());
    post_ffn_norm_ = register_module("post_feedforward_layernorm", rms());
    mlp_ = register_module("mlp", std::make_shared<nn::GatedMLP>(e, ffn, act, false, attn.dtype));
  }

  // Block forward: sandwich norms around both sublayers.
  //   h = x + post_attention_layernorm(attn(input_layernorm(x)))
  //   y = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))
  Array operator()(const Array& x, const nn::AttentionInputs& in) const override {
    return forward(x, nullptr, in, nullptr);
  }

  Array forward(const Array& x, const NormAdd* prev, const nn::AttentionInputs& in,
                NormAdd* next) const override {
    if (attention_impl() == AttentionImpl::fast && !trace_enabled()) {
      // The pre-norms fused into the q/k/v and gate/up products (same results).
      // With in.queries, the rows after attention are the last ones only (of each sequence of
      // a packed batch).
      // The post-norms and their residual adds as one primitive each (fast::rms_norm_add). On
      // the GPU (opt-in) the previous block's last post-norm and add run in the q/k/v GEMV's
      // prologue (Attention::add_normed), the attention's in the gate/up GEMV's
      // (GatedMLP::add_normed); this block's last one is left in pieces in *next for the next.
      std::optional<std::pair<Array, Array>> xa;
      if (prev) xa = attn_->add_normed(prev->residual, prev->delta, *prev->norm, *input_norm_, in);
      const Array xq = nn::query_rows(xa ? xa->first : x, in);
      const Array a = xa ? xa->second : attn_->normed(x, *input_norm_, in, nullptr);
      Array h, m;
      if (auto hm = mlp_->add_normed(xq, a, *post_attn_norm_, *pre_ffn_norm_)) {
        h = hm->first;
        m = hm->second;
      } else {
        h = post_attn_norm_->add_to(xq, a);
        m = mlp_->normed(h, *pre_ffn_norm_, nullptr);
      }
      if (next) *next = {h, m, post_ffn_norm_.get()};
      return post_ffn_norm_->add_to(h, m);
    }
    Array a = trace((*post_attn_norm_)(attend(*attn_, (*input_norm_)(x), in, attention_impl())),
                    "attn_out", layer());
    Array h = x + a;
    Array m = trace((*post_ffn_norm_)((*mlp_)((*pre_ffn_norm_)(h))), "mlp_out", layer());
    return h + m;
  }
  const nn::Attention* attention() const override { return attn_.get(); }

 private:
  std::shared_ptr<nn::RMSNorm> input_norm_, post_attn_norm_, pre_ffn_norm_, post_ffn_norm_;
  std::shared_ptr<nn::Attention> attn_;
  std::shared_ptr<nn::GatedMLP> mlp_;
};

// Model forward (DecoderLM): x = embed(ids) * bf16(sqrt(E)); blocks; (1+w) final norm;
// logits = cap * tanh((x @ embed^T) / cap).
std::shared_ptr<Model> make_gemma3(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config();
  const Dtype dtype = checkpoint_dtype(ckpt);
  const nn::RMSNormOptions norm = gemma3_norm(c);
  const nn::Activation act = config_activation(c);
  DecoderOptions opt{
      .dtype = dtype,
      .norm = norm,
      .embed_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size))),
      .tie_word_embeddings = c.tie_word_embeddings};
  if (c.final_logit_softcapping) opt.final_softcap = static_cast<float>(*c.final_logit_softcapping);
  const double qpas = c.query_pre_attn_scalar.value_or(static_cast<double>(c.head_dim));
  auto model = std::make_shared<DecoderLM>(c, "gemma3", opt, [&](int i) {
    nn::AttentionConfig a = attention_config(c, i, dtype, ckpt.device());
    a.qk_norm = norm;
    a.scale = static_cast<float>(std::pow(qpas, -0.5));
    a.softcap = 0.0f;  // attn_logit_softcapping deliberately ignored (see above)
    return std::make_shared<Gemma3Block>(i, a, c.intermediate_size, act, norm);
  });
  load_weights(*model, ckpt, {"lm_head.weight"});
  return model;
}

}  // namespace

void register_gemma3() {
  register_architecture("gemma3", make_gemma3);
}

}  // namespace ingot::models
