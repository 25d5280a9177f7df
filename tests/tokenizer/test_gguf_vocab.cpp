// The tokenizer built from GGUF tokenizer.ggml.* metadata encodes the tokenizer corpus exactly
// as the tokenizer.json it came from: the llama_bf16_tied GGUF fixture (its metadata read with
// the GGUF reader), and the real Llama 3 / Qwen3 tokenizers laid out the way llama.cpp's
// converter writes them (skipped when scripts/tokenizer_fetch.sh has not fetched them).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/io/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/gguf_vocab_file.h"
#include "tokenizer/test_util.h"
#include "util/utf8.h"

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

void expect_same_encoding_no_special(const Tokenizer& a, const Tokenizer& b,
                                     const std::string& what) {
  for (const auto& t : corpus())
    ASSERT_EQ(a.encode(t, {.add_special_tokens = false}),
              b.encode(t, {.add_special_tokens = false}))
        << what << ": " << t.substr(0, 60);
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

GgufValue gguf_f32s(const std::vector<double>& f) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.element_type = GgufValueType::FLOAT32;
  v.floats = f;
  return v;
}
GgufValue gguf_bool(bool b) {
  GgufValue v;
  v.type = GgufValueType::BOOL;
  v.ints = {b ? 1 : 0};
  return v;
}
GgufValue gguf_i32s(const std::vector<int64_t>& i) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.element_type = GgufValueType::INT32;
  v.ints = i;
  return v;
}

// The SentencePiece fixtures through the GGUF reader: the flags and lists as written, and the
// ids SentencePiece itself gives for the same vocabulary (scripts/spm_fixture_check.py).
TEST(GgufVocab, SentencePieceFixtures) {
  const std::string dir = std::string(INGOT_SOURCE_DIR) + "/tests/data/gguf/";
  struct Case {
    const char* file;
    bool space_prefix;
    int32_t bos;
    std::vector<int32_t> hello, spaces;
  };
  for (const Case& c : {Case{"gemma3_spm.bf16.gguf", false, 2, {24, 19}, {108, 34}},
                        Case{"llama_spm.q8_0.gguf", true, 1, {37, 22, 17}, {34, 32}}}) {
    GgufFile f(dir + c.file);
    std::optional<GgufVocab> v = read_gguf_vocab(f.header(), c.file);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->model, "llama");
    EXPECT_EQ(v->scores.size(), v->tokens.size());
    EXPECT_EQ(v->add_space_prefix, c.space_prefix);
    EXPECT_TRUE(v->add_bos);
    EXPECT_FALSE(v->add_eos);
    Tokenizer g = tokenizer_from_gguf_vocab(*v, c.file);
    EXPECT_EQ(g.encode("Hello world", {.add_special_tokens = false}), c.hello) << c.file;
    EXPECT_EQ(g.encode("   at", {.add_special_tokens = false}), c.spaces) << c.file;
    std::vector<int32_t> with_bos = {c.bos};
    with_bos.insert(with_bos.end(), c.hello.begin(), c.hello.end());
    EXPECT_EQ(g.encode("Hello world"), with_bos);
    EXPECT_EQ(g.decode(with_bos, {.skip_special_tokens = true}), "Hello world");
    // A character outside the vocabulary whose bytes are missing too: <unk>, runs fused.
    const int32_t unk = c.space_prefix ? 0 : 3;
    EXPECT_EQ(g.encode("?x", {.add_special_tokens = false}).back(), unk);
    // The tokenizer.json text loads to the same tokenizer as the tables do.
    Tokenizer j = Tokenizer::from_json(gguf_vocab_to_tokenizer_json(*v, c.file));
    expect_same_encoding_no_special(g, j, c.file);
  }
}

