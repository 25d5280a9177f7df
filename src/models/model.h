// Public interface of a causal language model loaded from a Hugging Face checkpoint directory:
// load_model(dir, {dtype, device}) -> Model; forward(ids) -> float32 logits, or the final hidden
// states and lm_head() on chosen rows only (scoring, classification).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/array.h"
#include "models/config.h"
#include "nn/attention.h"
#include "nn/module.h"

namespace ingot::models {

class Checkpoint;

/// How attention is computed.
enum class AttentionImpl {
  /// fast::scaled_dot_product_attention (flash-style, float32 inside).
  fast,
  /// transformers' "eager" order of operations: scores = q k^T and scores * scale rounded to
  /// the compute dtype, softmax in float32 rounded back, then p v. Matches transformers' eager
  /// bf16 numbers closely (parity runs); slower, memory O(L * S) per head.
  eager,
};

/// How a model is loaded.
struct LoadModelOptions {
  /// Compute dtype (weights are cast on load); absent: the checkpoint's storage dtype.
  std::optional<Dtype> dtype;
  /// Print loader warnings (unexpected tensors, e.g. a multimodal vision tower) to stderr.
  bool warn = true;
  AttentionImpl attention = AttentionImpl::fast;
  /// Device the weights are loaded onto and the model computes on; absent: default_device().
  std::optional<Device> device;
  /// Shard the model over this group (tensor parallelism: every rank of the group loads the
  /// same checkpoint with its group and runs the same calls; models/tensor_parallel.h). Null
  /// or a single-rank group: the whole model.
  std::shared_ptr<dist::Group> tensor_parallel;
  /// GGUF files: run Q8_0 / Q4_0 / Q4_K matrices quantized (true) or dequantize them on load
  /// (false); absent: INGOT_GGUF_NATIVE, default true (CheckpointOptions::gguf_native).
  std::optional<bool> gguf_native;
};

/// Per-call inputs of a forward pass.
struct ForwardOptions {
  /// Position of the first token of every row (ignored by layers that have a cache: the cache's
  /// offset is used).
  int64_t offset = 0;
  /// Per-row positions of the first token [B] (left-padded batches); overrides offset.
  std::optional<Array> offsets;
  /// One cache per layer (size num_layers()) or empty for a stateless pass.
  std::vector<nn::KVCache*> caches;
  /// Full attention mask, causality included, boolean (true = attend) or additive float,
  /// broadcastable to [B, 1, L, S]; absent = causal. Sliding-window layers AND it with their
  /// window band. Without a mask, a cache may supply one (it then owns the window too).
  std::optional<Array> mask;
  /// Only the last `queries` positions' hidden states are wanted (0 = all): the last layer
  /// then runs its queries, attention output and MLP for those rows alone (keys and values,
  /// and the caches, still cover every position) and hidden() returns [B, queries, E]. With
  /// `starts`: 0, or 1 for the last token of each sequence ([1, N, E]).
  int64_t queries = 0;
  /// A packed batch when non-empty (Model::supports_packed()): ids is [1, T], N sequences back
  /// to back without padding, sequence s is columns [starts[s], starts[s + 1]) (starts[0] = 0,
  /// the last entry T, every sequence at least one token). Token i of a sequence is at position
  /// P + i and attends to the prefix's P columns and its own earlier tokens only, with no cache,
  /// so no caches, mask, offsets or offset (0) with it.
  std::vector<int64_t> starts;
  /// Packed batches: one (keys, values) pair per layer, each [1, Hkv, P, D], of a prefix every
  /// sequence continues, as a cache holds them (a LayerCache's first P columns); empty: none.
  std::vector<std::pair<Array, Array>> prefix;
};

/// A decoder-only language model. Parameters carry their Hugging Face names
/// ("model.layers.0.self_attn.q_proj.weight").
class Model : public nn::Module {
 public:
  /// ids [B, L] (any integer dtype) -> logits [B, L, V] in float32.
  Array forward(const Array& ids, const ForwardOptions& opt = {}) const;
  /// ids [B, L] -> hidden states after the final norm [B, L, E] in the compute dtype.
  virtual Array hidden(const Array& ids, const ForwardOptions& opt = {}) const = 0;
  /// h [..., E] -> logits [..., V] in float32 (head in the compute dtype, final softcap
  /// applied). Pass only the rows you need (e.g. the last position, or gathered vocab rows
  /// with lm_head_weight()).
  virtual Array lm_head(const Array& h) const = 0;
  /// h [..., E] -> logits [..., K] in float32 of the vocabulary entries `ids` [K] only (their
  /// rows of the head, final softcap applied): classification without full-vocabulary logits.
  virtual Array lm_head_rows(const Array& h, const Array& ids) const = 0;
  /// The head matrix [V, E] (the embedding table when tied).
  virtual Array lm_head_weight() const = 0;
  /// Switches how attention is computed (default fast).
  virtual void set_attention_impl(AttentionImpl impl) = 0;
  /// Whether hidden() takes packed batches (ForwardOptions::starts) now; false by default.
  virtual bool supports_packed() const { return false; }

