// The OpenAI-compatible HTTP server of `ingot serve` (docs/server.md): routes on cpp-httplib,
// one scheduler thread that owns the model and runs single-choice completions as
// a continuous batch (rows join and leave between decode steps), other requests alone; metrics.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "llm/grammar/token_mask.h"
#include "llm/text/text.h"

namespace httplib {
class Server;
}
namespace ingot::llm {
struct TokenLogprobs;
}

namespace ingot::server {

struct ServerOptions {
  /// The model name clients pass as "model" (and /v1/models lists).
  std::string model_id = "ingot";
  /// When set, /v1/* needs "Authorization: Bearer KEY" (401 otherwise).
  std::string api_key;
  /// Prompt + completion tokens allowed per request (0 = the model's max_position_embeddings).
  int64_t max_context = 0;
  /// Requests waiting for the scheduler (running ones not counted); more get HTTP 429.
  int max_queue = 64;
  /// Most rows of the continuous batch (1 = one request at a time); docs/server.md says why 16.
  int max_batch = 16;
  /// While a batch runs, waiting requests join it once max(1, running / 8) of them wait (or
  /// all the room left) or the oldest has waited this long (groups amortize admission cost);
  /// 0 to 10000.
  int admit_wait_ms = 20;
  /// Prompt tokens per prefill pass of a joining group; running rows step between passes
  /// (0 = a group's prompts in one pass).
  int64_t prefill_chunk = 512;
  /// Prompt caching across requests: bytes of keys/values kept (0 = off) and tokens per block
  /// (also the block size of the batch's paged KV cache).
  int64_t prompt_cache_bytes = int64_t{256} << 20;
  int64_t prompt_cache_block = 16;
  /// Keys/values the running batch may hold, in bytes; in blocks: budget / (block x the model's
  /// bytes per token), the size of the paged cache's pool (prompt-cache blocks included). A
  /// request joins only while the blocks it can reach (prompt + max_tokens, in whole blocks)
  /// fit next to those of the running rows; otherwise it waits in the queue. A request that
  /// cannot fit even alone is refused with 400 (code kv_budget_exceeded). nullopt: half the
  /// memory available at start on the CPU (no limit on other devices); 0: no limit.
  std::optional<int64_t> kv_budget_bytes;
  /// Memory the model's device allocator keeps cached for reuse: while the scheduler works on
  /// the CPU, blocks not reused for max(this, 4 decode steps) seconds are given back to the system
  /// (checked every half of that, at most every second); after a second with nothing to do the
  /// whole cache is, with the C library's free heap pages (0 to 3600).
  double cache_idle_seconds = 0.25;
  /// max_tokens when a request gives none (capped by the context left).
  int64_t default_max_tokens = 256;
  /// Extra ids that end generation (e.g. generation_config.json's eos_token_id).
  std::vector<int32_t> stop_ids;
  /// HTTP worker threads (each streaming or waiting request holds one); at least
  /// max_batch + max_queue + 8 are started.
  int http_threads = 32;
  /// One line per request on stderr.
  bool log_requests = true;
};

/// A unit of work for the scheduler thread, and a row of a batched generate call.
struct Job;
struct BatchRow;
struct TokenLogprob;

class Server {
 public:
  Server(llm::TextModel tm, ServerOptions opt);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds host:port (port 0: any free port); returns the port. IoError when it cannot bind.
  int bind(const std::string& host, int port);
  /// Serves until stop() (blocking); call after bind.
  void run();
  /// Stops serving: the listener closes, queued requests are answered 503, run() returns.
  void stop();

  /// While held, the scheduler starts nothing new (requests queue up; the running one goes on).
  /// For draining and for tests that need requests to wait together.
  void hold(bool on);
  /// Requests waiting for the scheduler.
  size_t queue_depth() const;

  /// The Prometheus text of GET /metrics.
  std::string metrics_text() const;
  const ServerOptions& options() const { return opt_; }
  /// The KV budget in force (bytes; 0 = no limit) and the model's keys/values per token.
  int64_t kv_budget() const { return kv_budget_; }
  int64_t kv_bytes_per_token() const { return kv_token_bytes_; }
  /// Keys/values live in blocks of prompt_cache_block positions (a paged cache): the bytes of
  /// one block, the blocks the budget allows (0 = no limit) and the blocks a row of
  /// `positions` positions (prompt + max_tokens) can reach (what admission reserves, less the
  /// prompt-cache blocks the row shares with running rows).
  int64_t kv_block_bytes() const { return kv_token_bytes_ * opt_.prompt_cache_block; }
  int64_t kv_max_blocks() const { return kv_max_blocks_; }
  int64_t kv_blocks(int64_t positions) const;

