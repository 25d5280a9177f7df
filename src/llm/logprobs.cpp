// Token log-probabilities (see logprobs.h).
#include "llm/logprobs.h"

#include <algorithm>

#include "core/ops/ops.h"
#include "models/model.h"
#include "util/error.h"

namespace ingot::llm {

Array token_logprobs(const Array& logits) {
  if (logits.ndim() != 2)
    raise("[logprobs] logits must be [B, V], got {}", shape_str(logits.shape()));
  return log_softmax(astype(logits, float32), -1);
}

std::vector<Array> token_logprob_reads(const Array& logprobs, const Array& ids, int k) {
  if (logprobs.ndim() != 2)
    raise("[logprobs] log-probabilities must be [B, V], got {}", shape_str(logprobs.shape()));
  const int64_t b = logprobs.shape(0), v = logprobs.shape(1);
  if (ids.ndim() != 1 || ids.shape(0) != b)
    raise("[logprobs] {} rows of log-probabilities but ids of shape {}", b, shape_str(ids.shape()));
  if (k < 0 || k > v) raise("[logprobs] top count {} outside [0, {}]", k, v);
  std::vector<Array> reads{
      reshape(take_along_axis(logprobs, reshape(astype(ids, int32), {b, 1}), 1), {b})};
  if (k > 0) {
    reads.push_back(topk(logprobs, k, -1));
    reads.push_back(astype(topk_indices(logprobs, k, -1), int32));
  }
  return reads;
}

std::vector<TokenLogprobs> read_token_logprobs(const std::vector<Array>& reads,
                                               const std::vector<int32_t>& ids,
                                               const std::vector<int>& k) {
  if (reads.empty() || reads[0].ndim() != 1 ||
      reads[0].shape(0) != static_cast<int64_t>(ids.size()) || k.size() != ids.size())
    raise("[logprobs] reads, {} ids and {} top counts do not match", ids.size(), k.size());
  const int kmax = reads.size() == 3 ? static_cast<int>(reads[1].shape(1)) : 0;
  const std::vector<float> c = reads[0].to_vector<float>();
  std::vector<float> tv;
  std::vector<int32_t> ti;
  if (kmax > 0) {
    tv = reads[1].to_vector<float>();
    ti = reads[2].to_vector<int32_t>();
  }
  std::vector<TokenLogprobs> out(ids.size());
  for (size_t r = 0; r < out.size(); ++r) {
    if (k[r] < 0 || k[r] > kmax) raise("[logprobs] top count {} outside [0, {}]", k[r], kmax);
    out[r].id = ids[r];
    out[r].logprob = c[r];
    for (int j = 0; j < k[r]; ++j) {
      const size_t at = r * static_cast<size_t>(kmax) + static_cast<size_t>(j);
      out[r].top.emplace_back(ti[at], tv[at]);
    }
  }
  return out;
}

std::vector<TokenLogprobs> prompt_logprobs(const models::Model& model,
                                           const std::vector<int32_t>& ids, int k, int64_t chunk) {
  if (ids.empty()) raise("[logprobs] the prompt has no tokens");
  if (chunk < 1) raise("[logprobs] chunk must be >= 1 position, got {}", chunk);
  if (k < 0 || k > model.vocab_size())
    raise("[logprobs] top count {} outside [0, {}]", k, model.vocab_size());
  const int64_t l = static_cast<int64_t>(ids.size());
  std::vector<TokenLogprobs> out;
  if (l < 2) return out;
  // The final hidden states of every position (small: [L, E]); the logits [rows, V] of a chunk
  // at a time, so a long prompt never holds L x V floats.
  Array h = model.hidden(Array(ids, {1, l}, int32));
  const int64_t e = h.shape(2);
  h = reshape(h, {l, e});
  h.eval();
  out.reserve(static_cast<size_t>(l - 1));
  for (int64_t b = 0; b < l - 1; b += chunk) {
    const int64_t end = std::min(l - 1, b + chunk);
    const std::vector<int32_t> next(ids.begin() + b + 1, ids.begin() + end + 1);
    const Array lps = token_logprobs(model.lm_head(slice(h, {b, 0}, {end, e})));
    std::vector<Array> reads = token_logprob_reads(lps, Array(next, {end - b}, int32), k);
    eval(reads);
    for (TokenLogprobs& t : read_token_logprobs(reads, next, std::vector<int>(next.size(), k)))
      out.push_back(std::move(t));
  }
  return out;
}

}  // namespace ingot::llm
