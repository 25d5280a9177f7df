// Token samplers for generation: penalties and logit bias, then temperature / top-k / top-p /
// min-p warpers, then greedy argmax or a seeded categorical draw — the order and semantics of
// transformers' generate. Everything on logits is a lazy array op; only penalty state is host-side.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/array.h"

namespace ingot::llm {

/// Sampling settings (Hugging Face generate semantics; 0/1 = off).
struct SamplerOptions {
  float temperature = 0.0f;         // 0 = greedy (argmax)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // HF: logit<0 ? logit*p : logit/p for tokens seen
  float presence_penalty = 0.0f;    // OpenAI: -= presence * (count > 0)
  float frequency_penalty = 0.0f;   // OpenAI: -= frequency * count
  int penalty_context = 0;          // last N tokens considered by the penalties (0 = all seen)
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to logits (repeated ids add up)
  uint64_t seed = 0;
};

/// Turns a batch of next-token logits into token ids, keeping per-row penalty state.
/// Rows are tracked by position in the batch; a row never registered has no history.
class Sampler {
 public:
  /// Validates the options (InvalidArgument "[sampler] ..." naming the field and value).
  Sampler(SamplerOptions opt, int64_t vocab_size);

  /// Registers prompt tokens of row `row` (penalties count them, as HF's repetition penalty
  /// does over the whole input). Appends to what the row already holds.
  void add_prompt(int row, const std::vector<int32_t>& ids);
  /// logits [B, V] (any float dtype; lazy) -> sampled ids [B] int32 (lazy). Advances the key.
  Array sample(const Array& logits);
  /// Records the ids chosen at this step (one per row, B entries) so penalties see them.
  void accept(const std::vector<int32_t>& ids);
  /// Drops the rows at these batch positions (finished rows leave the batch); the others keep
  /// their state and order.
  void remove_rows(const std::vector<int>& rows);

  /// Scores after processors and (when sampling) warpers, as HF's `output_scores`: removed
  /// tokens are -inf. [B, V] float32, lazy. Does not advance the key.
  Array processed_logits(const Array& logits) const;
  /// log_softmax of processed_logits: the distribution sampled from (for greedy, the
  /// penalised distribution whose argmax is taken).
  Array processed_logprobs(const Array& logits) const;

  /// True when temperature is 0 (argmax, no warpers, no randomness).
  bool greedy() const { return opt_.temperature == 0.0f; }
  /// True when a repetition, presence or frequency penalty is active (history is kept).
  bool has_penalties() const { return penalties_; }
  const SamplerOptions& options() const { return opt_; }
  int64_t vocab_size() const { return vocab_; }
  /// Number of rows with penalty state (0 when no penalty is active).
  int64_t tracked_rows() const { return static_cast<int64_t>(rows_.size()); }

 private:
  /// Token counts of one row over the penalty window.
  struct RowState {
    std::unordered_map<int32_t, int32_t> counts;
    std::deque<int32_t> window;  // only kept when penalty_context > 0
  };

  void push_token(RowState& r, int32_t id);
  void check_id(int32_t id, const char* where) const;
  Array check_logits(const Array& logits, const char* where) const;
  Array apply_processors(Array x) const;
  Array apply_penalties(const Array& x) const;
  Array apply_warpers(Array x) const;

  SamplerOptions opt_;
  int64_t vocab_;
  bool penalties_;
  std::optional<Array> bias_;  // dense [V] float32 when logit_bias is non-empty
  Array key_;
  std::vector<RowState> rows_;
};

}  // namespace ingot::llm