 private:
  void setup_routes();
  void scheduler_loop();
  /// Queues a job; false when the queue is full.
  bool submit(std::shared_ptr<Job> job);
  int64_t context_limit() const;
  /// The vocabulary's token bytes for constrained decoding (built at the first use).
  std::shared_ptr<const llm::grammar::TokenVocabulary> vocabulary();
  /// A constraint following `g` (null: none); its mask work is added to the metrics.
  std::unique_ptr<llm::grammar::TokenConstraint> constraint(
      const std::shared_ptr<const llm::grammar::JsonGrammar>& g);
  void count_mask_work(const llm::grammar::TokenConstraint* c);
  /// The ids that end generation (ServerOptions::stop_ids and the tokenizer's EOS ids).
  std::vector<int32_t> eos_ids() const;
  /// A sampled token's OpenAI logprob entry: token bytes from the vocabulary (a special token:
  /// its text); a -inf log-probability (JSON has no infinity) as -9999, as OpenAI reports
  /// impossible tokens; alternatives with -inf (masked out by constrained decoding) dropped.
  TokenLogprob token_logprob(const llm::TokenLogprobs& t);
  /// Echo with logprobs: an entry per prompt token, the first with none (null), the others the
  /// model's log-probabilities of each token after the ones before it (llm::prompt_logprobs,
  /// `k` alternatives); special tokens (BOS) are not in the echoed text (in_text false). Run on
  /// the scheduler thread, in the batch and alone alike.
  std::vector<TokenLogprob> echo_logprobs(const std::vector<int32_t>& prompt, int k);
  /// Gives the device allocator's cached blocks idle for `seconds` back to the system (all of
  /// them with 0, then also the C library's free heap pages).
  void release_cached_memory(double seconds);

  llm::TextModel tm_;
  ServerOptions opt_;
  int64_t kv_budget_ = 0;       // resolved budget (0 = no limit)
  int64_t kv_token_bytes_ = 0;  // keys + values of one token over every layer
  int64_t kv_max_blocks_ = 0;   // kv_budget_ in blocks (0 = no limit)
  std::unique_ptr<httplib::Server> http_;
  int64_t created_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> current_;  // the jobs the scheduler runs (stop cancels)
  bool stopping_ = false;
  bool held_ = false;
  std::thread scheduler_;
  std::once_flag vocab_once_;
  std::shared_ptr<const llm::grammar::TokenVocabulary> vocab_;

 public:
  /// Counters behind /metrics (updated by the handlers and the scheduler).
  struct Metrics {
    std::atomic<int64_t> prompt_tokens{0};
    std::atomic<int64_t> generated_tokens{0};
    std::atomic<int64_t> running{0};
    std::atomic<int64_t> cancelled{0};
    std::atomic<int64_t> rejected_queue_full{0};
    std::atomic<int64_t> generate_calls{0};  // prefill groups admitted + requests run alone
    std::atomic<int64_t> batched_rows{0};    // rows over those
    std::atomic<int64_t> decode_steps{0};    // steps of the continuous batch
    std::atomic<int64_t> decode_step_rows{0};
    std::atomic<int64_t> prefill_passes{0};              // forward passes of joining groups
    std::atomic<int64_t> decode_steps_while_joining{0};  // steps run between those passes
    std::atomic<int64_t> prompt_cached_tokens{0};        // prompt tokens from the prompt cache
    std::atomic<int64_t> prompt_cache_blocks{0};
    std::atomic<int64_t> prompt_cache_bytes{0};
    std::atomic<int64_t> prompt_cache_evicted{0};
    std::atomic<int64_t> kv_cache_bytes{0};  // the running batch's keys/values
    std::atomic<int64_t> kv_cache_peak_bytes{0};
    std::atomic<int64_t> kv_reserved_bytes{0};  // blocks reserved by running and joining rows
    std::atomic<int64_t> kv_blocks_in_use{0};   // real blocks (rows and prompt cache)
    std::atomic<int64_t> kv_blocks_peak{0};
    std::atomic<int64_t> kv_blocks_reserved{0};
    std::atomic<int64_t> kv_storage_bytes{0};  // the pool's allocated storage
    std::atomic<int64_t> kv_waited{0};         // requests that waited for KV room
    std::atomic<int64_t> cache_released{0};    // allocator cache bytes given back (idle)
    mutable std::mutex mu;
    double decode_seconds = 0;   // sum over decode steps and requests run alone
    double prefill_seconds = 0;  // admissions into the batch
    double last_tokens_per_second = 0;
    double mask_seconds = 0;     // constrained decoding: time computing token masks
    double release_seconds = 0;  // giving cached memory back
    int64_t masks_computed = 0;  // masks computed by a vocabulary walk
    int64_t masks_cached = 0;    // masks served from a constraint's state cache
    std::map<std::pair<std::string, int>, int64_t> requests;  // (path, status) -> count
  };
  Metrics& metrics() { return metrics_; }

 private:
  Metrics metrics_;
};

}  // namespace ingot::server
