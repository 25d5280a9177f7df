// libFuzzer target: `ingot serve` request bodies (completions, chat, embeddings, classify) on
// arbitrary bytes, the JSON-schema compiler and matcher of structured output, and the tool-call
// parser. Every request rejection must be a server::ApiError with status 400 and every schema
// rejection an InvalidArgument; an accepted request must format into a response. Anything else
// (crash, other exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "llm/grammar/json_schema.h"
#include "llm/grammar/token_mask.h"
#include "server/api.h"
#include "util/error.h"

namespace {

template <typename F>
void expect_ok_or_400(F&& f) {
  try {
    f();
  } catch (const ingot::server::ApiError& e) {
    if (e.status != 400) std::abort();
    (void)ingot::server::error_body(e);
  }
}

// A byte vocabulary plus a few multi-byte JSON pieces, with EOS last.
const std::shared_ptr<const ingot::llm::grammar::TokenVocabulary>& vocabulary() {
  static const auto v = [] {
    std::vector<std::string> b;
    for (int i = 0; i < 256; ++i) b.emplace_back(1, static_cast<char>(i));
    for (const char* t : {"{\"", "\":", "\", \"", "true", "null", "12", "\"}", "]}", "\\u00"})
      b.emplace_back(t);
    b.emplace_back("");
    const auto eos = static_cast<int32_t>(b.size() - 1);
    return std::make_shared<const ingot::llm::grammar::TokenVocabulary>(b,
                                                                        std::vector<int32_t>{eos});
  }();
  return v;
}

// Compiles `schema`; when it compiles, feeds `doc` byte by byte and computes a few masks.
void schema_and_document(const std::string& schema, const std::string& doc) {
  using namespace ingot::llm::grammar;
  std::shared_ptr<const JsonGrammar> g;
  try {
    g = JsonGrammar::from_schema(schema);
  } catch (const ingot::InvalidArgument&) {
    return;
  }
  TokenConstraint con(g, vocabulary());
  std::vector<int32_t> gen;
  for (size_t i = 0; i < doc.size() && i < 64; ++i) {
    const std::vector<uint8_t>& mask = *con.next_mask(gen);
    const auto c = static_cast<unsigned char>(doc[i]);
    if (!mask[c]) break;  // the document leaves the grammar here
    gen.push_back(c);
  }
  JsonMatcher m(g);
  (void)m.feed(doc);
  (void)m.accepting();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ingot::server;
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (bool chat : {false, true})
    expect_ok_or_400([&] {
      CompletionRequest r = parse_completion_request(body, chat);
      std::vector<Choice> choices;
      for (const Prompt& p : r.prompts) choices.push_back({0, p.text, "stop", {}});
      std::string content;
      if (!r.tools.empty())
        choices.push_back({0, content, "tool_calls", parse_tool_calls(body, r.tools, content)});
      (void)completion_response(chat, "id", 0, r.model, choices, {1, 2});
      (void)stream_chunk(chat, "id", 0, r.model, 0, r.messages_json, "", true);
    });
  expect_ok_or_400([&] { (void)parse_embedding_request(body); });
  expect_ok_or_400([&] { (void)parse_classify_request(body); });
  // The input split at its first NUL: a schema and a document to match against it.
  const size_t cut = body.find('\0');
  schema_and_document(body.substr(0, cut),
                      cut == std::string::npos ? std::string() : body.substr(cut + 1));
  std::string content;
  (void)parse_tool_calls(body, {{"f", "{}"}, {"get_weather", "{}"}}, content);
  return 0;
}
