// Sampler: HF generate's logits processors (logit bias, repetition penalty) plus OpenAI presence/
// frequency penalties, then the warpers temperature -> top-k -> top-p -> min-p, then argmax or a
// Gumbel-max categorical draw from a per-sampler Threefry key.
#include "llm/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops/ops.h"

namespace ingot::llm {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

/// The device ops on `x` run on: a host constant (logits made from C++ values) is moved to the
/// default device by the first op that uses it.
Device device_of(const Array& x) {
  return x.is_host_constant() ? default_device() : x.device();
}

void validate(const SamplerOptions& o, int64_t vocab) {
  if (vocab <= 0) raise("[sampler] vocab_size must be positive, got {}", vocab);
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    raise("[sampler] temperature must be finite and >= 0, got {}", o.temperature);
  if (o.top_k < 0) raise("[sampler] top_k must be >= 0 (0 = off), got {}", o.top_k);
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f))
    raise("[sampler] top_p must be in (0, 1] (1 = off), got {}", o.top_p);
  if (!(o.min_p >= 0.0f && o.min_p < 1.0f))
    raise("[sampler] min_p must be in [0, 1) (0 = off), got {}", o.min_p);
  if (!(o.repetition_penalty > 0.0f) || !std::isfinite(o.repetition_penalty))
    raise("[sampler] repetition_penalty must be finite and > 0 (1 = off), got {}",
          o.repetition_penalty);
  if (!std::isfinite(o.presence_penalty))
    raise("[sampler] presence_penalty must be finite, got {}", o.presence_penalty);
  if (!std::isfinite(o.frequency_penalty))
    raise("[sampler] frequency_penalty must be finite, got {}", o.frequency_penalty);
  if (o.penalty_context < 0)
    raise("[sampler] penalty_context must be >= 0 (0 = all seen tokens), got {}",
          o.penalty_context);
  for (const auto& [id, v] : o.logit_bias) {
    if (id < 0 || id >= vocab)
      raise("[sampler] logit_bias token id {} out of range for vocab_size {}", id, vocab);
    // -inf bans a token; NaN or +inf would poison the softmax.
    if (std::isnan(v) || v == kInf)
      raise("[sampler] logit_bias value for token {} must be a number or -inf, got {}", id, v);
  }
}

}  // namespace

Sampler::Sampler(SamplerOptions opt, int64_t vocab_size)
    : opt_(std::move(opt)), vocab_(vocab_size) {
  validate(opt_, vocab_);
  penalties_ = opt_.repetition_penalty != 1.0f || opt_.presence_penalty != 0.0f ||
               opt_.frequency_penalty != 0.0f;
  if (!opt_.logit_bias.empty()) {
    std::vector<float> dense(static_cast<size_t>(vocab_), 0.0f);
    for (const auto& [id, v] : opt_.logit_bias) dense[static_cast<size_t>(id)] += v;
    bias_ = Array(dense, {vocab_}, float32);
  }
  key_ = random::key(opt_.seed);
}

void Sampler::check_id(int32_t id, const char* where) const {
  if (id < 0 || id >= vocab_)
    raise("[sampler] {}: token id {} out of range for vocab_size {}", where, id, vocab_);
}

void Sampler::push_token(RowState& r, int32_t id) {
  ++r.counts[id];
  if (opt_.penalty_context <= 0) return;
  r.window.push_back(id);
  if (static_cast<int64_t>(r.window.size()) > opt_.penalty_context) {
    auto it = r.counts.find(r.window.front());
    if (--it->second == 0) r.counts.erase(it);
    r.window.pop_front();
  }
}

void Sampler::add_prompt(int row, const std::vector<int32_t>& ids) {
  if (row < 0) raise("[sampler] add_prompt: row must be >= 0, got {}", row);
  for (int32_t id : ids) check_id(id, "add_prompt");
  if (!penalties_) return;
  if (static_cast<size_t>(row) >= rows_.size()) rows_.resize(static_cast<size_t>(row) + 1);
  for (int32_t id : ids) push_token(rows_[static_cast<size_t>(row)], id);
}

void Sampler::accept(const std::vector<int32_t>& ids) {
  if (!penalties_) return;  // no host work per step without penalties
  if (ids.size() < rows_.size())
    raise("[sampler] accept: got {} ids but the sampler tracks {} rows", ids.size(), rows_.size());
  for (int32_t id : ids) check_id(id, "accept");
  rows_.resize(ids.size());
  for (size_t b = 0; b < ids.size(); ++b) push_token(rows_[b], ids[b]);
}

void Sampler::remove_rows(const std::vector<int>& rows) {
  std::vector<int> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i] < 0) raise("[sampler] remove_rows: row must be >= 0, got {}", sorted[i]);
    if (i > 0 && sorted[i] == sorted[i - 1])
      raise("[sampler] remove_rows: row {} listed twice", sorted[i]);
  }
  // Rows past the tracked ones have no state; erasing from the back keeps indices valid.
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it)
    if (static_cast<size_t>(*it) < rows_.size()) rows_.erase(rows_.begin() + *it);
}

