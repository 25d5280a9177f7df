// OpenAI-compatible request parsing and response formatting (see api.h).
#include "server/api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "util/utf8.h"

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

// One chat message in the form chat templates expect: roles system (developer), user,
// assistant (with optional tool_calls, arguments as objects), tool (with tool_call_id).
json chat_message(const json& msg, size_t i) {
  const std::string p = "messages[" + std::to_string(i) + "]";
  if (!msg.is_object()) bad(p, "each message must be an object");
  if (!msg.contains("role") || !msg["role"].is_string())
    bad(p + ".role", "each message needs a string 'role'");
  const std::string role = msg["role"].get<std::string>();
  if (role != "system" && role != "user" && role != "assistant" && role != "developer" &&
      role != "tool")
    bad(p + ".role", "unsupported role '" + role + "' (system, developer, user, assistant, tool)");
  json out = {{"role", role == "developer" ? "system" : role}};
  const json* calls = field(msg, "tool_calls");
  if (calls && role != "assistant")
    bad(p + ".tool_calls", "only assistant messages have tool_calls");
  const json* c = field(msg, "content");
  if (!c && !calls) bad(p + ".content", "each message needs a 'content'");
  out["content"] = c ? content_text(*c, i) : "";
  if (calls) {
    if (!calls->is_array()) bad(p + ".tool_calls", "'tool_calls' must be an array");
    json tc = json::array();
    for (const json& call : *calls) {
      const json* f = call.is_object() ? field(call, "function") : nullptr;
      if (!f || !f->is_object() || !f->contains("name") || !(*f)["name"].is_string())
        bad(p + ".tool_calls", "each tool call needs a 'function' with a string 'name'");
      json args = json::object();
      if (const json* a = field(*f, "arguments")) {
        if (!a->is_string()) bad(p + ".tool_calls", "'function.arguments' must be a string");
        args = json::parse(a->get<std::string>(), nullptr, false);
        if (args.is_discarded()) args = a->get<std::string>();  // templates print it as is
      }
      json one = {{"type", "function"},
                  {"function", {{"name", (*f)["name"]}, {"arguments", args}}}};
      if (const json* id = field(call, "id"); id && id->is_string()) one["id"] = *id;
      tc.push_back(one);
    }
    out["tool_calls"] = tc;
  }
  if (role == "tool") {
    if (const json* id = field(msg, "tool_call_id")) {
      if (!id->is_string()) bad(p + ".tool_call_id", "'tool_call_id' must be a string");
      out["tool_call_id"] = *id;
    }
  }
  return out;
}

