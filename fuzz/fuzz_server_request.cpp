// libFuzzer target: `ingot serve` request bodies (completions, chat, embeddings, classify) on
// arbitrary bytes. Every rejection must be a server::ApiError with status 400; an accepted request
// must format into a response. Anything else (crash, other exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/api.h"

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ingot::server;
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (bool chat : {false, true})
    expect_ok_or_400([&] {
      CompletionRequest r = parse_completion_request(body, chat);
      std::vector<Choice> choices;
      for (const Prompt& p : r.prompts) choices.push_back({0, p.text, "stop"});
      (void)completion_response(chat, "id", 0, r.model, choices, {1, 2});
      (void)stream_chunk(chat, "id", 0, r.model, 0, r.messages_json, "", true);
    });
  expect_ok_or_400([&] { (void)parse_embedding_request(body); });
  expect_ok_or_400([&] { (void)parse_classify_request(body); });
  return 0;
}