Array Sampler::check_logits(const Array& logits, const char* where) const {
  if (logits.ndim() != 2 || logits.shape(1) != vocab_)
    raise("[sampler] {}: logits must be [B, {}], got {} ({})", where, vocab_,
          shape_str(logits.shape()), dtype_name(logits.dtype()));
  if (!is_floating(logits.dtype()))
    raise("[sampler] {}: logits must be floating point, got {}", where, dtype_name(logits.dtype()));
  if (penalties_ && static_cast<int64_t>(rows_.size()) > logits.shape(0))
    raise("[sampler] {}: logits have {} rows but the sampler tracks {} rows", where,
          logits.shape(0), rows_.size());
  return astype(logits, float32);
}

// Gathers each row's seen ids ([B, U], padded), rewrites those logits and scatters them back:
// HF RepetitionPenaltyLogitsProcessor then OpenAI presence/frequency, on the same gathered values.
Array Sampler::apply_penalties(const Array& x) const {
  size_t width = 0;
  for (const RowState& r : rows_) width = std::max(width, r.counts.size());
  if (width == 0) return x;
  const auto batch = static_cast<size_t>(x.shape(0));
  std::vector<int32_t> ids(batch * width, 0);
  std::vector<uint8_t> seen(batch * width, 0);
  std::vector<float> adjust(batch * width, 0.0f);
  for (size_t b = 0; b < rows_.size(); ++b) {
    size_t j = b * width;
    for (const auto& [id, count] : rows_[b].counts) {
      ids[j] = id;
      seen[j] = 1;
      adjust[j++] = opt_.frequency_penalty * static_cast<float>(count) + opt_.presence_penalty;
    }
    // Padding repeats the row's first entry, so duplicate writes carry the same value.
    for (size_t k = j; k < (b + 1) * width && j > b * width; ++k) {
      ids[k] = ids[b * width];
      seen[k] = 1;
      adjust[k] = adjust[b * width];
    }
  }
  const Shape shape{static_cast<int64_t>(batch), static_cast<int64_t>(width)};
  const Array idx(ids, shape, int32);
  const Array mask(seen, shape, bool_);
  Array g = take_along_axis(x, idx, 1);
  if (opt_.repetition_penalty != 1.0f) {
    const Array p(opt_.repetition_penalty);
    g = where(mask, where(g < Array(0.0f), g * p, g / p), g);
  }
  if (opt_.presence_penalty != 0.0f || opt_.frequency_penalty != 0.0f)
    g = where(mask, g - Array(adjust, shape, float32), g);
  return put_along_axis(x, idx, g, 1);
}

// HF order: SequenceBias (logit_bias) comes before RepetitionPenalty in _get_logits_processor.
Array Sampler::apply_processors(Array x) const {
  if (bias_) x = x + *bias_;
  if (penalties_ && !rows_.empty()) x = apply_penalties(x);
  return x;
}

// TemperatureLogitsWarper -> TopK -> TopP -> MinP with min_tokens_to_keep = 1.
Array Sampler::apply_warpers(Array x) const {
  const Array neg_inf(-kInf);
  const int64_t vocab = vocab_;
  if (opt_.temperature != 1.0f) x = x / Array(opt_.temperature);
  if (opt_.top_k > 0 && opt_.top_k < vocab) {
    // Value threshold: every token tied with the k-th largest stays (HF TopKLogitsWarper).
    const int64_t k = opt_.top_k;
    const Array kth = slice_axis(topk(x, static_cast<int>(k), -1), 1, k - 1, k);
    x = where(x < kth, neg_inf, x);
  }
  if (opt_.top_p < 1.0f) {
    // Ascending stable sort; drop the prefix whose cumulative probability <= 1 - top_p, always
    // keeping the largest token. Among tied values the lower id sorts first, so goes first.
    const Array order = argsort(x, -1);
    const Array sorted = take_along_axis(x, order, -1);
    const Array cum = cumsum(softmax(sorted, -1), -1);
    const auto threshold = static_cast<float>(1.0 - static_cast<double>(opt_.top_p));
    const Array not_last =
        arange(vocab, int32, device_of(x)) < Array(static_cast<int32_t>(vocab - 1));
    const Array remove = logical_and(cum <= Array(threshold), not_last);
    x = put_along_axis(x, order, where(remove, neg_inf, sorted), -1);
  }
  if (opt_.min_p > 0.0f) {
    // Tokens with prob < min_p * max prob go; the top token always stays since min_p < 1.
    const Array probs = softmax(x, -1);
    const Array floor_p = max(probs, -1, true) * Array(opt_.min_p);
    x = where(probs < floor_p, neg_inf, x);
  }
  return x;
}

Array Sampler::processed_logits(const Array& logits) const {
  Array x = apply_processors(check_logits(logits, "processed_logits"));
  return greedy() ? x : apply_warpers(x);
}

Array Sampler::processed_logprobs(const Array& logits) const {
  return log_softmax(processed_logits(logits), -1);
}

Array Sampler::sample(const Array& logits) {
  Array x = apply_processors(check_logits(logits, "sample"));
  if (greedy()) return astype(argmax(x, -1), int32);  // first maximum: ties -> lowest id
  x = apply_warpers(x);
  // The key follows the logits' device (Threefry gives the same draws on every device).
  const Device dev = device_of(x);
  if (!key_.is_host_constant() && key_.device() != dev) key_ = to_device(key_, dev);
  const Array keys = random::split(key_, 2, dev);
  key_ = reshape(slice_axis(keys, 0, 0, 1), {2});
  const Array sub = reshape(slice_axis(keys, 0, 1, 2), {2});
  return astype(random::categorical(x, -1, sub, dev), int32);
}

}  // namespace ingot::llm
