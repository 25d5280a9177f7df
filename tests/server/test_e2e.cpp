// End to end: the server on a loopback ephemeral port with the llama_bf16_tied fixture, driven by
// httplib's client; answers are checked against llm::generate_text / embed / classify_texts
// called directly and against the transformers greedy reference of the fixture.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/allocator.h"
#include "core/device.h"
#include "llm/generate.h"
#include "llm/text/text.h"
#include "models/parity_util.h"
#include "server/server.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::server {
namespace {

using nlohmann::json;

constexpr const char* kModel = "tiny";

/// A server on 127.0.0.1:<free port>, serving from a background thread.
struct Running {
  std::unique_ptr<Server> srv;
  std::thread thread;
  int port = 0;
  Running(const llm::TextModel& tm, ServerOptions o) {
    o.model_id = kModel;
    o.log_requests = false;
    srv = std::make_unique<Server>(tm, o);
    port = srv->bind("127.0.0.1", 0);
    thread = std::thread([this] { srv->run(); });
    httplib::Client c("127.0.0.1", port);
    for (int i = 0; i < 200 && !c.Get("/health"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Running() {
    srv->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    return c;
  }
};

class ServerE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tm_ = new llm::TextModel(llm::load_text_model(models::fixture_dir("llama_bf16_tied"),
                                                  {.dtype = float32, .warn = false}));
    server_ = new Running(*tm_, {});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete tm_;
  }
  static json post(const std::string& path, const json& body, int expect = 200) {
    auto r = server_->client().Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << path;
    if (!r) return {};
    EXPECT_EQ(r->status, expect) << r->body;
    return json::parse(r->body);
  }
  // The text generate_text gives for these prompt ids (greedy, max_tokens).
  static std::string direct(const std::vector<int32_t>& ids, int64_t max_tokens) {
    llm::TextGenerateOptions o;
    o.gen.max_tokens = max_tokens;
    return llm::generate_text(*tm_, ids, o).text;
  }
  // The data payloads of a server-sent event body, [DONE] excluded (checked to be last).
  static std::vector<json> events(const std::string& body) {
    std::vector<json> out;
    size_t at = 0;
    bool done = false;
    while (at < body.size()) {
      size_t end = body.find("\n\n", at);
      EXPECT_NE(end, std::string::npos);
      if (end == std::string::npos) break;
      std::string ev = body.substr(at, end - at);
      EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
      EXPECT_FALSE(done) << "event after [DONE]";
      if (ev == "data: [DONE]")
        done = true;
      else
        out.push_back(json::parse(ev.substr(6)));
      at = end + 2;
    }
    EXPECT_TRUE(done);
    return out;
  }
  static inline llm::TextModel* tm_ = nullptr;
  static inline Running* server_ = nullptr;
};

TEST_F(ServerE2E, GreedyCompletionEqualsGenerateTextAndTransformers) {
  const json ref = models::load_reference("llama_bf16_tied")["greedy"];
  const json single =
      ref["single"].is_string() ? json::parse(ref["single"].get<std::string>()) : ref["single"];
  const json prompts =
      ref["prompts"].is_string() ? json::parse(ref["prompts"].get<std::string>()) : ref["prompts"];
  // Prompt 0's reference continuation has no EOS id: the server (stopping at EOS) matches it.
  const auto ids = prompts[0].get<std::vector<int32_t>>();
  const auto want = single[0].get<std::vector<int32_t>>();
  json r =
      post("/v1/completions",
           {{"model", kModel}, {"prompt", ids}, {"max_tokens", want.size()}, {"temperature", 0}});
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["choices"][0]["text"], tm_->tokenizer->decode(want, {.skip_special_tokens = true}));
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(r["usage"]["completion_tokens"], want.size());

