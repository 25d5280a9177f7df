// Step-wise batched decoding with rows that join and leave between steps (continuous batching,
// DESIGN.md §6). New rows are prefilled on their own (left-padded among themselves), their first
// token is sampled, and their keys/values are merged into the running batch's cache: every row
// is left-padded to the batch's column count (one padding span per row, from column 0), so one
// decode step feeds one column to every row. Finished rows leave (their cache rows are dropped)
// and columns that are padding in every remaining row are cut off, so the cache stays as long
// as the longest running row. Each row has its own sampler (options, seed, penalty state) and
// optional token mask.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "llm/kv_cache.h"
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
};

class BatchDecoder {
 public:
  /// `prefill_chunk`: prompt columns per forward pass when rows are admitted (0 = all at once).
  explicit BatchDecoder(const models::Model& model, int64_t prefill_chunk = 512);

  /// Prefills `rows` (as one left-padded group), samples each one's first token, and adds them
  /// to the batch. Returns the first tokens in the order of `rows`. On an exception the batch
  /// is left as it was (the new rows are not added).
  std::vector<int32_t> admit(std::vector<DecoderRow> rows);
  /// Feeds every row its last token and samples the next; returns the new ids in the order of
  /// keys(). The batch must not be empty.
  std::vector<int32_t> step();
  /// Removes the rows with these keys (unknown keys are ignored).
  void drop(const std::vector<int64_t>& keys);

  /// Keys of the rows, in batch order.
  std::vector<int64_t> keys() const;
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  /// Columns held by the cache (the longest row plus its padding alignment).
  int64_t columns() const { return cache_ ? cache_->offset() : 0; }
  /// Bytes held by the cache.
  int64_t cache_bytes() const { return cache_ ? cache_->nbytes() : 0; }

 private:
  struct Row {
    int64_t key = 0;
    std::unique_ptr<Sampler> sampler;  // null: greedy without penalties (sampled together)
    std::function<const std::vector<uint8_t>*(const std::vector<int32_t>&)> token_mask;
    std::vector<int32_t> generated;
    int64_t pad = 0;  // padding columns [0, pad) of this row in the cache
  };
  /// Samples one id per row of `rows` from `logits` [B, V] (row i of logits = rows[i]).
  std::vector<int32_t> sample(const Array& logits, std::vector<Row*>& rows);
  void apply_padding();

  const models::Model& model_;
  int64_t chunk_;
  int64_t vocab_;
  std::optional<PromptCache> cache_;
  std::vector<Row> rows_;
  Sampler greedy_;
};

}  // namespace ingot::llm
