// OpenAI-compatible request parsing and response formatting (see api.h).
#include "server/api.h"

#include <cmath>
#include <limits>

namespace ingot::server {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

json parse_object(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad("", "request body is not valid JSON");
  if (!j.is_object()) bad("", "request body must be a JSON object");
  return j;
}

const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string get_string(const json& j, const char* key, bool required) {
  const json* v = field(j, key);
  if (!v) {
    if (required) bad(key, std::string("missing required field '") + key + "'");
    return "";
  }
  if (!v->is_string()) bad(key, std::string("'") + key + "' must be a string");
  return v->get<std::string>();
}

double get_number(const json& j, const char* key, double def, double lo, double hi) {
  const json* v = field(j, key);
  if (!v) return def;
  if (!v->is_number()) bad(key, std::string("'") + key + "' must be a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    bad(key, std::string("'") + key + "' must be in [" + json(lo).dump() + ", " + json(hi).dump() +
                 "], got " + v->dump());
  return x;
}

bool get_bool(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return false;
  if (!v->is_boolean()) bad(key, std::string("'") + key + "' must be a boolean");
  return v->get<bool>();
}

int64_t get_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v->is_number_integer()) bad(key, std::string("'") + key + "' must be an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    bad(key, std::string("'") + key + "' is too large: " + v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    bad(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "], got " + v->dump());
  return x;
}

// A string, a list of strings, a list of token ids, or a list of lists of token ids.
std::vector<Prompt> get_prompts(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) bad(key, std::string("missing required field '") + key + "'");
  const std::string err = std::string("'") + key +
                          "' must be a string, an array of strings, an array of token ids or an "
                          "array of arrays of token ids";
  auto ids_of = [&](const json& a) {
    std::vector<int32_t> ids;
    for (const json& t : a) {
      if (!t.is_number_integer()) bad(key, err);
      if (t.is_number_unsigned() ? t.get<uint64_t>() > INT32_MAX
                                 : (t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX))
        bad(key, std::string("token id out of range in '") + key + "': " + t.dump());
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    if (ids.empty()) bad(key, std::string("'") + key + "' has an empty token list");
    return ids;
  };
  std::vector<Prompt> out;
  if (v->is_string()) {
    out.push_back({v->get<std::string>(), {}});
  } else if (v->is_array()) {
    if (v->empty()) bad(key, std::string("'") + key + "' must not be empty");
    if ((*v)[0].is_number()) {
      out.push_back({"", ids_of(*v)});
    } else {
      for (const json& e : *v) {
        if (e.is_string())
          out.push_back({e.get<std::string>(), {}});
        else if (e.is_array())
          out.push_back({"", ids_of(e)});
        else
          bad(key, err);
      }
    }
  } else {
    bad(key, err);
  }
  for (const Prompt& p : out)
    if (p.ids.empty() && p.text.empty()) bad(key, std::string("'") + key + "' has an empty text");
  return out;
}

// Chat content: a string, or an array of {"type": "text", "text": "..."} parts (joined).
std::string content_text(const json& c, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {
    std::string s;
    for (const json& part : c) {
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
          !part.contains("text") || !part["text"].is_string())
        bad(param, "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
      s += part["text"].get<std::string>();
    }
    return s;
  }
  bad(param, "'content' must be a string or an array of text parts");
}

}  // namespace