  // A text prompt: same as generate_text on the encoded prompt.
  r = post(
      "/v1/completions",
      {{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 0}});
  EXPECT_EQ(r["choices"][0]["text"], direct(llm::encode_prompt(*tm_, "Once upon a time"), 20));
}

TEST_F(ServerE2E, StreamingChunksConcatenateToTheSameText) {
  const std::string want = direct(llm::encode_prompt(*tm_, "Hello"), 24);
  auto res = server_->client().Post("/v1/completions",
                                    json{{"model", kModel},
                                         {"prompt", "Hello"},
                                         {"max_tokens", 24},
                                         {"temperature", 0},
                                         {"stream", true},
                                         {"stream_options", {{"include_usage", true}}}}
                                        .dump(),
                                    "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::vector<json> ev = events(res->body);
  ASSERT_GE(ev.size(), 3u);
  std::string text;
  int finishes = 0;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    EXPECT_EQ(ev[i]["object"], "text_completion");
    text += ev[i]["choices"][0]["text"].get<std::string>();
    if (!ev[i]["choices"][0]["finish_reason"].is_null()) ++finishes;
  }
  EXPECT_EQ(text, want);
  EXPECT_EQ(finishes, 1);
  EXPECT_TRUE(ev.back()["choices"].empty());
  EXPECT_GT(ev.back()["usage"]["completion_tokens"].get<int>(), 0);
}

TEST_F(ServerE2E, ChatGoesThroughTheTemplateStreamedOrNot) {
  const json msgs = json::array({{{"role", "user"}, {"content", "Hi"}}});
  const std::string want = direct(llm::encode_chat(*tm_, msgs.dump()), 16);
  json r = post("/v1/chat/completions",
                {{"model", kModel}, {"messages", msgs}, {"max_tokens", 16}, {"temperature", 0}});
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], want);

  auto res = server_->client().Post("/v1/chat/completions",
                                    json{{"model", kModel},
                                         {"messages", msgs},
                                         {"max_tokens", 16},
                                         {"temperature", 0},
                                         {"stream", true}}
                                        .dump(),
                                    "application/json");
  ASSERT_TRUE(res);
  std::vector<json> ev = events(res->body);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (const json& e : ev) {
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (e["choices"][0]["delta"].contains("content"))
      text += e["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, want);
  EXPECT_FALSE(ev.back()["choices"][0]["finish_reason"].is_null());
}

TEST_F(ServerE2E, LogprobsEqualAFloat64LogSoftmaxOfTheSequence) {
  // The reference: greedy ids from llm::generate, then one full forward pass over prompt +
  // generated ids and a float64 log-softmax (float32 both sides, incremental decode vs one
  // pass: within 2e-4, as llm's score tests).
  const std::vector<int32_t> prompt = llm::encode_prompt(*tm_, "Logprobs of");
  const std::vector<int32_t>& eos = tm_->tokenizer->special_tokens().eos_ids;
  llm::GenerateOptions g;
  g.max_tokens = 10;
  g.stop_ids = eos;
  std::vector<int32_t> gen = llm::generate(*tm_->model, {prompt}, g).tokens[0];
  if (std::find(eos.begin(), eos.end(), gen.back()) != eos.end()) gen.pop_back();  // no entry
  ASSERT_FALSE(gen.empty());
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const Array lg = tm_->model->forward(Array(all, {1, static_cast<int64_t>(all.size())}, int32));
  const std::vector<float> v = lg.to_vector<float>();
  const size_t vocab = static_cast<size_t>(tm_->model->vocab_size());
  auto ref_row = [&](size_t j) {  // log-softmax of the distribution of generated token j
    const size_t at = (prompt.size() - 1 + j) * vocab;
    double mx = -1e300, z = 0;
    for (size_t i = 0; i < vocab; ++i) mx = std::max(mx, double(v[at + i]));
    for (size_t i = 0; i < vocab; ++i) z += std::exp(double(v[at + i]) - mx);
    std::vector<double> row;
    for (size_t i = 0; i < vocab; ++i) row.push_back(double(v[at + i]) - mx - std::log(z));
    return row;
  };
  constexpr double kTol = 2e-4;
  // n 1 runs in the continuous batch, n 2 through generate_text: the same entries.
  for (int n : {1, 2}) {
    const json r = post("/v1/completions", {{"model", kModel},
                                            {"prompt", prompt},
                                            {"max_tokens", 10},
                                            {"temperature", 0},
                                            {"logprobs", 3},
                                            {"n", n}});
    ASSERT_EQ(r["choices"].size(), static_cast<size_t>(n));
    for (const json& c : r["choices"]) {
      const json& lp = c["logprobs"];
      ASSERT_EQ(lp["token_logprobs"].size(), gen.size()) << lp.dump();
      int64_t offset = 0;
      for (size_t j = 0; j < gen.size(); ++j) {
        const std::vector<double> row = ref_row(j);
        std::vector<double> best = row;
        std::sort(best.begin(), best.end(), std::greater<>());
        const double chosen = lp["token_logprobs"][j].get<double>();
        EXPECT_NEAR(chosen, row[static_cast<size_t>(gen[j])], kTol) << "n " << n << " token " << j;
        EXPECT_GE(row[static_cast<size_t>(gen[j])], best[0] - kTol);  // greedy: the most likely
        EXPECT_EQ(lp["text_offset"][j], offset);
        offset += static_cast<int64_t>(utf8::count(lp["tokens"][j].get<std::string>()));
        const json& top = lp["top_logprobs"][j];
        EXPECT_LE(top.size(), 4u);
        for (const auto& [text, x] : top.items()) {
          const double d = x.get<double>();
          EXPECT_TRUE(d == chosen || std::abs(d - best[0]) <= kTol ||
                      std::abs(d - best[1]) <= kTol || std::abs(d - best[2]) <= kTol)
              << "n " << n << " token " << j << " " << text;
        }
      }
    }
  }
  // Chat: logprobs true and top_logprobs 2 give OpenAI's content entries, bytes included.
  const json r =
      post("/v1/chat/completions", {{"model", kModel},
                                    {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                    {"max_tokens", 6},
                                    {"temperature", 0},
                                    {"logprobs", true},
                                    {"top_logprobs", 2}});
  const json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_GE(content.size(), 1u);
  std::string text;
  for (const json& e : content) {
    std::string bytes;
    for (const json& b : e["bytes"]) bytes.push_back(static_cast<char>(b.get<int>()));
    text += bytes;
    ASSERT_EQ(e["top_logprobs"].size(), 2u);
    EXPECT_EQ(e["logprob"], e["top_logprobs"][0]["logprob"]);  // greedy: the most likely
    EXPECT_GE(e["top_logprobs"][0]["logprob"].get<double>(),
              e["top_logprobs"][1]["logprob"].get<double>());
  }
  EXPECT_EQ(r["choices"][0]["message"]["content"], utf8::to_valid_lossy(text));
  // Not asked: null.
  EXPECT_TRUE(
      post("/v1/completions",
           {{"model", kModel}, {"prompt", "x"}, {"max_tokens", 2}})["choices"][0]["logprobs"]
          .is_null());
}

TEST_F(ServerE2E, EchoPrependsThePromptAndScoresItsTokens) {
  // Text: the prompt followed by the completion of the same request without echo (greedy), in
  // the batch (n 1), alone (n 2) and streamed.
  const std::string text = "The quick brown fox";
  const json plain =
      post("/v1/completions",
           {{"model", kModel}, {"prompt", text}, {"max_tokens", 8}, {"temperature", 0}});
  const std::string completion = plain["choices"][0]["text"].get<std::string>();
  ASSERT_FALSE(completion.empty());
  for (int n : {1, 2}) {
    const json r = post("/v1/completions", {{"model", kModel},
                                            {"prompt", text},
                                            {"max_tokens", 8},
                                            {"temperature", 0},
                                            {"echo", true},
                                            {"n", n}});
    ASSERT_EQ(r["choices"].size(), static_cast<size_t>(n));
    for (const json& c : r["choices"]) EXPECT_EQ(c["text"], text + completion) << "n " << n;
    EXPECT_EQ(r["usage"]["completion_tokens"],
              n * plain["usage"]["completion_tokens"].get<int64_t>());
  }

  // Logprobs: the prompt's entries (the first null) are a float64 log-softmax of one forward
  // pass over the prompt (within 2e-4, as the generated tokens' test), then the generated ones.
  const std::string ptext = "Logprobs of";
  const std::vector<int32_t> prompt = llm::encode_prompt(*tm_, ptext);
  ASSERT_GE(prompt.size(), 3u);
  const std::vector<int32_t>& eos = tm_->tokenizer->special_tokens().eos_ids;
  llm::GenerateOptions g;
  g.max_tokens = 6;
  g.stop_ids = eos;
  std::vector<int32_t> gen = llm::generate(*tm_->model, {prompt}, g).tokens[0];
  if (std::find(eos.begin(), eos.end(), gen.back()) != eos.end()) gen.pop_back();
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const Array lg = tm_->model->forward(Array(all, {1, static_cast<int64_t>(all.size())}, int32));
  const std::vector<float> v = lg.to_vector<float>();
  const size_t vocab = static_cast<size_t>(tm_->model->vocab_size());
  auto ref_row = [&](size_t pos) {  // log-softmax of the distribution after position pos
    double mx = -1e300, z = 0;
    for (size_t i = 0; i < vocab; ++i) mx = std::max(mx, double(v[pos * vocab + i]));
    for (size_t i = 0; i < vocab; ++i) z += std::exp(double(v[pos * vocab + i]) - mx);
    std::vector<double> row;
    for (size_t i = 0; i < vocab; ++i) row.push_back(double(v[pos * vocab + i]) - mx - std::log(z));
    return row;
  };
  constexpr double kTol = 2e-4;
  auto check = [&](const json& lp, size_t generated, const std::string& what) {
    ASSERT_EQ(lp["tokens"].size(), prompt.size() + generated) << what << lp.dump();
    ASSERT_EQ(lp["token_logprobs"].size(), prompt.size() + generated) << what;
    EXPECT_TRUE(lp["token_logprobs"][0].is_null()) << what;
    EXPECT_TRUE(lp["top_logprobs"][0].is_null()) << what;
    int64_t offset = 0;
    std::string spelled;  // the prompt's non-special tokens' texts
    for (size_t j = 0; j < prompt.size() + generated; ++j) {
      const std::string tok = lp["tokens"][j].get<std::string>();
      EXPECT_EQ(lp["text_offset"][j], offset) << what << " token " << j;
      const bool special = j < prompt.size() && tm_->tokenizer->is_special(prompt[j]);
      if (!special) offset += static_cast<int64_t>(utf8::count(tok));
      if (j < prompt.size() && !special) spelled += tok;
      if (j == prompt.size()) {  // the completion starts right after the echoed prompt
        EXPECT_EQ(lp["text_offset"][j], static_cast<int64_t>(utf8::count(ptext))) << what;
      }
      if (j == 0) continue;
      const std::vector<double> row = ref_row(j - 1);
      std::vector<double> best = row;
      std::sort(best.begin(), best.end(), std::greater<>());
      const double chosen = lp["token_logprobs"][j].get<double>();
      EXPECT_NEAR(chosen, row[static_cast<size_t>(all[j])], kTol) << what << " token " << j;
      const json& top = lp["top_logprobs"][j];
      EXPECT_GE(top.size(), 1u);
      EXPECT_LE(top.size(), 4u);
      if (j < prompt.size()) {  // the prompt's tokens (ASCII): their text is always there
        EXPECT_TRUE(top.contains(tok)) << what << " token " << j;
        EXPECT_EQ(top.value(tok, 0.0), chosen) << what << " token " << j;
      }
      for (const auto& [t, x] : top.items()) {
        const double d = x.get<double>();
        EXPECT_TRUE(d == chosen || std::abs(d - best[0]) <= kTol || std::abs(d - best[1]) <= kTol ||
                    std::abs(d - best[2]) <= kTol)
            << what << " token " << j << " " << t;
      }
    }
    EXPECT_EQ(spelled, ptext) << what;
  };
  const json base = {{"model", kModel},  {"prompt", ptext}, {"max_tokens", 6},
                     {"temperature", 0}, {"logprobs", 3},   {"echo", true}};
  json batch = post("/v1/completions", base);  // n 1: a row of the continuous batch
  json alone_body = base;
  alone_body["n"] = 2;  // n 2: run alone through generate_text
  json alone = post("/v1/completions", alone_body);
  ASSERT_EQ(alone["choices"].size(), 2u);
  check(batch["choices"][0]["logprobs"], gen.size(), "batch");
  check(alone["choices"][0]["logprobs"], gen.size(), "alone #0");
  check(alone["choices"][1]["logprobs"], gen.size(), "alone #1");
  EXPECT_EQ(batch["choices"][0]["text"], ptext + direct(prompt, 6));
  // The prompt's numbers come from the same computation either way: equal.
  for (size_t j = 0; j < prompt.size(); ++j) {
    EXPECT_EQ(batch["choices"][0]["logprobs"]["token_logprobs"][j],
              alone["choices"][0]["logprobs"]["token_logprobs"][j])
        << j;
    EXPECT_EQ(batch["choices"][0]["logprobs"]["top_logprobs"][j],
              alone["choices"][1]["logprobs"]["top_logprobs"][j])
        << j;
  }

  // Streamed (batch row and alone): the first chunk is the prompt with its entries; the
  // chunks concatenate to the non-streamed text and logprobs.
  for (int n : {1, 2}) {
    json body = base;
    body["stream"] = true;
    body["n"] = n;
    auto res = server_->client().Post("/v1/completions", body.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    std::vector<std::string> texts(static_cast<size_t>(n));
    std::vector<json> merged(static_cast<size_t>(n));
    std::vector<bool> first(static_cast<size_t>(n), true);
    for (const json& e : events(res->body)) {
      const json& c = e["choices"][0];
      const size_t i = c["index"].get<size_t>();
      if (first[i]) {
        EXPECT_EQ(c["text"], ptext) << "n " << n;
        EXPECT_EQ(c["logprobs"]["tokens"].size(), prompt.size()) << "n " << n;
        first[i] = false;
      }
      texts[i] += c["text"].get<std::string>();
      if (!c["logprobs"].is_null())
        for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
          for (const json& x : c["logprobs"][key]) merged[i][key].push_back(x);
    }
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      EXPECT_EQ(batch["choices"][0]["text"], texts[i]) << "n " << n;
      check(merged[i], gen.size(), "streamed n " + std::to_string(n));
      for (size_t j = 0; j < prompt.size(); ++j)
        EXPECT_EQ(merged[i]["token_logprobs"][j],
                  batch["choices"][0]["logprobs"]["token_logprobs"][j]);
    }
  }

  // max_tokens 0 with echo scores the prompt: its text and entries, no completion tokens.
  json score_body = base;
  score_body["max_tokens"] = 0;
  const json scored = post("/v1/completions", score_body);
  EXPECT_EQ(scored["choices"][0]["text"], ptext);
  EXPECT_EQ(scored["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(scored["usage"]["completion_tokens"], 0);
  EXPECT_EQ(scored["usage"]["prompt_tokens"], prompt.size());
  check(scored["choices"][0]["logprobs"], 0, "max_tokens 0");
  for (size_t j = 0; j < prompt.size(); ++j)
    EXPECT_EQ(scored["choices"][0]["logprobs"]["top_logprobs"][j],
              batch["choices"][0]["logprobs"]["top_logprobs"][j]);
  score_body["stream"] = true;
  auto res = server_->client().Post("/v1/completions", score_body.dump(), "application/json");
  ASSERT_TRUE(res);
  std::string streamed;
  for (const json& e : events(res->body)) streamed += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(streamed, ptext);
  // Token ids: their text is echoed (special tokens left out).
  json ids_body = {{"model", kModel}, {"prompt", prompt}, {"max_tokens", 0}, {"echo", true}};
  EXPECT_EQ(post("/v1/completions", ids_body)["choices"][0]["text"], ptext);

  // Bad input: 400s naming the field.
  EXPECT_EQ(post("/v1/completions", {{"model", kModel}, {"prompt", "x"}, {"max_tokens", 0}},
                 400)["error"]["param"],
            "max_tokens");
  EXPECT_EQ(post("/v1/completions", {{"model", kModel}, {"prompt", "x"}, {"echo", "true"}},
                 400)["error"]["param"],
            "echo");
}

TEST_F(ServerE2E, SeededSamplingRepeatsAndNGivesIndexedChoices) {
  const json body = {{"model", kModel},    {"prompt", "Hello"}, {"max_tokens", 8},
                     {"temperature", 1.0}, {"seed", 7},         {"n", 3}};
  json a = post("/v1/completions", body);
  json b = post("/v1/completions", body);
  ASSERT_EQ(a["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a["choices"][i]["index"], i);
    EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]);
  }
}

TEST_F(ServerE2E, EmbeddingsAndClassifyMatchTheLibrary) {
  json r = post("/v1/embeddings", {{"model", kModel}, {"input", {"Hello", "Once upon a time"}}});
  const auto want =
      llm::embed(*tm_->model,
                 {llm::encode_prompt(*tm_, "Hello"), llm::encode_prompt(*tm_, "Once upon a time")},
                 llm::Pooling::last);
  ASSERT_EQ(r["data"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r["data"][i]["index"], i);
    EXPECT_EQ(r["data"][i]["embedding"].get<std::vector<float>>(), want[i]);
  }
  json c = post("/v1/classify", {{"model", kModel},
                                 {"template", "Review: {text} Sentiment:"},
                                 {"labels", {" good", " bad"}},
                                 {"texts", {"fine", "awful"}}});
  const auto probs = llm::classify_texts(*tm_, {"Review: {text} Sentiment:", {" good", " bad"}},
                                         {"fine", "awful"});
  ASSERT_EQ(c["data"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_DOUBLE_EQ(c["data"][i]["probs"][" good"].get<double>(), probs[i][0]);
    EXPECT_EQ(c["data"][i]["label"], probs[i][0] >= probs[i][1] ? " good" : " bad");
  }
}

TEST_F(ServerE2E, BadInputIs400AndTheServerKeepsServing) {
  auto c = server_->client();
  auto expect_400 = [&](const std::string& path, const std::string& body, const char* param) {
    auto r = c.Post(path.c_str(), body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body;
    json e = json::parse(r->body);
    EXPECT_EQ(e["error"]["type"], "invalid_request_error");
    EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
    if (param) {
      EXPECT_EQ(e["error"]["param"], param) << body;
    }
  };
  expect_400("/v1/completions", "{not json", nullptr);
  expect_400("/v1/completions", R"({"model": "tiny", "prompt": "x", "max_tokens": 0})",
             "max_tokens");
  expect_400("/v1/completions", R"({"model": "other", "prompt": "x"})", "model");
  expect_400("/v1/completions", R"({"model": "tiny", "prompt": [1, 99999]})", "prompt");
  // The fixture's context is 256 tokens.
  expect_400("/v1/completions", R"({"model": "tiny", "prompt": "x", "max_tokens": 300})", "prompt");
  expect_400("/v1/completions",
             R"({"model": "tiny", "prompt": "x", "max_tokens": 9223372036854775807})", "prompt");
  std::string longp;
  for (int i = 0; i < 300; ++i) longp += "hello ";
  expect_400("/v1/completions", json{{"model", "tiny"}, {"prompt", longp}}.dump(), "prompt");
  expect_400("/v1/chat/completions", R"({"model": "tiny", "messages": "hi"})", "messages");
  expect_400("/v1/embeddings", R"({"model": "tiny", "input": 3})", "input");
  expect_400("/v1/classify", R"({"model": "tiny", "labels": ["a", "b"]})", "template");
  auto ok = c.Get("/health");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  json m = json::parse(c.Get("/v1/models")->body);
  EXPECT_EQ(m["data"][0]["id"], kModel);
}

TEST_F(ServerE2E, ConcurrentRequestsAreAllAnswered) {
  const std::vector<std::string> prompts = {"Hello", "Once upon a time", "The",
                                            "A cat", "Hi there",         "x y z"};
  std::vector<std::string> want;
  for (const auto& p : prompts) want.push_back(direct(llm::encode_prompt(*tm_, p), 10));
  std::vector<std::string> got(prompts.size() * 2);
  std::vector<int> status(got.size(), 0);
  std::vector<std::thread> ts;
  for (size_t i = 0; i < got.size(); ++i)
    ts.emplace_back([&, i] {
      auto c = server_->client();
      const bool stream = i % 2 == 1;
      auto r = c.Post("/v1/completions",
                      json{{"model", kModel},
                           {"prompt", prompts[i / 2]},
                           {"max_tokens", 10},
                           {"temperature", 0},
                           {"stream", stream}}
                          .dump(),
                      "application/json");
      if (!r) return;
      status[i] = r->status;
      if (!stream) {
        got[i] = json::parse(r->body)["choices"][0]["text"];
      } else {
        for (const json& e : events(r->body)) got[i] += e["choices"][0]["text"].get<std::string>();
      }
    });
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(status[i], 200) << i;
    EXPECT_EQ(got[i], want[i / 2]) << i;
  }
}

// Reads /metrics and returns the value of the line starting with `key ` (-1 when absent).
double metric(httplib::Client& c, const std::string& key) {
  auto r = c.Get("/metrics");
  if (!r) return -1;
  const std::string& b = r->body;
  size_t at = b.find("\n" + key + " ");
  if (at == std::string::npos) return -1;
  return std::stod(b.substr(at + key.size() + 2));
}

TEST_F(ServerE2E, MetricsCountRequestsAndTokens) {
  auto c = server_->client();
  const double before = metric(c, "ingot_generation_tokens_total");
  const double reqs_before =
      metric(c, "ingot_requests_total{path=\"/v1/completions\",status=\"200\"}");
  json r = post("/v1/completions",
                {{"model", kModel}, {"prompt", "Hello"}, {"max_tokens", 5}, {"temperature", 0}});
  const int got = r["usage"]["completion_tokens"];
  EXPECT_EQ(metric(c, "ingot_generation_tokens_total"), before + got);
  EXPECT_EQ(metric(c, "ingot_requests_total{path=\"/v1/completions\",status=\"200\"}"),
            std::max(0.0, reqs_before) + 1);
  EXPECT_EQ(metric(c, "ingot_queue_depth"), 0);
  EXPECT_GT(metric(c, "ingot_memory_peak_bytes"), 0);
  EXPECT_GE(metric(c, "ingot_decode_tokens_per_second"), 0);
}

TEST_F(ServerE2E, ClientDisconnectCancelsAStream) {
  auto c = server_->client();
  const double before = metric(c, "ingot_requests_cancelled_total");
  const double blocks = metric(c, "ingot_kv_blocks_in_use");  // the prompt cache's, if any
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string body = json{{"model", kModel},    {"prompt", "Hello"}, {"max_tokens", 240},
                                {"temperature", 1.0}, {"seed", 3},         {"stream", true}}
                               .dump();
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  char buf[256];
  ASSERT_GT(read(fd, buf, sizeof buf), 0);  // the stream started
  close(fd);
  // The next write fails, the stream's job sees it and stops; the server keeps serving.
  double now = before;
  for (int i = 0; i < 500 && now <= before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    now = metric(c, "ingot_requests_cancelled_total");
  }
  EXPECT_EQ(now, before + 1);
  // The cancelled row's KV blocks went back to the pool ("Hello" has no whole block to store).
  for (int i = 0; i < 200 && metric(c, "ingot_kv_blocks_in_use") != blocks; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(metric(c, "ingot_kv_blocks_in_use"), blocks);
  EXPECT_EQ(metric(c, "ingot_kv_blocks_reserved"), 0);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(ServerE2E, RequestsWaitingTogetherAreBatched) {
  auto c = server_->client();
  const double calls = metric(c, "ingot_generate_calls_total");
  const double rows = metric(c, "ingot_generate_rows_total");
  const std::vector<std::string> prompts = {"Hello", "Once upon a time", "The", "A cat", "x"};
  std::vector<std::string> want;
  for (const auto& p : prompts) want.push_back(direct(llm::encode_prompt(*tm_, p), 12));
  server_->srv->hold(true);
  std::vector<std::string> got(prompts.size());
  std::vector<std::thread> ts;
  for (size_t i = 0; i < prompts.size(); ++i)
    ts.emplace_back([&, i] {
      auto cl = server_->client();
      auto r = cl.Post("/v1/completions",
                       json{{"model", kModel},
                            {"prompt", prompts[i]},
                            {"max_tokens", 4 + 2 * i},
                            {"temperature", 0},
                            {"stream", i == 2}}
                           .dump(),
                       "application/json");
      if (!r || r->status != 200) return;
      if (i != 2)
        got[i] = json::parse(r->body)["choices"][0]["text"];
      else
        for (const json& e : events(r->body)) got[i] += e["choices"][0]["text"].get<std::string>();
    });
  for (int i = 0; i < 1000 && server_->srv->queue_depth() < prompts.size(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(server_->srv->queue_depth(), prompts.size());
  server_->srv->hold(false);
  for (auto& t : ts) t.join();
  // One generate call with a row per request; each row stops at its own max_tokens.
  EXPECT_EQ(metric(c, "ingot_generate_calls_total"), calls + 1);
  EXPECT_EQ(metric(c, "ingot_generate_rows_total"), rows + static_cast<double>(prompts.size()));
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(got[i], direct(llm::encode_prompt(*tm_, prompts[i]), 4 + 2 * i)) << i;
}

// Continuous batching: streamed requests (greedy and seeded sampling, stop strings, different
// max_tokens, chat and completions) join a batch while a long stream runs; each stream's text
// equals generate_text run alone on the same request, and decode steps ran several rows at once.
TEST_F(ServerE2E, StreamsJoiningARunningBatchMatchRunningAlone) {
  auto c = server_->client();
  const double steps0 = metric(c, "ingot_decode_steps_total");
  const double rows0 = metric(c, "ingot_decode_step_rows_total");
  struct Case {
    std::string prompt;
    int max_tokens;
    float temperature;
    std::vector<std::string> stop;
  };
  const std::vector<Case> cases = {{"Hello", 200, 0.0f, {}},
                                   {"Once upon a time", 30, 0.0f, {}},
                                   {"The", 17, 0.0f, {" the"}},
                                   {"A cat", 25, 0.9f, {}},
                                   {"x", 9, 0.0f, {}},
                                   {"In 1492,", 40, 0.7f, {"e"}},
                                   // longer than the running batch's columns when it joins
                                   {"The quick brown fox jumps over the lazy dog. The quick brown "
                                    "fox jumps over the lazy dog. The quick brown fox jumps over "
                                    "the lazy dog.",
                                    20,
                                    0.0f,
                                    {}}};
  auto want = [&](const Case& k) {
    llm::TextGenerateOptions o;
    o.gen.max_tokens = k.max_tokens;
    o.gen.sampler.temperature = k.temperature;
    o.gen.sampler.seed = 7;
    o.stop_strings = k.stop;
    return llm::generate_text(*tm_, llm::encode_prompt(*tm_, k.prompt), o).text;
  };
  std::vector<std::string> got(cases.size());
  std::vector<int> status(cases.size(), 0);
  std::atomic<bool> first_started{false};
  auto run = [&](size_t i) {
    auto cl = server_->client();
    json body = {{"model", kModel},
                 {"prompt", cases[i].prompt},
                 {"max_tokens", cases[i].max_tokens},
                 {"temperature", cases[i].temperature},
                 {"seed", 7},
                 {"stream", true}};
    if (!cases[i].stop.empty()) body["stop"] = cases[i].stop;
    std::string raw;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      raw.append(d, n);
      if (i == 0) first_started = true;
      return true;
    };
    auto r = cl.send(req);
    if (!r) return;
    status[i] = r->status;
    for (const json& e : events(raw)) {
      if (!e.contains("choices") || e["choices"].empty()) continue;
      got[i] += e["choices"][0]["text"].get<std::string>();
    }
  };
  std::vector<std::thread> ts;
  ts.emplace_back(run, 0);
  for (int i = 0; i < 2000 && !first_started; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(first_started.load());
  for (size_t i = 1; i < cases.size(); ++i) ts.emplace_back(run, i);
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(status[i], 200) << i;
    EXPECT_EQ(got[i], want(cases[i])) << i << ": " << cases[i].prompt;
  }
  // Some step ran more than one row (all alone would give rows == steps).
  const double steps = metric(c, "ingot_decode_steps_total") - steps0;
  const double rows = metric(c, "ingot_decode_step_rows_total") - rows0;
  EXPECT_GT(steps, 0);
  EXPECT_GT(rows, steps);
}

// Prompt ids of the fixture's vocabulary (384), deterministic, never EOS/BOS/pad (0-2).
std::vector<int32_t> ids_of(size_t n, int32_t seed) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(3 + static_cast<int32_t>((static_cast<size_t>(seed) * 131 + i * 37) % 380));
  return out;
}

// A server of its own (prompt cache state and options known), with one helper to post.
struct OwnServer {
  llm::TextModel tm = llm::load_text_model(models::fixture_dir("llama_bf16_tied"),
                                           {.dtype = float32, .warn = false});
  std::unique_ptr<Running> s;
  explicit OwnServer(ServerOptions o) { s = std::make_unique<Running>(tm, o); }
  json complete(const std::vector<int32_t>& ids, int max_tokens) {
    auto r = s->client().Post(
        "/v1/completions",
        json{{"model", kModel}, {"prompt", ids}, {"max_tokens", max_tokens}, {"temperature", 0}}
            .dump(),
        "application/json");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body);
  }
  std::string direct(const std::vector<int32_t>& ids, int64_t max_tokens) {
    llm::TextGenerateOptions o;
    o.gen.max_tokens = max_tokens;
    return llm::generate_text(tm, ids, o).text;
  }
};

TEST(ServerPromptCache, PrefixesAreReusedInWholeBlocksWithTheSameAnswers) {
  ServerOptions o;
  o.prompt_cache_block = 4;
  OwnServer on(o);
  o.prompt_cache_bytes = 0;
  OwnServer off(o);
  const std::vector<int32_t> p = ids_of(30, 1);
  std::vector<int32_t> q(p.begin(), p.begin() + 18);
  for (int32_t id : ids_of(10, 2)) q.push_back(id == p[18] ? id + 1 : id);
  // First p (nothing cached), p again (its whole blocks below its 30 ids: 28), then q, which
  // shares 18 ids with p: 4 whole blocks (16).
  struct Case {
    const std::vector<int32_t>& ids;
    int cached;
  };
  const std::vector<Case> cases = {{p, 0}, {p, 28}, {q, 16}};
  for (const Case& k : cases) {
    json a = on.complete(k.ids, 8), b = off.complete(k.ids, 8);
    const std::string want = on.direct(k.ids, 8);
    EXPECT_EQ(a["choices"][0]["text"], want);
    EXPECT_EQ(b["choices"][0]["text"], want);
    EXPECT_EQ(a["usage"]["prompt_tokens"], k.ids.size());
    EXPECT_EQ(a["usage"]["prompt_tokens_details"]["cached_tokens"], k.cached);
    EXPECT_EQ(b["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  }
  // Streamed with usage: the same count in the usage chunk.
  auto r = on.s->client().Post("/v1/completions",
                               json{{"model", kModel},
                                    {"prompt", q},
                                    {"max_tokens", 3},
                                    {"temperature", 0},
                                    {"stream", true},
                                    {"stream_options", {{"include_usage", true}}}}
                                   .dump(),
                               "application/json");
  ASSERT_TRUE(r);
  const size_t at = r->body.rfind("\"usage\"");
  ASSERT_NE(at, std::string::npos);
  // q's own 28 ids (7 blocks) were stored when it ran.
  EXPECT_NE(r->body.find("\"prompt_tokens_details\":{\"cached_tokens\":24}", at), std::string::npos)
      << r->body;
  auto c = on.s->client();
  EXPECT_EQ(metric(c, "ingot_prompt_cached_tokens_total"), 0 + 28 + 16 + 24);
  EXPECT_GT(metric(c, "ingot_prompt_cache_blocks"), 0);
  EXPECT_GT(metric(c, "ingot_prompt_cache_bytes"), 0);
  auto c2 = off.s->client();
  EXPECT_EQ(metric(c2, "ingot_prompt_cached_tokens_total"), 0);
  EXPECT_EQ(metric(c2, "ingot_prompt_cache_blocks"), 0);
  // Seeded sampling from a cached prefix: the text of generate_text with that seed.
  r = on.s->client().Post(
      "/v1/completions",
      json{{"model", kModel}, {"prompt", p}, {"max_tokens", 12}, {"temperature", 0.9}, {"seed", 5}}
          .dump(),
      "application/json");
  ASSERT_TRUE(r);
  const json js = json::parse(r->body);
  EXPECT_EQ(js["usage"]["prompt_tokens_details"]["cached_tokens"], 28);
  llm::TextGenerateOptions so;
  so.gen.max_tokens = 12;
  so.gen.sampler.temperature = 0.9f;
  so.gen.sampler.seed = 5;
  EXPECT_EQ(js["choices"][0]["text"], llm::generate_text(on.tm, p, so).text);
}

TEST(ServerChunkedPrefill, ALongPromptJoinsInPassesWhileAStreamKeepsRunning) {
  ServerOptions o;
  o.prefill_chunk = 8;
  o.prompt_cache_bytes = 0;
  OwnServer srv(o);
  auto c = srv.s->client();
  // "Hello" runs the whole 200 tokens on the fixture (no EOS), so it runs while B joins.
  const std::vector<int32_t> a = llm::encode_prompt(srv.tm, "Hello"), b = ids_of(120, 6);
  std::string got_a;
  std::atomic<bool> started{false};
  std::thread ta([&] {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{
        {"model", kModel},
        {"prompt", a},
        {"max_tokens", 200},
        {"temperature", 0},
        {"stream",
         true}}.dump();
    req.set_header("Content-Type", "application/json");
    std::string raw;
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      raw.append(d, n);
      started = true;
      return true;
    };
    auto cl = srv.s->client();
    auto r = cl.send(req);
    if (!r) return;
    // The text of every completion chunk ("data: {...}" events, "[DONE]" last).
    for (size_t at = 0, end; (end = raw.find("\n\n", at)) != std::string::npos; at = end + 2) {
      const std::string ev = raw.substr(at + 6, end - at - 6);
      if (ev == "[DONE]") break;
      const json j = json::parse(ev);
      if (!j["choices"].empty()) got_a += j["choices"][0]["text"].get<std::string>();
    }
  });
  for (int i = 0; i < 2000 && !started; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(started.load());
  const double passes0 = metric(c, "ingot_prefill_passes_total");
  const double between0 = metric(c, "ingot_decode_steps_while_joining_total");
  json rb = srv.complete(b, 5);
  ta.join();
  EXPECT_EQ(rb["choices"][0]["text"], srv.direct(b, 5));
  EXPECT_EQ(got_a, srv.direct(a, 200));
  // B's 120 ids take 15 passes of 8; the stream steps between each two of them.
  EXPECT_EQ(metric(c, "ingot_prefill_passes_total") - passes0, 15);
  EXPECT_EQ(metric(c, "ingot_decode_steps_while_joining_total") - between0, 14);
}

TEST(ServerOptionsCheck, BadSchedulerOptionsAreInvalidArgument) {
  llm::TextModel tm = llm::load_text_model(models::fixture_dir("llama_bf16_tied"),
                                           {.dtype = float32, .warn = false});
  auto bad = [&](auto set) {
    ServerOptions o;
    set(o);
    EXPECT_THROW(Server(tm, o), InvalidArgument);
  };
  bad([](ServerOptions& o) { o.admit_wait_ms = -1; });
  bad([](ServerOptions& o) { o.admit_wait_ms = 10001; });
  bad([](ServerOptions& o) { o.prefill_chunk = -1; });
  bad([](ServerOptions& o) { o.prompt_cache_bytes = -1; });
  bad([](ServerOptions& o) { o.prompt_cache_block = 0; });
  bad([](ServerOptions& o) { o.max_batch = 0; });
  bad([](ServerOptions& o) { o.cache_idle_seconds = -1; });
  bad([](ServerOptions& o) { o.cache_idle_seconds = 3601; });
  bad([](ServerOptions& o) { o.kv_budget_bytes = -1; });
}

TEST(ServerMemory, AnIdleServerGivesTheAllocatorCacheBack) {
  ServerOptions o;
  OwnServer srv(o);
  auto c = srv.s->client();
  const double released0 = metric(c, "ingot_memory_cache_released_bytes_total");
  // A request leaves freed buffers in the device allocator's cache...
  srv.complete(ids_of(40, 3), 20);
  // ...which a second of idleness gives back (nothing else runs in this process now).
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    back = metric(c, "ingot_memory_cache_bytes") == 0 &&
           metric(c, "ingot_memory_cache_released_bytes_total") > released0;
  }
  EXPECT_TRUE(back);
  EXPECT_GT(metric(c, "ingot_process_resident_bytes"), 0);
}

TEST(ServerAuth, ApiKeyAndFullQueue) {
  llm::TextModel tm = llm::load_text_model(models::fixture_dir("llama_bf16_tied"),
                                           {.dtype = float32, .warn = false});
  ServerOptions o;
  o.api_key = "sekrit";
  o.max_queue = 2;
  Running s(tm, o);
  auto c = s.client();
  const std::string body = R"({"model": "tiny", "prompt": "Hello", "max_tokens": 2})";
  auto r = c.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  EXPECT_EQ(c.Get("/health")->status, 200);  // health needs no key
  c.set_bearer_token_auth("wrong");
  EXPECT_EQ(c.Post("/v1/completions", body, "application/json")->status, 401);
  c.set_bearer_token_auth("sekrit");
  EXPECT_EQ(c.Get("/v1/models")->status, 200);
  // Two requests wait (the scheduler is held), the third is refused.
  s.srv->hold(true);
  std::vector<std::thread> ts;
  std::vector<int> status(2, 0);
  for (int i = 0; i < 2; ++i)
    ts.emplace_back([&, i] {
      auto cl = s.client();
      cl.set_bearer_token_auth("sekrit");
      auto rr = cl.Post("/v1/completions", body, "application/json");
      if (rr) status[i] = rr->status;
    });
  for (int i = 0; i < 1000 && s.srv->queue_depth() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  r = c.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "queue_full");
  auto stream = c.Post("/v1/completions",
                       R"({"model": "tiny", "prompt": "Hello", "max_tokens": 2, "stream": true})",
                       "application/json");
  ASSERT_TRUE(stream);
  EXPECT_EQ(stream->status, 429);
  s.srv->hold(false);
  for (auto& t : ts) t.join();
  EXPECT_EQ(status, (std::vector<int>{200, 200}));
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("ingot_requests_rejected_total 2\n"), std::string::npos);
}

// Keys + values of one token of the fixture in float32, from its config.json (not the server's
// model object): 2 (keys, values) x layers x KV heads x head_dim x 4 bytes.
int64_t fixture_kv_bytes_per_token() {
  std::ifstream f(models::fixture_dir("llama_bf16_tied") + "/config.json");
  const json cfg = json::parse(f);
  return 2 * cfg["num_hidden_layers"].get<int64_t>() * cfg["num_key_value_heads"].get<int64_t>() *
         cfg["head_dim"].get<int64_t>() * 4;
}

// Two requests running together with a common prefix: their block tables point at the same
// prompt-cache blocks (/metrics counts every block once) and admission counts the shared blocks
// once, against the same requests on a server without the cache (every row its own blocks, so
// under the same budget one waits for the other); answers equal generate_text's.
TEST(ServerPromptCache, RowsWithACommonPrefixShareItsBlocks) {
  ServerOptions o;
  o.prompt_cache_block = 4;
  o.kv_budget_bytes = 12 * 4 * fixture_kv_bytes_per_token();  // 12 blocks of 4 positions
  OwnServer on(o);
  o.prompt_cache_bytes = 0;
  OwnServer off(o);
  // p (30 ids) runs first: its 7 whole blocks (28 ids) stay in the prompt cache.
  const std::vector<int32_t> p = ids_of(30, 3);
  EXPECT_EQ(on.complete(p, 5)["choices"][0]["text"], on.direct(p, 5));
  auto c = on.s->client();
  for (int i = 0; i < 200 && metric(c, "ingot_kv_blocks_in_use") != 7; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(metric(c, "ingot_kv_blocks_in_use"), 7);
  EXPECT_EQ(metric(c, "ingot_prompt_cache_blocks"), 7);
  // q1 and q2: p's first 28 ids and 2 of their own (30 ids), 5 tokens each. Each can reach
  // 30 + 5 = 35 positions: 9 blocks, 7 of them the shared ones, so together they reserve
  // 7 + 2 + 2 = 11 of the 12 blocks and join as one group; while both run (after 3 decode
  // steps: positions up to 32) 11 blocks are in use. Without sharing: 9 + 9 > 12, one at a
  // time.
  std::vector<int32_t> q1(p.begin(), p.begin() + 28), q2 = q1;
  for (int32_t id : ids_of(2, 4)) q1.push_back(id);
  for (int32_t id : ids_of(2, 5)) q2.push_back(id);
  for (OwnServer* s : {&on, &off}) {
    s->s->srv->hold(true);
    std::vector<json> got(2);
    std::thread t1([&] { got[0] = s->complete(q1, 5); });
    std::thread t2([&] { got[1] = s->complete(q2, 5); });
    for (int i = 0; i < 2000 && s->s->srv->queue_depth() < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    s->s->srv->hold(false);
    t1.join();
    t2.join();
    EXPECT_EQ(got[0]["choices"][0]["text"], on.direct(q1, 5));
    EXPECT_EQ(got[1]["choices"][0]["text"], on.direct(q2, 5));
    const int64_t cached = s == &on ? 28 : 0;
    EXPECT_EQ(got[0]["usage"]["prompt_tokens_details"]["cached_tokens"], cached);
    EXPECT_EQ(got[1]["usage"]["prompt_tokens_details"]["cached_tokens"], cached);
  }
  EXPECT_EQ(metric(c, "ingot_kv_blocks_peak"), 7 + 2 + 2);
  EXPECT_EQ(metric(c, "ingot_kv_cache_peak_bytes"), 11 * on.s->srv->kv_block_bytes());
  EXPECT_EQ(metric(c, "ingot_requests_waited_for_kv_total"), 0);
  auto c2 = off.s->client();
  EXPECT_EQ(metric(c2, "ingot_kv_blocks_peak"), 9);
  EXPECT_EQ(metric(c2, "ingot_requests_waited_for_kv_total"), 1);
  // Idle: only the prompt cache's blocks stay (q1's and q2's have no new whole block).
  for (int i = 0; i < 200 && metric(c, "ingot_kv_blocks_in_use") != 7; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(metric(c, "ingot_kv_blocks_in_use"), 7);
  EXPECT_EQ(metric(c2, "ingot_kv_blocks_in_use"), 0);
  EXPECT_EQ(metric(c, "ingot_kv_blocks_reserved"), 0);
}

TEST(ServerKvBudget, RowsJoinOnlyWhileTheirKeysAndValuesFitAndTheRestWait) {
  const int64_t per_token = fixture_kv_bytes_per_token();
  // Keys/values are blocks of 16 positions (prompt_cache_block): each request below (8-12
  // prompt ids + 12 tokens) can reach 2 blocks, so a budget of 5.5 blocks (5 whole) lets at
  // most 2 run together.
  const int64_t block = 16 * per_token;
  ServerOptions o;
  o.kv_budget_bytes = block * 11 / 2;
  o.prompt_cache_bytes = 0;
  OwnServer srv(o);
  EXPECT_EQ(srv.s->srv->kv_bytes_per_token(), per_token);
  EXPECT_EQ(srv.s->srv->kv_budget(), block * 11 / 2);
  EXPECT_EQ(srv.s->srv->kv_block_bytes(), block);
  EXPECT_EQ(srv.s->srv->kv_max_blocks(), 5);
  auto c = srv.s->client();
  // Five requests wait together (scheduler held), then are released at once.
  srv.s->srv->hold(true);
  constexpr int kN = 5;
  std::vector<json> got(kN);
  std::vector<std::thread> ts;
  for (int i = 0; i < kN; ++i)
    ts.emplace_back([&, i] { got[static_cast<size_t>(i)] = srv.complete(ids_of(8 + i, i), 12); });
  for (int i = 0; i < 2000 && srv.s->srv->queue_depth() < kN; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(srv.s->srv->queue_depth(), static_cast<size_t>(kN));
  srv.s->srv->hold(false);
  for (auto& t : ts) t.join();
  for (int i = 0; i < kN; ++i)
    EXPECT_EQ(got[static_cast<size_t>(i)]["choices"][0]["text"], srv.direct(ids_of(8 + i, i), 12))
        << i;
  // Some waited for room (not refused: every answer above is a 200); the blocks in use never
  // went over the budget, and two rows did run together (2 blocks each).
  EXPECT_GE(metric(c, "ingot_requests_waited_for_kv_total"), 1);
  EXPECT_EQ(metric(c, "ingot_kv_budget_bytes"), block * 11 / 2);
  EXPECT_EQ(metric(c, "ingot_kv_blocks_total"), 5);
  EXPECT_LE(metric(c, "ingot_kv_cache_peak_bytes"), block * 11 / 2);
  EXPECT_EQ(metric(c, "ingot_kv_cache_peak_bytes"), 4 * block);
  EXPECT_EQ(metric(c, "ingot_kv_blocks_peak"), 4);
  EXPECT_GT(metric(c, "ingot_decode_step_rows_total"), metric(c, "ingot_decode_steps_total"));
  // Idle again: nothing reserved (published after the last answer went out, so wait for it).
  for (int i = 0; i < 200 && metric(c, "ingot_kv_reserved_bytes") != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(metric(c, "ingot_kv_reserved_bytes"), 0);
  EXPECT_EQ(metric(c, "ingot_kv_blocks_reserved"), 0);
  EXPECT_EQ(metric(c, "ingot_kv_blocks_in_use"), 0);  // every row gave its blocks back
}

TEST(ServerKvBudget, StreamsWaitingForRoomAreServedInOrder) {
  const int64_t row = 16 * fixture_kv_bytes_per_token();  // one block: 6 ids + 9 tokens fit
  ServerOptions o;
  o.kv_budget_bytes = row;  // one row at a time
  OwnServer srv(o);
  srv.s->srv->hold(true);
  constexpr int kN = 3;
  std::vector<std::string> got(kN);
  std::vector<int> status(kN, 0);
  std::vector<std::thread> ts;
  for (int i = 0; i < kN; ++i)
    ts.emplace_back([&, i] {
      auto cl = srv.s->client();
      auto r = cl.Post("/v1/completions",
                       json{{"model", kModel},
                            {"prompt", ids_of(6, 10 + i)},
                            {"max_tokens", 9},
                            {"temperature", 0},
                            {"stream", true}}
                           .dump(),
                       "application/json");
      if (!r) return;
      status[static_cast<size_t>(i)] = r->status;
      for (size_t at = 0, end; (end = r->body.find("\n\n", at)) != std::string::npos;
           at = end + 2) {
        const std::string ev = r->body.substr(at + 6, end - at - 6);
        if (ev == "[DONE]") break;
        const json j = json::parse(ev);
        if (j.contains("error")) got[static_cast<size_t>(i)] += "<error>";
        if (!j["choices"].empty())
          got[static_cast<size_t>(i)] += j["choices"][0]["text"].get<std::string>();
      }
    });
  for (int i = 0; i < 2000 && srv.s->srv->queue_depth() < kN; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  srv.s->srv->hold(false);
  for (auto& t : ts) t.join();
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(status[static_cast<size_t>(i)], 200);
    EXPECT_EQ(got[static_cast<size_t>(i)], srv.direct(ids_of(6, 10 + i), 9)) << i;
  }
  auto c = srv.s->client();
  EXPECT_GE(metric(c, "ingot_requests_waited_for_kv_total"), 1);
  EXPECT_EQ(metric(c, "ingot_kv_cache_peak_bytes"), row);
  // One row at a time: every decode step had one row.
  EXPECT_EQ(metric(c, "ingot_decode_step_rows_total"), metric(c, "ingot_decode_steps_total"));
}

TEST(ServerKvBudget, ARequestThatCanNeverFitIs400WithItsSizes) {
  const int64_t per_token = fixture_kv_bytes_per_token();
  ServerOptions o;
  o.kv_budget_bytes = 32 * per_token;  // 2 blocks of 16 positions
  OwnServer srv(o);
  auto c = srv.s->client();
  // 5 + 40 positions: 3 blocks.
  const std::vector<json> bodies = {
      {{"model", kModel}, {"prompt", ids_of(5, 1)}, {"max_tokens", 40}},
      {{"model", kModel}, {"prompt", ids_of(5, 1)}, {"max_tokens", 40}, {"stream", true}},
      {{"model", kModel}, {"prompt", ids_of(5, 1)}, {"max_tokens", 40}, {"n", 2}},
      {{"model", kModel}, {"prompt", ids_of(5, 1)}}};  // default max_tokens
  for (const json& b : bodies) {
    auto r = c.Post("/v1/completions", b.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << b.dump();
    const json e = json::parse(r->body)["error"];
    EXPECT_EQ(e["code"], "kv_budget_exceeded");
    EXPECT_EQ(e["param"], "max_tokens");
    EXPECT_EQ(e["type"], "invalid_request_error");
    const std::string msg = e["message"];
    if (b.contains("max_tokens")) {
      EXPECT_NE(msg.find("3 KV blocks (" + std::to_string(48 * per_token) + " bytes"),
                std::string::npos)
          << msg;
    }
    EXPECT_NE(msg.find("2 blocks (" + std::to_string(32 * per_token) + " bytes)"),
              std::string::npos)
        << msg;
  }
  auto chat = c.Post("/v1/chat/completions",
                     json{{"model", kModel},
                          {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                          {"max_tokens", 40}}
                         .dump(),
                     "application/json");
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 400);
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(metric(c, "ingot_requests_running"), 0);
}

TEST(ServerKvBudget, DefaultIsHalfTheAvailableMemoryOnTheCpuAndZeroIsNoLimit) {
  llm::TextModel tm = llm::load_text_model(models::fixture_dir("llama_bf16_tied"),
                                           {.dtype = float32, .warn = false});
  int64_t avail_kib = 0;
  {
    std::ifstream f("/proc/meminfo");
    std::string key;
    while (f >> key) {
      if (key == "MemAvailable:") {
        f >> avail_kib;
        break;
      }
      std::getline(f, key);
    }
  }
  ASSERT_GT(avail_kib, 0);
  {
    Server s(tm, ServerOptions{});
    // MemAvailable moves while other processes run: within 25% of half of it.
    const double half = static_cast<double>(avail_kib) * 1024 / 2;
    EXPECT_GT(static_cast<double>(s.kv_budget()), 0.75 * half);
    EXPECT_LT(static_cast<double>(s.kv_budget()), 1.25 * half);
  }
  ServerOptions o;
  o.kv_budget_bytes = 0;
  Server s(tm, o);
  EXPECT_EQ(s.kv_budget(), 0);
  o.kv_budget_bytes = -1;
  EXPECT_THROW(Server(tm, o), InvalidArgument);
}

// On a GPU the default is half of what the device's allocator can still get (its free memory
// plus its cache). Skips without a CUDA device.
TEST(ServerKvBudget, DefaultOnAGpuIsHalfItsAvailableMemory) {
  if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: the GPU default untested";
  const Device cuda{Device::Type::cuda, 0};
  llm::TextModel tm = llm::load_text_model(models::fixture_dir("llama_bf16_tied"),
                                           {.dtype = float32, .warn = false, .device = cuda});
  const double half = static_cast<double>(memory::available(cuda)) / 2;
  ASSERT_GT(half, 0.0);
  Server s(tm, ServerOptions{});
  // Other processes may use the card meanwhile: within 25% of half of it.
  EXPECT_GT(static_cast<double>(s.kv_budget()), 0.75 * half);
  EXPECT_LT(static_cast<double>(s.kv_budget()), 1.25 * half);
}

}  // namespace
}  // namespace ingot::server
