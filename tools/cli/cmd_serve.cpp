// `ingot serve`: the OpenAI-compatible HTTP server (tools/server, docs/server.md).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "command.h"
#include "llm/text/text.h"
#include "llm_common.h"
#include "server/server.h"
#include "text_common.h"

namespace ingot::cli {
namespace {

struct ServeArgs {
  ModelArgs model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int max_batch = 16;
  int max_queue = 64;
  int admit_wait_ms = 20;
  int64_t prefill_chunk = 512;
  int64_t prompt_cache_mb = 256;
  int64_t prompt_cache_block = 16;
  int64_t max_context = 0;
  int64_t default_max_tokens = 256;
  int64_t kv_budget_mb = -1;  // -1: the server's default (half the available memory)
  std::string api_key;
  std::string model_name;
  bool quiet = false;
};

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal.store(sig);
}

int run_serve(const ServeArgs& a) {
  // SIGINT / SIGTERM set a flag that a watcher thread turns into a clean stop (library threads
  // such as OpenBLAS's may exist before main, so signals cannot be routed by masks alone).
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  llm::TextModel tm = load_text_model(a.model.dir, base_load_options(a.model));
  apply_adapter(*tm.model, a.model);

  server::ServerOptions o;
  std::string name = a.model_name;
  if (name.empty()) {
    std::filesystem::path p(a.model.dir);
    if (!p.has_filename()) p = p.parent_path();
    name = p.filename().string();
  }
  o.model_id = name;
  o.api_key = a.api_key;
  o.max_context = a.max_context;
  o.max_queue = a.max_queue;
  o.max_batch = a.max_batch;
  o.admit_wait_ms = a.admit_wait_ms;
  o.prefill_chunk = a.prefill_chunk;
  o.prompt_cache_bytes = a.prompt_cache_mb << 20;
  o.prompt_cache_block = a.prompt_cache_block;
  o.default_max_tokens = a.default_max_tokens;
  if (a.kv_budget_mb >= 0) o.kv_budget_bytes = a.kv_budget_mb << 20;
  o.stop_ids = generation_config_eos(a.model.dir);
  o.log_requests = !a.quiet;
  server::Server srv(std::move(tm), o);
  const int port = srv.bind(a.host, a.port);
  std::fprintf(stderr, "serve: model '%s' on http://%s:%d (device %s)\n", name.c_str(),
               a.host.c_str(), port, select_device(a.model.device).str().c_str());
  std::atomic<bool> served{false};
  std::thread watcher([&srv, &served] {
    while (g_signal.load() == 0 && !served.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (served.load()) return;
    std::fprintf(stderr, "serve: signal %d, stopping\n", g_signal.load());
    srv.stop();
  });
  srv.run();
  served.store(true);
  watcher.join();
  return 0;
}

const Registrar reg(
    {"serve", "Serve the model over an OpenAI-compatible HTTP API (docs/server.md)",
     [](CLI::App& app) {
       auto a = std::make_shared<ServeArgs>();
       add_model_options(app, a->model);
       app.add_option("--host", a->host, "Address to listen on (default 127.0.0.1)");
       app.add_option("--port", a->port, "Port (default 8080; 0 = any free port)")
           ->check(CLI::Range(0, 65535));
       app.add_option("--max-batch", a->max_batch,
                      "Most requests decoding together in the continuous batch (default 16)")
           ->check(CLI::Range(1, 4096));
       app.add_option("--admit-wait-ms", a->admit_wait_ms,
                      "While a batch runs, how long the oldest waiting request may wait for "
                      "others to join with it (default 20)")
           ->check(CLI::Range(0, 10000));
       app.add_option("--prefill-chunk", a->prefill_chunk,
                      "Prompt tokens per prefill pass of joining requests; running streams get a "
                      "token between passes (default 512; 0 = whole prompts)")
           ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
       app.add_option("--prompt-cache-mb", a->prompt_cache_mb,
                      "Memory for keys/values of prompt prefixes shared across requests "
                      "(default 256; 0 = no prompt caching)")
           ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
       app.add_option("--prompt-cache-block", a->prompt_cache_block,
                      "Tokens per prompt-cache block: prefixes are reused in whole blocks "
                      "(default 16)")
           ->check(CLI::Range(int64_t{1}, int64_t{4096}));
       app.add_option("--kv-budget-mb", a->kv_budget_mb,
                      "Keys/values the running batch may hold: requests wait for room, one that "
                      "cannot fit even alone is refused with 400 (default: half the memory "
                      "available once the weights are loaded, on the CPU or the GPU; 0 = no "
                      "limit)")
           ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
       app.add_option("--max-queue", a->max_queue,
                      "Requests that may wait; more are refused with HTTP 429 (default 64)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--max-context", a->max_context,
                      "Prompt + completion tokens per request (default: the model's "
                      "max_position_embeddings)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--default-max-tokens", a->default_max_tokens,
                      "max_tokens of a request that gives none (default 256)")
           ->check(CLI::PositiveNumber);
       app.add_option("--api-key", a->api_key,
                      "Require 'Authorization: Bearer KEY' on /v1/* (default: no key)");
       app.add_option("--model-name", a->model_name,
                      "Model id clients pass as \"model\" (default: the directory's name)");
       app.add_flag("--quiet", a->quiet, "No per-request log lines on stderr");
       app.footer(
           "Endpoints: POST /v1/completions, /v1/chat/completions (stream: true for server-sent "
           "events), /v1/embeddings, /v1/classify; GET /v1/models, /health, /metrics.\n"
           "Example: ingot serve --model ./Qwen3-0.6B --port 8080 &\n"
           "  curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' "
           "-d '{\"model\": \"Qwen3-0.6B\", \"messages\": [{\"role\": \"user\", \"content\": "
           "\"Hi\"}]}'");
       return std::function<int()>([a] { return run_serve(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
