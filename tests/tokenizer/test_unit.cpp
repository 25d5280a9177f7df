// Pipeline stages on small synthetic tokenizer.json files: Split behaviours, Metaspace, Digits,
// normalizers, added-token options, BPE options, decoders, post-processors, invalid UTF-8,
// streaming, and load errors. Expected values follow `tokenizers`' documented semantics.
#include <gtest/gtest.h>

#include <optional>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::tokenizer {
namespace {

using json = nlohmann::json;

// A BPE tokenizer whose vocab holds `tokens` (ids in order) and `merges`.
json make(const std::vector<std::string>& tokens, const std::vector<std::string>& merges = {}) {
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int>(i);
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder", nullptr},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

// Encodes and maps ids back to their token strings.
std::vector<std::string> toks(const json& j, const std::string& text, bool special = false) {
  Tokenizer t = Tokenizer::from_json(j.dump());
  std::vector<std::string> out;
  for (int32_t id : t.encode(text, {.add_special_tokens = special}))
    out.push_back(*t.id_to_token(id));
  return out;
}

using V = std::vector<std::string>;

TEST(Utf8, LossyRepairMatchesFromUtf8Lossy) {
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8::to_valid_lossy("abc\x80"
                                 "def"),
            "abc" + R + "def");
  EXPECT_EQ(utf8::to_valid_lossy("\xE2\x82 y"), R + " y");
  EXPECT_EQ(utf8::to_valid_lossy("\xF0\x9F\x98"), R);
  EXPECT_EQ(utf8::to_valid_lossy("\xC0\xAF"), R + R);
  EXPECT_EQ(utf8::to_valid_lossy("\xED\xA0\x80"), R + R + R);
  EXPECT_EQ(utf8::to_valid_lossy("\xF5\x80\x80\x80"), R + R + R + R);
  EXPECT_EQ(utf8::to_valid_lossy("ok \xC3\xA9"), "ok \xC3\xA9");
}

TEST(Bpe, MergesInBothFormatsAndRankOrder) {
  V vocab{"a", "b", "c", "ab", "bc", "abc"};
  EXPECT_EQ(toks(make(vocab, {"a b", "ab c"}), "abc"), (V{"abc"}));
  json pairs = make(vocab);
  pairs["model"]["merges"] = json::array({json::array({"b", "c"}), json::array({"a", "b"})});
  EXPECT_EQ(toks(pairs, "abc"), (V{"a", "bc"}));  // "b c" has the lower rank
}

TEST(Bpe, UnkFuseAndByteFallback) {
  json j = make({"<unk>", "a"});
  j["model"]["unk_token"] = "<unk>";
  EXPECT_EQ(toks(j, "axyа"), (V{"a", "<unk>", "<unk>", "<unk>"}));
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(toks(j, "axya"), (V{"a", "<unk>", "a"}));
  V bytes{"<unk>", "a"};
  for (int b = 0; b < 256; ++b) bytes.push_back(fmt::format("<0x{:02X}>", b));
  json f = make(bytes);
  f["model"]["unk_token"] = "<unk>";
  f["model"]["byte_fallback"] = true;
  EXPECT_EQ(toks(f, "a\xC3\xA9"), (V{"a", "<0xC3>", "<0xA9>"}));
  f["decoder"] = {{"type", "ByteFallback"}};
  Tokenizer t = Tokenizer::from_json(f.dump());
  EXPECT_EQ(t.decode(t.encode("a\xC3\xA9")), "a\xC3\xA9");
  auto ids = t.encode("\xC3\xA9");
  EXPECT_EQ(t.decode({ids[0]}), "\xEF\xBF\xBD");  // a lone lead byte decodes to U+FFFD
}

TEST(Bpe, SubwordPrefixSuffixAndIgnoreMerges) {
  json j = make({"a", "##b", "##c", "ab", "abc", "##bc"}, {"a ##b", "ab ##c"});
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_EQ(toks(j, "abc"), (V{"abc"}));
  json s = make({"a", "b</w>", "ab</w>"}, {"a b</w>"});
  s["model"]["end_of_word_suffix"] = "</w>";
  EXPECT_EQ(toks(s, "ab"), (V{"ab</w>"}));
  json im = make({"a", "b", "c", "ab", "abc", "bc"}, {"b c", "a bc"});
  EXPECT_EQ(toks(im, "abc"), (V{"abc"}));
  im["model"]["vocab"].erase("abc");
  im["model"]["vocab"]["abc"] = 6;  // an id of its own (5 is "bc"'s)
  im["model"]["merges"] = json::array({"a b"});
  im["model"]["ignore_merges"] = true;
  EXPECT_EQ(toks(im, "abc"), (V{"abc"}));  // whole word in vocab wins over merges
}

json with_split(const std::string& behavior, bool invert, const std::string& pattern = "-") {
  json j = make({"a", "-", "b", "a-", "-b", "a-b", "--", "a--", "--b"},
                {"a -", "- b", "a- b", "- -", "a --", "-- b"});
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"String", pattern}}},
                        {"behavior", behavior},
                        {"invert", invert}};
  return j;
}

