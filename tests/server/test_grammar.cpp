// Constrained decoding (src/llm/grammar): the JSON-schema compiler, the byte matcher against
// JSON-spec examples, trie masks against a brute-force per-token check, random constrained walks
// whose documents are checked by an independent validator written here on parsed JSON, the
// generate() token_mask hook on the test fixture, and the server's token bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "llm/generate.h"
#include "llm/grammar/json_schema.h"
#include "llm/grammar/token_mask.h"
#include "llm/text/text.h"
#include "models/parity_util.h"
#include "server/structured.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ingot::llm::grammar {
namespace {

using nlohmann::json;

// ---- an independent validator over parsed documents (the reference) ----

bool valid(const json& doc, const json& schema, const json& root);

bool valid_typed(const json& d, const std::string& type, const json& s, const json& root) {
  if (type == "null") return d.is_null();
  if (type == "boolean") return d.is_boolean();
  if (type == "integer") return d.is_number_integer();
  if (type == "number") return d.is_number();
  if (type == "string") {
    if (!d.is_string()) return false;
    // Length in code points.
    int64_t n = 0;
    for (unsigned char c : d.get<std::string>()) n += (c & 0xC0) != 0x80;
    if (s.contains("minLength") && n < s["minLength"].get<int64_t>()) return false;
    if (s.contains("maxLength") && n > s["maxLength"].get<int64_t>()) return false;
    return true;
  }
  if (type == "array") {
    if (!d.is_array()) return false;
    const auto n = static_cast<int64_t>(d.size());
    if (s.contains("minItems") && n < s["minItems"].get<int64_t>()) return false;
    if (s.contains("maxItems") && n > s["maxItems"].get<int64_t>()) return false;
    if (s.contains("items"))
      for (const json& x : d)
        if (!valid(x, s["items"], root)) return false;
    return true;
  }
  if (type == "object") {
    if (!d.is_object()) return false;
    const json props = s.value("properties", json::object());
    for (const json& r : s.value("required", json::array()))
      if (!d.contains(r.get<std::string>())) return false;
    for (const auto& [k, v] : d.items()) {
      if (props.contains(k)) {
        if (!valid(v, props[k], root)) return false;
      } else if (s.value("additionalProperties", true) == false) {
        return false;
      }
    }
    return true;
  }
  return false;
}

bool valid(const json& d, const json& s, const json& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    const std::string name = ref.substr(ref.rfind('/') + 1);
    const json& defs = root.contains("$defs") ? root["$defs"] : root["definitions"];
    return valid(d, defs[name], root);
  }
  if (s.contains("const")) return d == s["const"];
  if (s.contains("enum")) {
    for (const json& e : s["enum"])
      if (d == e) return true;
    return false;
  }
  if (s.contains("anyOf")) {
    for (const json& a : s["anyOf"])
      if (valid(d, a, root)) return true;
    return false;
  }
  if (!s.contains("type")) {
    if (s.contains("properties")) return valid_typed(d, "object", s, root);
    return true;
  }
  if (s["type"].is_string()) return valid_typed(d, s["type"], s, root);
  for (const json& t : s["type"])
    if (valid_typed(d, t, s, root)) return true;
  return false;
}

bool matches(const std::shared_ptr<const JsonGrammar>& g, const std::string& text) {
  JsonMatcher m(g);
  return m.feed(text) && m.accepting();
}

// ---- compiler ----

