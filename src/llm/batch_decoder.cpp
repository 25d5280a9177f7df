// Continuous batching decoder (see batch_decoder.h).
#include "llm/batch_decoder.h"

#include <algorithm>
#include <limits>

#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "llm/generate.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

bool plain_greedy(const SamplerOptions& o) {
  return o.temperature == 0.0f && o.repetition_penalty == 1.0f && o.presence_penalty == 0.0f &&
         o.frequency_penalty == 0.0f && o.logit_bias.empty();
}

}  // namespace

BatchDecoder::BatchDecoder(const models::Model& model, int64_t prefill_chunk)
    : BatchDecoder(model, BatchDecoderOptions{.prefill_chunk = prefill_chunk}) {}

namespace {

PagedKvOptions paged_options(const BatchDecoderOptions& opt) {
  if (opt.prefix.block < 1)
    raise("[batch_decoder] the block (prefix.block) must be >= 1 token, got {}", opt.prefix.block);
  if (opt.max_blocks < 0)
    raise("[batch_decoder] max_blocks must be >= 0 (0 = no limit), got {}", opt.max_blocks);
  return {.block = opt.prefix.block, .max_blocks = opt.max_blocks};
}

}  // namespace

BatchDecoder::BatchDecoder(const models::Model& model, const BatchDecoderOptions& opt)
    : model_(model),
      opt_(opt),
      vocab_(model.vocab_size()),
      kv_(model, paged_options(opt)),
      greedy_(SamplerOptions{}, model.vocab_size()) {
  if (opt_.prefill_chunk < 0)
    raise("[batch_decoder] prefill_chunk must be >= 0 tokens, got {}", opt_.prefill_chunk);
  if (opt_.prefix.max_bytes < 0)
    raise("[batch_decoder] prefix.max_bytes must be >= 0 (0 = off), got {}", opt_.prefix.max_bytes);
  if (opt_.prefix.max_bytes > 0) store_ = std::make_unique<PrefixStore>(opt_.prefix, kv_.pool());
}

int64_t BatchDecoder::columns() const {
  int64_t n = 0;
  for (const auto& r : rows_) n = std::max(n, r.len);
  return n;
}

int64_t BatchDecoder::blocks_for(int64_t positions) const {
  return (std::max<int64_t>(0, positions) + kv_.block() - 1) / kv_.block();
}

std::vector<int32_t> BatchDecoder::row_blocks(int64_t key) const {
  for (const auto& r : rows_)
    if (r.key == key) return r.blocks;
  if (join_)
    for (const auto& r : join_->rows)
      if (r.key == key) return r.blocks;
  return {};
}

std::vector<int32_t> BatchDecoder::shared_blocks_for(const std::vector<int32_t>& prompt) {
  if (!store_ || prompt.empty()) return {};
  return store_->match(prompt, static_cast<int64_t>(prompt.size()) - 1);
}

int64_t BatchDecoder::shared_blocks_in_use() const {
  // Blocks some row took from the store and that are not another row's own (a row's own
  // blocks that the store took in place are counted with that row's).
  std::vector<int32_t> shared, own;
  auto add = [&](const Row& r) {
    shared.insert(shared.end(), r.blocks.begin(), r.blocks.begin() + r.shared);
    own.insert(own.end(), r.blocks.begin() + r.shared, r.blocks.end());
  };
  for (const auto& r : rows_) add(r);
  if (join_)
    for (const auto& r : join_->rows) add(r);
  std::sort(shared.begin(), shared.end());
  shared.erase(std::unique(shared.begin(), shared.end()), shared.end());
  std::sort(own.begin(), own.end());
  int64_t n = 0;
  for (int32_t id : shared) n += std::binary_search(own.begin(), own.end(), id) ? 0 : 1;
  return n;
}

void BatchDecoder::reserve(Row& r, int64_t end) {
  BlockPool& pool = kv_.pool();
  while (static_cast<int64_t>(r.blocks.size()) * kv_.block() < end) {
    // A full pool first gives up prompt-cache blocks that no row uses.
    while (pool.available() <= 0 && store_ && store_->evict_one()) {
    }
    r.blocks.push_back(pool.allocate());
  }
}

void BatchDecoder::release(Row& r) {
  for (int32_t b : r.blocks) kv_.pool().release(b);
  r.blocks.clear();
  r.len = 0;
  r.shared = 0;
}

std::vector<int64_t> BatchDecoder::keys() const {
  std::vector<int64_t> k;
  for (const auto& r : rows_) k.push_back(r.key);
  return k;
}

