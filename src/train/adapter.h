// LoRA adapters on a loaded model: which linear layers get one (PEFT target_modules,
// all-linear, layers_to_transform), PEFT-compatible adapter_config.json and
// adapter_model.safetensors (plus mlx-lm's adapters.safetensors for loading), and applying an
// adapter: unfused low-rank branches on the frozen base layers (inference, training), or merged
// into the weights (fuse).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/transforms/autodiff.h"
#include "models/model.h"
#include "nn/layers.h"

namespace ingot::train {

/// What a LoRA adapter is: the fields of PEFT's adapter_config.json that matter here.
struct LoraConfig {
  int rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;
  /// Module names (last path component, e.g. "q_proj") or the single entry "all-linear".
  std::vector<std::string> targets{"q_proj", "v_proj"};
  /// scale = alpha / sqrt(rank) instead of alpha / rank.
  bool use_rslora = false;
  /// Decoder layers that get adapters; empty = all.
  std::vector<int> layers;
  /// Recorded in adapter_config.json (PEFT's base_model_name_or_path).
  std::string base_model;
  /// mlx-lm adapters carry their scale explicitly; overrides alpha / rank when set.
  std::optional<float> explicit_scale;

  /// The factor of B A.
  float scale() const;
};

/// Parses adapter_config.json text: PEFT's form (peft_type "LORA", r, lora_alpha,
/// target_modules as a list, a string or "all-linear", use_rslora, layers_to_transform as an
/// int or a list, lora_dropout) or mlx-lm's (lora_parameters {rank, scale, dropout, keys},
/// num_layers; needs `num_hidden_layers` to turn num_layers into layer indices). FormatError
/// "[lora] <source>: ..." naming the key on anything else.
LoraConfig parse_adapter_config(const std::string& text, const std::string& source,
                                int num_hidden_layers = 0);
/// adapter_config.json as PEFT writes it for a LoRA CAUSAL_LM adapter.
std::string adapter_config_json(const LoraConfig& c);

/// One adapted linear layer.
struct LoraTarget {
  /// Model path of the Linear ("model.layers.0.self_attn.q_proj").
  std::string module;
  int layer = 0;
  int64_t in = 0, out = 0;
};

/// The linear layers of `model` that `c` adapts, in model order. InvalidArgument naming a
/// target module that matches no linear layer (listing those there are) or a layer index
/// outside the model.
std::vector<LoraTarget> lora_targets(const models::Model& model, const LoraConfig& c);

/// A LoRA adapter for one model: its config, targets and float32 parameters named
/// "<module>.lora_A.weight" [r, in] and "<module>.lora_B.weight" [out, r].
class LoraAdapter {
 public:
  /// Fresh adapter as PEFT initialises it: A ~ uniform(-1/sqrt(in), 1/sqrt(in)) from `seed`,
  /// B = 0 (the adapted model starts equal to the base).
  static LoraAdapter init(const models::Model& model, const LoraConfig& c, uint64_t seed = 0);
  /// Loads DIR: PEFT (adapter_model.safetensors) or mlx-lm (adapters.safetensors) with its
  /// adapter_config.json. FormatError naming the file and tensor for unknown modules, missing
  /// A/B, wrong shapes or a rank that disagrees with the config; IoError for missing files.
  static LoraAdapter load(const std::string& dir, const models::Model& model);
  /// Writes DIR/adapter_model.safetensors (PEFT key names, "base_model.model." prefix, float32)
  /// and DIR/adapter_config.json; creates DIR.
  void save(const std::string& dir) const;

  const LoraConfig& config() const { return config_; }
  const std::vector<LoraTarget>& targets() const { return targets_; }
  const ParamMap& params() const { return params_; }
  /// Replaces the parameters (same names and shapes; InvalidArgument otherwise).
  void set_params(const ParamMap& p);
  /// Number of trainable elements.
  int64_t num_parameters() const;

 private:
  LoraConfig config_;
  std::vector<LoraTarget> targets_;
  ParamMap params_;
};

/// The current weights of the adapter's target layers ("<module>.weight" -> array).
ParamMap base_weights(const models::Model& model, const LoraAdapter& a);
/// W + scale * B A per target from `base` (base_weights) and adapter parameters `params`
/// (the adapter's own when empty), computed in float32 and cast to `dtype` when given.
ParamMap merged_weights(const ParamMap& base, const LoraAdapter& a, const ParamMap& params = {},
                        std::optional<Dtype> dtype = std::nullopt);
/// The Linear at a model path ("model.layers.0.self_attn.q_proj"); InvalidArgument otherwise.
nn::Linear& linear_at(nn::Module& root, const std::string& path);
/// Puts a low-rank branch (nn::LowRankBranch: scale * B A x in float32, PEFT's unfused form) on
/// every target layer, with the adapter parameters `params` (the adapter's own when empty).
void set_branches(models::Model& model, const LoraAdapter& a, const ParamMap& params = {});
/// Removes the branches of the adapter's targets.
void clear_branches(models::Model& model, const LoraAdapter& a);
/// Applies the adapter to the model for inference, unfused: the base weights stay as they are
/// and each target layer adds its low-rank branch (float32 factors on the model's device).
void apply_adapter(models::Model& model, const LoraAdapter& a);
/// Merges the adapter into the model: target weights become W + scale * B A (float32 math,
/// rounded once to the model's dtype) and the branches are removed (for `ingot fuse`).
void fuse_adapter(models::Model& model, const LoraAdapter& a);
/// Loads DIR as an adapter of `model` and applies it (the `--adapter DIR` of the CLI).
LoraAdapter load_and_apply_adapter(models::Model& model, const std::string& dir);

/// Writes the model's parameters as a Hugging Face checkpoint in OUT_DIR (model.safetensors in
/// `storage` dtype, config.json, generation_config.json and tokenizer files copied from
/// SRC_DIR): after apply_adapter, the fused checkpoint transformers loads.
void save_checkpoint(const models::Model& model, const std::string& src_dir,
                     const std::string& out_dir, Dtype storage);
/// The same for the weights `weights` (Hugging Face names) instead of a model's parameters
/// (full fine-tuning writes its float32 master copies).
void save_checkpoint(const ParamMap& weights, const std::string& src_dir,
                     const std::string& out_dir, Dtype storage);

}  // namespace ingot::train