TEST(PreTokenizer, SplitBehaviours) {
  EXPECT_EQ(toks(with_split("Isolated", false), "a-b"), (V{"a", "-", "b"}));
  EXPECT_EQ(toks(with_split("Removed", false), "a-b"), (V{"a", "b"}));
  EXPECT_EQ(toks(with_split("MergedWithPrevious", false), "a-b"), (V{"a-", "b"}));
  EXPECT_EQ(toks(with_split("MergedWithNext", false), "a-b"), (V{"a", "-b"}));
  EXPECT_EQ(toks(with_split("Contiguous", false), "a--b"), (V{"a", "--", "b"}));
  EXPECT_EQ(toks(with_split("Isolated", false), "a--b"), (V{"a", "-", "-", "b"}));
  EXPECT_EQ(toks(with_split("Removed", true), "a-b"), (V{"-"}));
  EXPECT_EQ(toks(with_split("MergedWithPrevious", true), "a-b"), (V{"a", "-b"}));
  json re = with_split("Isolated", false);
  re["pre_tokenizer"]["pattern"] = {{"Regex", "-+"}};
  EXPECT_EQ(toks(re, "a--b"), (V{"a", "--", "b"}));
}

TEST(PreTokenizer, RegexWhitespaceIsUnicodeWhiteSpaceAsOniguruma) {
  // \s matches U+0085 and U+00A0 but not U+FEFF or U+180E.
  json j = make({"x", " ", "\xC2\x85", "\xC2\xA0", "\xEF\xBB\xBF", "\xE1\xA0\x8E"});
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "\\s"}}},
                        {"behavior", "Removed"},
                        {"invert", false}};
  EXPECT_EQ(toks(j, "x\xC2\x85x\xC2\xA0x"), (V{"x", "x", "x"}));
  EXPECT_EQ(toks(j, "x\xEF\xBB\xBFx\xE1\xA0\x8Ex").size(), 5u);
}

TEST(PreTokenizer, MetaspaceSchemes) {
  const std::string M = "\xE2\x96\x81";
  json j = make({"a", "b", M, M + "a", M + "b"}, {M + " a", M + " b"});
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", M}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_EQ(toks(j, "a b"), (V{M + "a", M + "b"}));
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(toks(j, "a b"), (V{"a", M + "b"}));
  j["pre_tokenizer"]["prepend_scheme"] = "first";
  j["added_tokens"] =
      json::array({{{"id", 5}, {"content", "<s>"}, {"special", true}, {"normalized", false}}});
  EXPECT_EQ(toks(j, "a<s>b"), (V{M + "a", "<s>", "b"}));
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", M}, {"prepend_scheme", "always"}};
  Tokenizer t = Tokenizer::from_json(j.dump());
  EXPECT_EQ(t.decode(t.encode("a b")), "a b");
}

