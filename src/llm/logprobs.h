// Log-probabilities of sampled tokens, for callers that report them (the server's OpenAI
// `logprobs`): a float32 log_softmax of a row's logits on their device, of which only the chosen
// id's value and the top k (value, id) pairs come back to the host.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/array.h"

namespace ingot::models {
class Model;
}

namespace ingot::llm {

/// One sampled token: its log-probability and the `k` most likely ids with theirs (descending
/// by value; the order of tied values is unspecified).
struct TokenLogprobs {
  int32_t id = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;
};

/// log_softmax over the last axis of logits [B, V] in float32 (lazy, on the logits' device).
Array token_logprobs(const Array& logits);

/// The lazy reads of `logprobs` [B, V] for the sampled `ids` [B] (integer, lazy): the chosen
/// values [B] and, with k > 0, the top k values and ids [B, k] (on the device). Evaluate them
/// with the ids (one sync per step), then read_token_logprobs. InvalidArgument on bad shapes.
std::vector<Array> token_logprob_reads(const Array& logprobs, const Array& ids, int k);

/// Row r's entry from evaluated `reads` (token_logprob_reads with k = max(k)): the chosen
/// value of ids[r] (the sampled ids, read back) and the first k[r] (0 <= k[r] <= k) of the top.
std::vector<TokenLogprobs> read_token_logprobs(const std::vector<Array>& reads,
                                               const std::vector<int32_t>& ids,
                                               const std::vector<int>& k);

/// Log-probabilities of a prompt's own tokens (the server's `echo` with `logprobs`): one forward
/// pass over `ids` without a KV cache (as `ingot logits --all-positions`), then, `chunk` positions
/// at a time, the same float32 log_softmax and reads as sampled tokens get. Entry i is ids[i + 1]
/// given ids[0..i] with its `k` most likely alternatives (ids.size() - 1 entries; the first
/// token has none). InvalidArgument on an empty prompt, a bad k or chunk.
std::vector<TokenLogprobs> prompt_logprobs(const models::Model& model,
                                           const std::vector<int32_t>& ids, int k,
                                           int64_t chunk = 256);

}  // namespace ingot::llm