// "tools" and "tool_choice" of a chat request: fills r.tools / tool_choice / tool_name (and the
// grammar of a forced call); returns the tools for the chat template (empty: none).
json parse_tools(const json& j, CompletionRequest& r) {
  const json* t = field(j, "tools");
  const json* choice = field(j, "tool_choice");
  json out = json::array();
  if (t) {
    if (!t->is_array()) bad("tools", "'tools' must be an array");
    if (t->size() > 128) bad("tools", "at most 128 tools");
    for (size_t i = 0; i < t->size(); ++i) {
      const json& tool = (*t)[i];
      const std::string p = "tools[" + std::to_string(i) + "]";
      if (!tool.is_object() || !tool.contains("type") || tool["type"] != "function")
        bad(p, "each tool must be {\"type\": \"function\", \"function\": {...}}");
      const json* f = field(tool, "function");
      if (!f || !f->is_object()) bad(p + ".function", "a tool needs a 'function' object");
      const json* name = field(*f, "name");
      if (!name || !name->is_string() || name->get<std::string>().empty())
        bad(p + ".function.name", "a function needs a non-empty string 'name'");
      for (const ToolSpec& other : r.tools)
        if (other.name == name->get<std::string>())
          bad(p + ".function.name", "duplicate function name '" + other.name + "'");
      json params = json{{"type", "object"}};
      if (const json* pa = field(*f, "parameters")) {
        if (!pa->is_object()) bad(p + ".function.parameters", "'parameters' must be an object");
        params = *pa;
      }
      if (const json* d = field(*f, "description"); d && !d->is_string())
        bad(p + ".function.description", "'description' must be a string");
      r.tools.push_back({name->get<std::string>(), params.dump()});
      out.push_back(tool);
    }
  }
  if (choice) {
    if (choice->is_string()) {
      r.tool_choice = choice->get<std::string>();
      if (r.tool_choice != "auto" && r.tool_choice != "none" && r.tool_choice != "required")
        bad("tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or a function");
    } else if (choice->is_object() && choice->contains("function") &&
               (*choice)["function"].is_object() && (*choice)["function"].contains("name") &&
               (*choice)["function"]["name"].is_string()) {
      r.tool_choice = "function";
      r.tool_name = (*choice)["function"]["name"].get<std::string>();
    } else {
      bad("tool_choice",
          "'tool_choice' must be a string or {\"type\": \"function\", "
          "\"function\": {\"name\": ...}}");
    }
    if (r.tools.empty() && r.tool_choice != "none")
      bad("tool_choice", "'tool_choice' needs 'tools'");
  }
  if (!r.forced_tool()) return out;
  // A forced call: the output is one {"name": ..., "arguments": {...}} of the allowed tools;
  // the tools' $defs move to the root of the combined schema.
  json alts = json::array();
  json defs = json::object();
  for (const ToolSpec& tool : r.tools) {
    if (r.tool_choice == "function" && tool.name != r.tool_name) continue;
    json params = json::parse(tool.parameters_json);
    for (const char* key : {"$defs", "definitions"}) {
      if (!params.contains(key)) continue;
      if (!params[key].is_object()) bad("tools", std::string("'") + key + "' must be an object");
      for (const auto& [k, v] : params[key].items()) {
        if (defs.contains(k) && defs[k] != v)
          bad("tools", "two tools define '" + k + "' differently in their $defs");
        defs[k] = v;
      }
      params.erase(key);
    }
    alts.push_back({{"type", "object"},
                    {"properties", {{"name", {{"const", tool.name}}}, {"arguments", params}}},
                    {"required", {"name", "arguments"}},
                    {"additionalProperties", false}});
  }
  if (alts.empty()) bad("tool_choice", "tool_choice names no function in 'tools': " + r.tool_name);
  json schema = alts.size() == 1 ? alts[0] : json{{"anyOf", alts}};
  if (!defs.empty()) {
    // "#/definitions/x" refs resolve through "$defs" too: rewrite them.
    std::string text = schema.dump();
    for (size_t at; (at = text.find("\"#/definitions/")) != std::string::npos;)
      text.replace(at, 15, "\"#/$defs/");
    schema = json::parse(text);
    schema["$defs"] = defs;
  }
  try {
    r.grammar = llm::grammar::JsonGrammar::from_schema(schema.dump());
  } catch (const std::exception& e) {
    bad("tools", std::string("cannot enforce the tool parameters: ") + e.what());
  }
  return out;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string call_id() {
  static std::atomic<uint64_t> n{0};
  static const uint64_t base =
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "call_%016llx",
                static_cast<unsigned long long>((base * 6364136223846793005ULL) ^ ++n));
  return buf;
}

// {"name": N, "arguments" | "parameters": {...} or a JSON string} naming a known tool -> a call.
std::optional<ToolCall> call_of(const json& j, const std::vector<ToolSpec>& tools) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  const std::string name = j["name"].get<std::string>();
  if (std::none_of(tools.begin(), tools.end(), [&](const ToolSpec& t) { return t.name == name; }))
    return std::nullopt;
  json args = json::object();
  for (const char* key : {"arguments", "parameters"})
    if (j.contains(key)) args = j[key];
  if (args.is_string()) {
    json parsed = json::parse(args.get<std::string>(), nullptr, false);
    if (!parsed.is_discarded()) args = parsed;
  }
  if (!args.is_object()) return std::nullopt;
  return ToolCall{call_id(), name, args.dump(-1, ' ', false, json::error_handler_t::replace)};
}

}  // namespace