std::string error_body(const std::string& message, const std::string& type,
                       const std::string& param, const std::string& code) {
  json e = {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_body(const ApiError& e) {
  return error_body(e.what(), e.type, e.param, e.code);
}

CompletionRequest parse_completion_request(const std::string& body, bool chat) {
  const json j = parse_object(body);
  CompletionRequest r;
  r.chat = chat;
  r.model = get_string(j, "model", true);
  if (chat) {
    const json* m = field(j, "messages");
    if (!m) bad("messages", "missing required field 'messages'");
    if (!m->is_array() || m->empty()) bad("messages", "'messages' must be a non-empty array");
    json msgs = json::array();
    for (size_t i = 0; i < m->size(); ++i) {
      const json& msg = (*m)[i];
      const std::string p = "messages[" + std::to_string(i) + "]";
      if (!msg.is_object()) bad(p, "each message must be an object");
      if (!msg.contains("role") || !msg["role"].is_string())
        bad(p + ".role", "each message needs a string 'role'");
      const std::string role = msg["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant" && role != "developer")
        bad(p + ".role", "unsupported role '" + role + "' (system, developer, user, assistant)");
      if (msg.contains("tool_calls") && !msg["tool_calls"].is_null())
        bad(p + ".tool_calls", "tool calls are not supported yet");
      const json* c = field(msg, "content");
      if (!c) bad(p + ".content", "each message needs a 'content'");
      msgs.push_back(
          {{"role", role == "developer" ? "system" : role}, {"content", content_text(*c, i)}});
    }
    r.messages_json = msgs.dump(-1, ' ', false, json::error_handler_t::replace);
    if (field(j, "tools") || field(j, "tool_choice"))
      bad("tools", "tools / tool_choice are not supported yet");
    if (const json* rf = field(j, "response_format")) {
      if (!rf->is_object() || !rf->contains("type") || (*rf)["type"] != "text")
        bad("response_format", "only response_format {\"type\": \"text\"} is supported yet");
    }
    if (get_bool(j, "logprobs")) bad("logprobs", "logprobs are not supported yet");
    if (field(j, "max_completion_tokens"))
      r.max_tokens = get_int(j, "max_completion_tokens", INT64_MIN, INT64_MAX);
  } else {
    r.prompts = get_prompts(j, "prompt");
    if (const json* lp = field(j, "logprobs")) {
      if (!lp->is_number_integer() || lp->get<int64_t>() != 0)
        bad("logprobs", "logprobs are not supported yet");
    }
    if (get_bool(j, "echo")) bad("echo", "echo is not supported yet");
    if (const json* s = field(j, "suffix")) {
      if (!s->is_string() || !s->get<std::string>().empty())
        bad("suffix", "suffix is not supported");
    }
    if (const json* b = field(j, "best_of")) {
      if (!b->is_number_integer() || b->get<int64_t>() != 1)
        bad("best_of", "best_of other than 1 is not supported");
    }
  }
  if (field(j, "max_tokens")) r.max_tokens = get_int(j, "max_tokens", INT64_MIN, INT64_MAX);
  if (r.max_tokens && *r.max_tokens <= 0)
    bad("max_tokens", "'max_tokens' must be at least 1, got " + std::to_string(*r.max_tokens));
  r.temperature = static_cast<float>(get_number(j, "temperature", 1.0, 0.0, 2.0));
  r.top_p = static_cast<float>(get_number(j, "top_p", 1.0, 0.0, 1.0));
  if (r.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  r.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", 0.0, -2.0, 2.0));
  r.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  if (field(j, "seed")) {
    const json& s = j["seed"];
    if (!s.is_number_integer()) bad("seed", "'seed' must be an integer");
    r.seed = s.is_number_unsigned() ? s.get<uint64_t>() : static_cast<uint64_t>(s.get<int64_t>());
  }
  if (field(j, "n")) r.n = static_cast<int>(get_int(j, "n", 1, 16));
  if (!chat && r.prompts.size() * static_cast<size_t>(r.n) > 128)
    bad("prompt", "at most 128 choices (prompts x n) per request");
  if (const json* st = field(j, "stop")) {
    if (st->is_string()) {
      r.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > 4) bad("stop", "at most 4 stop sequences");
      for (const json& s : *st) {
        if (!s.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of strings");
    }
    for (const std::string& s : r.stop)
      if (s.empty()) bad("stop", "stop sequences must not be empty");
  }
  r.stream = get_bool(j, "stream");
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed with stream: true");
    r.include_usage = get_bool(*so, "include_usage");
  }
  if (const json* u = field(j, "user"); u && !u->is_string())
    bad("user", "'user' must be a string");
  return r;
}

EmbeddingRequest parse_embedding_request(const std::string& body) {
  const json j = parse_object(body);
  EmbeddingRequest r;
  r.model = get_string(j, "model", true);
  r.inputs = get_prompts(j, "input");
  const std::string fmt = get_string(j, "encoding_format", false);
  if (!fmt.empty() && fmt != "float")
    bad("encoding_format", "only encoding_format 'float' is supported");
  if (field(j, "dimensions")) bad("dimensions", "'dimensions' is not supported");
  const std::string pooling = get_string(j, "pooling", false);
  if (!pooling.empty() && pooling != "last" && pooling != "mean")
    bad("pooling", "'pooling' must be 'last' or 'mean'");
  r.mean_pooling = pooling == "mean";
  return r;
}

ClassifyRequest parse_classify_request(const std::string& body) {
  const json j = parse_object(body);
  ClassifyRequest r;
  r.model = get_string(j, "model", true);
  r.tmpl = get_string(j, "template", true);
  const size_t at = r.tmpl.find("{text}");
  if (at == std::string::npos || r.tmpl.find("{text}", at + 1) != std::string::npos)
    bad("template", "'template' must contain \"{text}\" exactly once");
  auto strings = [&](const char* key) {
    const json* v = field(j, key);
    if (!v) bad(key, std::string("missing required field '") + key + "'");
    if (!v->is_array() || v->empty())
      bad(key, std::string("'") + key + "' must be a non-empty array of strings");
    std::vector<std::string> out;
    for (const json& e : *v) {
      if (!e.is_string()) bad(key, std::string("'") + key + "' must be an array of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  };
  r.labels = strings("labels");
  if (r.labels.size() < 2) bad("labels", "'labels' needs at least 2 labels");
  for (const std::string& l : r.labels)
    if (l.empty()) bad("labels", "labels must not be empty");
  r.texts = strings("texts");
  return r;
}

nlohmann::json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

namespace {
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}
}  // namespace

std::string completion_response(bool chat, const std::string& id, int64_t created,
                                const std::string& model, const std::vector<Choice>& choices,
                                const Usage& usage) {
  json cs = json::array();
  for (const Choice& c : choices) {
    if (chat)
      cs.push_back({{"index", c.index},
                    {"message", {{"role", "assistant"}, {"content", c.text}}},
                    {"logprobs", nullptr},
                    {"finish_reason", c.finish_reason}});
    else
      cs.push_back({{"index", c.index},
                    {"text", c.text},
                    {"logprobs", nullptr},
                    {"finish_reason", c.finish_reason}});
  }
  return dump({{"id", id},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", cs},
               {"usage", usage_json(usage)}});
}

std::string stream_chunk(bool chat, const std::string& id, int64_t created,
                         const std::string& model, int index, const std::string& text,
                         const std::string& finish_reason, bool role) {
  json c = {{"index", index},
            {"logprobs", nullptr},
            {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || (role && finish_reason.empty())) delta["content"] = text;
    c["delta"] = delta;
  } else {
    c["text"] = text;
  }
  return "data: " +
         dump({{"id", id},
               {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", json::array({c})}}) +
         "\n\n";
}

std::string stream_usage_chunk(bool chat, const std::string& id, int64_t created,
                               const std::string& model, const Usage& usage) {
  return "data: " +
         dump({{"id", id},
               {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", json::array()},
               {"usage", usage_json(usage)}}) +
         "\n\n";
}

std::string stream_done() {
  return "data: [DONE]\n\n";
}

}  // namespace ingot::server
