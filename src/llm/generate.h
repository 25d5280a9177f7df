// Token-level generation (DESIGN.md §6): chunked prefill into a PromptCache, then a decode loop
// that reads back only the sampled ids; batches of prompts of different lengths (left padding,
// finished rows leave the batch), prefix reuse of a cache across calls, and metrics.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "llm/kv_cache.h"
#include "llm/logprobs.h"
#include "llm/sampler.h"
#include "models/model.h"

namespace ingot::llm {

/// Why a row stopped.
enum class FinishReason { length, eos, stop, cancelled };
/// "length", "eos", "stop", "cancelled".
const char* finish_reason_name(FinishReason r);

/// Timing and size figures of one generate call.
struct GenerationMetrics {
  int64_t prompt_tokens = 0;     ///< tokens prefilled (after prefix reuse), all rows
  int64_t reused_tokens = 0;     ///< prompt tokens served from the prompt cache
  int64_t generated_tokens = 0;  ///< tokens sampled, all rows
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double time_to_first_token = 0;  ///< seconds from the call to the first sampled id
  double prefill_tokens_per_second() const;
  double decode_tokens_per_second() const;
  int64_t peak_memory_bytes = 0;  ///< peak of the model device's allocator during the call
  int64_t cache_bytes = 0;        ///< KV cache size at the end
  std::string device;             ///< where the model ran ("cpu", "cuda:0")
};

/// How decode steps run.
enum class DecodeMode {
  /// `graph` on a GPU (unless INGOT_CUDA_GRAPHS=0), `dynamic` elsewhere.
  automatic,
  /// Caches that grow with the sequence; finished rows leave the batch.
  dynamic,
  /// Fixed-size caches (llm/static_cache.h): the same shapes every step, any device.
  fixed,
  /// Fixed-size caches with each step replayed as a recorded CUDA graph (GPU models only).
  graph,
};

/// Options of generate().
struct GenerateOptions {
  int64_t max_tokens = 256;
  SamplerOptions sampler;
  /// Ids that end a row (the EOS ids of generation_config.json; any of them). The id is
  /// returned as the row's last token.
  std::vector<int32_t> stop_ids;
  /// Prompt columns processed per forward pass during prefill (0 = all at once).
  int64_t prefill_chunk = 512;
  /// How decode steps run. `automatic` and `dynamic` fall back to growing caches when the
  /// prompt cache cannot move into fixed buffers (a sliding-window ring that has wrapped);
  /// `fixed` and `graph` then throw InvalidArgument.
  DecodeMode decode_mode = DecodeMode::automatic;
  /// Called after each decode step with the ids just sampled for the rows still running
  /// (row = index of the prompt); returning false for a row stops it (FinishReason::stop).
  std::function<bool(int row, int32_t id)> on_token;
  /// Constrained decoding (optional): called before each sampling step for every running row
  /// with its prompt index and the ids it has generated so far; returns that row's mask over
  /// the vocabulary (vocab entries, non-zero = allowed, at least one allowed) or nullptr for
  /// no constraint. Masked-out logits become -inf on the logits' device before the sampler.
  std::function<const std::vector<uint8_t>*(int row, const std::vector<int32_t>& generated)>
      token_mask;
  /// Log-probabilities of the sampled tokens (0 <= k <= vocab; -1 = none): each token's
  /// log-probability under the row's logits (after token_mask, before the sampler's penalties
  /// and warpers) and the k most likely ids, in GenerationResult::logprobs and passed to
  /// on_logprobs (called before on_token for the same id).
  int logprobs = -1;
  std::function<void(int row, const TokenLogprobs&)> on_logprobs;
};

/// Result of generate(): new token ids per prompt (in prompt order), why each stopped, metrics.
struct GenerationResult {
  std::vector<std::vector<int32_t>> tokens;
  /// Per prompt, one entry per token of `tokens` (empty unless GenerateOptions::logprobs >= 0).
  std::vector<std::vector<TokenLogprobs>> logprobs;
  std::vector<FinishReason> finish;
  GenerationMetrics metrics;
};

/// Generates continuations of `prompts` (each non-empty). With more than one prompt the batch
/// is left-padded and rows leave it as they finish. With a `cache` and one prompt, the longest
/// common prefix with cache->tokens() is reused (the cache is rewound to it) and the cache
/// holds prompt + generated tokens afterwards; with several prompts a given cache is cleared
/// and reused for the batch. Without a cache a temporary one is used.
GenerationResult generate(const models::Model& model,
                          const std::vector<std::vector<int32_t>>& prompts,
                          const GenerateOptions& opt = {}, PromptCache* cache = nullptr);

/// Throws InvalidArgument "[component] what index is empty" or "... has token id X outside
/// the vocabulary [0, vocab)" (the checks every entry point runs on the ids it is given).
void check_token_ids(const std::vector<int32_t>& ids, int64_t vocab, const char* component,
                     const char* what, size_t index);

/// Appends the columns `ids` (B rows of equal length, padding included) to `cache` in chunks of
/// `chunk` columns (0 = one pass); each row's rotary positions skip its padding span. Returns
/// the final hidden states [B, L', E] (lazy) of the last `keep_last` columns (0 = all).
/// The building block of generate, score and classify.
Array prefill(const models::Model& model, const std::vector<std::vector<int32_t>>& ids,
              PromptCache& cache, int64_t chunk, int64_t keep_last = 1);

}  // namespace ingot::llm