TEST(GgufVocab, MalformedSentencePieceMetadataIsAFormatErrorNamingTheKey) {
  GgufHeader h;
  h.metadata = {{"tokenizer.ggml.model", gguf_str("llama")},
                {"tokenizer.ggml.tokens", gguf_strs({"<unk>", "a", "b", "ab"})},
                {"tokenizer.ggml.scores", gguf_f32s({0, -1, -2, 0})},
                {"tokenizer.ggml.token_type", gguf_i32s({2, 1, 1, 1})},
                {"tokenizer.ggml.add_space_prefix", gguf_bool(false)}};
  ASSERT_TRUE(read_gguf_vocab(h, "x.gguf").has_value());
  Tokenizer ok = tokenizer_from_gguf_vocab(*read_gguf_vocab(h, "x.gguf"), "x.gguf");
  EXPECT_EQ(ok.encode("ab", {.add_special_tokens = false}), (std::vector<int32_t>{3}));
  EXPECT_EQ(ok.encode("ab c", {.add_special_tokens = false}), (std::vector<int32_t>{3, 0}));
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
  b.metadata.erase(b.metadata.begin() + 2);  // no scores
  expect_error(b, "tokenizer.ggml.scores");
  b = h;
  b.metadata[2].second = gguf_f32s({0, -1, -2});  // one short
  expect_error(b, "tokenizer.ggml.scores");
  b = h;
  b.metadata[2].second = gguf_strs({"0", "-1", "-2", "0"});  // not numbers
  expect_error(b, "tokenizer.ggml.scores");
  b = h;
  b.metadata[3].second = gguf_i32s({2, 1, 7, 1});  // no type 7
  expect_error(b, "tokenizer.ggml.token_type");
  b = h;
  b.metadata[3].second = gguf_i32s({2, 1, -1, 1});
  expect_error(b, "tokenizer.ggml.token_type");
  b = h;
  b.metadata[4].second = gguf_str("yes");
  expect_error(b, "tokenizer.ggml.add_space_prefix");
  // The same checks on a GgufVocab built in code.
  GgufVocab v = *read_gguf_vocab(h, "x.gguf");
  auto expect_vocab_error = [&](const GgufVocab& bad, const std::string& needle) {
    try {
      (void)tokenizer_from_gguf_vocab(bad, "x.gguf");
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  GgufVocab bv = v;
  bv.scores.pop_back();
  expect_vocab_error(bv, "tokenizer.ggml.scores has 3 entries for 4 tokens");
  bv = v;
  bv.scores[1] = std::nanf("");
  expect_vocab_error(bv, "tokenizer.ggml.scores[1] is NaN");
  bv = v;
  bv.token_types[1] = 9;
  expect_vocab_error(bv, "tokenizer.ggml.token_type[1] is 9");
  bv = v;
  bv.tokens[1] = "\xff";
  expect_vocab_error(bv, "tokenizer.ggml.tokens[1]");
}

// Merge order on a small vocabulary: score first (user-defined and control pieces score 0
// whatever the file says), then the left and right lengths, then piece order.
TEST(GgufVocab, SentencePieceMergeOrder) {
  const std::vector<std::string> pieces = {"a", "b", "c", "ab", "bc", "abc", "cc", "ccc"};
  const std::vector<float> scores = {0, 0, 0, -2, -1, -3, -1, -1};
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(
      sentencepiece_merges(pieces, scores),
      (std::vector<P>{
          {"cc", "c"}, {"c", "cc"}, {"b", "c"}, {"c", "c"}, {"a", "b"}, {"ab", "c"}, {"a", "bc"}}));
  // Score -1: "ccc"'s splits (left lengths 2, then 1) before "bc" and "cc" (1+1, piece order).
}

/// What llama.cpp's converter (_create_vocab_sentencepiece) stores for a SentencePiece BPE
/// tokenizer, rebuilt from the tokenizer.json transformers made of the same model: the pieces
/// in id order; types from the added tokens (special or looking special -> 3 control, other
/// added tokens -> 4 user-defined with "▁" written as " ", "<0xNN>" -> 6 byte, the rest 1);
/// scores -1000 for the added tokens (as the converter overwrites them), 0 for bytes and the
/// k-th normal piece -k (SentencePiece's BPE trainer scores its learned pieces so; with these
/// scores the derived merges are exactly Gemma3's tokenizer.json merges, checked below).
GgufVocab sentencepiece_layout(const json& tok) {
  GgufVocab v;
  v.model = "llama";
  v.pre = "default";
  // Added tokens past the model's vocab (Gemma3's <image_soft_token>) as well: the converter
  // pads the token list to the config's vocab_size and writes them there.
  const json& vocab = tok["model"]["vocab"];
  std::map<size_t, bool> added;  // id -> special
  std::vector<std::string> pieces(vocab.size());
  for (const auto& a : tok["added_tokens"]) {
    const auto id = a["id"].get<size_t>();
    added[id] = a["special"].get<bool>();
    if (id >= pieces.size()) pieces.resize(id + 1);
    pieces[id] = a["content"].get<std::string>();
  }
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    pieces.at(it.value().get<size_t>()) = it.key();
  auto looks_special = [](const std::string& t) {
    auto wrapped = [&](std::string_view a, std::string_view b) {
      return t.size() >= a.size() + b.size() && t.starts_with(a) && t.ends_with(b);
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" ||
           wrapped("<|", "|>") || wrapped("<unused", ">");
  };
  float next_score = 0.0f;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string t = pieces[i];
    int32_t type = 1;
    float score = 0.0f;
    if (auto a = added.find(i); a != added.end()) {
      type = a->second || looks_special(t) ? 3 : 4;
      score = -1000.0f;
      if (type == 4)
        for (size_t at = 0; (at = t.find("\u2581", at)) != std::string::npos;)
          t.replace(at, 3, " ");
    } else if (t.size() == 6 && t.starts_with("<0x") && t.ends_with(">")) {
      type = 6;
    } else {
      score = next_score;
      next_score -= 1.0f;
    }
    v.tokens.push_back(std::move(t));
    v.token_types.push_back(type);
    v.scores.push_back(score);
  }
  return v;
}

struct Golden {
  std::vector<int32_t> ids, ids_special;
  std::optional<std::string> decode, decode_skip;  // nullopt: the text itself
};

/// expected_<name>.json: Hugging Face's ids and decodes of each corpus text.
std::vector<Golden> goldens(const std::string& name, size_t n) {
  const json e =
      json::parse(testing::read_all(testing::data_dir() + "/expected_" + name + ".json"));
  const auto special_empty = e["special_empty"].get<std::vector<int32_t>>();
  std::vector<Golden> out;
  for (const json& c : e["cases"]) {
    Golden g;
    g.ids = c["ids"].get<std::vector<int32_t>>();
    if (c["ids_special"].is_null()) {
      g.ids_special = special_empty;
      g.ids_special.insert(g.ids_special.end(), g.ids.begin(), g.ids.end());
    } else {
      g.ids_special = c["ids_special"].get<std::vector<int32_t>>();
    }
    if (!c["decode"].is_null()) g.decode = c["decode"].get<std::string>();
    g.decode_skip = g.decode;
    if (!c["decode_skip"].is_null()) g.decode_skip = c["decode_skip"].get<std::string>();
    out.push_back(std::move(g));
  }
  EXPECT_EQ(out.size(), n);
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Gemma3's tokenizer as llama.cpp's converter writes it into a GGUF file (262k pieces, no
// merges): the derived tokenizer.json has Hugging Face's vocab, merges and added tokens, and
// the tokenizer encodes the whole corpus to Hugging Face's golden ids and decodes them back.
TEST(GgufVocab, Gemma3SentencePieceVocabEncodesLikeHuggingFace) {
  const fs::path p = fs::path(testing::models_dir()) / "gemma3" / "tokenizer.json";
  if (!fs::exists(p)) GTEST_SKIP() << "gemma3 not fetched (scripts/tokenizer_fetch.sh)";
  const json tok = json::parse(testing::read_all(p));
  GgufVocab v = sentencepiece_layout(tok);
  v.bos_id = 2;
  v.eos_id = 1;
  v.unk_id = 3;
  v.pad_id = 0;
  v.add_bos = true;
  v.add_space_prefix = false;           // convert_hf_to_gguf.py writes false for Gemma
  ASSERT_EQ(v.tokens.size(), 262145u);  // 262144 pieces and <image_soft_token>
  EXPECT_EQ(v.tokens[138], "  ");       // "▁▁", user-defined: pre-normalized by the converter

  // The derivation alone, on the SentencePiece model's pieces and scores.
  std::vector<std::string> pieces;
  std::vector<float> scores;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    std::string t = v.tokens[i];
    if (v.token_types[i] == 4)
      for (size_t at = 0; (at = t.find(' ', at)) != std::string::npos;) t.replace(at, 1, "\u2581");
    pieces.push_back(std::move(t));
    scores.push_back(v.token_types[i] == 1 ? v.scores[i] : 0.0f);
  }
  auto t0 = std::chrono::steady_clock::now();
  const auto merges = sentencepiece_merges(pieces, scores);
  const double t_merges = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  Tokenizer g = tokenizer_from_gguf_vocab(v, "gemma3.gguf");
  const double t_load = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  Tokenizer ref = Tokenizer::from_json(testing::read_all(p));
  const double t_ref = seconds_since(t0);
  std::printf(
      "[gemma3 gguf] merges derived in %.3f s; tokenizer from the GGUF vocab in %.3f s "
      "(tokenizer.json: %.3f s)\n",
      t_merges, t_load, t_ref);

  // The tokenizer.json text: vocab, merges and added tokens exactly Hugging Face's.
  json conv = json::parse(gguf_vocab_to_tokenizer_json(v, "gemma3.gguf"));
  conv["model"]["vocab"].erase("<image_soft_token>");  // an added token only in tokenizer.json
  EXPECT_EQ(conv["model"]["vocab"], tok["model"]["vocab"]);
  ASSERT_EQ(conv["model"]["merges"].size(), tok["model"]["merges"].size());
  EXPECT_EQ(conv["model"]["merges"], tok["model"]["merges"]);
  ASSERT_EQ(merges.size(), tok["model"]["merges"].size());
  for (size_t i = 0; i < merges.size(); ++i)
    ASSERT_EQ(json::array({merges[i].first, merges[i].second}), tok["model"]["merges"][i]) << i;
  ASSERT_EQ(conv["added_tokens"].size(), tok["added_tokens"].size());
  for (size_t i = 0; i < conv["added_tokens"].size(); ++i) {
    const json &a = conv["added_tokens"][i], &b = tok["added_tokens"][i];
    EXPECT_EQ(a["id"], b["id"]);
    EXPECT_EQ(a["content"], b["content"]);
    EXPECT_EQ(a["normalized"], b["normalized"]);
  }

  const auto texts = corpus();
  const auto want = goldens("gemma3", texts.size());
  ASSERT_EQ(want.size(), texts.size());
  int skip_differs = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& t = texts[i];
    ASSERT_EQ(g.encode(t, {.add_special_tokens = false}), want[i].ids) << i << ": " << t;
    ASSERT_EQ(g.encode(t, {.add_special_tokens = true}), want[i].ids_special) << i << ": " << t;
    const std::string text = utf8::to_valid_lossy(t);
    EXPECT_EQ(g.decode(want[i].ids_special), want[i].decode.value_or(text)) << i;
    // llama.cpp's converter makes <mask> and <unusedN> control tokens (special: skipped),
    // where Hugging Face has them as plain added tokens: the one case holding them differs.
    const bool differs = std::any_of(want[i].ids.begin(), want[i].ids.end(), [&](int32_t id) {
      return (id == 4 || v.tokens[static_cast<size_t>(id)].starts_with("<unused"));
    });
    skip_differs += differs;
    if (!differs) {
      EXPECT_EQ(g.decode(want[i].ids_special, {.skip_special_tokens = true}),
                want[i].decode_skip.value_or(text))
          << i;
    }
    EXPECT_EQ(g.decode(want[i].ids), ref.decode(want[i].ids)) << i;
  }
  EXPECT_EQ(skip_differs, 1);
  const SpecialTokens& s = g.special_tokens();
  EXPECT_EQ(s.bos_id, 2);
  EXPECT_EQ(s.eos_ids, (std::vector<int32_t>{1}));
  EXPECT_EQ(s.unk_id, 3);
}

TEST(GgufVocab, UnsupportedModelsAndPreTokenizersAreNamed) {
  GgufVocab v;
  v.model = "t5";
  try {
    tokenizer_from_gguf_vocab(v, "x.gguf");
    ADD_FAILURE();
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model 't5'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("supported: gpt2, llama"), std::string::npos);
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
