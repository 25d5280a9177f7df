// Request parsing / validation and response formatting of the server (no sockets, no model).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/api.h"

namespace ingot::server {
namespace {

using nlohmann::json;

// Parses `body` and returns the ApiError it raises (fails the test when it parses).
ApiError completion_error(const std::string& body, bool chat = false) {
  try {
    parse_completion_request(body, chat);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "");
}

TEST(ServerApi, ParsesACompletionRequest) {
  CompletionRequest r = parse_completion_request(
      R"({"model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0, "top_p": 0.5,
          "seed": 42, "stop": ["a", "bc"], "n": 3, "stream": true,
          "stream_options": {"include_usage": true}, "user": "u", "logprobs": null})",
      false);
  EXPECT_FALSE(r.chat);
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "Hello");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ServerApi, DefaultsFollowOpenAI) {
  CompletionRequest r = parse_completion_request(R"({"model": "m", "prompt": "x"})", false);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.temperature, 1.0f);
  EXPECT_EQ(r.top_p, 1.0f);
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_TRUE(r.stop.empty());
}

TEST(ServerApi, PromptFormsStringsAndTokenIds) {
  auto r = parse_completion_request(R"({"model": "m", "prompt": ["a", "b"]})", false);
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].text, "b");
  r = parse_completion_request(R"({"model": "m", "prompt": [1, 5, 9]})", false);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int32_t>{1, 5, 9}));
  r = parse_completion_request(R"({"model": "m", "prompt": [[1, 2], [3]]})", false);
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].ids, (std::vector<int32_t>{3}));
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": [1, "a"]})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": [-1]})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": [4294967296]})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": []})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": ""})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": 5})").param, "prompt");
  std::string many = R"({"model": "m", "n": 2, "prompt": [)";
  for (int i = 0; i < 65; ++i) many += std::string(i ? "," : "") + "\"p\"";
  EXPECT_EQ(completion_error(many + "]}").param, "prompt");
}

TEST(ServerApi, BadRequestsNameTheParam) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"prompt": "x"})", "model"},
      {R"({"model": 3, "prompt": "x"})", "model"},
      {R"({"model": "m"})", "prompt"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": -5})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": "5"})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 1.5})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "temperature": "hot"})", "temperature"},
      {R"({"model": "m", "prompt": "x", "temperature": 2.5})", "temperature"},
      {R"({"model": "m", "prompt": "x", "top_p": 0})", "top_p"},
      {R"({"model": "m", "prompt": "x", "top_p": 1.5})", "top_p"},
      {R"({"model": "m", "prompt": "x", "n": 0})", "n"},
      {R"({"model": "m", "prompt": "x", "n": 100})", "n"},
      {R"({"model": "m", "prompt": "x", "stop": 5})", "stop"},
      {R"({"model": "m", "prompt": "x", "stop": [""]})", "stop"},
      {R"({"model": "m", "prompt": "x", "stop": ["a","b","c","d","e"]})", "stop"},
      {R"({"model": "m", "prompt": "x", "stream": "yes"})", "stream"},
      {R"({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}})",
       "stream_options"},
      {R"({"model": "m", "prompt": "x", "seed": "1"})", "seed"},
      {R"({"model": "m", "prompt": "x", "logprobs": 6})", "logprobs"},
      {R"({"model": "m", "prompt": "x", "logprobs": -1})", "logprobs"},
      {R"({"model": "m", "prompt": "x", "logprobs": true})", "logprobs"},
      {R"({"model": "m", "prompt": "x", "echo": "yes"})", "echo"},
      {R"({"model": "m", "prompt": "x", "echo": 1})", "echo"},
      {R"({"model": "m", "prompt": "x", "max_tokens": -1, "echo": true})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 9223372036854775807, "n": 0})", "n"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 9223372036854775808})", "max_tokens"},
  };
  for (const Case& c : cases) {
    ApiError e = completion_error(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error");
  }
  for (const char* body : {"", "{", "nul", "[1, 2]", "\"x\"", "{\"model\": \"m\", }"}) {
    ApiError e = completion_error(body);
    EXPECT_EQ(e.status, 400) << body;
  }
}

