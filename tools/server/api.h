// OpenAI-compatible request parsing and response formatting of `ingot serve` (no sockets, no
// model): JSON bodies -> validated request structs, results -> response JSON / SSE chunks.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ingot::server {

/// An error answered to the client as {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "",
           std::string type = "invalid_request_error")
      : std::runtime_error(message),
        status(status),
        param(std::move(param)),
        code(std::move(code)),
        type(std::move(type)) {}
  int status;
  std::string param;
  std::string code;
  std::string type;
};

/// The OpenAI-style error body (param / code null when empty).
std::string error_body(const std::string& message, const std::string& type,
                       const std::string& param, const std::string& code);
std::string error_body(const ApiError& e);

/// One prompt of a completions request: text, or token ids given directly.
struct Prompt {
  std::string text;
  std::vector<int32_t> ids;  // non-empty: use these instead of encoding `text`
};

/// POST /v1/completions and /v1/chat/completions.
struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::vector<Prompt> prompts;  // completions: one or more prompts
  std::string messages_json;    // chat: [{"role","content"}] with content flattened to text
  std::optional<int64_t> max_tokens;
  float temperature = 1.0f;
  float top_p = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

/// POST /v1/embeddings ("pooling": "last" (default) or "mean" is an ingot extension).
struct EmbeddingRequest {
  std::string model;
  std::vector<Prompt> inputs;
  bool mean_pooling = false;
};

/// POST /v1/classify: {"model", "template" (with "{text}" once), "labels", "texts"}.
struct ClassifyRequest {
  std::string model;
  std::string tmpl;
  std::vector<std::string> labels;
  std::vector<std::string> texts;
};

/// Parsers: ApiError (status 400, naming the offending param) on invalid JSON, wrong types,
/// missing fields, out-of-range values and options this server does not support.
CompletionRequest parse_completion_request(const std::string& body, bool chat);
EmbeddingRequest parse_embedding_request(const std::string& body);
ClassifyRequest parse_classify_request(const std::string& body);

/// One finished choice.
struct Choice {
  int index = 0;
  std::string text;
  std::string finish_reason;  // "stop" or "length"
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

nlohmann::json usage_json(const Usage& u);

/// Whole (non-streaming) response of a completions / chat completions request.
std::string completion_response(bool chat, const std::string& id, int64_t created,
                                const std::string& model, const std::vector<Choice>& choices,
                                const Usage& usage);

/// One server-sent event "data: {chunk}\n\n". `text` is the new text of choice `index`;
/// `finish_reason` empty while the choice runs; `role` (chat) is sent in a choice's first chunk.
std::string stream_chunk(bool chat, const std::string& id, int64_t created,
                         const std::string& model, int index, const std::string& text,
                         const std::string& finish_reason, bool role = false);
/// The final usage chunk (choices empty) of stream_options.include_usage.
std::string stream_usage_chunk(bool chat, const std::string& id, int64_t created,
                               const std::string& model, const Usage& usage);
/// "data: [DONE]\n\n".
std::string stream_done();

}  // namespace ingot::server