std::vector<ToolCall> parse_tool_calls(const std::string& text, const std::vector<ToolSpec>& tools,
                                       std::string& content) {
  std::vector<ToolCall> calls;
  static const std::string kOpen = "<tool_call>", kClose = "</tool_call>";
  std::string rest;
  size_t pos = 0;
  while (true) {
    const size_t a = text.find(kOpen, pos);
    if (a == std::string::npos) break;
    const size_t b = text.find(kClose, a + kOpen.size());
    // An unclosed last block (generation stopped at EOS or a stop string) still counts.
    const std::string body = text.substr(
        a + kOpen.size(), b == std::string::npos ? std::string::npos : b - a - kOpen.size());
    std::optional<ToolCall> c = call_of(json::parse(trim(body), nullptr, false), tools);
    if (!c) break;
    calls.push_back(std::move(*c));
    rest += text.substr(pos, a - pos);
    pos = b == std::string::npos ? text.size() : b + kClose.size();
  }
  if (!calls.empty()) {
    rest += text.substr(pos);
    content = trim(rest);
    return calls;
  }
  // Llama 3.x: the whole output is one JSON call (optionally after "<|python_tag|>").
  std::string t = trim(text);
  if (t.rfind("<|python_tag|>", 0) == 0) t = trim(t.substr(14));
  if (std::optional<ToolCall> c = call_of(json::parse(t, nullptr, false), tools)) {
    content.clear();
    calls.push_back(std::move(*c));
    return calls;
  }
  content = text;
  return calls;
}

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

