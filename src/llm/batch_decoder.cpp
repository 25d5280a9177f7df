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
    : model_(model),
      chunk_(prefill_chunk),
      vocab_(model.vocab_size()),
      greedy_(SamplerOptions{}, model.vocab_size()) {}

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
  eval(outs);
  std::vector<int32_t> ids(rows.size());
  size_t k = 0;
  if (!greedy_idx.empty()) {
    std::vector<int32_t> g = outs[k++].to_vector<int32_t>();
    for (size_t j = 0; j < greedy_pos.size(); ++j) ids[greedy_pos[j]] = g[j];
  }
  for (size_t r : own_pos) ids[r] = outs[k++].to_vector<int32_t>()[0];
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
  for (size_t i = 0; i < rows.size(); ++i)
    check_token_ids(rows[i].prompt, vocab_, "batch_decoder", "prompt", i);
  for (const auto& n : rows)
    for (const auto& r : rows_)
      if (r.key == n.key) raise("[batch_decoder] row key {} is already in the batch", n.key);

  // Prefill the new rows as one left-padded group in a cache of their own. Unbounded caches on
  // sliding-window layers too (the window is a mask): rows are merged column by column.
  PromptCache fresh(model_, PromptCacheOptions{.unbounded = true});
  size_t longest = 0;
  for (const auto& r : rows) longest = std::max(longest, r.prompt.size());
  std::vector<std::vector<int32_t>> cols;
  std::vector<PadSpan> pads;
  for (const auto& r : rows) {
    std::vector<int32_t> c(longest - r.prompt.size(), r.prompt[0]);  // never attended
    c.insert(c.end(), r.prompt.begin(), r.prompt.end());
    cols.push_back(std::move(c));
    pads.push_back({0, static_cast<int64_t>(longest - r.prompt.size())});
  }
  fresh.set_padding(pads);
  Array h = prefill(model_, cols, fresh, chunk_, 1);  // [N, 1, E]
  const int64_t n = h.shape(0), e = h.shape(2);
  Array logits = model_.lm_head(reshape(h, {n, e}));

  std::vector<Row> added(rows.size());
  std::vector<Row*> ptrs;
  for (size_t i = 0; i < rows.size(); ++i) {
    Row& r = added[i];
    r.key = rows[i].key;
    r.token_mask = std::move(rows[i].token_mask);
    r.pad = pads[i].end;
    if (!plain_greedy(rows[i].sampler)) {
      r.sampler = std::make_unique<Sampler>(rows[i].sampler, vocab_);
      r.sampler->add_prompt(0, rows[i].prompt);
    }
    ptrs.push_back(&r);
  }
  std::vector<int32_t> first = sample(logits, ptrs);
  fresh.eval_state();

  // Merge: both parts are left-padded to the longer column count and stacked along the batch.
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
  return first;
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
  std::vector<int32_t> keep;
  for (size_t i = 0; i < rows_.size(); ++i)
    if (std::find(keys.begin(), keys.end(), rows_[i].key) == keys.end())
      keep.push_back(static_cast<int32_t>(i));
  if (keep.size() == rows_.size()) return;
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