  const ModelConfig& config() const { return config_; }
  /// Architecture name ("llama", "qwen3", "gemma3").
  const std::string& architecture() const { return architecture_; }
  /// Compute dtype of the weights and activations.
  Dtype dtype() const { return dtype_; }
  int num_layers() const { return static_cast<int>(config_.num_hidden_layers); }
  int64_t vocab_size() const { return config_.vocab_size; }
  /// Where the weights live; arrays the model and the llm layer create for it go there too.
  Device device() const { return device_; }
  /// Wall-clock seconds load_model took: reading the checkpoint, the copy to the device and
  /// the casts, all finished (0 for a model not made by load_model).
  double load_seconds() const { return load_seconds_; }

 protected:
  Model(ModelConfig config, std::string architecture, Dtype dtype)
      : config_(std::move(config)),
        architecture_(std::move(architecture)),
        dtype_(dtype),
        device_(default_device()) {}

 private:
  friend std::shared_ptr<Model> load_model(const std::string& dir, const LoadModelOptions& opt);
  friend void load_weights(Model& model, const Checkpoint& ckpt,
                           const std::vector<std::string>& optional);

  ModelConfig config_;
  std::string architecture_;
  Dtype dtype_;
  Device device_;
  double load_seconds_ = 0;
};

/// How init_model builds a model.
struct InitModelOptions {
  /// Compute dtype of the parameters (default float32).
  Dtype dtype = float32;
  /// Where the parameters live; absent: default_device().
  std::optional<Device> device;
  /// Seeds every parameter's random values (the same seed gives the same model).
  uint64_t seed = 0;
};

/// A new model of the config's architecture (llama, qwen3, gemma3) with random weights, as
/// transformers' _init_weights initialises them: Linear and Embedding weights ~ Normal(0,
/// config.initializer_range), the embedding row of pad_token_id 0, biases 0, RMSNorm weights 1
/// (0 for the (1 + w) norms of Gemma3). Each parameter's values come from a key of (seed, its
/// name): deterministic, the same on every device. A tied head stays the embedding.
/// FormatError for an unsupported model_type, Unsupported for a quantized config.
std::shared_ptr<Model> init_model(const ModelConfig& config, const InitModelOptions& opt = {});
/// init_model of the config.json at `path` (a file, or a directory holding config.json);
/// IoError naming the path when it is missing.
std::shared_ptr<Model> init_model(const std::string& path, const InitModelOptions& opt = {});

/// Loads the checkpoint directory DIR: config.json + safetensors (single or sharded). Missing
/// or wrongly shaped tensors are FormatErrors naming the tensor and file; unexpected tensors are
/// warned about. On the CPU weights stay mmapped where no cast is needed; on a GPU they are
/// copied there (then cast) before load_model returns.
std::shared_ptr<Model> load_model(const std::string& dir, const LoadModelOptions& opt = {});

}  // namespace ingot::models
