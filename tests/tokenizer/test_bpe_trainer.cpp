// Byte-level BPE trainer (issue 15): the learned merges equal a naive trainer written here (full
// recount per merge over words split by hand), the vocabulary size is honoured, and the written
// tokenizer.json reloads with our loader and round-trips text, unicode and unseen words included.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/bpe_trainer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace fs = std::filesystem;
using namespace ingot;
using namespace ingot::tokenizer;

namespace {

/// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("ingot_bpe_train_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

/// Lowercase ASCII words separated by single spaces (a lexicon with Zipf-like frequencies and
/// made-up words), fixed seed.
std::string ascii_corpus(size_t n_words, uint32_t seed) {
  const std::vector<std::string> lex = {
      "the",  "of",    "and",   "to",    "in",     "a",        "is",      "that",   "for",
      "it",   "as",    "was",   "with",  "be",     "by",       "on",      "not",    "he",
      "this", "are",   "or",    "his",   "from",   "at",       "which",   "but",    "have",
      "an",   "had",   "they",  "you",   "were",   "there",    "one",     "all",    "we",
      "can",  "her",   "has",   "been",  "if",     "more",     "when",    "will",   "would",
      "who",  "so",    "no",    "token", "tokens", "tokenize", "merge",   "merges", "merging",
      "pair", "pairs", "bytes", "byte",  "level",  "levels",   "lowered", "lower",  "lowest"};
  std::mt19937 rng(seed);
  std::vector<double> w;
  for (size_t i = 0; i < lex.size(); ++i) w.push_back(1.0 / static_cast<double>(i + 1));
  std::discrete_distribution<size_t> pick(w.begin(), w.end());
  const std::vector<std::string> syl = {"ka", "lo", "mi", "re", "su", "tan", "vel", "or", "ish"};
  std::string out;
  for (size_t i = 0; i < n_words; ++i) {
    if (i) out += ' ';
    if (rng() % 4 == 0) {  // a made-up word of 2-4 syllables: many distinct words and pairs
      for (size_t k = 2 + rng() % 3; k > 0; --k) out += syl[rng() % syl.size()];
    } else {
      out += lex[pick(rng)];
    }
  }
  return out;
}

/// Naive reference BPE: words given as byte strings with counts; every step recounts all
/// adjacent pairs, takes the largest count (ties: lower (left id, right id)) and merges it
/// left to right. Returns the merges as (left string, right string) and the chosen counts.
struct NaiveResult {
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<uint64_t> counts;
};
NaiveResult naive_bpe(const std::map<std::string, uint64_t>& word_counts, size_t n_tokens,
                      uint64_t min_frequency) {
  std::vector<std::string> tok;  // id -> raw bytes
  std::map<std::string, int> ids;
  for (int b = 0; b < 256; ++b) {
    tok.push_back(std::string(1, static_cast<char>(b)));
    ids[tok.back()] = b;
  }
  std::vector<std::pair<std::vector<int>, uint64_t>> words;
  for (auto& [w, c] : word_counts) {
    std::vector<int> s;
    for (unsigned char ch : w) s.push_back(ch);
    words.push_back({s, c});
  }
  NaiveResult r;
  while (tok.size() < n_tokens) {
    std::map<std::pair<int, int>, uint64_t> pc;
    for (auto& [s, c] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pc[{s[i], s[i + 1]}] += c;
    std::pair<int, int> best{-1, -1};
    uint64_t bc = 0;
    for (auto& [p, c] : pc)  // std::map iterates pairs in increasing order: first max wins
      if (c > bc) {
        bc = c;
        best = p;
      }
    if (bc < min_frequency || bc == 0) break;
    std::string merged = tok[best.first] + tok[best.second];
    int nid;
    if (ids.count(merged)) {
      nid = ids[merged];
    } else {
      nid = static_cast<int>(tok.size());
      tok.push_back(merged);
      ids[merged] = nid;
    }
    r.merges.push_back({tok[best.first], tok[best.second]});
    r.counts.push_back(bc);
    for (auto& [s, c] : words) {
      std::vector<int> o;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          o.push_back(nid);
          i += 2;
        } else {
          o.push_back(s[i++]);
        }
      }
      s = o;
    }
  }
  return r;
}

