// The hand-written tokenizer.json scanner against nlohmann's parse of the same text (a reader
// we did not write), and the flat vocab / merge indexes of the BPE model.
#include "tokenizer/tokenizer_json.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "test_tokenizer_json.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace ingot::tokenizer {
namespace {

TEST(TokenizerJson, ScanMatchesTheTree) {
  const std::vector<std::string> docs = {
      // escapes in vocab keys and merges, raw UTF-8, whitespace of every kind
      "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\\n\":0,\"\\\"q\\\\\":1,\"\\/s\\b\\f\\r\\t\":2,"
      "\"\\u00e9\\u4e2d\":3,\"\\ud83d\\ude00\":4,\"x\\u0000y\":5,\"\xc3\xa9\xe2\x96\x81\":6,"
      "\"\\u00E9\\u00e9\":7},\r\n\t\"merges\" : [ \"a\\n \\\"q\\\\\" ,[\"\\u00e9\\u4e2d\", "
      "\"\\ud83d\\ude00\"] ] } }",
      // other values around: nested containers whose strings hold brackets, commas and escaped
      // quotes; numbers, booleans and null at both levels; a repeated key (the last counts)
      R"({"version": "1.0", "added_tokens": [{"id": 7, "content": "<s>]}\",{", "special": true}],
          "normalizer": null, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [[], {}]},
          "n": -1.5e3, "t": true, "version": "2.0",
          "model": {"type": "BPE", "dropout": null, "fuse_unk": false, "unk_token": "[x]",
                    "vocab": {"a": 0, "b": 1, "ab": 2, "a": 3}, "merges": ["a b"],
                    "byte_fallback": true, "x": {"y": [1, 2, {"z": "}"}]}},
          "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}]}})",
      // an empty vocab and no merges; the model first
      R"({"model": {"vocab": {}}, "decoder": [0]})",
      // ids at the edges
      R"({"model": {"vocab": {"z": 0, "m": 1073741824}, "merges": []}})",
  };
  for (const std::string& doc : docs) {
    SCOPED_TRACE(doc);
    std::optional<TokenizerJsonParts> parts = scan_tokenizer_json(doc);
    ASSERT_TRUE(parts.has_value());
    expect_parts_match_tree(*parts, doc);
  }
}

TEST(TokenizerJson, ScanGivesUpOnWhatTheTreeJudges) {
  const std::string head = R"({"model": {"type": "BPE", )";
  const std::vector<std::string> model_tails = {
      R"("vocab": {"\ud800": 0}}})",         // a lone high surrogate
      R"("vocab": {"\udc00": 0}}})",         // a lone low surrogate
      R"("vocab": {"\ud800\u0041": 0}}})",   // a high surrogate without its low half
      R"("vocab": {"\x": 0}}})",             // an unknown escape
      R"("vocab": {"\u00g0": 0}}})",         // a bad hex digit
      "\"vocab\": {\"a\tb\": 0}}}",          // a raw control character
      "\"vocab\": {\"\xc3\": 0}}}",          // invalid UTF-8
      "\"vocab\": {\"\xed\xa0\x80\": 0}}}",  // an encoded surrogate
      R"("vocab": {"a": -1}}})",
      R"("vocab": {"a": 1.0}}})",
      R"("vocab": {"a": 1e3}}})",
      R"("vocab": {"a": 01}}})",
      R"("vocab": {"a": 1073741825}}})",
      R"("vocab": {"a": 99999999999999999999}}})",
      R"("vocab": {"a": "1"}}})",
      R"("vocab": ["a"]}})",
      R"("vocab": {"a": 0}, "vocab": {"a": 0}}})",
      R"("vocab": {"a": 0, "b": 1}, "merges": ["ab"]}})",
      R"("vocab": {"a": 0, "b": 1}, "merges": ["a b c"]}})",
      R"("vocab": {"a": 0, "b": 1}, "merges": [["a", "b", "c"]]}})",
      R"("vocab": {"a": 0, "b": 1}, "merges": [["a", 1]]}})",
      R"("vocab": {"a": 0, "b": 1}, "merges": {"x": "a b"}}})",
      R"("vocab": {"a": 0}, "merges": [], "merges": []}})",
      R"("vocab": {"a": 0,}}})",
      R"("vocab": {"a": 0}}} x)",
      R"("vocab": {"a": 0}})",
      R"("vocab": {"a)",
      R"("vocab": {"a": 0}, "x": [1, 2}}})",
      R"("vocab": {"a": 0}, "x": tru}})",
      R"("vocab": {"a": 0}, "x": "\q"}})",
  };
  for (const std::string& tail : model_tails) {
    SCOPED_TRACE(tail);
    EXPECT_FALSE(scan_tokenizer_json(head + tail).has_value());
  }
  for (const std::string doc :
       {R"({"model": {"vocab": {"a": 0}}, "model": {"vocab": {"a": 0}}})", R"({"model": 5})",
        R"({"model": {"type": "BPE"}})", R"([{"model": {"vocab": {"a": 0}}}])", "",
        "\xef\xbb\xbf{\"model\": {\"vocab\": {\"a\": 0}}}"}) {
    SCOPED_TRACE(doc);
    EXPECT_FALSE(scan_tokenizer_json(doc).has_value());
  }
  // What the scanner gives up on still loads through the tree where it is valid JSON with the
  // tree's meaning: a BOM, a merges object.
  Tokenizer bom = Tokenizer::from_json("\xef\xbb\xbf{\"model\": {\"vocab\": {\"a\": 0}}}");
  EXPECT_EQ(bom.token_to_id("a"), std::optional<int32_t>(0));
}

