// score / classify / embed against naive computations on full forward passes (no cache, no
// batching, full-vocabulary logits), in float64 on the host.
#include <gtest/gtest.h>

#include <cmath>

#include "llm/score.h"
#include "llm_test_util.h"

namespace ingot::llm {
namespace {

using models::fixture_dir;

/// Full-vocabulary log-softmax of the logits at every position of `ids` [L, V], float64.
std::vector<std::vector<double>> naive_logprobs(const models::Model& m, const Ids& ids) {
  Array lg = m.forward(Array(ids, {1, static_cast<int64_t>(ids.size())}, int32));
  std::vector<float> v = lg.to_vector<float>();
  const size_t vocab = static_cast<size_t>(m.vocab_size());
  std::vector<std::vector<double>> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    double mx = -1e300, z = 0;
    for (size_t j = 0; j < vocab; ++j) mx = std::max(mx, double(v[i * vocab + j]));
    for (size_t j = 0; j < vocab; ++j) z += std::exp(double(v[i * vocab + j]) - mx);
    for (size_t j = 0; j < vocab; ++j)
      out[i].push_back(double(v[i * vocab + j]) - mx - std::log(z));
  }
  return out;
}

Ids concat(const Ids& a, const Ids& b) {
  Ids c = a;
  c.insert(c.end(), b.begin(), b.end());
  return c;
}

/// Prompts sharing a template prefix, of different lengths (classification-like).
std::vector<Ids> templated_prompts(int n) {
  std::vector<Ids> out;
  for (int i = 0; i < n; ++i) {
    Ids p{1, 40, 41, 42, 43};  // shared prefix
    for (int j = 0; j < 1 + (i * 7) % 9; ++j) p.push_back(50 + (i * 13 + j * 5) % 150);
    p.push_back(44);  // shared suffix token
    p.push_back(45);
    out.push_back(p);
  }
  return out;
}

class ScoreFixture : public testing::TestWithParam<const char*> {};

TEST_P(ScoreFixture, ScoreEqualsNaiveLogSoftmax) {
  auto m = load_f32(GetParam());
  std::vector<ScoreRequest> reqs{{{1, 5, 9}, {17, 3, 99}},
                                 {{7}, {8}},
                                 {{2, 3, 4, 5, 6, 7, 8, 9, 10}, {11, 12}},
                                 {{20, 21}, {22, 23, 24, 25, 26}}};
  auto got = score(*m, reqs, 3);  // two batches, mixed lengths (left padding)
  ASSERT_EQ(got.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    Ids full = concat(reqs[i].prompt, reqs[i].continuation);
    auto lp = naive_logprobs(*m, full);
    double sum = 0;
    ASSERT_EQ(got[i].token_logprobs.size(), reqs[i].continuation.size());
    for (size_t j = 0; j < reqs[i].continuation.size(); ++j) {
      const double want =
          lp[reqs[i].prompt.size() + j - 1][static_cast<size_t>(reqs[i].continuation[j])];
      EXPECT_NEAR(got[i].token_logprobs[j], want, 2e-4) << "request " << i << " token " << j;
      sum += want;
    }
    EXPECT_NEAR(got[i].sum, sum, 1e-3);
  }
}

TEST_P(ScoreFixture, ClassifyEqualsNaiveFullLogits) {
  auto m = load_f32(GetParam());
  auto prompts = templated_prompts(23);
  std::vector<Ids> labels{{60}, {61}, {200}};  // distinct first tokens: head rows only
  std::vector<int64_t> order;
  auto got = classify(*m, prompts, labels, {.batch_size = 4, .group_size = 10},
                      [&](int64_t i, const LabelProbs&) { order.push_back(i); });
  ASSERT_EQ(got.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(order[i], static_cast<int64_t>(i)) << "results must stream in input order";
    auto lp = naive_logprobs(*m, prompts[i]).back();
    std::vector<double> want;
    double mx = -1e300, z = 0;
    for (const auto& l : labels) mx = std::max(mx, lp[static_cast<size_t>(l[0])]);
    for (const auto& l : labels) z += std::exp(lp[static_cast<size_t>(l[0])] - mx);
    for (size_t j = 0; j < labels.size(); ++j) {
      const double p = std::exp(lp[static_cast<size_t>(labels[j][0])] - mx) / z;
      EXPECT_NEAR(got[i][j], p, 1e-5) << "prompt " << i << " label " << j;
    }
  }
}

TEST_P(ScoreFixture, ClassifyMultiTokenLabelsScoresWholeSequences) {
  auto m = load_f32(GetParam());
  auto prompts = templated_prompts(9);
  std::vector<Ids> labels{{60, 70}, {60, 71, 72}, {90}};  // shared first token
  auto got = classify(*m, prompts, labels, {.batch_size = 4, .group_size = 5});
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<double> ll;
    for (const auto& l : labels) {
      Ids full = concat(prompts[i], l);
      auto lp = naive_logprobs(*m, full);
      double s = 0;
      for (size_t j = 0; j < l.size(); ++j)
        s += lp[prompts[i].size() + j - 1][static_cast<size_t>(l[j])];
      ll.push_back(s);
    }
    double mx = *std::max_element(ll.begin(), ll.end()), z = 0;
    for (double v : ll) z += std::exp(v - mx);
    for (size_t j = 0; j < labels.size(); ++j)
      EXPECT_NEAR(got[i][j], std::exp(ll[j] - mx) / z, 1e-4) << "prompt " << i << " label " << j;
  }
}

