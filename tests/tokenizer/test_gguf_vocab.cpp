// The tokenizer built from GGUF tokenizer.ggml.* metadata encodes the tokenizer corpus exactly
// as the tokenizer.json it came from: the llama_bf16_tied GGUF fixture (its metadata read with
// the GGUF reader), and the real Llama 3 / Qwen3 tokenizers laid out the way llama.cpp's
// converter writes them (skipped when scripts/tokenizer_fetch.sh has not fetched them).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/io/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/test_util.h"

namespace ingot::tokenizer {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> corpus() {
  std::vector<std::string> texts;
  std::ifstream f(testing::data_dir() + "/corpus.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const json j = json::parse(line);
    if (j.contains("bytes_hex")) {  // invalid UTF-8 cases
      const std::string hex = j["bytes_hex"].get<std::string>();
      std::string t;
      for (size_t i = 0; i + 1 < hex.size(); i += 2)
        t += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
      texts.push_back(t);
    } else {
      texts.push_back(j["text"].get<std::string>());
    }
  }
  return texts;
}

void expect_same_encoding(const Tokenizer& a, const Tokenizer& b, const std::string& what) {
  const auto texts = corpus();
  ASSERT_GT(texts.size(), 10u);
  for (const auto& t : texts)
    for (bool special : {true, false}) {
      EncodeOptions o;
      o.add_special_tokens = special;
      ASSERT_EQ(a.encode(t, o), b.encode(t, o)) << what << ": " << t.substr(0, 60);
    }
}

TEST(GgufVocab, FixtureMetadataEncodesLikeItsTokenizerJson) {
  const std::string src = std::string(INGOT_SOURCE_DIR);
  const std::string path = src + "/tests/data/gguf/llama_bf16_tied.bf16.gguf";
  GgufFile f(path);
  GgufVocab v;
  v.model = gguf_string(*f.find("tokenizer.ggml.model"), path, "model");
  v.pre = gguf_string(*f.find("tokenizer.ggml.pre"), path, "pre");
  v.tokens = f.find("tokenizer.ggml.tokens")->strings;
  for (int64_t t : f.find("tokenizer.ggml.token_type")->ints)
    v.token_types.push_back(static_cast<int32_t>(t));
  v.merges = f.find("tokenizer.ggml.merges")->strings;
  v.bos_id = static_cast<int32_t>(gguf_int(*f.find("tokenizer.ggml.bos_token_id"), path, "bos"));
  v.add_bos = gguf_int(*f.find("tokenizer.ggml.add_bos_token"), path, "add_bos") != 0;
  Tokenizer g = tokenizer_from_gguf_vocab(v, path);
  Tokenizer ref = Tokenizer::from_dir(src + "/tests/data/models/llama_bf16_tied");
  expect_same_encoding(g, ref, "llama_bf16_tied");
  EXPECT_EQ(g.encode("hi", {}).front(), 1);  // BOS prepended
  EXPECT_EQ(g.decode(g.encode("hello world", {}), {.skip_special_tokens = true}), "hello world");
}

/// What llama.cpp's converter stores for a byte-level BPE tokenizer.json.
GgufVocab converter_layout(const json& tok, const std::string& pre) {
  GgufVocab v;
  v.model = "gpt2";
  v.pre = pre;
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;
  for (auto it = tok["model"]["vocab"].begin(); it != tok["model"]["vocab"].end(); ++it)
    by_id[it.value().get<int64_t>()] = {it.key(), 1};
  for (const auto& a : tok["added_tokens"])
    by_id[a["id"].get<int64_t>()] = {a["content"].get<std::string>(), a["special"] ? 3 : 4};
  for (int64_t i = 0; i <= by_id.rbegin()->first; ++i) {
    auto it = by_id.find(i);
    v.tokens.push_back(it == by_id.end() ? "[PAD" + std::to_string(i) + "]" : it->second.first);
    v.token_types.push_back(it == by_id.end() ? 5 : it->second.second);
  }
  for (const auto& m : tok["model"]["merges"])
    v.merges.push_back(m.is_string() ? m.get<std::string>()
                                     : m[0].get<std::string>() + " " + m[1].get<std::string>());
  return v;
}

TEST(GgufVocab, RealTokenizersInConverterLayout) {
  int ran = 0;
  for (auto [name, pre] : {std::pair{"llama3_1", "llama-bpe"}, std::pair{"qwen3", "qwen2"}}) {
    const fs::path p = fs::path(testing::models_dir()) / name / "tokenizer.json";
    if (!fs::exists(p)) continue;
    ++ran;
    const json tok = json::parse(testing::read_all(p));
    Tokenizer g = tokenizer_from_gguf_vocab(converter_layout(tok, pre), p.string());
    Tokenizer ref = Tokenizer::from_json(testing::read_all(p));
    // add_special_tokens=false: the converter's BOS handling is checked on the fixture above.
    const auto texts = corpus();
    for (const auto& t : texts) {
      EncodeOptions o;
      o.add_special_tokens = false;
      ASSERT_EQ(g.encode(t, o), ref.encode(t, o)) << name << ": " << t.substr(0, 60);
    }
  }
  if (ran == 0) GTEST_SKIP() << "real tokenizers not fetched (scripts/tokenizer_fetch.sh)";
}

TEST(GgufVocab, UnsupportedModelsAndPreTokenizersAreNamed) {
  GgufVocab v;
  v.model = "llama";
  try {
    tokenizer_from_gguf_vocab(v, "x.gguf");
    ADD_FAILURE();
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model 'llama'"), std::string::npos);
  }
  v.model = "gpt2";
  v.pre = "deepseek-coder";
  EXPECT_THROW(tokenizer_from_gguf_vocab(v, "x.gguf"), Unsupported);
  v.pre = "gpt-2";
  v.tokens = {"a", "b"};
  v.merges = {"ab"};
  EXPECT_THROW(tokenizer_from_gguf_vocab(v, "x.gguf"), FormatError);
}

}  // namespace
}  // namespace ingot::tokenizer