TEST(TokenIndex, FindsEveryKeyAndTheLastIdOfARepeatedOne) {
  std::vector<std::pair<std::string, int32_t>> entries;
  std::map<std::string, int32_t> want;
  for (int i = 0; i < 5000; ++i) {
    const std::string key = "k" + std::to_string(i * 7919 % 6007);
    entries.emplace_back(key, i);
    want[key] = i;
  }
  entries.emplace_back("", 9);
  want[""] = 9;
  TokenIndex index;
  index.build(std::move(entries));
  EXPECT_EQ(index.size(), want.size());
  for (const auto& [key, id] : want) EXPECT_EQ(index.find(key), id) << key;
  EXPECT_EQ(index.find("k6007"), -1);
  EXPECT_EQ(index.find("missing"), -1);
  TokenIndex empty;
  EXPECT_EQ(empty.find("a"), -1);
  empty.build({});
  EXPECT_EQ(empty.find("a"), -1);
}

TEST(MergeIndex, KeepsTheFirstRankOfARepeatedPairAndGrows) {
  MergeIndex index;
  index.reserve(4);  // far fewer than inserted: the table grows
  std::map<uint64_t, std::pair<int32_t, int32_t>> want;
  for (int32_t r = 0; r < 20000; ++r) {
    const uint64_t key = (static_cast<uint64_t>(r % 3001) << 32) | static_cast<uint64_t>(r % 7);
    index.insert(key, r, r + 1);
    want.emplace(key, std::make_pair(r, r + 1));  // emplace: the first one stays
  }
  for (const auto& [key, v] : want) {
    const MergeIndex::Entry* e = index.find(key);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->rank, v.first);
    EXPECT_EQ(e->merged, v.second);
  }
  EXPECT_EQ(index.find(uint64_t{3001} << 32), nullptr);
  EXPECT_EQ(MergeIndex().find(0), nullptr);
}

TEST(TokenIndex, TwoKeysWithOneIdNameItByTheLaterKey) {
  Tokenizer t = Tokenizer::from_json(R"({"model": {"vocab": {"a": 0, "b": 0, "c": 1}}})");
  EXPECT_EQ(t.id_to_token(0), std::optional<std::string>("b"));
  EXPECT_EQ(t.token_to_id("a"), std::optional<int32_t>(0));
  EXPECT_EQ(t.token_to_id("b"), std::optional<int32_t>(0));
  EXPECT_EQ(t.vocab_size(), 2);
}

}  // namespace
}  // namespace ingot::tokenizer
