// Shared decoder pieces on nn/ blocks: rotary frequencies from config, per-layer attention
// configs, the pre-norm block of Llama/Qwen3, and DecoderLM (embedding -> blocks -> final norm
// -> head) whose quirks (embedding scale, (1+w) norms, final softcap, tied head) are options.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "models/checkpoint.h"
#include "models/model.h"
#include "nn/attention.h"
#include "nn/layers.h"

namespace ingot::models {

/// Inverse rotary frequencies [dims / 2] in float32, computed as transformers does for
/// rope_type default, linear (divided by factor) and llama3 (per-band scaling).
Array rope_inv_freqs(const RopeParams& p, int dims);

/// Attention of layer `layer`: heads, head_dim, bias, its rope (per layer kind, frequencies
/// placed on `device` once instead of copied there at every forward pass), its window. The
/// caller sets qk_norm, scale and softcap.
nn::AttentionConfig attention_config(const ModelConfig& c, int layer, Dtype dtype, Device device);

/// Attention through the block (impl fast) or transformers' eager order of operations.
Array attend(const nn::Attention& attn, const Array& x, const nn::AttentionInputs& in,
             AttentionImpl impl);

/// A decoder block: x [B, L, E] -> [B, L, E].
class Block : public nn::Module {
 public:
  explicit Block(int layer) : layer_(layer) {}
  virtual Array operator()(const Array& x, const nn::AttentionInputs& in) const = 0;
  /// A block output y = norm->add_to(residual, delta) kept in pieces (Gemma3's last post-norm
  /// and residual add), so that the next block can compute y inside its first product.
  struct NormAdd {
    Array residual, delta;
    const nn::RMSNorm* norm = nullptr;
  };
  /// operator()(x, in), where prev (when set) holds the pieces x was computed from: a block may
  /// compute x again inside its first product from them (x then stays unevaluated) and sets
  /// *next (when given) to its own output's pieces if it has them. Default: operator()(x, in).
  virtual Array forward(const Array& x, const NormAdd* prev, const nn::AttentionInputs& in,
                        NormAdd* next) const {
    (void)prev;
    (void)next;
    return (*this)(x, in);
  }
  int layer() const { return layer_; }
  /// The block's attention (nullptr if it has none).
  virtual const nn::Attention* attention() const { return nullptr; }
  AttentionImpl attention_impl() const { return impl_; }
  void set_attention_impl(AttentionImpl impl) { impl_ = impl; }

 private:
  int layer_;
  AttentionImpl impl_ = AttentionImpl::fast;
};

/// Pre-norm residual block (Llama, Qwen3): h = x + attn(norm(x)); h + mlp(norm(h)).
/// Weights: input_layernorm, self_attn.{q,k,v,o}_proj (+ q_norm, k_norm), post_attention_layernorm,
/// mlp.{gate,up,down}_proj.
class PreNormBlock : public Block {
 public:
  PreNormBlock(int layer, const nn::AttentionConfig& attn, int64_t ffn, nn::Activation act,
               bool mlp_bias, nn::RMSNormOptions norm);
  Array operator()(const Array& x, const nn::AttentionInputs& in) const override;
  const nn::Attention* attention() const override { return attn_.get(); }

 private:
  std::shared_ptr<nn::RMSNorm> input_norm_, post_attn_norm_;
  std::shared_ptr<nn::Attention> attn_;
  std::shared_ptr<nn::GatedMLP> mlp_;
};

/// Model-level quirks of a decoder.
struct DecoderOptions {
  Dtype dtype = float32;
  /// The final norm ("model.norm").
  nn::RMSNormOptions norm;
  /// Embedding output multiplied by this, rounded to dtype first (Gemma: sqrt(hidden)).
  std::optional<float> embed_scale;
  /// Logits = cap * tanh(logits / cap) (Gemma final_logit_softcapping).
  std::optional<float> final_softcap;
  bool tie_word_embeddings = false;
};

/// Builds block `layer`.
using BlockFactory = std::function<std::shared_ptr<Block>(int layer)>;

/// embed_tokens -> blocks -> norm -> lm_head, with HF names "model.embed_tokens.weight",
/// "model.layers.N.*", "model.norm.weight", "lm_head.weight" (absent when tied).
class DecoderLM : public Model {
 public:
  DecoderLM(ModelConfig config, std::string architecture, DecoderOptions opt,
            const BlockFactory& make_block);
  Array hidden(const Array& ids, const ForwardOptions& opt = {}) const override;
  Array lm_head(const Array& h) const override;
  Array lm_head_rows(const Array& h, const Array& ids) const override;
  Array lm_head_weight() const override;
  void set_attention_impl(AttentionImpl impl) override;
  /// True when every block's attention is fast (not eager) and packs() (q/k/v stacked by
  /// fuse_projections, no adapters on them, full rotary), no trace hook is installed and the
  /// model is not tensor-parallel.
  bool supports_packed() const override;

 private:
  class Backbone;
  /// Checks a packed call's ids and options (ForwardOptions::starts).
  void check_packed(const Array& ids, const ForwardOptions& opt) const;
  DecoderOptions opt_;
  std::shared_ptr<Backbone> model_;
  std::shared_ptr<nn::Linear> head_;
};

/// The compute dtype of a checkpoint: options().dtype, else the stored dtype of the embedding.
Dtype checkpoint_dtype(const Checkpoint& ckpt);

/// Checks the checkpoint against the model's parameters (missing / wrong-shape tensors are
/// FormatErrors from Checkpoint::validate; `optional` names may be absent or ignored) and
/// replaces the parameters by the checkpoint's tensors cast to the model's dtype, on the
/// checkpoint's device (which becomes model.device()). On a GPU the projections that read the
/// same input are then stacked (fuse_projections). A config-only checkpoint
/// (Checkpoint::from_config) loads nothing: the model only moves to its device, its parameters
/// keep their constructed values (init_model replaces them).
void load_weights(Model& model, const Checkpoint& ckpt,
                  const std::vector<std::string>& optional = {});

/// Makes every attention run q/k/v, and every gated MLP gate/up, as one stacked matmul
/// (nn::StackedLinear: no extra memory, same results). Layers that later get an adapter,
/// quantization or new weights fall back to separate matmuls by themselves.
void fuse_projections(Model& model);

/// Activation of config.hidden_act, with the config file named in errors.
nn::Activation config_activation(const ModelConfig& c);

}  // namespace ingot::models