TEST(ServerApi, LogprobsFollowOpenAIRanges) {
  // Completions: logprobs N in [0, 5]; chat: logprobs true with top_logprobs in [0, 20].
  EXPECT_EQ(parse_completion_request(R"({"model": "m", "prompt": "x"})", false).logprobs, -1);
  EXPECT_EQ(
      parse_completion_request(R"({"model": "m", "prompt": "x", "logprobs": 0})", false).logprobs,
      0);
  EXPECT_EQ(
      parse_completion_request(R"({"model": "m", "prompt": "x", "logprobs": 5})", false).logprobs,
      5);
  const std::string msgs = R"("model": "m", "messages": [{"role": "user", "content": "x"}])";
  auto chat = [&](const std::string& extra) {
    return parse_completion_request("{" + msgs + extra + "}", true).logprobs;
  };
  EXPECT_EQ(chat(""), -1);
  EXPECT_EQ(chat(R"(, "logprobs": false)"), -1);
  EXPECT_EQ(chat(R"(, "logprobs": true)"), 0);
  EXPECT_EQ(chat(R"(, "logprobs": true, "top_logprobs": 20)"), 20);
  EXPECT_EQ(chat(R"(, "logprobs": true, "top_logprobs": null)"), 0);
  for (const char* extra :
       {R"(, "logprobs": true, "top_logprobs": 21)", R"(, "logprobs": true, "top_logprobs": -1)",
        R"(, "logprobs": true, "top_logprobs": 1.5)", R"(, "top_logprobs": 3)",
        R"(, "logprobs": false, "top_logprobs": 3)"}) {
    ApiError e = completion_error("{" + msgs + extra + "}", true);
    EXPECT_EQ(e.status, 400) << extra;
    EXPECT_EQ(e.param, "top_logprobs") << extra;
  }
  EXPECT_EQ(completion_error("{" + msgs + R"(, "logprobs": 3})", true).param, "logprobs");
}

TEST(ServerApi, EchoIsABoolAndAllowsMaxTokensZero) {
  EXPECT_FALSE(parse_completion_request(R"({"model": "m", "prompt": "x"})", false).echo);
  EXPECT_FALSE(
      parse_completion_request(R"({"model": "m", "prompt": "x", "echo": null})", false).echo);
  const CompletionRequest r = parse_completion_request(
      R"({"model": "m", "prompt": "x", "echo": true, "max_tokens": 0, "logprobs": 2})", false);
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.max_tokens, 0);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_FALSE(
      parse_completion_request(R"({"model": "m", "prompt": "x", "echo": false})", false).echo);
  // Chat has no echo: max_tokens 0 stays an error there.
  const std::string msgs = R"("model": "m", "messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(completion_error("{" + msgs + R"(, "max_tokens": 0, "echo": true})", true).param,
            "max_tokens");
}

TEST(ServerApi, EchoedPromptEntriesInLegacyLogprobs) {
  // The prompt's first token: null value and alternatives; a special token (BOS) keeps its
  // entry but the echoed text leaves it out, so text_offset does not advance past it.
  TokenLogprob bos{"<s>", 0.0f, {}};
  bos.none = true;
  bos.in_text = false;
  const std::vector<TokenLogprob> toks{
      bos, {"Hi", -0.25f, {{"Hi", -0.25f}, {" a", -2.0f}}}, {" there", -1.0f, {{"!", -0.5f}}}};
  int64_t offset = 0;
  const json l = logprobs_json(false, toks, offset);
  EXPECT_EQ(l["tokens"], json({"<s>", "Hi", " there"}));
  EXPECT_EQ(l["token_logprobs"], json({nullptr, -0.25, -1.0}));
  EXPECT_TRUE(l["top_logprobs"][0].is_null());
  EXPECT_EQ(l["top_logprobs"][2], json({{"!", -0.5}, {" there", -1.0}}));
  EXPECT_EQ(l["text_offset"], json({0, 0, 2}));
  EXPECT_EQ(offset, 8);
}

