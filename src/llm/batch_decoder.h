// Step-wise batched decoding with rows that join and leave between steps (continuous batching,
// DESIGN.md §6). Keys and values live in a paged cache (llm/paged_kv.h): one pool of fixed-size
// blocks per layer shared by every row, each row with its own block table, so rows join and
// leave without copying anyone's keys/values: a joining row gets blocks as it computes
// positions, a leaving row gives its blocks back. New rows are prefilled as a group (each row's
// prompt left-padded to the group's width, every row at its own positions), their first token
// is sampled, and they join the batch; one decode step feeds every row its last token at its
// own position. Each row has its own sampler (options, seed, penalty state) and optional token
// mask. Joining rows can be prefilled a chunk at a time between decode steps (join +
// prefill_step), so running rows keep producing tokens while a long prompt joins, and prompts
// start from the blocks of earlier rows (a PrefixStore: prompt caching, blocks shared in place).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "llm/kv_cache.h"
#include "llm/logprobs.h"
#include "llm/paged_kv.h"
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
  /// Prompt caching across rows (max_bytes 0: off). `block` is also the KV cache's block size
  /// (positions per block). Prompts are stored in whole blocks when they join; a joining prompt
  /// points its table at the longest stored prefix (at most its length - 1: the last id is
  /// always computed).
  PrefixStoreOptions prefix{.block = 16, .max_bytes = 0};
  /// Most KV blocks in use at once, prompt-cache blocks included (0 = no limit). A row that
  /// needs a block when none is free evicts prompt-cache blocks no row uses; beyond that the
  /// step fails (InvalidArgument): callers admit rows only while their blocks fit
  /// (blocks_for()).
  int64_t max_blocks = 0;
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
  /// joins). Returns how many prompt ids of each row come from the prefix store (each row's
  /// table starts with those blocks, shared in place).
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
  /// keys(). The batch must not be empty. A row that needs a block when the pool is full
  /// (max_blocks, after evicting unused prompt-cache blocks) makes it fail (InvalidArgument).
  std::vector<int32_t> step();
  /// Removes the rows with these keys (unknown keys are ignored); their blocks go back to the
  /// pool (those the prompt cache holds stay there). A row of the joining group is removed when
  /// the group joins (the group is abandoned, its blocks released, when every row of it is
  /// dropped).
  void drop(const std::vector<int64_t>& keys);

  /// Per id last returned by step() / prefill_step() (same order): the row's TokenLogprobs,
  /// or nullopt for a row that asked for none (DecoderRow::logprobs).
  const std::vector<std::optional<TokenLogprobs>>& last_logprobs() const { return last_lp_; }

  /// Keys of the rows, in batch order.
  std::vector<int64_t> keys() const;
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  /// Positions held by the longest row.
  int64_t columns() const;
  /// Bytes of the KV blocks in use (rows and prompt cache).
  int64_t cache_bytes() const { return kv_.pool().used() * kv_.block_bytes(); }
  /// The paged cache (block size, pool accounting, storage).
  const PagedKvCache& kv() const { return kv_; }
  /// KV blocks in use (rows and prompt cache; a block shared by several counts once).
  int64_t blocks_in_use() const { return kv_.pool().used(); }
  /// Blocks a row of `positions` positions needs (ceil(positions / block)).
  int64_t blocks_for(int64_t positions) const;
  /// The block table of the row (running or joining) with this key (empty when unknown).
  std::vector<int32_t> row_blocks(int64_t key) const;
  /// The prompt-cache blocks a row with this prompt would share if it joined now (what join()
  /// would point its table at; empty without a store). Marks them recently used.
  std::vector<int32_t> shared_blocks_for(const std::vector<int32_t>& prompt);
  /// Distinct prompt-cache blocks that running or joining rows share (took from the store at
  /// join), less those that are another running row's own blocks (stored in place). With each
  /// row's own blocks (blocks_for(its reach) - its shared ones) this bounds the blocks that
  /// cannot be evicted: admission keeps their sum within max_blocks.
  int64_t shared_blocks_in_use() const;
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
    std::vector<int32_t> blocks;  // block table: position t is in blocks[t / block]
    int64_t len = 0;              // positions whose keys/values are stored
    int64_t shared = 0;           // blocks[0, shared) came from the prompt cache
  };
  /// A group being prefilled: each row's prompt after its cached prefix, left-padded to the
  /// group's width; the next column.
  struct Join {
    std::vector<std::vector<int32_t>> cols;
    std::vector<int64_t> pad;  // padding columns of each row
    int64_t next = 0;
    std::vector<Row> rows;
    std::vector<int64_t> dropped;  // keys dropped while joining
  };
  /// Samples one id per row of `rows` from `logits` [B, V] (row i of logits = rows[i]).
  std::vector<int32_t> sample(const Array& logits, std::vector<Row*>& rows);
  /// Gives `r` blocks for positions [0, end).
  void reserve(Row& r, int64_t end);
  /// Gives the blocks of `r` back.
  void release(Row& r);

  const models::Model& model_;
  BatchDecoderOptions opt_;
  int64_t vocab_;
  PagedKvCache kv_;
  std::vector<Row> rows_;
  Sampler greedy_;
  std::unique_ptr<PrefixStore> store_;
  std::unique_ptr<Join> join_;
  int64_t passes_ = 0;
  std::vector<std::optional<TokenLogprobs>> last_lp_;
};

}  // namespace ingot::llm