TEST(JsonSchema, RefusesUnsupportedKeywordsByName) {
  for (const char* kw : {"pattern", "minimum", "oneOf", "allOf", "not", "format",
                         "patternProperties", "uniqueItems", "multipleOf"}) {
    const std::string schema = std::string(R"({"type": "string", ")") + kw + R"(": 1})";
    try {
      JsonGrammar::from_schema(schema);
      FAIL() << kw << " was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + kw + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(JsonSchema, RefusesRecursiveRefAndBadInput) {
  const char* recursive = R"({"$defs": {"node": {"type": "object", "properties": {
      "next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"})";
  try {
    JsonGrammar::from_schema(recursive);
    FAIL() << "recursive $ref accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("recursive"), std::string::npos) << e.what();
  }
  EXPECT_THROW(JsonGrammar::from_schema("{"), InvalidArgument);
  EXPECT_THROW(JsonGrammar::from_schema(R"({"$ref": "#/$defs/missing"})"), InvalidArgument);
  EXPECT_THROW(JsonGrammar::from_schema(R"({"type": "strng"})"), InvalidArgument);
  EXPECT_THROW(
      JsonGrammar::from_schema(R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})"),
      InvalidArgument);
  EXPECT_THROW(JsonGrammar::from_schema(R"({"type": "array", "minItems": 3, "maxItems": 2})"),
               InvalidArgument);
}

// ---- matcher on spec examples ----

TEST(JsonMatcher, AnyObjectFollowsTheJsonGrammar) {
  const auto g = JsonGrammar::any_object();
  // RFC 8259 examples and edge cases.
  for (const char* ok : {
           R"({})",
           R"({"Image": {"Width": 800, "Height": 600, "Title": "View from 15th Floor", )"
           R"("Thumbnail": {"Url": "http://www.example.com/image/481989943", "Height": 125, )"
           R"("Width": 100}, "Animated" : false, "IDs": [116, 943, 234, 38793]}})",
           R"({"a": [1, -0, 0.5, 1e10, -2.5E-3, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]})",
           "{\"k\":\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\"}",
           "{ \"a\" :\n{\"b\": []}\t}",
       })
    EXPECT_TRUE(matches(g, ok)) << ok;
  // Documented limit (docs/server.md): at most one whitespace byte between two tokens, so a
  // model cannot spend its tokens on whitespace; longer runs are refused.
  EXPECT_FALSE(matches(g, "{ \"a\" :\n {\"b\": []}\t}"));
  for (const char* bad : {
           R"([])",
           R"("x")",
           R"(1)",
           R"({"a"})",
           R"({"a": 01})",
           R"({"a": 1.})",
           R"({"a": .5})",
           R"({"a": +1})",
           R"({"a": 1,})",
           R"({"a": [1,]})",
           R"({"a": tru})",
           R"({"a": "\x"})",
           R"({"a": "\u12g4"})",
           "{\"a\": \"\x01\"}",
           "{\"a\": \"\xc3\"}",
           R"({a: 1})",
           "{\"a\": \"\xe0\x8d\x81\"}",
           "{\"a\": \"\xed\xa0\x80\"}",
           "{\"a\": \"\xf4\x90\x80\x80\"}",
           "{\"a\": \"\xc0\xaf\"}",
           R"({"a": 1}})",
           R"({"a": 1} )",
           R"( {})",
           R"({"a": NaN})",
           "{\"a\":  1}",
           "{\n  \"a\": 1}",  // whitespace runs are one byte at most
       })
    EXPECT_FALSE(matches(g, bad)) << bad;
  // Prefixes of a document are alive but not complete.
  JsonMatcher m(g);
  EXPECT_TRUE(m.feed(R"({"a": [1, 2)"));
  EXPECT_FALSE(m.accepting());
}

TEST(JsonMatcher, SchemaConstraints) {
  const json schema = json::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "minLength": 2, "maxLength": 4},
      "age": {"type": "integer"},
      "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "minItems": 1, "maxItems": 2},
      "kind": {"const": "x"},
      "opt": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pt"}]},
      "n": {"type": ["number", "boolean"]}
    },
    "required": ["name", "age"],
    "additionalProperties": false,
    "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}},
                     "required": ["x"], "additionalProperties": false}}
  })");
  const auto g = JsonGrammar::from_schema(schema.dump());
  const std::vector<std::string> docs = {
      R"({"name": "ab", "age": 3})",
      R"({"age": -3, "name": "abcd", "tags": ["a", 3], "kind": "x", "opt": null})",
      R"({"name": "\u00e9\u00e9", "age": 0, "opt": {"x": 1.5e3}, "n": true})",
      R"({"name": "ab", "age": 3, "n": -0.25})",
      R"({"name": "a", "age": 3})",                          // too short
      R"({"name": "abcde", "age": 3})",                      // too long
      R"({"name": "ab"})",                                   // age missing
      R"({"name": "ab", "age": 3.5})",                       // not an integer
      R"({"name": "ab", "age": 3, "tags": []})",             // minItems
      R"({"name": "ab", "age": 3, "tags": ["a","b","a"]})",  // maxItems
      R"({"name": "ab", "age": 3, "tags": ["c"]})",          // not in enum
      R"({"name": "ab", "age": 3, "kind": "y"})",            // const
      R"({"name": "ab", "age": 3, "extra": 1})",             // additionalProperties false
      R"({"name": "ab", "age": 3, "opt": {}})",              // $ref requires x
      R"({"name": "ab", "age": 3, "n": "1"})",               // type list
  };
  for (const std::string& d : docs) {
    const bool ref = valid(json::parse(d), schema, schema);
    EXPECT_EQ(matches(g, d), ref) << d;
  }
  // Duplicate keys (which a parsed document cannot show) are refused.
  EXPECT_FALSE(matches(g, R"({"name": "ab", "age": 3, "age": 4})"));
  // Numbers stay finite doubles / int64: at most two exponent digits, 18 integer digits.
  EXPECT_TRUE(matches(g, R"({"name": "ab", "age": 123456789012345678, "n": 1e99})"));
  EXPECT_FALSE(matches(g, R"({"name": "ab", "age": 3, "n": 1e308})"));
  EXPECT_FALSE(matches(g, R"({"name": "ab", "age": 1234567890123456789})"));
}