std::vector<int32_t> BatchDecoder::sample(const Array& logits, std::vector<Row*>& rows) {
  const int64_t b = static_cast<int64_t>(rows.size());
  // Token masks (rows without one keep their logits).
  Array x = logits;
  {
    const size_t v = static_cast<size_t>(vocab_);
    std::vector<uint8_t> flat;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (!rows[r]->token_mask) continue;
      const std::vector<uint8_t>* m = rows[r]->token_mask(rows[r]->generated);
      if (!m) continue;
      if (m->size() != v)
        raise("[batch_decoder] token mask has {} entries for a vocabulary of {}", m->size(),
              vocab_);
      if (flat.empty()) flat.assign(rows.size() * v, 1);
      std::copy(m->begin(), m->end(), flat.begin() + static_cast<std::ptrdiff_t>(r * v));
    }
    if (!flat.empty()) {
      const Array mask(flat, {b, vocab_}, bool_);
      x = where(mask, x, Array(-std::numeric_limits<float>::infinity()));
    }
  }
  // Plain greedy rows: one argmax over them; every other row: its own sampler.
  std::vector<int32_t> greedy_idx;
  std::vector<size_t> greedy_pos, own_pos;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r]->sampler) {
      own_pos.push_back(r);
    } else {
      greedy_idx.push_back(static_cast<int32_t>(r));
      greedy_pos.push_back(r);
    }
  }
  // Rows that report log-probabilities (DecoderRow::logprobs).
  std::vector<int32_t> lp_idx;
  int kmax = 0;
  for (size_t r = 0; r < rows.size(); ++r)
    if (rows[r]->logprobs >= 0) {
      lp_idx.push_back(static_cast<int32_t>(r));
      kmax = std::max(kmax, rows[r]->logprobs);
    }
  std::vector<Array> outs;
  if (!greedy_idx.empty()) {
    Array g = greedy_idx.size() == rows.size()
                  ? x
                  : take(x, Array(greedy_idx, {static_cast<int64_t>(greedy_idx.size())}, int32), 0);
    outs.push_back(greedy_.sample(g));
  }
  for (size_t r : own_pos) {
    const int64_t i = static_cast<int64_t>(r);
    outs.push_back(rows[r]->sampler->sample(slice(x, {i, 0}, {i + 1, vocab_})));
  }
  // Their masked logits' log_softmax: the chosen values (gathered at the lazy sampled ids) and
  // the top k are evaluated with the ids (one sync; the forward pass runs once).
  std::vector<Array> reads;
  if (!lp_idx.empty()) {
    const auto n = static_cast<int64_t>(lp_idx.size());
    const Array sel(lp_idx, {n}, int32);
    // The sampled ids in `outs` order (greedy rows, then the others) -> the asking rows' ids.
    std::vector<int32_t> at_out(rows.size());
    for (size_t j = 0; j < greedy_pos.size(); ++j) at_out[greedy_pos[j]] = static_cast<int32_t>(j);
    for (size_t j = 0; j < own_pos.size(); ++j)
      at_out[own_pos[j]] = static_cast<int32_t>(greedy_pos.size() + j);
    std::vector<int32_t> pick;
    for (int32_t r : lp_idx) pick.push_back(at_out[static_cast<size_t>(r)]);
    const Array all_ids = outs.size() == 1 ? outs[0] : concatenate(outs, 0);
    const Array lp = token_logprobs(lp_idx.size() == rows.size() ? x : take(x, sel, 0));
    reads = token_logprob_reads(lp, take(all_ids, Array(pick, {n}, int32), 0), kmax);
  }
  std::vector<Array> to_eval = outs;
  to_eval.insert(to_eval.end(), reads.begin(), reads.end());
  eval(to_eval);
  std::vector<int32_t> ids(rows.size());
  size_t k = 0;
  if (!greedy_idx.empty()) {
    std::vector<int32_t> g = outs[k++].to_vector<int32_t>();
    for (size_t j = 0; j < greedy_pos.size(); ++j) ids[greedy_pos[j]] = g[j];
  }
  for (size_t r : own_pos) ids[r] = outs[k++].to_vector<int32_t>()[0];
  last_lp_.assign(rows.size(), std::nullopt);
  if (!reads.empty()) {
    std::vector<int32_t> chosen;
    std::vector<int> top;
    for (int32_t r : lp_idx) {
      chosen.push_back(ids[static_cast<size_t>(r)]);
      top.push_back(rows[static_cast<size_t>(r)]->logprobs);
    }
    std::vector<TokenLogprobs> got = read_token_logprobs(reads, chosen, top);
    for (size_t j = 0; j < lp_idx.size(); ++j)
      last_lp_[static_cast<size_t>(lp_idx[j])] = std::move(got[j]);
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r]->sampler) rows[r]->sampler->accept({ids[r]});
    rows[r]->generated.push_back(ids[r]);
  }
  return ids;
}

