// Synthetic Llama-shaped bf16 checkpoints for benchmarks: config.json + model.safetensors with
// deterministic pseudo-random filler scaled so activations stay finite (no real weights needed).
#pragma once

#include <cstdint>
#include <string>

namespace ingot::bench {

/// Shape of a Llama-architecture checkpoint (head_dim = hidden / heads).
struct LlamaShape {
  int64_t hidden = 2048;
  int64_t inter = 8192;
  int64_t layers = 16;
  int64_t heads = 32;
  int64_t kv_heads = 8;
  int64_t vocab = 128256;
  bool tied = true;

  int64_t head_dim() const { return hidden / heads; }
  /// Weights multiplied per token inside the decoder layers (q, k, v, o, gate, up, down).
  int64_t layer_matmul_params() const;
  /// Every parameter of the checkpoint (embedding, norms, layers, untied head).
  int64_t total_params() const;
};

/// Llama-3.2-1B's shape (hidden 2048, inter 8192, 16 layers, 32/8 heads, vocab 128256, tied).
inline constexpr LlamaShape kLlama1B{};
/// A ~0.1B shape (hidden 768, inter 2048, 12 layers, 12/4 heads, vocab 32000, tied).
inline constexpr LlamaShape kLlamaSmall{768, 2048, 12, 12, 4, 32000, true};

/// Writes DIR/config.json and DIR/model.safetensors (bf16) for `shape` unless DIR already holds
/// exactly this checkpoint (same config text, same file size): 2-D weights uniform in
/// +-sqrt(3 / fan_in) (unit-variance projections), norm weights near 1. The weights file is
/// written under a temporary name and renamed, then config.json. Returns DIR.
std::string write_llama_checkpoint(const std::string& dir, const LlamaShape& shape);

/// The environment variable `env` if set (e.g. INGOT_BENCH_DIR), else `fallback`.
std::string bench_dir(const char* env, const std::string& fallback);

}  // namespace ingot::bench
