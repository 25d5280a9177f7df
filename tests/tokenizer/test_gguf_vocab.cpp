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
#include "tokenizer/gguf_vocab_file.h"
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
  std::optional<GgufVocab> v = read_gguf_vocab(f.header(), path);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->model, "gpt2");
  EXPECT_EQ(v->bos_id, 1);
  EXPECT_TRUE(v->add_bos);
  Tokenizer g = tokenizer_from_gguf_vocab(*v, path);
  Tokenizer ref = Tokenizer::from_dir(src + "/tests/data/models/llama_bf16_tied");
  expect_same_encoding(g, ref, "llama_bf16_tied");
  EXPECT_EQ(g.encode("hi", {}).front(), 1);  // BOS prepended
  EXPECT_EQ(g.decode(g.encode("hello world", {}), {.skip_special_tokens = true}), "hello world");
  // Special tokens and the chat template as the Hugging Face files give them (EOS and EOT ids
  // of the metadata = generation_config.json's eos_token_id [2, 4]).
  const SpecialTokens &gs = g.special_tokens(), &rs = ref.special_tokens();
  EXPECT_EQ(gs.eos_ids, rs.eos_ids);
  EXPECT_EQ(gs.eos_ids, (std::vector<int32_t>{2, 4}));
  EXPECT_EQ(gs.bos_id, rs.bos_id);
  EXPECT_EQ(gs.pad_id, rs.pad_id);
  EXPECT_EQ(gs.bos_token, rs.bos_token);
  EXPECT_EQ(gs.eos_token, rs.eos_token);
  EXPECT_FALSE(g.chat_template().empty());
  EXPECT_EQ(g.chat_template(), ref.chat_template());
}

GgufValue gguf_str(const std::string& s) {
  GgufValue v;
  v.type = GgufValueType::STRING;
  v.strings = {s};
  return v;
}
GgufValue gguf_strs(const std::vector<std::string>& s) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.element_type = GgufValueType::STRING;
  v.strings = s;
  return v;
}
GgufValue gguf_u32(int64_t i) {
  GgufValue v;
  v.type = GgufValueType::UINT32;
  v.ints = {i};
  return v;
}

TEST(GgufVocab, MalformedMetadataIsAFormatErrorNamingTheKey) {
  GgufHeader h;
  EXPECT_FALSE(read_gguf_vocab(h, "x.gguf").has_value());  // no tokenizer at all
  h.metadata = {{"tokenizer.ggml.model", gguf_str("gpt2")},
                {"tokenizer.ggml.tokens", gguf_strs({"a", "b", "ab"})},
                {"tokenizer.ggml.merges", gguf_strs({"a b"})}};
  ASSERT_TRUE(read_gguf_vocab(h, "x.gguf").has_value());
  EXPECT_EQ(tokenizer_from_gguf_vocab(*read_gguf_vocab(h, "x.gguf"), "x.gguf").encode("ab"),
            (std::vector<int32_t>{2}));
  auto expect_error = [&](GgufHeader bad, const std::string& needle) {
    try {
      auto v = read_gguf_vocab(bad, "x.gguf");
      if (v) (void)tokenizer_from_gguf_vocab(*v, "x.gguf");
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  GgufHeader b = h;
  b.metadata[1].second = gguf_str("a");  // a string, not an array of strings
  expect_error(b, "tokenizer.ggml.tokens");
  b = h;
  b.metadata.erase(b.metadata.begin() + 1);
  expect_error(b, "tokenizer.ggml.tokens");
  b = h;
  b.metadata.push_back({"tokenizer.ggml.token_type", gguf_strs({"1", "1", "1"})});
  expect_error(b, "tokenizer.ggml.token_type");
  b = h;
  b.metadata.push_back({"tokenizer.ggml.eos_token_id", gguf_u32(3)});  // outside the 3 tokens
  expect_error(b, "eos_token_id 3 is outside the vocabulary");
  b = h;
  b.metadata.push_back({"tokenizer.ggml.bos_token_id", gguf_u32(int64_t{1} << 40)});
  expect_error(b, "tokenizer.ggml.bos_token_id");
  b = h;
  b.metadata.push_back({"tokenizer.ggml.eos_token_id", gguf_str("2")});
  expect_error(b, "tokenizer.ggml.eos_token_id");
  b = h;
  b.metadata[1].second = gguf_strs({"a", "b", std::string("\xff\xfe")});  // not UTF-8
  expect_error(b, "not valid UTF-8");
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
