// config.json of a Hugging Face checkpoint parsed into one normalised ModelConfig: both the
// classic hub form (rope_theta, rope_scaling, rope_local_base_freq, sliding_window_pattern,
// torch_dtype) and the transformers 5.x form (rope_parameters, possibly per layer type;
// layer_types; dtype), and the nested text_config of multimodal Gemma3 checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dist/group.h"
#include "core/dtype.h"

namespace ingot::models {

/// Rotary embedding parameters of one kind of layer.
struct RopeParams {
  /// "default", "linear", "llama3" (supported); "dynamic", "yarn", "longrope" (recorded only).
  std::string type = "default";
  double theta = 10000.0;
  /// linear / llama3 / dynamic / yarn scaling factor.
  double factor = 1.0;
  /// llama3 band factors and original context.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
  /// yarn / longrope extras (recorded, not used).
  std::optional<double> attention_factor, beta_fast, beta_slow;
  /// Fraction of the head dimension that rotates (1 unless the config says otherwise).
  double partial_rotary_factor = 1.0;
  /// True for the types ingot computes: default, linear, llama3.
  bool supported() const;
  /// Throws Unsupported "[config] <source>: rope_type '<t>' ... is not supported" if !supported().
  void check_supported(const std::string& source) const;
  bool operator==(const RopeParams&) const = default;
};

/// Attention of one layer: global (full causal) or a causal sliding window.
enum class AttentionKind { global, sliding };

/// Normalised per-layer attention spec.
struct LayerSpec {
  AttentionKind kind = AttentionKind::global;
  /// Window length for sliding layers (attend to the last `window` positions), else 0.
  int64_t window = 0;
  RopeParams rope;
  bool operator==(const LayerSpec&) const = default;
};

/// Affine group-wise quantization parameters of one module (mlx-community layout).
struct QuantizationSpec {
  int group_size = 64;
  int bits = 4;
  bool operator==(const QuantizationSpec&) const = default;
};

/// "quantization" (or "quantization_config") of an mlx-community checkpoint: defaults plus
/// per-module overrides keyed by module path ("model.layers.0.mlp.down_proj"), whose value is
/// the module's own parameters or nullopt (`false`: the module is not quantized).
struct QuantizationConfig {
  QuantizationSpec defaults;
  std::map<std::string, std::optional<QuantizationSpec>> modules;
  /// The parameters of module `path` when it is quantized: its override, else the defaults
  /// when the weights hold "<path>.scales" (`has_scales`), else nullopt.
  std::optional<QuantizationSpec> for_module(const std::string& path, bool has_scales) const;
};

/// Everything the architectures read from config.json.
struct ModelConfig {
  /// model_type of the text model ("llama", "qwen3", "gemma3_text"; a multimodal "gemma3"
  /// checkpoint's text_config gives "gemma3_text").
  std::string model_type;
  /// model_type at the top of the file ("gemma3" for multimodal Gemma3).
  std::string outer_model_type;
  /// "architectures" (e.g. "LlamaForCausalLM"), may be empty.
  std::vector<std::string> architectures;
  /// Prefix of the text model's weights in the checkpoint: "" or "language_model." (multimodal
  /// Gemma3, whose text weights are language_model.model.* and language_model.lm_head.*).
  std::string weight_prefix;

  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  /// Explicit in the file, else hidden_size / num_attention_heads.
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  /// Standard deviation of the random initialisation of Linear and Embedding weights
  /// (transformers' _init_weights; init_model), "initializer_range", default 0.02.
  double initializer_range = 0.02;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id, pad_token_id;
  /// eos_token_id as a list (a single int becomes one entry).
  std::vector<int64_t> eos_token_ids;
  /// Storage dtype from "dtype" / "torch_dtype" ("float32", "bfloat16", "float16"), if given.
  std::optional<Dtype> dtype;
  /// "silu", "gelu_pytorch_tanh", ... from hidden_act / hidden_activation.
  std::string hidden_act;
  bool attention_bias = false;
  bool mlp_bias = false;

  // Gemma3 (absent elsewhere).
  std::optional<double> query_pre_attn_scalar;
  std::optional<double> final_logit_softcapping;
  std::optional<double> attn_logit_softcapping;
  std::optional<int64_t> sliding_window;

  /// Rope parameters by layer type ("full_attention", "sliding_attention").
  std::map<std::string, RopeParams> rope;
  /// One entry per layer: attention kind, window, rope.
  std::vector<LayerSpec> layers;
  /// "full_attention" / "sliding_attention" per layer (as layer_types would say).
  std::vector<std::string> layer_types;

  /// Affine quantization (mlx-community checkpoints), absent for float checkpoints.
  std::optional<QuantizationConfig> quantization;

  /// Where the config came from (for messages).
  std::string source;

  /// Tensor parallelism: the group the model is sharded over (models/tensor_parallel.h); the
  /// head and intermediate counts above are then this rank's share. Null: not sharded.
  std::shared_ptr<dist::Group> tp;

  /// Layers of each kind, e.g. "5 sliding (window 512) + 1 global, pattern S S S S S G".
  std::string attention_summary() const;
};

/// Parses config.json text; `source` names the file in messages. Throws FormatError
/// "[config] <source>: ..." naming the key for invalid JSON, wrong types ("hidden_size" is a
/// string), missing or inconsistent values, and an unsupported model_type (listing the
/// supported ones).
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

/// Reads and parses a config.json file, or DIR/config.json when given a directory. Throws
/// IoError "[config] ..." naming the path when it is missing or unreadable.
ModelConfig load_model_config(const std::string& path);

}  // namespace ingot::models