std::shared_ptr<const llm::grammar::JsonGrammar> parse_response_format(const json& rf) {
  const char* p = "response_format";
  if (!rf.is_object()) bad(p, "'response_format' must be an object");
  const json* t = field(rf, "type");
  if (!t || !t->is_string())
    bad(p, "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"");
  const std::string type = t->get<std::string>();
  if (type == "text") return nullptr;
  if (type == "json_object") return llm::grammar::JsonGrammar::any_object();
  if (type != "json_schema")
    bad(p, "unknown response_format type '" + type + "' (text, json_object, json_schema)");
  const json* js = field(rf, "json_schema");
  if (!js || !js->is_object())
    bad(p,
        "response_format json_schema needs a 'json_schema' object with a 'name' and a "
        "'schema'");
  const json* name = field(*js, "name");
  if (!name || !name->is_string() || name->get<std::string>().empty())
    bad(p, "'response_format.json_schema.name' must be a non-empty string");
  if (const json* st = field(*js, "strict"); st && !st->is_boolean())
    bad(p, "'response_format.json_schema.strict' must be a boolean");
  const json* schema = field(*js, "schema");
  if (!schema) return llm::grammar::JsonGrammar::from_schema("{}");
  if (!schema->is_object()) bad(p, "'response_format.json_schema.schema' must be an object");
  try {
    return llm::grammar::JsonGrammar::from_schema(schema->dump());
  } catch (const std::exception& e) {
    bad(p, std::string("cannot enforce this schema: ") + e.what());
  }
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
    for (size_t i = 0; i < m->size(); ++i) msgs.push_back(chat_message((*m)[i], i));
    json tools = parse_tools(j, r);
    if (tools.empty()) {
      r.messages_json = msgs.dump(-1, ' ', false, json::error_handler_t::replace);
    } else {
      json conv = {{"messages", msgs}, {"tools", tools}};
      r.messages_json = conv.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    if (const json* rf = field(j, "response_format")) {
      r.grammar = parse_response_format(*rf);
      if (r.grammar && r.forced_tool())
        bad("response_format", "response_format cannot be combined with a forced tool_choice");
    }
    // OpenAI: top_logprobs is 0-20 and needs logprobs: true.
    const bool lp = get_bool(j, "logprobs");
    if (field(j, "top_logprobs")) {
      if (!lp) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      r.logprobs = static_cast<int>(get_int(j, "top_logprobs", 0, 20));
    } else if (lp) {
      r.logprobs = 0;
    }
    if (field(j, "max_completion_tokens"))
      r.max_tokens = get_int(j, "max_completion_tokens", INT64_MIN, INT64_MAX);
  } else {
    r.prompts = get_prompts(j, "prompt");
    // Legacy completions: logprobs is the number of alternatives per token, 0-5.
    if (field(j, "logprobs")) r.logprobs = static_cast<int>(get_int(j, "logprobs", 0, 5));
    r.echo = get_bool(j, "echo");
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
  // OpenAI: max_tokens 0 with echo scores the prompt (no completion).
  if (r.max_tokens && *r.max_tokens < (r.echo ? 0 : 1))
    bad("max_tokens", "'max_tokens' must be at least " + std::string(r.echo ? "0" : "1") +
                          (chat || r.echo ? "" : " (0 only with echo)") + ", got " +
                          std::to_string(*r.max_tokens));
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

std::string base64_encode(std::string_view bytes) {
  static const char* const kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += i + 1 < bytes.size() ? kAlphabet[v >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

EmbeddingRequest parse_embedding_request(const std::string& body) {
  const json j = parse_object(body);
  EmbeddingRequest r;
  r.model = get_string(j, "model", true);
  r.inputs = get_prompts(j, "input");
  const std::string fmt = get_string(j, "encoding_format", false);
  if (!fmt.empty() && fmt != "float" && fmt != "base64")
    bad("encoding_format", "'encoding_format' must be 'float' or 'base64'");
  r.base64 = fmt == "base64";
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
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

namespace {
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json bytes_json(const std::string& b) {
  json a = json::array();
  for (char c : b) a.push_back(static_cast<uint8_t>(c));
  return a;
}
}  // namespace

json logprobs_json(bool chat, const std::vector<TokenLogprob>& tokens, int64_t& offset) {
  if (chat) {
    json content = json::array();
    for (const TokenLogprob& t : tokens) {
      json top = json::array();
      for (const auto& [b, lp] : t.top)
        top.push_back(
            {{"token", utf8::to_valid_lossy(b)}, {"logprob", lp}, {"bytes", bytes_json(b)}});
      content.push_back({{"token", utf8::to_valid_lossy(t.bytes)},
                         {"logprob", t.logprob},
                         {"bytes", bytes_json(t.bytes)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const TokenLogprob& t : tokens) {
    const std::string text = utf8::to_valid_lossy(t.bytes);
    toks.push_back(text);
    offs.push_back(offset);
    if (t.in_text) offset += static_cast<int64_t>(utf8::count(text));
    if (t.none) {  // echo: the prompt's first token
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(t.logprob);
    // OpenAI: the most likely alternatives and always the chosen token (up to k + 1 entries);
    // alternatives whose texts coincide keep the first (most likely) value.
    json top = json::object();
    for (const auto& [b, lp] : t.top) {
      const std::string k = utf8::to_valid_lossy(b);
      if (!top.contains(k)) top[k] = lp;
    }
    if (!top.contains(text)) top[text] = t.logprob;
    tops.push_back(top);
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

std::string completion_response(bool chat, const std::string& id, int64_t created,
                                const std::string& model, const std::vector<Choice>& choices,
                                const Usage& usage) {
  json cs = json::array();
  for (const Choice& c : choices) {
    json msg;
    if (chat) {
      msg = {{"role", "assistant"}, {"content", c.text}};
      if (!c.tool_calls.empty()) {
        if (c.text.empty()) msg["content"] = nullptr;
        json calls = json::array();
        for (const ToolCall& t : c.tool_calls)
          calls.push_back({{"id", t.id},
                           {"type", "function"},
                           {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
        msg["tool_calls"] = calls;
      }
    }
    int64_t offset = 0;
    const json lp = c.logprobs ? logprobs_json(chat, *c.logprobs, offset) : json(nullptr);
    if (chat)
      cs.push_back({{"index", c.index},
                    {"message", msg},
                    {"logprobs", lp},
                    {"finish_reason", c.finish_reason}});
    else
      cs.push_back({{"index", c.index},
                    {"text", c.text},
                    {"logprobs", lp},
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
                         const std::string& finish_reason, bool role, const json& logprobs) {
  json c = {{"index", index},
            {"logprobs", logprobs},
            {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || (role && finish_reason.empty()) || !logprobs.is_null())
      delta["content"] = text;
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

std::string stream_tool_calls_chunk(const std::string& id, int64_t created,
                                    const std::string& model, int index,
                                    const std::vector<ToolCall>& calls) {
  json tc = json::array();
  for (size_t i = 0; i < calls.size(); ++i)
    tc.push_back({{"index", i},
                  {"id", calls[i].id},
                  {"type", "function"},
                  {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}});
  json c = {{"index", index},
            {"logprobs", nullptr},
            {"finish_reason", nullptr},
            {"delta", {{"tool_calls", tc}}}};
  return "data: " +
         dump({{"id", id},
               {"object", "chat.completion.chunk"},
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