/// Raw bytes of token `id`: its byte-level string mapped back through GPT-2's byte table.
std::string raw_bytes(const BpeModel& m, int32_t id) {
  std::string out;
  const std::string& t = m.tokens.at(static_cast<size_t>(id));
  for (size_t i = 0; i < t.size();) {
    int b = unicode_to_byte(utf8::next(t, i));
    if (b < 0) ADD_FAILURE() << "token " << id << " is not byte-level";
    out += static_cast<char>(b);
  }
  return out;
}

}  // namespace

TEST(BpeTrainer, MergesEqualNaiveRecountOnHandSplitWords) {
  const std::string text = ascii_corpus(20000, 7);
  // Independent pre-tokenization: the first word alone, every later one with its leading space
  // (what the Llama 3 regex does on lowercase words separated by single spaces).
  std::map<std::string, uint64_t> wc;
  size_t start = 0;
  while (start < text.size()) {
    size_t sp = text.find(' ', start + 1);
    if (sp == std::string::npos) sp = text.size();
    ++wc[text.substr(start, sp - start)];
    start = sp;
  }
  BpeTrainOptions o;
  o.vocab_size = 256 + 120 + 4;
  BpeModel m = train_bpe({text}, o);
  NaiveResult ref = naive_bpe(wc, 256 + 120, o.min_frequency);
  ASSERT_EQ(m.merges.size(), ref.merges.size());
  ASSERT_EQ(m.vocab_size(), o.vocab_size);
  for (size_t i = 0; i < ref.merges.size(); ++i) {
    EXPECT_EQ(raw_bytes(m, m.merges[i].first), ref.merges[i].first) << "merge " << i;
    EXPECT_EQ(raw_bytes(m, m.merges[i].second), ref.merges[i].second) << "merge " << i;
    EXPECT_EQ(m.merge_counts[i], ref.counts[i]) << "merge " << i;
  }
  // Merge 0 is the most frequent byte pair, counted directly on the text's words.
  std::map<std::string, uint64_t> pairs;
  for (auto& [w, c] : wc)
    for (size_t i = 0; i + 1 < w.size(); ++i) pairs[w.substr(i, 2)] += c;
  auto top = std::max_element(pairs.begin(), pairs.end(),
                              [](auto& x, auto& y) { return x.second < y.second; });
  EXPECT_EQ(raw_bytes(m, m.merges[0].first) + raw_bytes(m, m.merges[0].second), top->first);
  EXPECT_EQ(m.merge_counts[0], top->second);
  // Every chosen count reaches min_frequency, and the chosen counts never increase (a merge only
  // lowers existing pairs; a new pair is at most as frequent as the merged one).
  for (size_t i = 0; i < m.merge_counts.size(); ++i) {
    EXPECT_GE(m.merge_counts[i], o.min_frequency);
    if (i) {
      EXPECT_LE(m.merge_counts[i], m.merge_counts[i - 1]) << "merge " << i;
    }
  }
}

TEST(BpeTrainer, RepeatedLettersCountOverlappingPositions) {
  // "aaaa" has three (a,a) positions; after merging it is [aa, aa]: one (aa,aa) pair.
  BpeTrainOptions o;
  o.vocab_size = 256 + 3 + 4;
  BpeModel m = train_bpe({"aaaa aaaa aaaa aaaa aaaa ab ab ab"}, o);
  // The text is "aaaa" + 4x" aaaa" + 3x" ab": the reference on those words.
  NaiveResult ref = naive_bpe({{"aaaa", 1}, {" aaaa", 4}, {" ab", 3}}, 256 + 3, 2);
  ASSERT_EQ(m.merges.size(), ref.merges.size());
  for (size_t i = 0; i < ref.merges.size(); ++i) {
    EXPECT_EQ(raw_bytes(m, m.merges[i].first) + "|" + raw_bytes(m, m.merges[i].second),
              ref.merges[i].first + "|" + ref.merges[i].second);
    EXPECT_EQ(m.merge_counts[i], ref.counts[i]);
  }
  ASSERT_FALSE(m.merge_counts.empty());
  EXPECT_EQ(m.merge_counts[0], 15u);  // (a,a): 3 positions x 5 words
}