TEST(PreTokenizer, DigitsPunctuationWhitespace) {
  json j = make({"a", "1", "2", "12", "!", "?", " ", "a1"}, {"1 2", "a 1"});
  j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
  EXPECT_EQ(toks(j, "a12"), (V{"a", "1", "2"}));
  j["pre_tokenizer"]["individual_digits"] = false;
  EXPECT_EQ(toks(j, "a12"), (V{"a", "12"}));
  j["pre_tokenizer"] = {{"type", "Punctuation"}, {"behavior", "Isolated"}};
  EXPECT_EQ(toks(j, "a!?1"), (V{"a", "!", "?", "1"}));
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(toks(j, "a1 !?"), (V{"a1", "!", "?"}));
  j["pre_tokenizer"] = {{"type", "WhitespaceSplit"}};
  EXPECT_EQ(toks(j, " a1  12 "), (V{"a1", "12"}));
}

TEST(PreTokenizer, ByteLevelWithRegexAndPrefixSpace) {
  // "Ġ" is the byte-level image of ' '.
  json j = make({"a", "b", "\xC4\xA0",
                 "\xC4\xA0"
                 "a",
                 "\xC4\xA0"
                 "b"},
                {"\xC4\xA0 a", "\xC4\xA0 b"});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  EXPECT_EQ(toks(j, "a b"), (V{"\xC4\xA0"
                               "a",
                               "\xC4\xA0"
                               "b"}));
  Tokenizer t = Tokenizer::from_json(j.dump());
  EXPECT_EQ(t.decode(t.encode("a b")), " a b");
}

TEST(Normalizer, SequenceOfRules) {
  json j = make({"x", "a", "b", "c", "_", "f", "i", " ", "1"});
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       json::array({{{"type", "NFKC"}},
                    {{"type", "Lowercase"}},
                    {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                    {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}},
                    {{"type", "Prepend"}, {"prepend", "x"}}})}};
  EXPECT_EQ(toks(j, "  AB\xEF\xAC\x81 \xE2\x91\xA0 "), (V{"x", "a", "b", "f", "i", "_", "1"}));
  EXPECT_TRUE(toks(j, "   ").empty());  // Prepend skips empty strings
  json d = make({"e", "\xCC\x81", "\xC3\xA9"});
  d["normalizer"] = {{"type", "NFD"}};
  EXPECT_EQ(toks(d, "\xC3\xA9"), (V{"e", "\xCC\x81"}));
  d["normalizer"] = {{"type", "NFC"}};
  EXPECT_EQ(toks(d, "e\xCC\x81"), (V{"\xC3\xA9"}));
}

TEST(AddedTokens, LeftmostLongestAndOptions) {
  json j = make({"a", "b", " ", "<x>", "<xy>", "tok"});
  j["added_tokens"] =
      json::array({{{"id", 3}, {"content", "<x>"}, {"special", true}, {"normalized", false}},
                   {{"id", 4}, {"content", "<xy>"}, {"special", false}, {"normalized", false}},
                   {{"id", 5},
                    {"content", "tok"},
                    {"special", false},
                    {"normalized", false},
                    {"single_word", true}}});
  EXPECT_EQ(toks(j, "a<xy>b<x>"), (V{"a", "<xy>", "b", "<x>"}));
  EXPECT_EQ(toks(j, "a tok b"), (V{"a", " ", "tok", " ", "b"}));
  EXPECT_EQ(toks(j, "atok"), (V{"a"}));  // not a single word; t, o, k are not in the vocab
  json s = make({"a", " ", "<m>"});
  s["added_tokens"] = json::array({{{"id", 2},
                                    {"content", "<m>"},
                                    {"special", true},
                                    {"normalized", false},
                                    {"lstrip", true},
                                    {"rstrip", true}}});
  EXPECT_EQ(toks(s, "a  <m>  a"), (V{"a", "<m>", "a"}));
  Tokenizer t = Tokenizer::from_json(j.dump());
  EXPECT_TRUE(t.is_special(3));
  EXPECT_FALSE(t.is_special(4));
  EXPECT_EQ(t.decode(t.encode("a<x>b"), {.skip_special_tokens = true}), "a b");
}

TEST(AddedTokens, NormalizedTokensMatchAfterNormalization) {
  json j = make({"a", "<tag>"});
  j["normalizer"] = {{"type", "Lowercase"}};
  j["added_tokens"] =
      json::array({{{"id", 1}, {"content", "<TAG>"}, {"special", false}, {"normalized", true}}});
  EXPECT_EQ(toks(j, "A<TaG>a"), (V{"a", "<TAG>", "a"}));  // id 1 is the added token
}

