// Log-probabilities of sampled tokens (llm/logprobs.h) from generate() and BatchDecoder: every
// value against a float64 log-softmax of a full forward pass over prompt + generated ids (no
// cache, no batching), the top k against the largest reference values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "llm/batch_decoder.h"
#include "llm/generate.h"
#include "llm_test_util.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

/// Float64 log-softmax of the logits after every position of `ids` ([L][V]); with `allowed`,
/// over the allowed ids only (others -inf), as a token mask leaves the distribution.
std::vector<std::vector<double>> naive(const models::Model& m, const Ids& ids,
                                       const std::function<bool(int32_t)>& allowed = nullptr) {
  Array lg = m.forward(Array(ids, {1, static_cast<int64_t>(ids.size())}, int32));
  const std::vector<float> v = lg.to_vector<float>();
  const size_t vocab = static_cast<size_t>(m.vocab_size());
  const double ninf = -std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    std::vector<double> x(vocab);
    for (size_t j = 0; j < vocab; ++j)
      x[j] = allowed && !allowed(static_cast<int32_t>(j)) ? ninf : double(v[i * vocab + j]);
    const double mx = *std::max_element(x.begin(), x.end());
    double z = 0;
    for (double a : x) z += std::exp(a - mx);
    for (double a : x) out[i].push_back(a - mx - std::log(z));
  }
  return out;
}

// float32 model, cached incremental decode vs one full pass: the bound of test_score.
constexpr double kTol = 2e-4;

/// Checks `got` (one entry per generated id) against the reference rows for `prompt` + `gen`.
void expect_matches(const models::Model& m, const Ids& prompt, const Ids& gen,
                    const std::vector<TokenLogprobs>& got, int k,
                    const std::function<bool(int32_t)>& allowed = nullptr) {
  ASSERT_EQ(got.size(), gen.size());
  Ids all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const auto ref = naive(m, all, allowed);
  for (size_t j = 0; j < gen.size(); ++j) {
    const std::vector<double>& row = ref[prompt.size() - 1 + j];
    EXPECT_EQ(got[j].id, gen[j]);
    EXPECT_NEAR(got[j].logprob, row[static_cast<size_t>(gen[j])], kTol) << "token " << j;
    ASSERT_EQ(got[j].top.size(), static_cast<size_t>(k));
    std::vector<double> best = row;
    std::sort(best.begin(), best.end(), std::greater<>());
    for (int i = 0; i < k; ++i) {
      const auto [id, lp] = got[j].top[static_cast<size_t>(i)];
      if (std::isinf(best[static_cast<size_t>(i)])) {  // masked out: -inf either way
        EXPECT_TRUE(std::isinf(lp) && lp < 0);
        continue;
      }
      EXPECT_NEAR(lp, best[static_cast<size_t>(i)], kTol) << "token " << j << " top " << i;
      EXPECT_NEAR(lp, row[static_cast<size_t>(id)], kTol) << "token " << j << " top " << i;
    }
  }
}

TEST(Logprobs, GenerateReportsTheRawMaskedDistributionOfEveryRow) {
  auto m = load_f32("llama_f32");
  const std::vector<Ids> prompts{{1, 5, 9, 30}, {7, 8}};
  // Row 1 may only produce even ids: its logprobs are over the allowed ids.
  const int64_t vocab = m->vocab_size();
  std::vector<uint8_t> even(static_cast<size_t>(vocab), 0);
  for (int64_t i = 0; i < vocab; i += 2) even[static_cast<size_t>(i)] = 1;
  auto is_even = [](int32_t id) { return id % 2 == 0; };
  GenerateOptions o;
  o.max_tokens = 6;
  // Sampling at temperature 0.7 with top_k and a penalty: the reported values are the raw
  // distribution's, not the sampler's.
  o.sampler = {.temperature = 0.7f, .top_k = 8, .presence_penalty = 0.5f, .seed = 3};
  o.logprobs = 5;
  o.token_mask = [&](int row, const Ids&) { return row == 1 ? &even : nullptr; };
  std::vector<int> calls(2, 0);
  o.on_logprobs = [&](int row, const TokenLogprobs&) { ++calls[static_cast<size_t>(row)]; };
  const GenerationResult r = generate(*m, prompts, o);
  ASSERT_EQ(r.logprobs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(calls[i], static_cast<int>(r.tokens[i].size()));
    expect_matches(*m, prompts[i], r.tokens[i], r.logprobs[i], 5,
                   i == 1 ? std::function<bool(int32_t)>(is_even) : nullptr);
  }
  // Not asked: nothing.
  o.logprobs = -1;
  EXPECT_TRUE(generate(*m, prompts, o).logprobs.empty());
  o.logprobs = -2;
  EXPECT_THROW(generate(*m, prompts, o), InvalidArgument);
  o.logprobs = static_cast<int>(vocab) + 1;
  EXPECT_THROW(generate(*m, prompts, o), InvalidArgument);
}

