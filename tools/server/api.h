// OpenAI-compatible request parsing and response formatting of `ingot serve` (no sockets, no
// model): JSON bodies -> validated request structs, results -> response JSON / SSE chunks.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/grammar/json_schema.h"

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

/// A function the model may call (chat `tools`).
struct ToolSpec {
  std::string name;
  std::string parameters_json;  ///< the JSON schema of its arguments ({"type": "object"} if none)
};

/// One tool call parsed from a model's output.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  ///< JSON text of the arguments object
};

/// One generated token of a choice's `logprobs`: its bytes (raw: a token may hold part of a
/// UTF-8 character), log-probability, and the most likely alternatives (descending).
struct TokenLogprob {
  std::string bytes;
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;
  /// Echo: the prompt's first token has no log-probability (null value and alternatives).
  bool none = false;
  /// Echo: false for a special token of the prompt (BOS), which the echoed text leaves out:
  /// `text_offset` does not advance past it.
  bool in_text = true;
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
  /// Log-probabilities: -1 none; otherwise the alternatives per token (chat `logprobs: true`
  /// with `top_logprobs` 0-20, completions `logprobs` 0-5).
  int logprobs = -1;
  /// Completions `echo`: each choice's text starts with the prompt (and `logprobs` cover the
  /// prompt's tokens first); with echo, max_tokens 0 is allowed (the prompt alone, scored).
  bool echo = false;
  /// response_format json_object / json_schema (chat): the grammar the output must follow
  /// (null: free text).
  std::shared_ptr<const llm::grammar::JsonGrammar> grammar;
  /// Chat tools (rendered through the chat template) and tool_choice: "auto", "none",
  /// "required" or "function" (then `tool_name` is the one to call).
  std::vector<ToolSpec> tools;
  std::string tool_choice = "auto";
  std::string tool_name;
  /// True when tools are given and tool_choice is not "none": the output is parsed for calls.
  bool parse_tools() const { return !tools.empty() && tool_choice != "none"; }
  /// True for tool_choice "required" / a named function: `grammar` forces one call, written as
  /// {"name": ..., "arguments": {...}}.
  bool forced_tool() const { return tool_choice == "required" || tool_choice == "function"; }
};

/// Tool calls in a model's output: Hermes / Qwen3 `<tool_call>{"name", "arguments"}</tool_call>`
/// blocks, or (Llama 3.x style) a whole output that is one {"name", "arguments" | "parameters"}
/// object. Calls naming no tool in `tools` are left as text. `content` gets the text outside
/// the calls (trimmed).
std::vector<ToolCall> parse_tool_calls(const std::string& text, const std::vector<ToolSpec>& tools,
                                       std::string& content);

/// Compiles a chat request's response_format: null for {"type": "text"}, the any-object grammar
/// for {"type": "json_object"}, the compiled schema for {"type": "json_schema", "json_schema":
/// {"name", "schema", "strict"}}. ApiError 400 (param response_format) naming what is wrong.
std::shared_ptr<const llm::grammar::JsonGrammar> parse_response_format(const nlohmann::json& rf);

/// POST /v1/embeddings ("pooling": "last" (default) or "mean" is an ingot extension).
struct EmbeddingRequest {
  std::string model;
  std::vector<Prompt> inputs;
  bool mean_pooling = false;
  bool base64 = false;  ///< encoding_format "base64": little-endian float32 bytes, base64
};

/// POST /v1/classify: {"model", "template" (with "{text}" once), "labels", "texts"}.
struct ClassifyRequest {
  std::string model;
  std::string tmpl;
  std::vector<std::string> labels;
  std::vector<std::string> texts;
};

/// Standard base64 (with padding) of `bytes`.
std::string base64_encode(std::string_view bytes);

/// Parsers: ApiError (status 400, naming the offending param) on invalid JSON, wrong types,
/// missing fields, out-of-range values and options this server does not support.
CompletionRequest parse_completion_request(const std::string& body, bool chat);
EmbeddingRequest parse_embedding_request(const std::string& body);
ClassifyRequest parse_classify_request(const std::string& body);

/// One finished choice.
struct Choice {
  int index = 0;
  std::string text;
  std::string finish_reason;         // "stop", "length" or "tool_calls"
  std::vector<ToolCall> tool_calls;  // chat: calls parsed from the output (text = the rest)
  std::optional<std::vector<TokenLogprob>> logprobs;  // when the request asked for them
};

/// The `logprobs` object of a choice or a streamed chunk: chat {"content": [{token, logprob,
/// bytes, top_logprobs: [{token, logprob, bytes}]}], "refusal": null}, completions {tokens,
/// token_logprobs, top_logprobs: [{token: logprob} (the alternatives and the chosen token)],
/// text_offset}. A token's text is its bytes as UTF-8 with invalid parts replaced by U+FFFD;
/// `text_offset` (code points of those texts) starts at `offset`, which is advanced past them
/// (not past a token with in_text false). A token with `none` (echo's first prompt token) has
/// null in token_logprobs and top_logprobs.
nlohmann::json logprobs_json(bool chat, const std::vector<TokenLogprob>& tokens, int64_t& offset);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  /// Prompt tokens whose keys/values came from the prompt cache (prompt_tokens_details).
  int64_t cached_tokens = 0;
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
                         const std::string& finish_reason, bool role = false,
                         const nlohmann::json& logprobs = nullptr);
/// The chunk with a chat choice's tool calls (delta.tool_calls, OpenAI's streaming shape).
std::string stream_tool_calls_chunk(const std::string& id, int64_t created,
                                    const std::string& model, int index,
                                    const std::vector<ToolCall>& calls);
/// The final usage chunk (choices empty) of stream_options.include_usage.
std::string stream_usage_chunk(bool chat, const std::string& id, int64_t created,
                               const std::string& model, const Usage& usage);
/// "data: [DONE]\n\n".
std::string stream_done();

}  // namespace ingot::server