TEST(BpeTrainer, VocabSizeHonouredAndReloadRoundTrips) {
  TempDir d;
  const std::string text =
      ascii_corpus(30000, 11) +
      "\nNaïve café — 日本語のテキスト 🙂 and numbers 12345 67.\n";
  BpeTrainOptions o;
  o.vocab_size = 400;
  BpeModel m = train_bpe({text}, o);
  ASSERT_EQ(m.vocab_size(), 400u);
  m.save(d.path.string());
  Tokenizer tok = Tokenizer::from_dir(d.path.string());
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.token_to_id("<|begin_of_text|>"), 396);
  EXPECT_EQ(tok.token_to_id("<|end_of_text|>"), 397);
  EXPECT_EQ(tok.token_to_id("<|im_start|>"), 398);
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 399);
  EXPECT_TRUE(tok.is_special(399));
  EXPECT_EQ(tok.special_tokens().bos_id, 396);
  ASSERT_FALSE(tok.special_tokens().eos_ids.empty());
  EXPECT_EQ(tok.special_tokens().eos_ids[0], 397);

  const std::vector<std::string> samples = {
      "the token merges are lower",
      "zyxwvutsrq qqq unseenword",  // never seen as words
      "Ünïcödé: naïve café, 日本語, emoji 🙂🎉, Ελληνικά",
      "tabs\tand\n\nnewlines  double  spaces ",
      "numbers 1234567 and 3.14159",
      std::string("\x00\x01\x7f", 3),
      ""};
  for (const auto& s : samples) {
    auto ids = tok.encode(s, {.add_special_tokens = false});
    EXPECT_EQ(tok.decode(ids), s) << s;
    for (int32_t id : ids) EXPECT_LT(id, 396) << s;
    auto with_bos = tok.encode(s);
    ASSERT_EQ(with_bos.size(), ids.size() + 1);
    EXPECT_EQ(with_bos[0], 396);
  }
  // Merges are applied as learned: a frequent word is one token, the merged string of its bytes.
  auto the = tok.encode(" the", {.add_special_tokens = false});
  ASSERT_EQ(the.size(), 1u);
  EXPECT_EQ(raw_bytes(m, the[0]), " the");
  // Unseen words fall back to shorter pieces (here: not one token), still round-tripping.
  EXPECT_GT(tok.encode(" zyxwvutsrq", {.add_special_tokens = false}).size(), 1u);
  // Special tokens in text are single ids.
  auto sp = tok.encode("<|im_start|>user\nhi<|im_end|>", {.add_special_tokens = false});
  ASSERT_GE(sp.size(), 3u);
  EXPECT_EQ(sp.front(), 398);
  EXPECT_EQ(sp.back(), 399);
}