TEST(Logprobs, BatchDecoderReportsThemOnlyForRowsThatAsk) {
  auto m = load_f32("llama_f32");
  BatchDecoder d(*m);
  // Row 0: greedy with 3 alternatives; row 1: none; row 2: penalised (its own sampler), k = 0.
  std::vector<DecoderRow> rows(3);
  rows[0].key = 0;
  rows[0].prompt = {1, 5, 9, 30};
  rows[0].logprobs = 3;
  rows[1].key = 1;
  rows[1].prompt = {7, 8};
  rows[2].key = 2;
  rows[2].prompt = {2, 3, 4};
  rows[2].sampler = {.presence_penalty = 1.5f};
  rows[2].logprobs = 0;
  const std::vector<Ids> prompts{rows[0].prompt, rows[1].prompt, rows[2].prompt};
  std::vector<Ids> gen(3);
  std::vector<std::vector<TokenLogprobs>> got(3);
  auto take = [&](const std::vector<int32_t>& ids) {
    const auto& lps = d.last_logprobs();
    ASSERT_EQ(lps.size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      gen[i].push_back(ids[i]);
      EXPECT_EQ(lps[i].has_value(), i != 1);
      if (lps[i]) got[i].push_back(*lps[i]);
    }
  };
  take(d.admit(rows));
  for (int s = 0; s < 4; ++s) take(d.step());
  expect_matches(*m, prompts[0], gen[0], got[0], 3);
  expect_matches(*m, prompts[2], gen[2], got[2], 0);
  // Greedy: the chosen value is the top-1 value (same array, same bits).
  for (const auto& t : got[0]) EXPECT_EQ(t.logprob, t.top[0].second);

  DecoderRow bad;
  bad.key = 9;
  bad.prompt = {1, 2};
  bad.logprobs = -2;
  EXPECT_THROW(d.join({bad}), InvalidArgument);
}

TEST(Logprobs, PromptLogprobsScoreEachTokenAfterTheOnesBefore) {
  auto m = load_f32("llama_f32");
  const Ids ids{1, 5, 9, 30, 7, 8, 12};
  const Ids rest(ids.begin() + 1, ids.end());
  // Chunks of 1, 3 (a partial last chunk) and one chunk for the whole prompt: the same values.
  for (int64_t chunk : {1, 3, 256}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    expect_matches(*m, {ids[0]}, rest, prompt_logprobs(*m, ids, 4, chunk), 4);
  }
  expect_matches(*m, {ids[0]}, rest, prompt_logprobs(*m, ids, 0), 0);
  EXPECT_TRUE(prompt_logprobs(*m, {3}, 2).empty());  // one token: nothing before it
  EXPECT_THROW(prompt_logprobs(*m, {}, 2), InvalidArgument);
  EXPECT_THROW(prompt_logprobs(*m, ids, -1), InvalidArgument);
  EXPECT_THROW(prompt_logprobs(*m, ids, 2, 0), InvalidArgument);
}

}  // namespace
}  // namespace ingot::llm