TEST(ServerApi, LogprobsJsonHasOpenAIShapes) {
  // "\xE4\xBD" is the first two bytes of a three-byte character: the text gets U+FFFD.
  const std::vector<TokenLogprob> toks{{"Hi", -0.25f, {{"Hi", -0.25f}, {" a", -2.0f}}},
                                       {"\xE4\xBD", -1.5f, {{"x", -0.5f}, {"\xE4\xBD", -1.5f}}}};
  int64_t offset = 0;
  const json c = logprobs_json(true, toks, offset);
  ASSERT_EQ(c["content"].size(), 2u);
  EXPECT_TRUE(c["refusal"].is_null());
  EXPECT_EQ(c["content"][0]["token"], "Hi");
  EXPECT_EQ(c["content"][0]["logprob"], -0.25);
  EXPECT_EQ(c["content"][0]["bytes"], json({72, 105}));
  EXPECT_EQ(c["content"][0]["top_logprobs"][1]["token"], " a");
  EXPECT_EQ(c["content"][0]["top_logprobs"][1]["logprob"], -2.0);
  EXPECT_EQ(c["content"][1]["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(c["content"][1]["bytes"], json({0xE4, 0xBD}));
  EXPECT_EQ(c["content"][1]["top_logprobs"][1]["bytes"], json({0xE4, 0xBD}));

  offset = 10;
  const json l = logprobs_json(false, toks, offset);
  EXPECT_EQ(l["tokens"], json({"Hi", "\xEF\xBF\xBD"}));
  EXPECT_EQ(l["token_logprobs"], json({-0.25, -1.5}));
  EXPECT_EQ(l["text_offset"], json({10, 12}));  // code points: "Hi" is 2
  EXPECT_EQ(offset, 13);
  EXPECT_EQ(l["top_logprobs"][0], json({{"Hi", -0.25}, {" a", -2.0}}));
  // The chosen token is always in the dict (k + 1 entries at most).
  const std::vector<TokenLogprob> k0{{"z", -3.0f, {}}};
  EXPECT_EQ(logprobs_json(false, k0, offset)["top_logprobs"][0], json({{"z", -3.0}}));
}

TEST(ServerApi, ParsesChatMessages) {
  auto r = parse_completion_request(
      R"({"model": "m", "messages": [{"role": "developer", "content": "Be brief."},
          {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                       {"type": "text", "text": "there"}]}],
          "max_completion_tokens": 3})",
      true);
  EXPECT_TRUE(r.chat);
  EXPECT_EQ(r.max_tokens, 3);
  const json m = json::parse(r.messages_json);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[1]["content"], "Hi there");
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": []})", true).param, "messages");
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": [{"content": "x"}]})", true).param,
            "messages[0].role");
  EXPECT_EQ(
      completion_error(R"({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})", true)
          .param,
      "messages[0].role");
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": [{"role": "user"}]})", true).param,
            "messages[0].content");
  EXPECT_EQ(
      completion_error(
          R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
          true)
          .param,
      "messages[0].content");
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "response_format": {"type": "yaml"}})",
                             true)
                .param,
            "response_format");
}

