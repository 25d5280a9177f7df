// Step-wise batched decoding with rows that join and leave between steps (continuous batching,
// DESIGN.md §6). New rows are prefilled on their own (left-padded among themselves), their first
// token is sampled, and their keys/values are merged into the running batch's cache: every row
// is left-padded to the batch's column count (one padding span per row, from column 0), so one
// decode step feeds one column to every row. Finished rows leave (their cache rows are dropped)
// and columns that are padding in every remaining row are cut off, so the cache stays as long
// as the longest running row. Each row has its own sampler (options, seed, penalty state) and
// optional token mask. Joining rows can be prefilled a chunk at a time between decode steps
// (join + prefill_step), so running rows keep producing tokens while a long prompt joins, and
// prompts can start from keys/values of earlier rows (a PrefixStore: prompt caching).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "llm/kv_cache.h"
#include "llm/logprobs.h"
#include "llm/sampler.h"
#include "models/model.h"

namespace ingot::llm {

/// A row to add to a BatchDecoder.
struct DecoderRow {
  /// Caller's handle of the row (unique among the rows in the decoder).
  int64_t key = 0;
  /// Prompt ids (non-empty, inside the vocabulary).
  std::vector<int32_t> prompt;
  /// Sampling of this row (greedy rows without penalties are sampled together).
  SamplerOptions sampler;
  /// Optional: the mask (vocab entries, non-zero = allowed) of the next id given the ids this
  /// row has generated so far, or nullptr for none (GenerateOptions::token_mask per row).
  std::function<const std::vector<uint8_t>*(const std::vector<int32_t>& generated)> token_mask;
  /// Log-probabilities (0 <= k <= vocab; -1 = none): after each sampling of this row,
  /// last_logprobs() holds its token's log-probability under the row's logits (after the token
  /// mask, before the sampler's penalties and warpers) and the k most likely ids.
  int logprobs = -1;
};

/// Options of BatchDecoder.
struct BatchDecoderOptions {
  /// Prompt tokens per prefill pass of a joining group (0 = the whole group in one pass). A
  /// pass covers max(1, prefill_chunk / rows) columns of the group's left-padded prompts.
  int64_t prefill_chunk = 512;
  /// Prompt caching across rows (max_bytes 0: off). Prompts are stored in whole blocks when
  /// they join; a joining prompt reuses the longest stored prefix (at most its length - 1:
  /// the last id is always computed).
  PrefixStoreOptions prefix{.block = 16, .max_bytes = 0};
  /// Also store a leaving row's prompt + generated ids (a chat's next turn starts with them).
  /// Off by default: every answer is new, so the store then fills to its budget.
  bool store_generated = false;
};

class BatchDecoder {
 public:
  /// `prefill_chunk`: as BatchDecoderOptions::prefill_chunk; no prompt caching.
  explicit BatchDecoder(const models::Model& model, int64_t prefill_chunk = 512);
  BatchDecoder(const models::Model& model, const BatchDecoderOptions& opt);

  /// Prefills `rows` (as one left-padded group), samples each one's first token, and adds them
  /// to the batch (join + prefill_step until done). Returns the first tokens in the order of
  /// `rows`. On an exception the batch is left as it was (the new rows are not added). Not
  /// while another group is joining.
  std::vector<int32_t> admit(std::vector<DecoderRow> rows);
  /// Starts prefilling `rows` as one group (one group at a time; InvalidArgument while another
  /// joins). Returns how many prompt ids of each row come from the prefix store.
  std::vector<int64_t> join(std::vector<DecoderRow> rows);
  /// True while a group started by join() is being prefilled.
  bool joining() const { return join_ != nullptr; }
  /// Prompt columns of the joining group still to compute (0 when none joins).
  int64_t join_columns_left() const;
  /// One prefill pass of the joining group. When it was the last: samples the group's first
  /// tokens, adds its rows to the batch (after the running rows, in join order) and returns
  /// the tokens; otherwise nullopt. On an exception the group is dropped, the batch is as it
  /// was, and the exception propagates.
  std::optional<std::vector<int32_t>> prefill_step();
  /// Feeds every row its last token and samples the next; returns the new ids in the order of
  /// keys(). The batch must not be empty.
  std::vector<int32_t> step();
  /// Removes the rows with these keys (unknown keys are ignored). A row of the joining group is
  /// removed when the group joins (the group is abandoned when every row of it is dropped).
  void drop(const std::vector<int64_t>& keys);

  /// Per id last returned by step() / prefill_step() (same order): the row's TokenLogprobs,
  /// or nullopt for a row that asked for none (DecoderRow::logprobs).
  const std::vector<std::optional<TokenLogprobs>>& last_logprobs() const { return last_lp_; }

  /// Keys of the rows, in batch order.
  std::vector<int64_t> keys() const;
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  /// Columns held by the cache (the longest row plus its padding alignment).
  int64_t columns() const { return cache_ ? cache_->offset() : 0; }
  /// Bytes held by the cache.
  int64_t cache_bytes() const { return cache_ ? cache_->nbytes() : 0; }
  /// The prompt cache (null when off).
  const PrefixStore* prefix_store() const { return store_.get(); }
  /// Prefill passes run so far (over all groups).
  int64_t prefill_passes() const { return passes_; }

 private:
  struct Row {
    int64_t key = 0;
    std::unique_ptr<Sampler> sampler;  // null: greedy without penalties (sampled together)
    std::function<const std::vector<uint8_t>*(const std::vector<int32_t>&)> token_mask;
    int logprobs = -1;  // top count of DecoderRow::logprobs (-1: none)
    std::vector<int32_t> prompt;
    std::vector<int32_t> generated;
    int64_t pad = 0;  // padding columns [0, pad) of this row in the cache
  };
  /// A group being prefilled: its own cache, left-padded prompt columns, the next column.
  struct Join {
    explicit Join(PromptCache c) : cache(std::move(c)) {}
    PromptCache cache;
    std::vector<std::vector<int32_t>> cols;
    int64_t next = 0;
    std::vector<Row> rows;
    std::vector<int64_t> dropped;  // keys dropped while joining
  };
  /// Samples one id per row of `rows` from `logits` [B, V] (row i of logits = rows[i]).
  std::vector<int32_t> sample(const Array& logits, std::vector<Row*>& rows);
  void apply_padding();
  /// Adds a prefilled group's rows and cache to the batch.
  void merge(PromptCache fresh, std::vector<Row> added);
  /// Stores the whole blocks of `tokens` whose keys/values are columns [pad, pad + n) of row
  /// `row` of `cache`.
  void store_prefix(const PromptCache& cache, int64_t row, int64_t pad,
                    const std::vector<int32_t>& tokens, int64_t n);

  const models::Model& model_;
  BatchDecoderOptions opt_;
  int64_t vocab_;
  std::optional<PromptCache> cache_;
  std::vector<Row> rows_;
  Sampler greedy_;
  std::unique_ptr<PrefixStore> store_;
  std::unique_ptr<Join> join_;
  int64_t passes_ = 0;
  std::vector<std::optional<TokenLogprobs>> last_lp_;
};

}  // namespace ingot::llm
