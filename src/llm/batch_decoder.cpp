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

// Columns [from, to) of keys or values [B, H, S, D], with `front` zero columns before them.
Array columns_of(const Array& a, int64_t from, int64_t to, int64_t front) {
  const int64_t b = a.shape(0), h = a.shape(1), d = a.shape(3);
  Array part = slice(a, {0, 0, from, 0}, {b, h, to, d});
  if (front <= 0) return part;
  return concatenate({zeros({b, h, front, d}, a.dtype(), a.device()), part}, 2);
}

}  // namespace

BatchDecoder::BatchDecoder(const models::Model& model, int64_t prefill_chunk)
    : BatchDecoder(model, BatchDecoderOptions{.prefill_chunk = prefill_chunk}) {}

BatchDecoder::BatchDecoder(const models::Model& model, const BatchDecoderOptions& opt)
    : model_(model),
      opt_(opt),
      vocab_(model.vocab_size()),
      greedy_(SamplerOptions{}, model.vocab_size()) {
  if (opt_.prefill_chunk < 0)
    raise("[batch_decoder] prefill_chunk must be >= 0 tokens, got {}", opt_.prefill_chunk);
  if (opt_.prefix.max_bytes > 0) store_ = std::make_unique<PrefixStore>(opt_.prefix);
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

void BatchDecoder::apply_padding() {
  std::vector<PadSpan> pads;
  for (const auto& r : rows_) pads.push_back({0, r.pad});
  cache_->set_padding(pads);
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

  // The group is prefilled left-padded in a cache of its own. Unbounded caches on
  // sliding-window layers too (the window is a mask): rows are merged column by column.
  auto j = std::make_unique<Join>(PromptCache(model_, PromptCacheOptions{.unbounded = true}));
  size_t longest = 0;
  for (const auto& r : rows) longest = std::max(longest, r.prompt.size());
  std::vector<PadSpan> pads;
  for (const auto& r : rows) {
    std::vector<int32_t> c(longest - r.prompt.size(), r.prompt[0]);  // never attended
    c.insert(c.end(), r.prompt.begin(), r.prompt.end());
    j->cols.push_back(std::move(c));
    pads.push_back({0, static_cast<int64_t>(longest - r.prompt.size())});
  }

  // Prompt caching: every row's stored prefix (never its last id, whose logits are needed).
  // One forward pass feeds one column to every row, so the group starts at the first column
  // that some row must compute; a row whose stored prefix reaches further recomputes the rest.
  const size_t n = rows.size();
  std::vector<std::vector<std::shared_ptr<const PrefixStore::Block>>> hits(n);
  int64_t start = static_cast<int64_t>(longest);
  for (size_t i = 0; i < n; ++i) {
    const int64_t len = static_cast<int64_t>(rows[i].prompt.size());
    if (store_) hits[i] = store_->match(rows[i].prompt, len - 1);
    const int64_t reach = static_cast<int64_t>(hits[i].size()) * (store_ ? store_->block() : 0);
    start = std::min(start, pads[i].end + reach);
  }
  std::vector<int64_t> cached(n, 0);
  if (start > 0) {
    const PrefixStore::Block* like = nullptr;
    for (const auto& h : hits)
      if (!h.empty()) like = h[0].get();
    INGOT_ASSERT(like != nullptr);
    std::vector<Array> state;
    for (int l = 0; l < j->cache.num_layers(); ++l) {
      const Array& k0 = like->keys[static_cast<size_t>(l)];
      const int64_t heads = k0.shape(1), d = k0.shape(3);
      auto row_of = [&](size_t i, bool values) {
        const int64_t pad = std::min(pads[i].end, start), keep = start - pad;
        std::vector<Array> parts;
        if (pad > 0) parts.push_back(zeros({1, heads, pad, d}, k0.dtype(), k0.device()));
        for (int64_t b = 0; b * store_->block() < keep; ++b) {
          const auto& blk = *hits[i][static_cast<size_t>(b)];
          parts.push_back(values ? blk.values[static_cast<size_t>(l)]
                                 : blk.keys[static_cast<size_t>(l)]);
        }
        Array all = parts.size() == 1 ? parts[0] : concatenate(parts, 2);
        if (all.shape(2) == start) return all;
        return slice(all, {0, 0, 0, 0}, {1, heads, start, d});
      };
      std::vector<Array> ks, vs;
      for (size_t i = 0; i < n; ++i) {
        ks.push_back(row_of(i, false));
        vs.push_back(row_of(i, true));
      }
      LayerCache::Raw m;
      m.keys = n == 1 ? ks[0] : concatenate(ks, 0);
      m.values = n == 1 ? vs[0] : concatenate(vs, 0);
      m.offset = m.filled = start;
      state.push_back(m.keys);
      state.push_back(m.values);
      j->cache.layer(l).restore(std::move(m));
    }
    eval(state);
    for (size_t i = 0; i < n; ++i) cached[i] = std::max<int64_t>(0, start - pads[i].end);
  }
  j->cache.set_padding(pads);
  j->next = start;

  for (size_t i = 0; i < n; ++i) {
    Row r;
    r.key = rows[i].key;
    r.token_mask = std::move(rows[i].token_mask);
    r.logprobs = rows[i].logprobs;
    r.pad = pads[i].end;
    if (!plain_greedy(rows[i].sampler)) {
      r.sampler = std::make_unique<Sampler>(rows[i].sampler, vocab_);
      r.sampler->add_prompt(0, rows[i].prompt);
    }
    r.prompt = std::move(rows[i].prompt);
    j->rows.push_back(std::move(r));
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
    std::vector<std::vector<int32_t>> part;
    for (const auto& c : j.cols) part.emplace_back(c.begin() + j.next, c.begin() + c1);
    Array h = prefill(model_, part, j.cache, 0, 1);  // [N, 1, E]
    ++passes_;
    j.next = c1;
    if (c1 < len) {  // cut the graph: the next pass starts from evaluated buffers
      j.cache.eval_state();
      return std::nullopt;
    }
    Array logits = model_.lm_head(reshape(h, {n, h.shape(2)}));
    std::vector<Row*> ptrs;
    for (auto& r : j.rows) ptrs.push_back(&r);
    std::vector<int32_t> first = sample(logits, ptrs);
    j.cache.eval_state();
    if (store_)
      for (size_t i = 0; i < j.rows.size(); ++i)
        store_prefix(j.cache, static_cast<int64_t>(i), j.rows[i].pad, j.rows[i].prompt,
                     static_cast<int64_t>(j.rows[i].prompt.size()));
    std::vector<int64_t> dropped = std::move(j.dropped);
    merge(std::move(j.cache), std::move(j.rows));
    join_.reset();
    if (!dropped.empty()) drop(dropped);
    return first;
  } catch (...) {
    join_.reset();
    throw;
  }
}

void BatchDecoder::store_prefix(const PromptCache& cache, int64_t row, int64_t pad,
                                const std::vector<int32_t>& tokens, int64_t n) {
  store_->insert(tokens, n, cache.num_layers(), [&](int l, int64_t from, int64_t to) {
    LayerCache::Raw r = cache.layer(l).raw();
    const int64_t heads = r.keys.shape(1), d = r.keys.shape(3);
    return std::make_pair(slice(r.keys, {row, 0, pad + from, 0}, {row + 1, heads, pad + to, d}),
                          slice(r.values, {row, 0, pad + from, 0}, {row + 1, heads, pad + to, d}));
  });
}

void BatchDecoder::merge(PromptCache fresh, std::vector<Row> added) {
  // Both parts are left-padded to the longer column count and stacked along the batch.
  const int64_t old_cols = columns(), new_cols = fresh.offset();
  if (!cache_ || rows_.empty()) {
    cache_.emplace(std::move(fresh));
  } else {
    const int64_t total = std::max(old_cols, new_cols);
    std::vector<Array> merged;
    for (int i = 0; i < cache_->num_layers(); ++i) {
      LayerCache::Raw a = cache_->layer(i).raw(), b = fresh.layer(i).raw();
      LayerCache::Raw m;
      m.keys = concatenate({columns_of(a.keys, 0, old_cols, total - old_cols),
                            columns_of(b.keys, 0, new_cols, total - new_cols)},
                           0);
      m.values = concatenate({columns_of(a.values, 0, old_cols, total - old_cols),
                              columns_of(b.values, 0, new_cols, total - new_cols)},
                             0);
      m.offset = m.filled = total;
      merged.push_back(m.keys);
      merged.push_back(m.values);
      cache_->layer(i).restore(std::move(m));
    }
    eval(merged);
    for (auto& r : rows_) r.pad += total - old_cols;
    for (auto& r : added) r.pad += total - new_cols;
  }
  for (auto& r : added) rows_.push_back(std::move(r));
  apply_padding();
}

std::vector<int32_t> BatchDecoder::step() {
  if (rows_.empty()) raise("[batch_decoder] step on an empty batch");
  const int64_t b = static_cast<int64_t>(rows_.size());
  std::vector<int32_t> last;
  std::vector<Row*> ptrs;
  for (auto& r : rows_) {
    last.push_back(r.generated.back());
    ptrs.push_back(&r);
  }
  models::ForwardOptions fo;
  fo.caches = cache_->layers();
  if (auto rp = cache_->row_positions()) fo.offsets = *rp;
  Array h = model_.hidden(Array(last, {b, 1}, int32), fo);
  Array logits = model_.lm_head(reshape(h, {b, h.shape(2)}));
  return sample(logits, ptrs);
}

void BatchDecoder::drop(const std::vector<int64_t>& keys) {
  if (join_) {
    size_t gone = 0;
    for (const auto& r : join_->rows)
      if (std::find(keys.begin(), keys.end(), r.key) != keys.end()) {
        join_->dropped.push_back(r.key);
        ++gone;
      }
    if (gone == join_->rows.size()) join_.reset();  // nobody left to prefill for
  }
  std::vector<int32_t> keep;
  for (size_t i = 0; i < rows_.size(); ++i)
    if (std::find(keys.begin(), keys.end(), rows_[i].key) == keys.end())
      keep.push_back(static_cast<int32_t>(i));
  if (keep.size() == rows_.size()) return;
  if (store_ && opt_.store_generated) {  // prompt + generated ids (all but the last computed)
    const int64_t cols = columns();
    for (size_t i = 0; i < rows_.size(); ++i) {
      if (std::find(keep.begin(), keep.end(), static_cast<int32_t>(i)) != keep.end()) continue;
      std::vector<int32_t> seq = rows_[i].prompt;
      seq.insert(seq.end(), rows_[i].generated.begin(), rows_[i].generated.end());
      store_prefix(*cache_, static_cast<int64_t>(i), rows_[i].pad, seq, cols - rows_[i].pad);
    }
  }
  std::vector<Row> kept;
  for (int32_t i : keep) kept.push_back(std::move(rows_[static_cast<size_t>(i)]));
  rows_ = std::move(kept);
  if (rows_.empty()) {
    cache_.reset();
    return;
  }
  // Columns that are padding in every remaining row go.
  int64_t cut = std::numeric_limits<int64_t>::max();
  for (const auto& r : rows_) cut = std::min(cut, r.pad);
  const int64_t cols = columns();
  const Array idx(keep, {static_cast<int64_t>(keep.size())}, int32);
  std::vector<Array> state;
  for (int i = 0; i < cache_->num_layers(); ++i) {
    LayerCache::Raw a = cache_->layer(i).raw();
    LayerCache::Raw m;
    m.keys = take(columns_of(a.keys, cut, cols, 0), idx, 0);
    m.values = take(columns_of(a.values, cut, cols, 0), idx, 0);
    m.offset = m.filled = cols - cut;
    state.push_back(m.keys);
    state.push_back(m.values);
    cache_->layer(i).restore(std::move(m));
  }
  eval(state);
  for (auto& r : rows_) r.pad -= cut;
  apply_padding();
}

}  // namespace ingot::llm