TEST(ServerApi, ParsesResponseFormat) {
  auto chat = [](const std::string& rf) {
    return parse_completion_request(
        R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": )" +
            rf + "}",
        true);
  };
  EXPECT_EQ(chat(R"({"type": "text"})").grammar, nullptr);
  EXPECT_NE(chat(R"({"type": "json_object"})").grammar, nullptr);
  const auto r = chat(R"({"type": "json_schema", "json_schema": {"name": "p", "strict": true,
      "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
                 "additionalProperties": false}}})");
  ASSERT_NE(r.grammar, nullptr);
  llm::grammar::JsonMatcher m(r.grammar);
  EXPECT_TRUE(m.feed(R"({"a": 12})") && m.accepting());
  // A keyword it cannot enforce: 400 naming it.
  try {
    chat(R"({"type": "json_schema", "json_schema": {"name": "p",
        "schema": {"type": "string", "pattern": "^a"}}})");
    FAIL() << "pattern accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "response_format");
    EXPECT_NE(std::string(e.what()).find("'pattern'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(chat(R"({"type": "json_schema"})"), ApiError);
  EXPECT_THROW(chat(R"({"type": "json_schema", "json_schema": {"schema": {}}})"), ApiError);
}

TEST(ServerApi, ParsesToolsAndToolHistory) {
  const std::string tools = R"("tools": [{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"], "additionalProperties": false}}},
      {"type": "function", "function": {"name": "now"}}])";
  auto r = parse_completion_request(
      R"({"model": "m", "messages": [{"role": "user", "content": "w?"},
          {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
           "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
          {"role": "tool", "tool_call_id": "c1", "content": "21"}], )" +
          tools + "}",
      true);
  ASSERT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.tool_choice, "auto");
  EXPECT_TRUE(r.parse_tools());
  EXPECT_EQ(r.grammar, nullptr);
  // The template gets {"messages", "tools"} with the call's arguments as an object.
  const json conv = json::parse(r.messages_json);
  EXPECT_EQ(conv["tools"].size(), 2u);
  EXPECT_EQ(conv["messages"][1]["tool_calls"][0]["function"]["arguments"]["city"], "Paris");
  EXPECT_EQ(conv["messages"][2]["role"], "tool");
  EXPECT_EQ(conv["messages"][2]["tool_call_id"], "c1");

  // A named function is forced by a grammar of {"name": ..., "arguments": ...}.
  auto f = parse_completion_request(
      R"({"model": "m", "messages": [{"role": "user", "content": "w?"}],
          "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, )" +
          tools + "}",
      true);
  ASSERT_NE(f.grammar, nullptr);
  llm::grammar::JsonMatcher m(f.grammar);
  EXPECT_TRUE(m.feed(R"({"name": "get_weather", "arguments": {"city": "Rome"}})") && m.accepting());
  llm::grammar::JsonMatcher other(f.grammar);
  EXPECT_FALSE(other.feed(R"({"name": "now")"));
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "tool_choice": "required"})",
                             true)
                .param,
            "tool_choice");
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "tool_choice": {"type": "function", "function": {"name": "x"}},
                                 )" +
                                 tools + "}",
                             true)
                .param,
            "tool_choice");
  EXPECT_EQ(completion_error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "tools": [{"type": "function", "function": {"name": "f",
                                 "parameters": {"type": "object", "properties": {
                                 "a": {"type": "string", "format": "email"}}}}}],
                                 "tool_choice": "required"})",
                             true)
                .param,
            "tools");
}

TEST(ServerApi, ParsesToolCallsFromModelOutput) {
  const std::vector<ToolSpec> tools = {{"get_weather", "{}"}, {"now", "{}"}};
  std::string content;
  // Qwen3 / Hermes: tagged blocks, text around them is the content.
  auto calls = parse_tool_calls(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n"
      "</tool_call>",
      tools, content);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(calls[1].name, "now");
  EXPECT_NE(calls[0].id, calls[1].id);
  EXPECT_EQ(content, "Let me check.");
  // Llama 3.x: the whole answer is one JSON call ("parameters" as the arguments).
  calls = parse_tool_calls(R"( {"name": "now", "parameters": {"tz": "UTC"}} )", tools, content);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(json::parse(calls[0].arguments), json({{"tz", "UTC"}}));
  EXPECT_EQ(content, "");
  // Unknown functions and plain text are left as text.
  calls = parse_tool_calls(R"({"name": "rm", "arguments": {}})", tools, content);
  EXPECT_TRUE(calls.empty());
  EXPECT_EQ(content, R"({"name": "rm", "arguments": {}})");
  // The response carries them as OpenAI tool_calls with string arguments.
  Choice c{0, "", "tool_calls",
           parse_tool_calls(R"({"name": "now", "arguments": {}})", tools, content)};
  const json resp = json::parse(completion_response(true, "id", 0, "m", {c}, {1, 2}));
  const json& msg = resp["choices"][0]["message"];
  EXPECT_TRUE(msg["content"].is_null());
  EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "now");
  EXPECT_EQ(msg["tool_calls"][0]["function"]["arguments"], "{}");
  EXPECT_EQ(resp["choices"][0]["finish_reason"], "tool_calls");
}