std::vector<int32_t> BatchDecoder::admit(std::vector<DecoderRow> rows) {
  if (rows.empty()) return {};
  join(std::move(rows));
  for (;;)
    if (auto first = prefill_step()) return *first;
}

std::vector<int64_t> BatchDecoder::join(std::vector<DecoderRow> rows) {
  if (join_) raise("[batch_decoder] a group of {} rows is already joining", join_->rows.size());
  if (rows.empty()) raise("[batch_decoder] join needs at least one row");
  for (size_t i = 0; i < rows.size(); ++i) {
    check_token_ids(rows[i].prompt, vocab_, "batch_decoder", "prompt", i);
    if (rows[i].logprobs < -1 || rows[i].logprobs > vocab_)
      raise("[batch_decoder] row {} logprobs must be in [-1, {}] (-1 = none), got {}", i, vocab_,
            rows[i].logprobs);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    for (const auto& r : rows_)
      if (r.key == rows[i].key) raise("[batch_decoder] row key {} is already in the batch", r.key);
    for (size_t k = 0; k < i; ++k)
      if (rows[k].key == rows[i].key) raise("[batch_decoder] row key {} given twice", rows[i].key);
  }

  // Every row starts after its stored prefix (whole blocks, at most its length - 1 ids: the
  // last id's logits give the first token), its table pointing at the stored blocks (shared,
  // not copied). What is left of each prompt is left-padded to the group's width: one pass
  // feeds one column to every row, each at its own positions (padding columns are marked as
  // such: neither stored nor attended).
  auto j = std::make_unique<Join>();
  const size_t n = rows.size();
  std::vector<int64_t> cached(n, 0);
  for (size_t i = 0; i < n; ++i) {
    Row r;
    r.key = rows[i].key;
    r.token_mask = std::move(rows[i].token_mask);
    r.logprobs = rows[i].logprobs;
    if (!plain_greedy(rows[i].sampler)) {
      r.sampler = std::make_unique<Sampler>(rows[i].sampler, vocab_);
      r.sampler->add_prompt(0, rows[i].prompt);
    }
    r.prompt = std::move(rows[i].prompt);
    j->rows.push_back(std::move(r));
  }
  // (After everything that can throw: the references taken here are released by the group.)
  for (size_t i = 0; i < n && store_; ++i) {
    Row& r = j->rows[i];
    r.blocks = store_->match(r.prompt, static_cast<int64_t>(r.prompt.size()) - 1);
    for (int32_t b : r.blocks) kv_.pool().retain(b);
    r.shared = static_cast<int64_t>(r.blocks.size());
    r.len = r.shared * kv_.block();
    cached[i] = r.len;
  }
  size_t width = 0;
  for (const auto& r : j->rows)
    width = std::max(width, r.prompt.size() - static_cast<size_t>(r.len));
  for (const auto& r : j->rows) {
    const auto rest = r.prompt.begin() + r.len;
    const size_t left = r.prompt.size() - static_cast<size_t>(r.len);
    std::vector<int32_t> c(width - left, *rest);  // never attended
    c.insert(c.end(), rest, r.prompt.end());
    j->cols.push_back(std::move(c));
    j->pad.push_back(static_cast<int64_t>(width - left));
  }
  join_ = std::move(j);
  return cached;
}

int64_t BatchDecoder::join_columns_left() const {
  if (!join_) return 0;
  return static_cast<int64_t>(join_->cols[0].size()) - join_->next;
}