TEST(PostProcessor, TemplateAndRoberta) {
  json j = make({"<s>", "</s>", "a"});
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
        {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  EXPECT_EQ(toks(j, "a", true), (V{"<s>", "a", "</s>"}));
  EXPECT_EQ(toks(j, "a", false), (V{"a"}));
  j["post_processor"] = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 1}}, {"cls", {"<s>", 0}}};
  EXPECT_EQ(toks(j, "a", true), (V{"<s>", "a", "</s>"}));
}

TEST(Decoder, StripReplaceFuseWordPiece) {
  json j = make({"_a", "_b_", "##c", "d"});
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       json::array({{{"type", "Replace"}, {"pattern", {{"String", "_"}}}, {"content", " "}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}})}};
  Tokenizer t = Tokenizer::from_json(j.dump());
  EXPECT_EQ(t.decode({0, 1}), "a b");
  json w = make({"un", "##aff", "##able", "x"});
  w["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}};
  Tokenizer tw = Tokenizer::from_json(w.dump());
  EXPECT_EQ(tw.decode({0, 1, 2, 3}), "unaffable x");
  EXPECT_EQ(tw.decode({0, 999, 3}), "un x");  // unknown ids are skipped
}

TEST(Encode, InvalidUtf8IsRepairedNotRejected) {
  json j = make({"a", "\xEF\xBF\xBD"});
  Tokenizer t = Tokenizer::from_json(j.dump());
  EXPECT_EQ(t.encode("a\xFF"
                     "a"),
            t.encode("a\xEF\xBF\xBD"
                     "a"));
  EXPECT_EQ(t.encode("\xC3"), t.encode("\xEF\xBF\xBD"));
  EXPECT_TRUE(t.encode("").empty());
}

TEST(Stream, NeverSplitsACharacter) {
  V bytes{"a"};
  for (int b = 0; b < 256; ++b) bytes.push_back(fmt::format("<0x{:02X}>", b));
  json f = make(bytes);
  f["model"]["byte_fallback"] = true;
  f["decoder"] = {{"type", "Sequence"},
                  {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}};
  Tokenizer t = Tokenizer::from_json(f.dump());
  std::string text =
      "a\xF0\x9F\x98\x80"
      "a\xC3\xA9";
  auto ids = t.encode(text);
  StreamDecoder sd(t);
  std::string all;
  std::vector<std::string> pieces;
  for (int32_t id : ids) {
    std::string p = sd.step(id);
    EXPECT_TRUE(utf8::is_valid(p));
    if (!p.empty()) pieces.push_back(p);
    all += p;
  }
  all += sd.finish();
  EXPECT_EQ(all, text);
  EXPECT_EQ(pieces, (V{"a", "\xF0\x9F\x98\x80", "a", "\xC3\xA9"}));
  StreamDecoder cut(t);
  cut.step(ids[1]);
  EXPECT_EQ(cut.finish(), "\xEF\xBF\xBD");  // an incomplete tail is flushed as decode() shows it
}

TEST(Load, ErrorsAreTyped) {
  EXPECT_THROW(Tokenizer::from_json("{"), FormatError);
  EXPECT_THROW(Tokenizer::from_json("[]"), FormatError);
  EXPECT_THROW(Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})"),
               FormatError);
  json j = make({"a"}, {"a b"});
  EXPECT_THROW(Tokenizer::from_json(j.dump()), FormatError);
  json n = make({"a"});
  n["normalizer"] = {{"type", "Precompiled"}};
  EXPECT_THROW(Tokenizer::from_json(n.dump()), FormatError);
  json r = make({"a"});
  r["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_THROW(Tokenizer::from_json(r.dump()), FormatError);
  json u = make({"a"});
  u["model"]["type"] = "Unigram";
  EXPECT_THROW(Tokenizer::from_json(u.dump()), Unsupported);
  EXPECT_THROW(Tokenizer::from_dir("/nonexistent/dir"), IoError);
}

