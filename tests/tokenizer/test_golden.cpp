// Token-for-token agreement with Hugging Face `tokenizers` (goldens from
// scripts/tokenizer_hf_goldens.py) on the committed corpus, for the three pinned tokenizers:
// ids with and without special tokens, decodes, and the streaming decoder.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "test_tokenizer_json.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/utf8.h"

namespace ingot::tokenizer {
namespace {

using json = nlohmann::json;
using testing::data_dir;
using testing::models_dir;
using testing::read_all;

struct Case {
  std::string name, text;
};

std::vector<Case> load_corpus() {
  std::vector<Case> out;
  std::istringstream in(read_all(data_dir() + "/corpus.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line);
    Case c{j["name"], ""};
    if (j.contains("bytes_hex")) {
      std::string hex = j["bytes_hex"];
      for (size_t i = 0; i + 1 < hex.size(); i += 2)
        c.text += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    } else {
      c.text = j["text"];
    }
    out.push_back(std::move(c));
  }
  return out;
}

const Tokenizer& get(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, Tokenizer::from_dir(models_dir() + "/" + name)).first;
  return it->second;
}

std::string show(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += std::to_string(v[i]) + " ";
  return s + (v.size() > 40 ? "..." : "");
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, IdsAndDecodesMatchHuggingFace) {
  const std::string name = GetParam();
  const Tokenizer& tok = get(name);
  auto corpus = load_corpus();
  json exp = json::parse(read_all(data_dir() + "/expected_" + name + ".json"));
  auto special_empty = exp["special_empty"].get<std::vector<int32_t>>();
  ASSERT_EQ(exp["cases"].size(), corpus.size());
  int ids_ok = 0, sids_ok = 0, dec_ok = 0, skip_ok = 0, stream_ok = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto& c = corpus[i];
    const json& e = exp["cases"][i];
    ASSERT_EQ(e["name"], c.name);
    auto want = e["ids"].get<std::vector<int32_t>>();
    auto want_s = special_empty;
    if (e["ids_special"].is_null())
      want_s.insert(want_s.end(), want.begin(), want.end());
    else
      want_s = e["ids_special"].get<std::vector<int32_t>>();
    auto got = tok.encode(c.text, {.add_special_tokens = false});
    auto got_s = tok.encode(c.text, {.add_special_tokens = true});
    if (got == want)
      ++ids_ok;
    else
      ADD_FAILURE() << name << "/" << c.name << " ids\n want " << show(want) << "\n  got "
                    << show(got);
    if (got_s == want_s)
      ++sids_ok;
    else
      ADD_FAILURE() << name << "/" << c.name << " ids+special\n want " << show(want_s) << "\n  got "
                    << show(got_s);
    std::string text = utf8::to_valid_lossy(c.text);
    std::string want_dec = e["decode"].is_null() ? text : e["decode"].get<std::string>();
    std::string want_skip =
        e["decode_skip"].is_null() ? want_dec : e["decode_skip"].get<std::string>();
    std::string dec = tok.decode(want_s);
    std::string skip = tok.decode(want_s, {.skip_special_tokens = true});
    if (dec == want_dec)
      ++dec_ok;
    else
      ADD_FAILURE() << name << "/" << c.name << " decode\n want " << json(want_dec).dump()
                    << "\n  got " << json(dec).dump();
    if (skip == want_skip)
      ++skip_ok;
    else
      ADD_FAILURE() << name << "/" << c.name << " decode(skip_special)";
    StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : want_s) {
      std::string piece = sd.step(id);
      EXPECT_TRUE(utf8::is_valid(piece));
      streamed += piece;
    }
    streamed += sd.finish();
    if (streamed == want_dec)
      ++stream_ok;
    else
      ADD_FAILURE() << name << "/" << c.name << " stream decode\n want " << json(want_dec).dump()
                    << "\n  got " << json(streamed).dump();
  }
  std::printf(
      "[golden %s] ids %d/%zu, ids+special %d/%zu, decode %d/%zu, decode(skip) %d/%zu, "
      "stream %d/%zu\n",
      name.c_str(), ids_ok, corpus.size(), sids_ok, corpus.size(), dec_ok, corpus.size(), skip_ok,
      corpus.size(), stream_ok, corpus.size());
}

TEST_P(Golden, ScannedTokenizerJsonMatchesTheTree) {
  // The real files take the scanner's path (a fallback to the tree would be slower, not wrong,
  // so it is asserted here), and it reads what nlohmann's parse reads.
  const std::string text = read_all(models_dir() + "/" + GetParam() + "/tokenizer.json");
  std::optional<TokenizerJsonParts> parts = scan_tokenizer_json(text);
  ASSERT_TRUE(parts.has_value());
  EXPECT_GT(parts->tables.vocab.size(), 100000u);
  EXPECT_GT(parts->tables.merges.size(), 100000u);
  expect_parts_match_tree(*parts, text);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Golden, ::testing::Values("gemma3", "qwen3", "llama3_1"));

}  // namespace
}  // namespace ingot::tokenizer