std::optional<std::vector<int32_t>> BatchDecoder::prefill_step() {
  if (!join_) raise("[batch_decoder] prefill_step with no group joining");
  try {
    Join& j = *join_;
    const int64_t len = static_cast<int64_t>(j.cols[0].size());
    const int64_t n = static_cast<int64_t>(j.rows.size());
    const int64_t width =
        opt_.prefill_chunk <= 0 ? len : std::max<int64_t>(1, opt_.prefill_chunk / n);
    const int64_t c1 = std::min(len, j.next + width);
    // Row i's column c is at position len_i + c - pad_i (len_i: its stored prefix).
    std::vector<std::vector<int32_t>> part;
    std::vector<const std::vector<int32_t>*> tables;
    std::vector<int64_t> first, pads;
    for (size_t i = 0; i < j.rows.size(); ++i) {
      Row& r = j.rows[i];
      part.emplace_back(j.cols[i].begin() + j.next, j.cols[i].begin() + c1);
      reserve(r, r.len + c1 - j.pad[i]);
      first.push_back(r.len + j.next - j.pad[i]);
      pads.push_back(std::max<int64_t>(0, j.pad[i] - j.next));  // padding columns in this pass
    }
    for (const auto& r : j.rows) tables.push_back(&r.blocks);
    kv_.begin_pass(tables, first, pads);
    models::ForwardOptions fo;
    fo.caches = kv_.layers();
    fo.offsets = kv_.positions();
    fo.queries = 1;  // only the last column's hidden state is used
    std::vector<int32_t> flat;
    for (const auto& c : part) flat.insert(flat.end(), c.begin(), c.end());
    Array h = model_.hidden(Array(flat, {n, c1 - j.next}, int32), fo);  // [N, 1, E]
    ++passes_;
    j.next = c1;
    if (c1 < len) {  // cut the graph: the next pass starts from evaluated pools
      eval(kv_.state());
      return std::nullopt;
    }
    Array logits = model_.lm_head(reshape(h, {n, h.shape(2)}));
    std::vector<Row*> ptrs;
    for (auto& r : j.rows) ptrs.push_back(&r);
    std::vector<int32_t> first_ids = sample(logits, ptrs);
    eval(kv_.state());
    for (auto& r : j.rows) {
      r.len = static_cast<int64_t>(r.prompt.size());
      if (store_) store_->insert(r.prompt, r.len, r.blocks);  // shared in place
    }
    std::vector<int64_t> dropped = std::move(j.dropped);
    for (auto& r : j.rows) rows_.push_back(std::move(r));
    join_.reset();
    if (!dropped.empty()) drop(dropped);
    return first_ids;
  } catch (...) {
    if (join_)
      for (auto& r : join_->rows) release(r);
    join_.reset();
    throw;
  }
}

std::vector<int32_t> BatchDecoder::step() {
  if (rows_.empty()) raise("[batch_decoder] step on an empty batch");
  const int64_t b = static_cast<int64_t>(rows_.size());
  std::vector<int32_t> last;
  std::vector<Row*> ptrs;
  std::vector<const std::vector<int32_t>*> tables;
  std::vector<int64_t> first;
  for (auto& r : rows_) {
    reserve(r, r.len + 1);  // the last token goes to position len
    last.push_back(r.generated.back());
    ptrs.push_back(&r);
    first.push_back(r.len);
  }
  for (const auto& r : rows_) tables.push_back(&r.blocks);
  kv_.begin_pass(tables, first);
  models::ForwardOptions fo;
  fo.caches = kv_.layers();
  fo.offsets = kv_.positions();
  Array h = model_.hidden(Array(last, {b, 1}, int32), fo);
  Array logits = model_.lm_head(reshape(h, {b, h.shape(2)}));
  std::vector<int32_t> ids = sample(logits, ptrs);
  for (auto& r : rows_) ++r.len;
  return ids;
}

void BatchDecoder::drop(const std::vector<int64_t>& keys) {
  if (join_) {
    size_t gone = 0;
    for (const auto& r : join_->rows)
      if (std::find(keys.begin(), keys.end(), r.key) != keys.end()) {
        join_->dropped.push_back(r.key);
        ++gone;
      }
    if (gone == join_->rows.size()) {  // nobody left to prefill for
      for (auto& r : join_->rows) release(r);
      join_.reset();
    }
  }
  std::vector<Row> kept;
  for (auto& r : rows_) {
    if (std::find(keys.begin(), keys.end(), r.key) == keys.end()) {
      kept.push_back(std::move(r));
      continue;
    }
    if (store_ && opt_.store_generated) {  // prompt + generated ids (all but the last computed)
      std::vector<int32_t> seq = r.prompt;
      seq.insert(seq.end(), r.generated.begin(), r.generated.end());
      store_->insert(seq, r.len, r.blocks);
    }
    release(r);  // its blocks go back (the store keeps the ones it holds)
  }
  rows_ = std::move(kept);
}

}  // namespace ingot::llm