// The message of the FormatError that loading `text` raises ("" when it loads).
std::string load_error(const std::string& text) {
  try {
    Tokenizer::from_json(text);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(Load, VocabAndMergesReadOutsideTheTreeKeepTheTreesMeaning) {
  // tokenizer.json's BPE vocab and merges are read into tables by a SAX pass; whatever that
  // pass does not expect falls back to the JSON tree, so every error is the tree's.
  const std::string head = R"({"model": {"type": "BPE", )";
  const auto err = [&](const std::string& model_tail) { return load_error(head + model_tail); };
  EXPECT_NE(err(R"("vocab": {"a": "x"}}})").find("model.vocab['a'] is not a valid id"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": -1}}})").find("model.vocab['a'] is not a valid id"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": 1.5}}})").find("model.vocab['a'] is not a valid id"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": ["a"]}})").find("model.vocab must be an object"), std::string::npos);
  // A repeated "vocab" key: the last one counts, as in the tree.
  EXPECT_NE(err(R"("vocab": {"a": 0}, "vocab": 3}})").find("model.vocab must be an object"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["ab"]}})")
                .find("merge #0 'ab' is not 'a b'"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b", "c"]]}})")
                .find("merge #0 has a bad format"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", [1, 2]]}})")
                .find("merge #1 has a bad format"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})")
                .find("merge #0 result 'ab' is missing from the vocab"),
            std::string::npos);
  EXPECT_NE(err(R"("vocab": {"a": 0, "ab": 2}, "merges": ["a b"]}})")
                .find("merge #0 'a b' uses a token missing from the vocab"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {"a": 0})").find("invalid JSON"),
            std::string::npos);
  // Well-formed variants load with the tree's meaning: a repeated vocab key keeps its last id;
  // merges as "a b" strings or ["a", "b"] pairs; a merges object's values (the tree iterates
  // them).
  Tokenizer dup = Tokenizer::from_json(head + R"("vocab": {"a": 0, "b": 1, "a": 2}}})");
  EXPECT_EQ(dup.token_to_id("a"), std::optional<int32_t>(2));
  EXPECT_EQ(dup.id_to_token(0), std::nullopt);
  for (const char* merges : {R"(["a b", "ab c"])", R"([["a", "b"], ["ab", "c"]])",
                             R"(["a b", ["ab", "c"]])", R"({"x": "a b", "y": "ab c"})"}) {
    Tokenizer t = Tokenizer::from_json(
        head + R"("vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, "merges": )" + merges +
        "}}");
    EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{4})) << merges;
  }
}

TEST(Load, ManyMergesResolveInRankOrder) {
  // More merges than one thread resolves (65,536): 260 two-byte characters and a merge for
  // every ordered pair of them. The lowest failing rank is reported, whichever thread met it.
  std::vector<std::string> chars;
  for (int c = 0x100; c < 0x100 + 260; ++c) {
    std::string u;
    u += static_cast<char>(0xC0 | (c >> 6));
    u += static_cast<char>(0x80 | (c & 0x3F));
    chars.push_back(u);
  }
  json vocab = json::object();
  json merges = json::array();
  int id = 0;
  for (const auto& c : chars) vocab[c] = id++;
  for (const auto& a : chars)
    for (const auto& b : chars) {
      vocab[a + b] = id++;
      merges.push_back(a + " " + b);
    }
  json j = make({});
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  Tokenizer t = Tokenizer::from_json(j.dump());
  EXPECT_EQ(t.encode(chars[7] + chars[200]),
            (std::vector<int32_t>{*t.token_to_id(chars[7] + chars[200])}));
  EXPECT_EQ(t.encode(chars[259] + chars[0] + chars[3]).size(), 2u);
  j["model"]["merges"][60000] = "x " + chars[1];
  j["model"]["merges"][50000] = chars[1] + " y";
  EXPECT_NE(load_error(j.dump()).find("merge #50000 '" + chars[1] +
                                      " y' uses a token missing from the vocab"),
            std::string::npos);
}

}  // namespace
}  // namespace ingot::tokenizer
