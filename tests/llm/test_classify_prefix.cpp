// classify / score / embed over a precomputed prefix cache (ClassifyOptions::prefix, score's
// `prefix`) against the same calls without one (whose results test_score.cpp checks against
// full forward passes): float32 fixtures, several batch sizes including 0 (automatic), groups
// that share more ids than the cache holds (the cache is extended once per group), prompts equal
// to the cached ids (their batch rewinds a copy by one id), and the cache left unchanged.
#include <gtest/gtest.h>

#include <cmath>

#include "llm/generate.h"
#include "llm/score.h"
#include "llm_test_util.h"

namespace ingot::llm {
namespace {

/// The caches of the C API: unbounded on every layer.
constexpr PromptCacheOptions kUnbounded{.unbounded = true, .step = 16};

/// Ids every prompt below starts with (the cached prefix) and the two more that most share.
const Ids kPrefix{1, 40, 41, 42, 43, 46, 47};
const Ids kMore{48, 49};

/// Prompts that start with kPrefix: most continue with kMore, then 1..9 ids of their own;
/// prompt 2 is kPrefix itself and prompt 5 leaves kMore out.
std::vector<Ids> prompts_after_prefix(int n) {
  std::vector<Ids> out;
  for (int i = 0; i < n; ++i) {
    Ids p = kPrefix;
    if (i == 2) {
      out.push_back(p);
      continue;
    }
    if (i != 5) p.insert(p.end(), kMore.begin(), kMore.end());
    for (int j = 0; j < 1 + (i * 7) % 9; ++j) p.push_back(50 + (i * 13 + j * 5) % 150);
    out.push_back(p);
  }
  return out;
}

/// A cache of `m` prefilled with `ids`, as the C API fills one.
PromptCache prefilled(const models::Model& m, const Ids& ids,
                      const PromptCacheOptions& opt = kUnbounded) {
  PromptCache c(m, opt);
  Array h = prefill(m, {ids}, c, 512, 1);
  std::vector<Array> st = c.state();
  st.push_back(h);
  eval(st);
  c.tokens() = ids;
  return c;
}

/// Every buffer of a cache, read back.
std::vector<std::vector<float>> contents(const PromptCache& c) {
  std::vector<std::vector<float>> out;
  for (const Array& a : c.state()) out.push_back(astype(a, float32).to_vector<float>());
  return out;
}

class PrefixFixture : public testing::TestWithParam<const char*> {};

TEST_P(PrefixFixture, ClassifyOverAPrefixEqualsThePlainPath) {
  auto m = load_f32(GetParam());
  const auto prompts = prompts_after_prefix(19);
  PromptCache pc = prefilled(*m, kPrefix);
  const auto before = contents(pc);
  // Distinct first tokens (LM-head rows only) and a shared first token (whole sequences).
  const std::vector<std::vector<Ids>> label_sets{{{60}, {61}, {200}},
                                                 {{60, 70}, {60, 71, 72}, {90}}};
  for (const auto& labels : label_sets) {
    const auto plain = classify(*m, prompts, labels, {.batch_size = 4, .group_size = 8});
    for (int64_t bs : {0, 1, 3, 7}) {
      // Groups of 8: the first holds prompt 2 (= the prefix: no extension, one batch rewinds),
      // the later ones share kMore too (the cache is extended for them).
      const auto got =
          classify(*m, prompts, labels, {.batch_size = bs, .group_size = 8, .prefix = &pc});
      ASSERT_EQ(got.size(), prompts.size());
      for (size_t i = 0; i < prompts.size(); ++i)
        for (size_t j = 0; j < labels.size(); ++j)
          EXPECT_NEAR(got[i][j], plain[i][j], 1e-5)
              << "batch size " << bs << " prompt " << i << " label " << j;
    }
    // One group of all prompts, sorted across the whole run.
    const auto one = classify(*m, prompts, labels, {.batch_size = 5, .prefix = &pc});
    for (size_t i = 0; i < prompts.size(); ++i)
      for (size_t j = 0; j < labels.size(); ++j) EXPECT_NEAR(one[i][j], plain[i][j], 1e-5);
  }
  EXPECT_EQ(pc.offset(), static_cast<int64_t>(kPrefix.size()));
  EXPECT_EQ(pc.tokens(), kPrefix);
  EXPECT_EQ(contents(pc), before) << "the prefix cache must not change";
  const std::vector<Ids> labels{{60}, {61}, {200}};
  // The cached keys and values are used, not computed again: a cache filled with other ids
  // that claims to hold kPrefix changes the results.
  PromptCache wrong = prefilled(*m, {1, 90, 91, 92, 93, 94, 95});
  wrong.tokens() = kPrefix;
  const auto right = classify(*m, prompts, labels, {.batch_size = 3, .prefix = &pc});
  const auto off = classify(*m, prompts, labels, {.batch_size = 3, .prefix = &wrong});
  double diff = 0;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (size_t j = 0; j < labels.size(); ++j)
      diff = std::max(diff, std::abs(off[i][j] - right[i][j]));
  EXPECT_GT(diff, 1e-3);
  // An empty cache is no prefix.
  PromptCache empty(*m, kUnbounded);
  const auto a = classify(*m, prompts, labels, {.batch_size = 3, .prefix = &empty});
  const auto b = classify(*m, prompts, labels, {.batch_size = 3});
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(a[i], b[i]);
}

TEST_P(PrefixFixture, ScoreOverAPrefixEqualsThePlainPath) {
  auto m = load_f32(GetParam());
  const auto prompts = prompts_after_prefix(7);
  std::vector<ScoreRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i)
    reqs.push_back({prompts[i], Ids(1 + i % 3, static_cast<int32_t>(100 + i))});
  PromptCache pc = prefilled(*m, kPrefix);
  const auto before = contents(pc);
  const auto plain = score(*m, reqs, 16);
  for (int64_t bs : {1, 3, 16}) {
    const auto got = score(*m, reqs, bs, &pc);
    ASSERT_EQ(got.size(), reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      ASSERT_EQ(got[i].token_logprobs.size(), reqs[i].continuation.size());
      for (size_t j = 0; j < reqs[i].continuation.size(); ++j)
        EXPECT_NEAR(got[i].token_logprobs[j], plain[i].token_logprobs[j], 1e-5)
            << "batch size " << bs << " request " << i << " token " << j;
      EXPECT_NEAR(got[i].sum, plain[i].sum, 1e-5);
    }
  }
  EXPECT_EQ(contents(pc), before);
}

TEST_P(PrefixFixture, EmbedLastOverAPrefixEqualsThePlainPath) {
  auto m = load_f32(GetParam());
  const auto prompts = prompts_after_prefix(9);
  PromptCache pc = prefilled(*m, kPrefix);
  const auto plain = embed(*m, prompts, Pooling::last, {.batch_size = 4, .group_size = 5});
  const auto got =
      embed(*m, prompts, Pooling::last, {.batch_size = 0, .group_size = 5, .prefix = &pc});
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(got[i].size(), plain[i].size());
    double scale = 1;
    for (float v : plain[i]) scale = std::max(scale, double(std::abs(v)));
    for (size_t d = 0; d < plain[i].size(); ++d)
      EXPECT_NEAR(got[i][d], plain[i][d], 1e-5 * scale) << "prompt " << i << " dim " << d;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PrefixFixture,
                         testing::Values("llama_f32", "qwen3_f32_tied", "gemma3_f32"),
                         [](const auto& info) { return std::string(info.param); });

TEST(ClassifyPrefix, ErrorsNameTheProblem) {
  auto m = load_f32("gemma3_f32");  // sliding-window layers
  PromptCache pc = prefilled(*m, kPrefix);
  const std::vector<Ids> labels{{60}, {61}};
  Ids other = kPrefix;
  other[3] = 7;
  EXPECT_NE(error_of([&] {
              classify(*m, {kPrefix, other}, labels, {.prefix = &pc});
            }).find("prompt 1 (7 ids) does not start with the prefix cache's 7 ids"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              classify(*m, {Ids(kPrefix.begin(), kPrefix.end() - 1)}, labels, {.prefix = &pc});
            }).find("does not start with"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              score(*m, {{other, {5}}}, 1, &pc);
            }).find("[score] prompt 0"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { embed(*m, {kPrefix}, Pooling::mean, {.prefix = &pc}); }).find("mean pooling"),
      std::string::npos);
  PromptCache bounded = prefilled(*m, kPrefix, {});
  EXPECT_NE(
      error_of([&] { classify(*m, {kPrefix}, labels, {.prefix = &bounded}); }).find("bounded"),
      std::string::npos);
  PromptCache two = pc.copy();
  two.repeat_rows(2);
  EXPECT_NE(error_of([&] { classify(*m, {kPrefix}, labels, {.prefix = &two}); }).find("in 2 rows"),
            std::string::npos);
  PromptCache stale = pc.copy();
  stale.tokens().pop_back();  // ids out of step with the positions
  EXPECT_NE(error_of([&] {
              classify(*m, {kPrefix}, labels, {.prefix = &stale});
            }).find("6 ids for 7 positions"),
            std::string::npos);
  auto llama = load_f32("llama_f32");
  PromptCache foreign = prefilled(*llama, kPrefix);
  EXPECT_NE(error_of([&] {
              classify(*m, {kPrefix}, labels, {.prefix = &foreign});
            }).find("another model"),
            std::string::npos);
}

}  // namespace
}  // namespace ingot::llm
