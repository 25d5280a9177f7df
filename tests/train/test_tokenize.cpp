// Tokenization of JSONL records with a fixture tokenizer: prompt/completion and chat masks.
#include <gtest/gtest.h>

#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train_test_util.h"

namespace ingot::train {
namespace {
using namespace test;

TEST(Data, TokenizationAndPromptMasks) {
  auto tok = tokenizer::Tokenizer::from_dir(fixture("llama_bf16_tied"));
  TempDir d;
  write_file(d / "t.jsonl",
             "{\"prompt\": \"The cat\", \"completion\": \" sat on the mat\"}\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"hello there\"},"
             " {\"role\": \"assistant\", \"content\": \"general kenobi\"},"
             " {\"role\": \"user\", \"content\": \"again\"},"
             " {\"role\": \"assistant\", \"content\": \"ok\"}]}\n"
             "{\"text\": \"plain text\"}\n");
  auto recs = read_jsonl(d / "t.jsonl");
  auto plain = tokenize(recs, tok, {.mask_prompt = false}, "t.jsonl");
  auto masked = tokenize(recs, tok, {.mask_prompt = true}, "t.jsonl");
  // prompt/completion: the prompt's own tokens are out of the loss, the rest (and EOS) in.
  const size_t n = tok.encode("The cat").size();
  const auto& pc = masked[0];
  EXPECT_EQ(pc.ids, plain[0].ids);
  ASSERT_GT(pc.ids.size(), n + 1);
  for (size_t i = 0; i < pc.ids.size(); ++i) EXPECT_EQ(pc.loss_mask[i], i >= n ? 1 : 0) << i;
  for (auto v : plain[0].loss_mask) EXPECT_EQ(v, 1);
  EXPECT_EQ(pc.ids.back(), tok.special_tokens().eos_ids.at(0));
  // chat: exactly the assistant turns (content and end-of-turn marker) are in the loss.
  const auto& ch = masked[1];
  std::vector<int32_t> kept;
  for (size_t i = 0; i < ch.ids.size(); ++i)
    if (ch.loss_mask[i]) kept.push_back(ch.ids[i]);
  EXPECT_EQ(tok.decode(kept), "general kenobi<|im_end|>\nok<|im_end|>\n");
  // text: everything.
  for (auto v : masked[2].loss_mask) EXPECT_EQ(v, 1);
  // Too short for the loss after truncation: an error naming the line.
  try {
    tokenize(recs, tok, {.mask_prompt = true, .max_seq_len = 2}, "t.jsonl");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("t.jsonl:1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ingot::train