TEST(ServerApi, EmbeddingAndClassifyRequests) {
  auto e = parse_embedding_request(R"({"model": "m", "input": ["a", "b"], "pooling": "mean"})");
  EXPECT_EQ(e.inputs.size(), 2u);
  EXPECT_TRUE(e.mean_pooling);
  EXPECT_THROW(parse_embedding_request(R"({"model": "m"})"), ApiError);
  EXPECT_THROW(parse_embedding_request(R"({"model": "m", "input": "a", "pooling": "max"})"),
               ApiError);
  EXPECT_TRUE(
      parse_embedding_request(R"({"model": "m", "input": "a", "encoding_format": "base64"})")
          .base64);
  EXPECT_THROW(parse_embedding_request(R"({"model": "m", "input": "a", "encoding_format": "hex"})"),
               ApiError);
  // RFC 4648 section 10 test vectors.
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  auto c = parse_classify_request(
      R"({"model": "m", "template": "Q: {text} A:", "labels": [" yes", " no"], "texts": ["t"]})");
  EXPECT_EQ(c.labels.size(), 2u);
  EXPECT_EQ(c.texts, std::vector<std::string>{"t"});
  EXPECT_THROW(
      parse_classify_request(
          R"({"model": "m", "template": "no slot", "labels": ["a", "b"], "texts": ["t"]})"),
      ApiError);
  EXPECT_THROW(parse_classify_request(
                   R"({"model": "m", "template": "{text}", "labels": ["a"], "texts": ["t"]})"),
               ApiError);
  EXPECT_THROW(parse_classify_request(
                   R"({"model": "m", "template": "{text}", "labels": ["a", "b"], "texts": [1]})"),
               ApiError);
}

TEST(ServerApi, ErrorBodyIsOpenAIShaped) {
  const json j = json::parse(error_body(ApiError(400, "bad \xff value", "max_tokens")));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "max_tokens");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_NE(j["error"]["message"].get<std::string>().find("bad"), std::string::npos);
}

TEST(ServerApi, StreamChunksAreServerSentEvents) {
  const std::string c = stream_chunk(true, "id1", 5, "m", 2, "hé", "");
  ASSERT_EQ(c.rfind("data: ", 0), 0u);
  ASSERT_EQ(c.substr(c.size() - 2), "\n\n");
  json j = json::parse(c.substr(6));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["index"], 2);
  EXPECT_EQ(j["choices"][0]["delta"]["content"], "hé");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  j = json::parse(stream_chunk(true, "id1", 5, "m", 0, "", "", true).substr(6));
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  j = json::parse(stream_chunk(false, "id1", 5, "m", 0, "", "length").substr(6));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  j = json::parse(stream_usage_chunk(false, "id1", 5, "m", {3, 4}).substr(6));
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["total_tokens"], 7);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  j = json::parse(stream_usage_chunk(true, "id1", 5, "m", {40, 4, 32}).substr(6));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 40);
  EXPECT_EQ(j["usage"]["total_tokens"], 44);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
  EXPECT_EQ(stream_done(), "data: [DONE]\n\n");
  j = json::parse(completion_response(false, "x", 1, "m", {{0, "ab", "stop"}}, {2, 1}));
  EXPECT_EQ(j["choices"][0]["text"], "ab");
  EXPECT_EQ(j["usage"]["completion_tokens"], 1);
}

}  // namespace
}  // namespace ingot::server