// ---- masks ----

// A vocabulary of every single byte plus multi-byte pieces that cross JSON tokens.
std::vector<std::string> test_vocab() {
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.emplace_back(1, static_cast<char>(b));
  for (const char* t :
       {"{\"", "\":",    "\": ", ", \"",  "\"}",          "}}",   "true",        "false",    "null",
        "na",  "me",     "name", "age",   "\"name\": \"", "12",   "0.",          "e-",       "[\"",
        "\"]", "\", \"", " \"",  "\\u00", "\\n",          "ab",   "\xc3\xa9",    "\xe6\x97", "tags",
        "x\"", ",",      "  ",   "\n  ",  "opt",          "kind", "\": {\"x\": "})
    v.emplace_back(t);
  v.emplace_back("");  // special token (never allowed)
  v.emplace_back("");  // EOS
  return v;
}

const char* kSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 6},
    "age": {"type": "integer"},
    "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "maxItems": 3},
    "opt": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pt"}]},
    "kind": {"type": ["boolean", "number"]}
  },
  "required": ["name", "age"],
  "additionalProperties": false,
  "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}},
                   "required": ["x"], "additionalProperties": false}}
})";

TEST(TokenMask, TrieWalkEqualsBruteForceAndWalksProduceValidDocuments) {
  const json schema = json::parse(kSchema);
  for (const bool any : {false, true}) {
    const auto g = any ? JsonGrammar::any_object() : JsonGrammar::from_schema(kSchema);
    std::vector<std::string> bytes = test_vocab();
    const auto eos = static_cast<int32_t>(bytes.size() - 1);
    auto vocab = std::make_shared<TokenVocabulary>(bytes, std::vector<int32_t>{eos});
    std::mt19937 rng(any ? 7 : 11);
    int complete = 0;
    for (int walk = 0; walk < 60; ++walk) {
      TokenConstraint con(g, vocab);
      JsonMatcher m(g);
      std::vector<int32_t> gen;
      std::string text;
      bool ended = false;
      for (int step = 0; step < 200 && !ended; ++step) {
        const std::vector<uint8_t>& mask = *con.next_mask(gen);
        // Brute force: feed each token's bytes to a copy of the state.
        for (size_t id = 0; id < bytes.size(); ++id) {
          bool ok = false;
          if (static_cast<int32_t>(id) == eos) {
            ok = m.accepting();
          } else if (!bytes[id].empty()) {
            JsonMatcher c = m;
            ok = c.feed(bytes[id]);
          }
          ASSERT_EQ(mask[id] != 0, ok) << "token " << id << " after " << text;
        }
        std::vector<int32_t> allowed;
        for (size_t id = 0; id < mask.size(); ++id)
          if (mask[id]) allowed.push_back(static_cast<int32_t>(id));
        ASSERT_FALSE(allowed.empty());
        // Prefer ending when possible, and closing tokens, so walks terminate.
        int32_t pick = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
        if (mask[static_cast<size_t>(eos)] && rng() % 2 == 0) pick = eos;
        for (int32_t close :
             {static_cast<int32_t>('}'), static_cast<int32_t>(']'), static_cast<int32_t>('"')})
          if (step > 40 && mask[static_cast<size_t>(close)] && rng() % 2 == 0) pick = close;
        gen.push_back(pick);
        if (pick == eos) {
          ended = true;
        } else {
          ASSERT_TRUE(m.feed(bytes[static_cast<size_t>(pick)]));
          text += bytes[static_cast<size_t>(pick)];
        }
      }
      if (!ended) continue;
      ++complete;
      const json doc = json::parse(text, nullptr, false);
      ASSERT_FALSE(doc.is_discarded()) << text;
      EXPECT_TRUE(doc.is_object()) << text;
      if (!any) {
        EXPECT_TRUE(valid(doc, schema, schema)) << text;
      }
    }
    EXPECT_GT(complete, 10) << "too few walks ended";
  }
}

