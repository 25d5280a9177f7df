// Scoring, classification and embeddings on token ids (DESIGN.md §6): prefill only, batched by
// length, with a shared prompt prefix whose KV is computed once per run.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "llm/kv_cache.h"
#include "models/model.h"

namespace ingot::llm {

/// Log-probabilities of a continuation after a prompt.
struct ScoreResult {
  std::vector<double> token_logprobs;  ///< log P(continuation[i] | prompt, continuation[:i])
  double sum = 0;
};

/// One scoring request.
struct ScoreRequest {
  std::vector<int32_t> prompt;        ///< non-empty
  std::vector<int32_t> continuation;  ///< non-empty
};

/// Scores every request (batched with left padding, `batch_size` rows per forward). With a
/// `prefix` cache (see ClassifyOptions::prefix) every prompt must start with its ids, which are
/// not computed again: each batch runs on a copy of its keys and values (left unchanged),
/// padded after the prefix.
std::vector<ScoreResult> score(const models::Model& model, const std::vector<ScoreRequest>& reqs,
                               int64_t batch_size = 16, const PromptCache* prefix = nullptr);

/// Options of classify / embed.
struct ClassifyOptions {
  /// Rows per forward pass; texts are sorted by length first so a batch pads little. 0: sized
  /// per batch (auto_batch_rows; a packed batch on a GPU by its tokens instead: rows are added
  /// while their tokens stay within INGOT_CLASSIFY_TOKENS and one layer's activations for them
  /// within a quarter of the free device memory).
  int64_t batch_size = 0;
  /// Texts taken, sorted and batched together; results come out in input order per group.
  int64_t group_size = 4096;
  /// Called after each batch with the number of prompts done and the total (progress).
  std::function<void(int64_t done, int64_t total)> on_progress;
  /// A precomputed shared prefix (nullptr or empty: none): a cache of `model` holding one row
  /// whose ids (tokens(), one per position) every prompt starts with (a prompt may equal them),
  /// unbounded on every layer (PromptCacheOptions::unbounded). Its keys and values are reused
  /// by every batch instead of being computed again; a group whose prompts share more ids
  /// extends a copy of it once for the group, and a batch holding a prompt no longer than it
  /// uses a copy rewound to leave that prompt one id of its own. The cache is not changed.
  /// classify and embed with Pooling::last only (mean pooling needs the prefix's hidden states).
  const PromptCache* prefix = nullptr;
};

/// Rows of an automatically sized batch of rows with `width` own columns after a shared
/// prefix of `prefix` columns: 64 on the CPU; on a GPU as many as make 32,768 tokens
/// (INGOT_CLASSIFY_TOKENS overrides), at most 1,024, and few enough that the batch's working set
/// (one layer's activations per token plus every layer's keys and values) stays within a
/// quarter of the device memory still available.
int64_t auto_batch_rows(const models::Model& model, int64_t prefix, int64_t width);

/// Overrides INGOT_CLASSIFY_PACKED for classify and embed (true: packed batches where the model
/// supports them, false: padded batches); nullopt restores the environment's setting (for
/// tests). Packed batches put a batch's prompts back to back in one row with no padding and no
/// KV cache (fast::packed_attention keeps each prompt to itself and the shared prefix); they
/// are used for classify with distinct first label tokens and embed with Pooling::last, when
/// Model::supports_packed(). INGOT_CLASSIFY_PACKED: "1" on, "0" off; unset: on for a model on
/// a GPU, off on the CPU.
void set_classify_packed(std::optional<bool> on);
/// How many packed batches classify and embed have run (tests check the path is taken).
int64_t classify_packed_batches();

/// Per text: probability of each label (softmax over the labels' log-likelihoods).
using LabelProbs = std::vector<double>;

/// Classifies each prompt (full token ids: template with the text filled in) by the likelihood
/// of each label's token ids continuing it. If every label's first token differs, only those
/// first tokens are scored (the last hidden state times their LM-head rows, no full-vocabulary
/// logits); otherwise each label's whole sequence is scored. The longest prefix shared by all
/// prompts of a group is prefilled once and its KV reused by every batch of the group.
/// `on_result(i, probs)` is called for every prompt in input order as groups finish.
std::vector<LabelProbs> classify(
    const models::Model& model, const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<std::vector<int32_t>>& labels, const ClassifyOptions& opt = {},
    const std::function<void(int64_t, const LabelProbs&)>& on_result = nullptr);

/// How embed pools the final hidden states.
enum class Pooling { last, mean };

/// Pooled final hidden states (float32) of each prompt: the last token's, or the mean over all
/// its tokens (shared prefix included).
std::vector<std::vector<float>> embed(const models::Model& model,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      Pooling pooling, const ClassifyOptions& opt = {});

}  // namespace ingot::llm
