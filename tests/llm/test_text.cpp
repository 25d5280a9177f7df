// Text-level generation and classification on the fixture that ships a tokenizer
// (llama_bf16_tied): greedy text equals transformers' decoded continuation, streamed pieces
// concatenate to the text, stop strings cut it, classify_texts equals classify on ids.
#include <gtest/gtest.h>
#include <algorithm>

#include "llm/text/text.h"
#include "llm_test_util.h"

namespace ingot::llm {
namespace {

using models::fixture_dir;
using models::load_reference;

TextModel fixture_model() {
  return load_text_model(fixture_dir("llama_bf16_tied"), {.dtype = float32, .warn = false});
}

TEST(TextGenerate, GreedyTextMatchesTransformersAndStreamsWholePieces) {
  TextModel tm = fixture_model();
  auto g = load_reference("llama_bf16_tied")["greedy"];
  auto prompts = parse_ids(g["prompts"]);
  auto single = parse_ids(g["single"]);
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string streamed;
    int pieces = 0;
    TextGenerateOptions o;
    o.gen.max_tokens = static_cast<int64_t>(single[i].size());
    o.stop_at_eos = false;  // the reference ran without EOS stopping
    o.skip_special_tokens = false;
    o.on_text = [&](const std::string& p) {
      streamed += p;
      ++pieces;
    };
    TextResult r = generate_text(tm, prompts[i], o);
    EXPECT_EQ(r.tokens, single[i]) << "prompt " << i;
    EXPECT_EQ(r.text, tm.tokenizer->decode(single[i])) << "prompt " << i;
    EXPECT_EQ(streamed, r.text);
    EXPECT_GT(pieces, 1);
  }
}

TEST(TextGenerate, PromptTextEncodesLikeTransformers) {
  TextModel tm = fixture_model();
  auto g = load_reference("llama_bf16_tied")["greedy"];
  auto prompts = parse_ids(g["prompts"]);
  // prompt_texts include the BOS text; the tokenizer adds BOS itself when encoding plain text.
  EXPECT_EQ(encode_prompt(tm, "Hello"), prompts[0]);
  EXPECT_EQ(encode_prompt(tm, "Once upon a time"), prompts[1]);
}

TEST(TextGenerate, StopStringsCutTheTextAndNeverStreamPastIt) {
  TextModel tm = fixture_model();
  Ids prompt = encode_prompt(tm, "Once upon a time");
  TextGenerateOptions base;
  base.gen.max_tokens = 24;
  base.stop_at_eos = false;
  TextResult full = generate_text(tm, prompt, base);
  ASSERT_GE(full.text.size(), 8u);
  // A stop string from the middle of the greedy text (ASCII-safe cut points only).
  size_t at = full.text.size() / 2;
  while (at < full.text.size() && (static_cast<unsigned char>(full.text[at]) & 0xC0) == 0x80) ++at;
  std::string stop = full.text.substr(at, 3);
  ASSERT_EQ(stop.size(), 3u);
  size_t first = full.text.find(stop);
  TextGenerateOptions o = base;
  o.stop_strings = {"never-appears", stop};
  std::string streamed;
  o.on_text = [&](const std::string& p) { streamed += p; };
  TextResult r = generate_text(tm, prompt, o);
  EXPECT_EQ(r.finish, FinishReason::stop);
  EXPECT_EQ(r.text, full.text.substr(0, first));
  EXPECT_EQ(streamed, r.text);
  EXPECT_LT(r.tokens.size(), full.tokens.size());
}

TEST(TextClassify, EqualsClassifyOnEncodedPrompts) {
  TextModel tm = fixture_model();
  TextClassifier c{"Topic of: {text}\nAnswer:", {" yes", " no", " maybe"}};
  std::vector<std::string> texts{"the cat sat", "children ran to the park", "a", "stocks fell"};
  auto got = classify_texts(tm, c, texts, {.batch_size = 3});
  std::vector<Ids> prompts;
  for (const auto& t : texts) prompts.push_back(encode_prompt(tm, "Topic of: " + t + "\nAnswer:"));
  Ids base = encode_prompt(tm, "Topic of: the cat sat\nAnswer:");
  std::vector<Ids> labels;
  for (const auto& l : c.labels) {
    Ids full = encode_prompt(tm, "Topic of: the cat sat\nAnswer:" + l);
    labels.emplace_back(full.begin() + static_cast<std::ptrdiff_t>(base.size()), full.end());
  }
  auto want = classify(*tm.model, prompts, labels, {.batch_size = 3});
  ASSERT_EQ(got.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    double s = 0;
    for (size_t j = 0; j < c.labels.size(); ++j) {
      EXPECT_NEAR(got[i][j], want[i][j], 1e-9);
      s += got[i][j];
    }
    EXPECT_NEAR(s, 1.0, 1e-9);
  }
  EXPECT_THROW(classify_texts(tm, {"no placeholder", {"a", "b"}}, texts), InvalidArgument);
  EXPECT_THROW(classify_texts(tm, {"{text} {text}", {"a", "b"}}, texts), InvalidArgument);

  // Several groups (tokenized ahead on host threads while the model runs): the same groups and
  // numbers as one classify() call, results and progress in input order.
  std::vector<std::string> many;
  for (int i = 0; i < 11; ++i) many.push_back(texts[i % 4] + std::string(i % 3, '!'));
  std::vector<Ids> many_prompts;
  for (const auto& t : many)
    many_prompts.push_back(encode_prompt(tm, "Topic of: " + t + "\nAnswer:"));
  const ClassifyOptions grouped{.batch_size = 2, .group_size = 4};
  auto want_many = classify(*tm.model, many_prompts, labels, grouped);
  std::vector<int64_t> order, progress;
  ClassifyOptions with_progress = grouped;
  with_progress.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 11);
    progress.push_back(done);
  };
  auto got_many = classify_texts(tm, c, many, with_progress,
                                 [&](int64_t i, const LabelProbs&) { order.push_back(i); });
  ASSERT_EQ(got_many.size(), many.size());
  for (size_t i = 0; i < many.size(); ++i)
    for (size_t j = 0; j < c.labels.size(); ++j) EXPECT_EQ(got_many[i][j], want_many[i][j]);
  for (int64_t i = 0; i < 11; ++i) EXPECT_EQ(order.at(static_cast<size_t>(i)), i);
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), 11);
}

}  // namespace
}  // namespace ingot::llm