TEST(TokenMask, StateCacheServesRepeatedStates) {
  const auto g = JsonGrammar::from_schema(R"({"type": "object", "properties": {
      "s": {"type": "string"}}, "required": ["s"], "additionalProperties": false})");
  std::vector<std::string> bytes = test_vocab();
  const auto eos = static_cast<int32_t>(bytes.size() - 1);
  auto vocab = std::make_shared<TokenVocabulary>(bytes, std::vector<int32_t>{eos});
  TokenConstraint con(g, vocab);
  std::vector<int32_t> gen;
  for (char c : std::string("{\"s\": \"")) gen.push_back(static_cast<unsigned char>(c));
  con.next_mask(gen);
  for (int i = 0; i < 20; ++i) {
    gen.push_back('a');
    con.next_mask(gen);
  }
  EXPECT_EQ(con.stats().cached, 20);  // inside the string the state repeats
  gen.push_back('{');  // not a continuation of the document: '{' inside a string is fine
  EXPECT_NO_THROW(con.next_mask(gen));
  gen.push_back(1);  // a control character cannot be in a string
  EXPECT_THROW(con.next_mask(gen), InvalidArgument);
}

// ---- the generate() hook on the fixture ----

TEST(TokenMask, GenerateHookRestrictsEveryStepOfItsRowOnly) {
  const TextModel tm =
      load_text_model(models::fixture_dir("llama_bf16_tied"), {.dtype = float32, .warn = false});
  const std::vector<int32_t> p0 = tm.tokenizer->encode("Hello world");
  const std::vector<int32_t> p1 = tm.tokenizer->encode("The cat sat");
  GenerateOptions o;
  o.max_tokens = 12;
  const GenerationResult free = generate(*tm.model, {p0, p1}, o);
  // Row 0 may only use ids 5..9 (not its free choices at step 0); row 1 is unconstrained.
  std::vector<uint8_t> mask(static_cast<size_t>(tm.model->vocab_size()), 0);
  for (int id = 5; id < 10; ++id) mask[static_cast<size_t>(id)] = 1;
  int calls = 0;
  o.token_mask = [&](int row, const std::vector<int32_t>& gen) -> const std::vector<uint8_t>* {
    ++calls;
    if (row != 0) return nullptr;
    EXPECT_EQ(static_cast<int64_t>(gen.size()), calls == 1 ? 0 : (calls + 1) / 2 - 1);
    return &mask;
  };
  const GenerationResult con = generate(*tm.model, {p0, p1}, o);
  ASSERT_EQ(con.tokens[0].size(), 12u);
  for (int32_t id : con.tokens[0]) EXPECT_TRUE(id >= 5 && id < 10) << id;
  EXPECT_EQ(con.tokens[1], free.tokens[1]);
  // Greedy under the mask: the argmax of the unmasked logits restricted to ids 5..9, which a
  // single-row run without the hook can only match if it also stays in that range.
  bool free_in_range = true;
  for (int32_t id : free.tokens[0]) free_in_range = free_in_range && id >= 5 && id < 10;
  if (!free_in_range) {
    EXPECT_NE(con.tokens[0], free.tokens[0]);
  }
}

// ---- token bytes of a real tokenizer ----