TEST_P(ScoreFixture, EmbedLastAndMeanEqualFullHiddenStates) {
  auto m = load_f32(GetParam());
  auto prompts = templated_prompts(7);
  auto last = embed(*m, prompts, Pooling::last, {.batch_size = 3, .group_size = 4});
  auto mean = embed(*m, prompts, Pooling::mean, {.batch_size = 3, .group_size = 4});
  const int64_t e = m->config().hidden_size;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t l = static_cast<int64_t>(prompts[i].size());
    std::vector<float> h =
        astype(m->hidden(Array(prompts[i], {1, l}, int32)), float32).to_vector<float>();
    ASSERT_EQ(static_cast<int64_t>(last[i].size()), e);
    double max_err = 0, scale = 0;
    for (int64_t d = 0; d < e; ++d) {
      double mu = 0;
      for (int64_t t = 0; t < l; ++t) mu += h[static_cast<size_t>(t * e + d)];
      mu /= static_cast<double>(l);
      const double lastv = h[static_cast<size_t>((l - 1) * e + d)];
      max_err = std::max({max_err, std::abs(last[i][static_cast<size_t>(d)] - lastv),
                          std::abs(mean[i][static_cast<size_t>(d)] - mu)});
      scale = std::max(scale, std::abs(lastv));
    }
    EXPECT_LT(max_err, 1e-4 * std::max(1.0, scale)) << "prompt " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ScoreFixture,
                         testing::Values("llama_f32", "qwen3_f32_tied", "gemma3_f32"),
                         [](const auto& info) { return std::string(info.param); });

TEST(Classify, ErrorsNameTheProblem) {
  auto m = load_f32("llama_f32");
  auto msg = [&](auto fn) {
    try {
      fn();
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([&] {
              classify(*m, {{1, 2}}, {{3}});
            }).find("at least two labels"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              classify(*m, {{1, 2}}, {{3}, {}});
            }).find("label 1 is empty"),
            std::string::npos);
  EXPECT_NE(msg([&] { classify(*m, {{1, -4}}, {{3}, {4}}); }).find("-4"), std::string::npos);
  EXPECT_NE(msg([&] {
              score(*m, {{{1}, {}}});
            }).find("continuation 0 is empty"),
            std::string::npos);
}

}  // namespace
}  // namespace ingot::llm