TEST(BpeTrainer, ChatTemplateIsChatMl) {
  TempDir d;
  BpeTrainOptions o;
  o.vocab_size = 300;
  train_bpe({ascii_corpus(2000, 3)}, o).save(d.path.string());
  Tokenizer tok = Tokenizer::from_dir(d.path.string());
  std::string out = apply_chat_template(
      tok, R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])",
      {.add_generation_prompt = true});
  EXPECT_EQ(out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  out = apply_chat_template(tok, R"([{"role":"user","content":"Hi"}])",
                            {.add_generation_prompt = false});
  EXPECT_EQ(out, "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(BpeTrainer, ExtraSpecialTokensAndNoBos) {
  TempDir d;
  BpeTrainOptions o;
  o.vocab_size = 262;
  o.special_tokens.push_back("<|pad|>");
  o.add_bos = false;
  BpeModel m = train_bpe({ascii_corpus(2000, 5)}, o);
  EXPECT_EQ(m.tokens.size(), 257u);
  m.save(d.path.string());
  Tokenizer tok = Tokenizer::from_dir(d.path.string());
  EXPECT_EQ(tok.token_to_id("<|pad|>"), 261);
  auto ids = tok.encode("the");
  EXPECT_EQ(tok.decode(ids), "the");
  EXPECT_TRUE(std::find(ids.begin(), ids.end(), 257) == ids.end());  // no BOS
}

TEST(BpeTrainer, DeterministicAndOrderIndependent) {
  const std::string a = ascii_corpus(5000, 1), b = ascii_corpus(5000, 2);
  BpeTrainOptions o;
  o.vocab_size = 360;
  BpeModel m1 = train_bpe({a, b}, o), m2 = train_bpe({b, a}, o);
  EXPECT_EQ(m1.merges, m2.merges);
  EXPECT_EQ(m1.tokenizer_json(), m2.tokenizer_json());
}

TEST(BpeTrainer, SpecialTokensInTheCorpusAreNotLearned) {
  BpeTrainOptions o;
  o.vocab_size = 270;
  o.min_frequency = 1;
  BpeModel m = train_bpe({"<|im_start|><|im_start|><|im_start|>xy<|im_end|>xy"}, o);
  // Only "xy" (twice) is text; one merge (x,y), then no pair is left.
  ASSERT_EQ(m.merges.size(), 1u);
  EXPECT_EQ(raw_bytes(m, m.merges[0].first) + raw_bytes(m, m.merges[0].second), "xy");
  EXPECT_EQ(m.merge_counts[0], 2u);
}

TEST(BpeTrainer, StopsWhenNoPairReachesMinFrequency) {
  BpeTrainOptions o;
  o.vocab_size = 1000;
  BpeModel m = train_bpe({"abc abd"}, o);  // (a,b) twice, nothing else twice
  EXPECT_EQ(m.merges.size(), 1u);
  EXPECT_EQ(m.vocab_size(), 256u + 1 + 4);
}

TEST(BpeTrainer, InvalidUtf8IsRepaired) {
  TempDir d;
  BpeTrainOptions o;
  o.vocab_size = 300;
  BpeModel m = train_bpe({std::string("ab\xff\xfe ab\xc3 ab ab\x80"), "caf\xc3\xa9"}, o);
  m.save(d.path.string());
  Tokenizer tok = Tokenizer::from_dir(d.path.string());
  EXPECT_EQ(tok.decode(tok.encode("ab caf\xc3\xa9", {.add_special_tokens = false})),
            "ab caf\xc3\xa9");
}

TEST(BpeTrainer, AddFileEqualsAddTextAcrossChunks) {
  TempDir d;
  // > 4 MiB so the file is read in several pieces; lines of words with blank lines between.
  std::string text;
  for (int i = 0; text.size() < (size_t{9} << 19); ++i)
    text += ascii_corpus(40, static_cast<uint32_t>(i)) + (i % 3 ? "\n" : "\n\n");
  write_file(d.path / "c.txt", text);
  BpeTrainOptions o;
  o.vocab_size = 320;
  BpeTrainer t1(o), t2(o);
  t1.add_file((d.path / "c.txt").string());
  t2.add_text(text);
  EXPECT_EQ(t1.bytes_seen(), text.size());
  EXPECT_EQ(t1.distinct_words(), t2.distinct_words());
  BpeModel m1 = t1.train(), m2 = t2.train();
  EXPECT_EQ(m1.merges, m2.merges);
  EXPECT_EQ(m1.merge_counts, m2.merge_counts);
}

TEST(BpeTrainer, ClearErrors) {
  BpeTrainOptions o;
  o.vocab_size = 259;  // < 256 + 4 specials
  try {
    BpeTrainer t(o);
    ADD_FAILURE() << "no error for a too small vocab";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("at least 260"), std::string::npos) << e.what();
  }
  o.vocab_size = 300;
  {
    BpeTrainer t(o);
    t.add_text("");
    EXPECT_THROW(t.train(), InvalidArgument);
  }
  {
    BpeTrainer t(o);
    t.add_text("<|end_of_text|>");
    EXPECT_THROW(t.train(), InvalidArgument);
  }
  {
    BpeTrainer t(o);
    try {
      t.add_file("/nonexistent/ingot/corpus.txt");
      ADD_FAILURE() << "no error for a missing file";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("/nonexistent/ingot/corpus.txt"), std::string::npos);
    }
    EXPECT_THROW(t.add_file(fs::temp_directory_path().string()), IoError);
  }
  BpeTrainOptions dup;
  dup.special_tokens = {"<a>", "<a>"};
  EXPECT_THROW(BpeTrainer{dup}, InvalidArgument);
  BpeTrainOptions one;
  one.special_tokens = {"<a>"};
  EXPECT_THROW(BpeTrainer{one}, InvalidArgument);
  BpeTrainOptions empty_tok;
  empty_tok.special_tokens.push_back("");
  EXPECT_THROW(BpeTrainer{empty_tok}, InvalidArgument);
}