TEST(TokenBytes, ByteLevelTokensDecodeToTheirBytes) {
  const TextModel tm =
      load_text_model(models::fixture_dir("llama_bf16_tied"), {.dtype = float32, .warn = false});
  const int64_t v = tm.model->vocab_size();
  const std::vector<std::string> b = server::token_bytes(*tm.tokenizer, v);
  ASSERT_EQ(static_cast<int64_t>(b.size()), v);
  // Concatenated token bytes of an encoded text are the text (the tokenizer's own decode is
  // the reference), and specials have no bytes.
  const std::string text = "Hello, world! \xc3\xa9t\xc3\xa9 {\"a\": [1, 2]}\n";
  const std::vector<int32_t> ids = tm.tokenizer->encode(text, {.add_special_tokens = false});
  std::string joined;
  for (int32_t id : ids) joined += b[static_cast<size_t>(id)];
  EXPECT_EQ(joined, text);
  for (int32_t id : tm.tokenizer->special_tokens().eos_ids)
    EXPECT_TRUE(b[static_cast<size_t>(id)].empty());
  // Every byte is reachable (ByteLevel vocabularies hold the 256 single bytes).
  std::set<unsigned char> singles;
  for (const std::string& s : b)
    if (s.size() == 1) singles.insert(static_cast<unsigned char>(s[0]));
  EXPECT_EQ(singles.size(), 256u);
}

// On a real 151k-token vocabulary (Qwen3's tokenizer, fetched by the tokenizer tests): trie
// masks equal the brute-force check at states along a document; the walk times are printed
// (docs/server.md quotes them). Skipped when the tokenizer has not been fetched.
TEST(TokenMask, RealVocabularyMasksEqualBruteForce) {
  const char* env = std::getenv("INGOT_TOKENIZER_MODELS");
  const std::string dir =
      std::string(env ? env : INGOT_SOURCE_DIR "/build/tokenizer_models") + "/qwen3";
  if (!std::ifstream(dir + "/tokenizer.json")) GTEST_SKIP() << "no tokenizer in " << dir;
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_dir(dir);
  const int64_t v = tok.vocab_size();
  std::vector<std::string> bytes = server::token_bytes(tok, v);
  const auto eos = tok.special_tokens().eos_ids;
  auto vocab = std::make_shared<TokenVocabulary>(bytes, eos);
  const auto g = JsonGrammar::from_schema(kSchema);
  const std::string doc = R"({"name": "Ada", "age": 36, "tags": ["a", 3], "opt": {"x": 1.5}})";
  // Ids of the document as the tokenizer splits it: the states a model would pass through.
  const std::vector<int32_t> ids = tok.encode(doc, {.add_special_tokens = false});
  TokenConstraint con(g, vocab);
  JsonMatcher m(g);
  std::vector<int32_t> gen;
  double walk_ms = 0;
  for (size_t k = 0; k <= ids.size(); ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<uint8_t>& mask = *con.next_mask(gen);
    walk_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (k % 4 == 0 || k == ids.size()) {  // brute force at every 4th state (it is slow)
      for (int64_t id = 0; id < v; ++id) {
        bool ok;
        if (std::find(eos.begin(), eos.end(), static_cast<int32_t>(id)) != eos.end()) {
          ok = m.accepting();
        } else if (bytes[static_cast<size_t>(id)].empty()) {
          ok = false;
        } else {
          JsonMatcher c = m;
          ok = c.feed(bytes[static_cast<size_t>(id)]);
        }
        ASSERT_EQ(mask[static_cast<size_t>(id)] != 0, ok) << "token " << id << " state " << k;
      }
    }
    if (k == ids.size()) break;
    ASSERT_TRUE(mask[static_cast<size_t>(ids[k])]) << "the document's own token " << ids[k];
    ASSERT_TRUE(m.feed(bytes[static_cast<size_t>(ids[k])]));
    gen.push_back(ids[k]);
  }
  EXPECT_TRUE(m.accepting());
  std::printf("[mask] vocab %lld: %zu masks, %lld walks + %lld cached, %.2f ms per mask\n",
              static_cast<long long>(v), ids.size() + 1,
              static_cast<long long>(con.stats().computed),
              static_cast<long long>(con.stats().cached), walk_ms / double(ids.size() + 1));
}

}  // namespace
}  // namespace ingot::llm::grammar
