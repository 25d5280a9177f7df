// The OpenAI-compatible HTTP server (see server.h, docs/server.md).
#include "server/server.h"

#include <dlfcn.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <optional>
#include <random>
#include <set>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/allocator.h"
#include "llm/batch_decoder.h"
#include "llm/logprobs.h"
#include "server/api.h"
#include "server/structured.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ingot::server {

using nlohmann::json;

/// A queued request: `run` executes on the scheduler thread; `fail` answers it without running
/// (server stopping). `cancelled` is set when its client went away.
struct Job {
  std::function<void()> run;
  std::function<void(int status, const std::string& message)> fail;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  /// Set for a single-choice completion: the scheduler runs it as one row of the continuous
  /// batch (llm::BatchDecoder), joining and leaving between decode steps (then `run` is unused).
  std::shared_ptr<BatchRow> row;
  /// When it was queued (admission policy of the continuous batch).
  std::chrono::steady_clock::time_point queued_at;
  /// Set once it has waited at the head of the queue for KV room (counted once).
  bool kv_waited = false;
};

/// A single-choice completion run as one row of the continuous batch: prompt, sampling,
/// limits, and where its output goes.
struct BatchRow {
  std::vector<int32_t> prompt;
  llm::SamplerOptions sampler;
  int64_t max_tokens = 1;
  std::vector<std::string> stop;
  /// Log-probabilities: -1 none, else the alternatives per token (CompletionRequest::logprobs).
  int logprobs = -1;
  /// Echo: when the row is admitted (before its prefill), on_prompt gets the prompt tokens'
  /// logprob entries (Server::echo_logprobs; empty without logprobs).
  bool echo = false;
  std::function<void(std::vector<TokenLogprob> logprobs)> on_prompt;
  /// Streamed text (may be empty), with the logprobs of the tokens taken since the last piece.
  std::function<void(const std::string& piece, std::vector<TokenLogprob> logprobs)> on_text;
  /// The text, tokens generated, prompt tokens served from the prompt cache, finish reason, and
  /// the logprobs not passed to on_text (all of them without on_text).
  std::function<void(const std::string& text, int64_t tokens, int64_t cached,
                     const std::string& finish, std::vector<TokenLogprob> logprobs)>
      on_done;
  std::function<void(std::exception_ptr)> on_error;
  std::shared_ptr<const llm::grammar::JsonGrammar> grammar;  // constrained output (or null)
};

namespace {

constexpr const char* kJson = "application/json";

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_id(const char* prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lk(mu);
  return fmt::format("{}{:016x}", prefix, rng());
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e), kJson);
}

/// The outcome of a non-streaming job, handed from the scheduler to the HTTP thread.
struct Reply {
  int status = 200;
  std::string body;
};

/// Server-sent events produced by the scheduler thread and written by the HTTP thread.
struct EventStream {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> events;
  bool done = false;
  void push(std::string s) {
    {
      std::lock_guard<std::mutex> lk(mu);
      events.push_back(std::move(s));
    }
    cv.notify_one();
  }
  void finish() {
    {
      std::lock_guard<std::mutex> lk(mu);
      done = true;
    }
    cv.notify_one();
  }
};

/// Prompt + max_tokens of a row: the most cache columns it can occupy.
int64_t row_length(const Job& j) {
  return static_cast<int64_t>(j.row->prompt.size()) + j.row->max_tokens;
}

/// Maps a library exception to an HTTP status: bad input 400, everything else 500.
Reply reply_for_exception(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const ApiError& e) {
    return {e.status, error_body(e)};
  } catch (const InvalidArgument& e) {
    return {400, error_body(e.what(), "invalid_request_error", "", "")};
  } catch (const std::exception& e) {
    return {500, error_body(e.what(), "server_error", "", "")};
  } catch (...) {
    return {500, error_body("unknown internal error", "server_error", "", "")};
  }
}

}  // namespace

Server::Server(llm::TextModel tm, ServerOptions opt)
    : tm_(std::move(tm)), opt_(std::move(opt)), http_(std::make_unique<httplib::Server>()) {
  if (!tm_.model || !tm_.tokenizer) raise("[server] a model and its tokenizer are needed");
  if (opt_.max_queue < 0) raise("[server] max_queue must be >= 0, got {}", opt_.max_queue);
  if (opt_.max_batch < 1) raise("[server] max_batch must be >= 1, got {}", opt_.max_batch);
  if (opt_.max_context < 0) raise("[server] max_context must be >= 0, got {}", opt_.max_context);
  if (opt_.admit_wait_ms < 0 || opt_.admit_wait_ms > 10000)
    raise("[server] admit_wait_ms must be in [0, 10000] milliseconds, got {}", opt_.admit_wait_ms);
  if (opt_.prefill_chunk < 0)
    raise("[server] prefill_chunk must be >= 0 tokens (0 = whole prompts), got {}",
          opt_.prefill_chunk);
  if (opt_.prompt_cache_bytes < 0)
    raise("[server] prompt_cache_bytes must be >= 0 (0 = off), got {}", opt_.prompt_cache_bytes);
  if (!(opt_.cache_idle_seconds >= 0 && opt_.cache_idle_seconds <= 3600))
    raise("[server] cache_idle_seconds must be in [0, 3600], got {}", opt_.cache_idle_seconds);
  if (opt_.prompt_cache_block < 1 || opt_.prompt_cache_block > 4096)
    raise("[server] prompt_cache_block must be in [1, 4096] tokens, got {}",
          opt_.prompt_cache_block);
  const models::ModelConfig& cfg = tm_.model->config();
  kv_token_bytes_ = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim *
                    static_cast<int64_t>(size_of(tm_.model->dtype()));
  if (opt_.kv_budget_bytes) {
    if (*opt_.kv_budget_bytes < 0)
      raise("[server] kv_budget_bytes must be >= 0 (0 = no limit), got {}", *opt_.kv_budget_bytes);
    kv_budget_ = *opt_.kv_budget_bytes;
  } else if (tm_.model->device().type == Device::Type::cpu) {
    kv_budget_ = util::available_memory() / 2;  // the weights are loaded: what is left, halved
  } else {
    // A GPU: half of what its allocator can still get (the device's free memory plus its
    // cache), the other half left for the steps' activations.
    kv_budget_ = static_cast<int64_t>(memory::available(tm_.model->device()) / 2);
  }
  // The budget in whole blocks (at least one, so that 0 keeps meaning "no limit").
  if (kv_budget_ > 0) kv_max_blocks_ = std::max<int64_t>(1, kv_budget_ / kv_block_bytes());
  created_ = now_seconds();
  // Every running or queued request holds an HTTP thread (a stream writes from it, a plain
  // request waits in it): enough threads for a full batch and a full queue, plus a few for
  // /health, /metrics and requests answered 400/429 at once.
  const int threads = std::max(opt_.http_threads, opt_.max_batch + opt_.max_queue + 8);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(size_t{64} << 20);  // request bodies up to 64 MiB
  setup_routes();
  scheduler_ = std::thread([this] { scheduler_loop(); });
}

Server::~Server() {
  stop();
  if (scheduler_.joinable()) scheduler_.join();
}

int Server::bind(const std::string& host, int port) {
  if (port == 0) {
    const int p = http_->bind_to_any_port(host);
    if (p <= 0) raise<IoError>("[server] cannot bind {} to a free port", host);
    return p;
  }
  if (!http_->bind_to_port(host, port))
    raise<IoError>("[server] cannot bind {}:{} (in use or not allowed?)", host, port);
  return port;
}

void Server::run() {
  http_->listen_after_bind();
}

void Server::stop() {
  std::deque<std::shared_ptr<Job>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return;
    stopping_ = true;
    left.swap(queue_);
    for (auto& j : current_) j->cancelled->store(true);
  }
  cv_.notify_all();
  for (auto& j : left) j->fail(503, "the server is shutting down");
  http_->stop();
}

void Server::hold(bool on) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    held_ = on;
  }
  cv_.notify_all();
}

size_t Server::queue_depth() const {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.size();
}

int64_t Server::kv_blocks(int64_t positions) const {
  // A row's keys/values are blocks of a paged cache: it can reach prompt + max_tokens
  // positions, in whole blocks (admission takes off the prompt-cache blocks it shares).
  const int64_t b = opt_.prompt_cache_block;
  return (std::max<int64_t>(0, positions) + b - 1) / b;
}

int64_t Server::context_limit() const {
  const int64_t model_ctx = tm_.model->config().max_position_embeddings;
  if (opt_.max_context > 0 && (model_ctx <= 0 || opt_.max_context < model_ctx))
    return opt_.max_context;
  return model_ctx > 0 ? model_ctx : (opt_.max_context > 0 ? opt_.max_context : INT64_MAX);
}

std::shared_ptr<const llm::grammar::TokenVocabulary> Server::vocabulary() {
  std::call_once(vocab_once_, [this] {
    std::vector<int32_t> eos = opt_.stop_ids;
    for (int32_t id : tm_.tokenizer->special_tokens().eos_ids) eos.push_back(id);
    const int64_t v = tm_.model->vocab_size();
    std::vector<int32_t> valid;
    for (int32_t id : eos)
      if (id >= 0 && id < v) valid.push_back(id);
    vocab_ = std::make_shared<llm::grammar::TokenVocabulary>(token_bytes(*tm_.tokenizer, v),
                                                             std::move(valid));
  });
  return vocab_;
}

std::unique_ptr<llm::grammar::TokenConstraint> Server::constraint(
    const std::shared_ptr<const llm::grammar::JsonGrammar>& g) {
  if (!g) return nullptr;
  return std::make_unique<llm::grammar::TokenConstraint>(g, vocabulary());
}

void Server::count_mask_work(const llm::grammar::TokenConstraint* c) {
  if (!c) return;
  std::lock_guard<std::mutex> lk(metrics_.mu);
  metrics_.mask_seconds += c->stats().seconds;
  metrics_.masks_computed += c->stats().computed;
  metrics_.masks_cached += c->stats().cached;
}

std::vector<int32_t> Server::eos_ids() const {
  std::vector<int32_t> eos = opt_.stop_ids;
  for (int32_t id : tm_.tokenizer->special_tokens().eos_ids) eos.push_back(id);
  return eos;
}

TokenLogprob Server::token_logprob(const llm::TokenLogprobs& t) {
  const auto voc = vocabulary();
  auto bytes = [&](int32_t id) {
    const std::string& b = voc->bytes(id);
    if (!b.empty()) return b;
    return tm_.tokenizer->decode({id}, {.skip_special_tokens = false});
  };
  TokenLogprob out;
  out.bytes = bytes(t.id);
  out.logprob = std::isfinite(t.logprob) ? t.logprob : -9999.0f;
  for (const auto& [id, lp] : t.top)
    if (std::isfinite(lp)) out.top.emplace_back(bytes(id), lp);
  return out;
}

std::vector<TokenLogprob> Server::echo_logprobs(const std::vector<int32_t>& prompt, int k) {
  std::vector<TokenLogprob> out;
  if (prompt.empty()) return out;
  out.reserve(prompt.size());
  TokenLogprob first = token_logprob({prompt[0], 0.0f, {}});
  first.none = true;
  out.push_back(std::move(first));
  for (const llm::TokenLogprobs& t : llm::prompt_logprobs(*tm_.model, prompt, k))
    out.push_back(token_logprob(t));
  for (size_t i = 0; i < prompt.size(); ++i) out[i].in_text = !tm_.tokenizer->is_special(prompt[i]);
  return out;
}

void Server::release_cached_memory(double seconds) {
  const auto t = std::chrono::steady_clock::now();
  const size_t bytes = memory::release_idle_cache(seconds, tm_.model->device());
  metrics_.cache_released += static_cast<int64_t>(bytes);
#if defined(__GLIBC__)
  // Idle: the C library's free heap pages too (small blocks the cache gave back, request and
  // JSON buffers of the HTTP threads' arenas). Not while working: with 300 threads' arenas a
  // trim took ~6 ms, 5.6 s of a 2-minute load run at one every 125 ms, and the C heap's free
  // bytes stayed flat (5-6 MiB) under load anyway.
  if (seconds == 0) malloc_trim(0);
#endif
  // The same for tcmalloc where the process runs on it (the ingot CLI links it when built
  // with it): its free spans back to the system.
  if (seconds == 0) {
    using ReleaseFn = void (*)();
    static const auto release =
        reinterpret_cast<ReleaseFn>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
    if (release) release();
  }
  std::lock_guard<std::mutex> lk(metrics_.mu);
  metrics_.release_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

bool Server::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return false;
    if (static_cast<int>(queue_.size()) >= opt_.max_queue) {
      ++metrics_.rejected_queue_full;
      return false;
    }
    job->queued_at = std::chrono::steady_clock::now();
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

namespace {

/// A request running as a row of the BatchDecoder: text state, limits and its constraint.
struct ActiveRow {
  std::shared_ptr<Job> job;
  int64_t key = 0;
  std::unique_ptr<tokenizer::StreamDecoder> dec;
  std::unique_ptr<llm::grammar::TokenConstraint> con;
  std::string pending;  // decoded, not yet emitted (may start a stop string)
  std::string text;
  int64_t count = 0;
  int64_t cached = 0;                  // prompt tokens reused from the prompt cache
  std::string finish;                  // set when the row is done
  std::vector<TokenLogprob> logprobs;  // not yet passed on (BatchRow::logprobs >= 0)
};

/// Length of the longest suffix of `s` that is a proper prefix of a stop string.
size_t held_back(const std::string& s, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& t : stops)
    for (size_t k = std::min(s.size(), t.size() - 1); k > best; --k)
      if (s.compare(s.size() - k, k, t, 0, k) == 0) {
        best = k;
        break;
      }
  return best;
}

/// Emits the first `k` pending bytes of `r` as streamed text.
void emit(ActiveRow& r, size_t k) {
  if (k == 0) return;
  std::string piece = r.pending.substr(0, k);
  r.pending.erase(0, k);
  r.text += piece;
  if (r.job->row->on_text) {
    r.job->row->on_text(piece, std::move(r.logprobs));
    r.logprobs.clear();
  }
}

}  // namespace

void Server::scheduler_loop() {
  const std::vector<int32_t> eos = eos_ids();
  std::unique_ptr<llm::BatchDecoder> bd;
  std::vector<std::unique_ptr<ActiveRow>> active;
  std::vector<std::unique_ptr<ActiveRow>> joining;  // the group bd is prefilling
  int64_t next_key = 0;
  auto make_decoder = [this] {
    return std::make_unique<llm::BatchDecoder>(
        *tm_.model, llm::BatchDecoderOptions{.prefill_chunk = opt_.prefill_chunk,
                                             .prefix = {.block = opt_.prompt_cache_block,
                                                        .max_bytes = opt_.prompt_cache_bytes},
                                             .max_blocks = kv_max_blocks_});
  };

  // Takes the sampled id of row `r` (with its logprobs when the row asked for them); false when
  // the row is done (r.finish set). An EOS id gets no logprob entry (it adds no text).
  auto take_token = [&](ActiveRow& r, int32_t id, const std::optional<llm::TokenLogprobs>& lp) {
    const BatchRow& br = *r.job->row;
    ++r.count;
    const bool is_eos = std::find(eos.begin(), eos.end(), id) != eos.end();
    if (lp && !is_eos) r.logprobs.push_back(token_logprob(*lp));
    if (is_eos) {
      r.pending += r.dec->step(id);
      r.pending += r.dec->finish();
      emit(r, r.pending.size());
      r.finish = "stop";
      return false;
    }
    if (r.job->cancelled->load()) {
      r.finish = "cancelled";
      return false;
    }
    r.pending += r.dec->step(id);
    for (const auto& s : br.stop) {
      const size_t at = r.pending.find(s);
      if (at != std::string::npos) {
        r.pending.resize(at);
        emit(r, r.pending.size());
        r.finish = "stop";
        return false;
      }
    }
    if (r.count >= br.max_tokens) {
      r.pending += r.dec->finish();
      emit(r, r.pending.size());
      r.finish = "length";
      return false;
    }
    emit(r, r.pending.size() - held_back(r.pending, br.stop));
    return true;
  };
  // Answers the finished rows and drops them from the batch. The decoder stays (its prompt
  // cache outlives batches; an empty batch holds no KV).
  auto retire = [&] {
    std::vector<int64_t> gone;
    std::vector<std::unique_ptr<ActiveRow>> left;
    for (auto& r : active) {
      if (r->finish.empty() && r->job->cancelled->load()) r->finish = "cancelled";
      if (r->finish.empty()) {
        left.push_back(std::move(r));
        continue;
      }
      gone.push_back(r->key);
      count_mask_work(r->con.get());
      metrics_.generated_tokens += r->count;
      r->job->row->on_done(r->text, r->count, r->cached, r->finish, std::move(r->logprobs));
    }
    active = std::move(left);
    if (bd) bd->drop(gone);
  };
  // KV blocks that cannot be evicted while the running and joining rows last: each row's own
  // blocks (its reach, prompt + max_tokens, minus the blocks it shares from the prompt cache)
  // and the shared blocks they hold (each once). Admission keeps it within the budget, so a
  // row that needs a block always finds one free or held only by the prompt cache.
  auto reserved_blocks = [&] {
    const int64_t b = opt_.prompt_cache_block;
    int64_t n = bd ? bd->shared_blocks_in_use() : 0;
    for (const auto& r : active) n += kv_blocks(row_length(*r->job)) - r->cached / b;
    for (const auto& r : joining) n += kv_blocks(row_length(*r->job)) - r->cached / b;
    return n;
  };
  // Publishes the decoder's sizes to /metrics (read by other threads).
  auto publish = [&] {
    metrics_.kv_cache_bytes = bd ? bd->cache_bytes() : 0;
    if (metrics_.kv_cache_bytes > metrics_.kv_cache_peak_bytes)
      metrics_.kv_cache_peak_bytes = metrics_.kv_cache_bytes.load();
    metrics_.kv_blocks_in_use = bd ? bd->blocks_in_use() : 0;
    if (metrics_.kv_blocks_in_use > metrics_.kv_blocks_peak)
      metrics_.kv_blocks_peak = metrics_.kv_blocks_in_use.load();
    metrics_.kv_storage_bytes = bd ? bd->kv().storage_bytes() : 0;
    const int64_t reserved = reserved_blocks();
    metrics_.kv_blocks_reserved = reserved;
    metrics_.kv_reserved_bytes = reserved * kv_block_bytes();
    const llm::PrefixStore* ps = bd ? bd->prefix_store() : nullptr;
    metrics_.prompt_cache_blocks = ps ? ps->size() : 0;
    metrics_.prompt_cache_bytes = ps ? ps->nbytes() : 0;
    metrics_.prompt_cache_evicted = ps ? ps->evicted() : 0;
  };
  // An internal failure fails every running and joining row and starts over with a new decoder
  // (its prompt cache is lost with it).
  auto fail_all = [&](std::exception_ptr ep) {
    for (auto& r : active) r->job->row->on_error(ep);
    for (auto& r : joining) r->job->row->on_error(ep);
    metrics_.running -= static_cast<int64_t>(active.size());
    active.clear();
    joining.clear();
    bd.reset();
    publish();
  };

  // Cached memory: while working, blocks not reused for max(cache_idle_seconds, 4 decode steps)
  // go back (checked every half of that, at most every second); after a second of idleness,
  // all of it (once per idle spell).
  auto last_release = std::chrono::steady_clock::now();
  bool released_idle = false;
  double step_seconds = 0;  // moving average of a decode step
  for (;;) {
    std::vector<std::shared_ptr<Job>> admit;
    std::shared_ptr<Job> solo, refuse;
    {
      std::unique_lock<std::mutex> lk(mu_);
      const bool busy = !active.empty() || !joining.empty();
      auto work = [&] { return stopping_ || busy || (!held_ && !queue_.empty()); };
      if (!busy && !released_idle && !cv_.wait_for(lk, std::chrono::seconds(1), work)) {
        lk.unlock();
        release_cached_memory(0);
        released_idle = true;
        continue;
      }
      cv_.wait(lk, work);
      released_idle = released_idle && !busy && queue_.empty();
      if (stopping_ && !busy) return;  // stop() answered what was queued
      // Rows join the batch in arrival order up to max_batch; another kind of job waits at the
      // head of the queue until the batch has drained, then runs alone. While a batch runs,
      // waiting rows join in groups (each admission is a prefill and a cache merge): when
      // enough are waiting for the batch's size or the oldest has waited admit_wait_ms. One
      // group joins at a time: while it is prefilled (a pass per decode step), the queue waits.
      const int room = opt_.max_batch - static_cast<int>(active.size());
      bool admit_now = joining.empty() && active.empty();
      if (joining.empty() && !active.empty() && !queue_.empty() && room > 0) {
        int waiting = 0;
        for (const auto& j : queue_) {
          if (!j->row) break;
          ++waiting;
        }
        const auto waited = std::chrono::steady_clock::now() - queue_.front()->queued_at;
        admit_now = waiting >= std::min(room, std::max(1, static_cast<int>(active.size()) / 8)) ||
                    waited >= std::chrono::milliseconds(opt_.admit_wait_ms);
      }
      // KV budget: a row joins only while the blocks it can reach (prompt + max_tokens, less
      // the prompt-cache blocks it will share that rows already hold) fit next to those
      // reserved by the running, joining and admitted rows; otherwise it waits at the head of
      // the queue (arrival order is kept) until rows leave and free theirs.
      int64_t rows_in = static_cast<int64_t>(active.size() + joining.size());
      int64_t reserved = reserved_blocks();
      std::set<int32_t> will_share;  // prompt-cache blocks the rows admitted here will hold
      while (admit_now && !stopping_ && !held_ && !queue_.empty() &&
             static_cast<int>(active.size() + admit.size()) < opt_.max_batch) {
        if (queue_.front()->row) {
          const std::vector<int32_t> shared =
              bd ? bd->shared_blocks_for(queue_.front()->row->prompt) : std::vector<int32_t>{};
          int64_t held = 0;  // of those, blocks some row already holds (counted already)
          for (int32_t id : shared)
            if (bd->kv().pool().refs(id) >= 2 || will_share.count(id)) ++held;
          const int64_t need = kv_blocks(row_length(*queue_.front())) - held;
          if (kv_max_blocks_ > 0 && reserved + need > kv_max_blocks_) {
            if (rows_in == 0) {  // cannot fit even alone (refused at submission; a safety net)
              refuse = std::move(queue_.front());
              queue_.pop_front();
              break;
            }
            if (!queue_.front()->kv_waited) {
              queue_.front()->kv_waited = true;
              ++metrics_.kv_waited;
            }
            break;
          }
          ++rows_in;
          reserved += need;
          will_share.insert(shared.begin(), shared.end());
          admit.push_back(std::move(queue_.front()));
          queue_.pop_front();
          continue;
        }
        if (active.empty() && admit.empty()) {
          solo = std::move(queue_.front());
          queue_.pop_front();
        }
        break;
      }
      current_.clear();
      for (auto& r : active) current_.push_back(r->job);
      for (auto& r : joining) current_.push_back(r->job);
      current_.insert(current_.end(), admit.begin(), admit.end());
      if (solo) current_.push_back(solo);
    }

    if (refuse)
      refuse->row->on_error(std::make_exception_ptr(
          ApiError(400,
                   fmt::format("this request needs {} KV blocks ({} bytes), more than the "
                               "server's KV budget of {} blocks ({} bytes)",
                               kv_blocks(row_length(*refuse)),
                               kv_blocks(row_length(*refuse)) * kv_block_bytes(), kv_max_blocks_,
                               kv_budget_),
                   "max_tokens", "kv_budget_exceeded")));
    if (solo) {
      if (solo->cancelled->load()) {
        solo->fail(499, "cancelled");
      } else {
        ++metrics_.running;
        solo->run();  // runs catch their own exceptions
        --metrics_.running;
      }
    }

    // New rows: one group, prefilled a pass at a time between decode steps (below).
    std::vector<std::unique_ptr<ActiveRow>> fresh;
    std::vector<llm::DecoderRow> rows;
    for (auto& j : admit) {
      if (j->cancelled->load()) {  // its client went away while it waited
        j->fail(499, "cancelled");
        continue;
      }
      if (j->row->echo) {  // the prompt's text (and logprobs) go out before any token
        std::vector<TokenLogprob> lps;
        try {
          if (j->row->logprobs >= 0) lps = echo_logprobs(j->row->prompt, j->row->logprobs);
        } catch (...) {
          j->row->on_error(std::current_exception());
          continue;
        }
        if (j->row->on_prompt) j->row->on_prompt(std::move(lps));
      }
      auto r = std::make_unique<ActiveRow>();
      r->job = j;
      r->key = next_key++;
      r->dec = std::make_unique<tokenizer::StreamDecoder>(
          *tm_.tokenizer, tokenizer::DecodeOptions{.skip_special_tokens = true});
      llm::DecoderRow d;
      d.key = r->key;
      d.prompt = j->row->prompt;
      d.sampler = j->row->sampler;
      d.logprobs = j->row->logprobs;
      try {
        r->con = constraint(j->row->grammar);
      } catch (...) {
        j->row->on_error(std::current_exception());
        continue;
      }
      if (r->con)
        d.token_mask = [c = r->con.get()](const std::vector<int32_t>& gen) {
          return c->next_mask(gen);
        };
      rows.push_back(std::move(d));
      fresh.push_back(std::move(r));
    }
    if (!rows.empty()) {
      try {
        if (!bd) bd = make_decoder();
        const std::vector<int64_t> cached = bd->join(std::move(rows));
        for (size_t i = 0; i < fresh.size(); ++i) fresh[i]->cached = cached[i];
        joining = std::move(fresh);
      } catch (...) {
        for (auto& r : fresh) r->job->row->on_error(std::current_exception());
      }
    }

    // One prefill pass of the joining group (every pass when no row is running): running
    // streams get a token between passes instead of waiting for the whole prompt.
    if (!joining.empty()) {
      std::vector<int64_t> gone;
      for (auto& r : joining)
        if (r->job->cancelled->load()) gone.push_back(r->key);
      if (gone.size() == joining.size()) {  // every client went away: abandon the group
        bd->drop(gone);
        for (auto& r : joining) r->job->row->on_done("", 0, r->cached, "cancelled", {});
        joining.clear();
      } else {
        try {
          const auto t = std::chrono::steady_clock::now();
          std::optional<std::vector<int32_t>> first;
          do {
            first = bd->prefill_step();
            ++metrics_.prefill_passes;
          } while (!first && active.empty());
          {
            std::lock_guard<std::mutex> lk(metrics_.mu);
            metrics_.prefill_seconds +=
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
          }
          if (first) {
            ++metrics_.generate_calls;
            metrics_.batched_rows += static_cast<int64_t>(joining.size());
            metrics_.running += static_cast<int64_t>(joining.size());
            for (size_t i = 0; i < joining.size(); ++i) {
              metrics_.prompt_tokens += static_cast<int64_t>(joining[i]->job->row->prompt.size());
              metrics_.prompt_cached_tokens += joining[i]->cached;
              take_token(*joining[i], (*first)[i], bd->last_logprobs()[i]);
              active.push_back(std::move(joining[i]));
            }
            joining.clear();
          }
        } catch (...) {
          // The batch is as it was; only the joining rows fail.
          for (auto& r : joining) r->job->row->on_error(std::current_exception());
          joining.clear();
        }
      }
      publish();
    }
    try {
      const size_t before = active.size();
      retire();
      metrics_.running -= static_cast<int64_t>(before - active.size());
      if (active.empty()) {
        publish();
        continue;
      }
      // One decode step over every running row.
      const auto t = std::chrono::steady_clock::now();
      std::vector<int32_t> ids = bd->step();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      step_seconds = step_seconds == 0 ? dt : 0.9 * step_seconds + 0.1 * dt;
      ++metrics_.decode_steps;
      if (!joining.empty()) ++metrics_.decode_steps_while_joining;
      metrics_.decode_step_rows += static_cast<int64_t>(ids.size());
      {
        std::lock_guard<std::mutex> lk(metrics_.mu);
        metrics_.decode_seconds += dt;
        metrics_.last_tokens_per_second = dt > 0 ? static_cast<double>(ids.size()) / dt : 0.0;
      }
      for (size_t i = 0; i < ids.size(); ++i)
        take_token(*active[i], ids[i], bd->last_logprobs()[i]);
      const size_t n = active.size();
      retire();
      metrics_.running -= static_cast<int64_t>(n - active.size());
      publish();
    } catch (...) {
      fail_all(std::current_exception());
    }
    // (CPU only: on a GPU, giving a block back is a cudaFree, which waits for the device.)
    const double age = std::max(opt_.cache_idle_seconds, 4 * step_seconds);
    if (const auto now = std::chrono::steady_clock::now();
        tm_.model->device().type == Device::Type::cpu &&
        std::chrono::duration<double>(now - last_release).count() >=
            std::clamp(age / 2, 0.05, 1.0)) {
      release_cached_memory(age);
      last_release = now;
    }
  }
}

std::string Server::metrics_text() const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, const char* type, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  {
    std::lock_guard<std::mutex> lk(metrics_.mu);
    out += "# HELP ingot_requests_total HTTP requests answered, by path and status.\n";
    out += "# TYPE ingot_requests_total counter\n";
    for (const auto& [k, n] : metrics_.requests)
      out += fmt::format("ingot_requests_total{{path=\"{}\",status=\"{}\"}} {}\n", k.first,
                         k.second, n);
    gauge("ingot_decode_seconds_total", "Seconds spent decoding.", "counter",
          metrics_.decode_seconds);
    gauge("ingot_decode_tokens_per_second",
          "Decode rate of the last batch step (rows / seconds) or request run alone.", "gauge",
          metrics_.last_tokens_per_second);
    gauge("ingot_prefill_seconds_total", "Seconds spent prefilling rows joining the batch.",
          "counter", metrics_.prefill_seconds);
    gauge("ingot_memory_release_seconds_total",
          "Seconds spent giving cached memory back (allocator cache and C library heap).",
          "counter", metrics_.release_seconds);
    gauge("ingot_constrained_mask_seconds_total",
          "Seconds spent computing token masks (structured output).", "counter",
          metrics_.mask_seconds);
    gauge("ingot_constrained_masks_computed_total", "Token masks computed by a vocabulary walk.",
          "counter", static_cast<double>(metrics_.masks_computed));
    gauge("ingot_constrained_masks_cached_total", "Token masks served from a state cache.",
          "counter", static_cast<double>(metrics_.masks_cached));
  }
  gauge("ingot_prompt_tokens_total", "Prompt tokens processed.", "counter",
        static_cast<double>(metrics_.prompt_tokens.load()));
  gauge("ingot_generation_tokens_total", "Tokens generated.", "counter",
        static_cast<double>(metrics_.generated_tokens.load()));
  gauge("ingot_generate_calls_total",
        "Groups of rows admitted into the batch together, plus requests run alone.", "counter",
        static_cast<double>(metrics_.generate_calls.load()));
  gauge("ingot_generate_rows_total", "Rows (choices) over those; / calls = mean group size.",
        "counter", static_cast<double>(metrics_.batched_rows.load()));
  gauge("ingot_decode_steps_total", "Decode steps of the continuous batch.", "counter",
        static_cast<double>(metrics_.decode_steps.load()));
  gauge("ingot_decode_step_rows_total", "Rows over all decode steps; / steps = mean running batch.",
        "counter", static_cast<double>(metrics_.decode_step_rows.load()));
  gauge("ingot_prefill_passes_total",
        "Forward passes prefilling joining rows (a prompt is split by the prefill chunk).",
        "counter", static_cast<double>(metrics_.prefill_passes.load()));
  gauge("ingot_decode_steps_while_joining_total",
        "Decode steps run between the prefill passes of a joining group.", "counter",
        static_cast<double>(metrics_.decode_steps_while_joining.load()));
  gauge("ingot_prompt_cached_tokens_total",
        "Prompt tokens whose keys/values came from the prompt cache (not recomputed).", "counter",
        static_cast<double>(metrics_.prompt_cached_tokens.load()));
  gauge("ingot_prompt_cache_blocks", "Blocks held by the prompt cache.", "gauge",
        static_cast<double>(metrics_.prompt_cache_blocks.load()));
  gauge("ingot_prompt_cache_bytes", "Bytes of keys/values held by the prompt cache.", "gauge",
        static_cast<double>(metrics_.prompt_cache_bytes.load()));
  gauge("ingot_prompt_cache_evicted_blocks_total",
        "Prompt cache blocks evicted (least recently used, over the budget).", "counter",
        static_cast<double>(metrics_.prompt_cache_evicted.load()));
  gauge("ingot_kv_cache_bytes",
        "Bytes of the KV blocks in use (running rows and prompt cache; shared blocks once).",
        "gauge", static_cast<double>(metrics_.kv_cache_bytes.load()));
  gauge("ingot_kv_cache_peak_bytes", "Most bytes of KV blocks in use at once.", "gauge",
        static_cast<double>(metrics_.kv_cache_peak_bytes.load()));
  gauge("ingot_kv_blocks_in_use",
        "KV blocks in use (running rows and prompt cache; a block shared by rows counts once).",
        "gauge", static_cast<double>(metrics_.kv_blocks_in_use.load()));
  gauge("ingot_kv_blocks_peak", "Most KV blocks in use at once.", "gauge",
        static_cast<double>(metrics_.kv_blocks_peak.load()));
  gauge("ingot_kv_blocks_total", "KV blocks the budget allows (0 = no limit).", "gauge",
        static_cast<double>(kv_max_blocks_));
  gauge("ingot_kv_block_tokens", "Positions per KV block.", "gauge",
        static_cast<double>(opt_.prompt_cache_block));
  gauge("ingot_kv_blocks_reserved",
        "KV blocks the running and joining rows can reach (prompt + max_tokens each); "
        "admission keeps it within the budget.",
        "gauge", static_cast<double>(metrics_.kv_blocks_reserved.load()));
  gauge("ingot_kv_storage_bytes", "Bytes of the KV block pool's storage (grows, never shrinks).",
        "gauge", static_cast<double>(metrics_.kv_storage_bytes.load()));
  gauge("ingot_kv_budget_bytes", "Keys/values the running batch may hold (0 = no limit).", "gauge",
        static_cast<double>(kv_budget_));
  gauge("ingot_kv_reserved_bytes",
        "Bytes of the KV blocks reserved by the running and joining rows.", "gauge",
        static_cast<double>(metrics_.kv_reserved_bytes.load()));
  gauge("ingot_requests_waited_for_kv_total",
        "Requests that waited in the queue for KV room (the budget was full).", "counter",
        static_cast<double>(metrics_.kv_waited.load()));
  gauge("ingot_requests_cancelled_total", "Requests whose client went away.", "counter",
        static_cast<double>(metrics_.cancelled.load()));
  gauge("ingot_requests_rejected_total", "Requests refused with 429 (queue full).", "counter",
        static_cast<double>(metrics_.rejected_queue_full.load()));
  size_t depth = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    depth = queue_.size();
  }
  gauge("ingot_queue_depth", "Requests waiting for the scheduler.", "gauge",
        static_cast<double>(depth));
  gauge("ingot_requests_running", "Requests the scheduler is running.", "gauge",
        static_cast<double>(metrics_.running.load()));
  const Device d = tm_.model->device();
  gauge("ingot_memory_active_bytes", "Bytes allocated on the model's device.", "gauge",
        static_cast<double>(memory::active(d)));
  gauge("ingot_memory_peak_bytes", "Peak bytes allocated on the model's device.", "gauge",
        static_cast<double>(memory::peak(d)));
  gauge("ingot_memory_cache_bytes", "Bytes held by the device allocator's cache.", "gauge",
        static_cast<double>(memory::cache(d)));
  gauge("ingot_memory_cache_released_bytes_total",
        "Cached bytes given back to the system (idle for cache_idle_seconds, or the server idle).",
        "counter", static_cast<double>(metrics_.cache_released.load()));
  gauge("ingot_process_resident_bytes", "Resident set of the server process.", "gauge",
        static_cast<double>(util::resident_bytes()));
#if defined(__GLIBC__)
  // The C library's heap (every other allocation: requests, JSON, strings, small arrays).
  const struct mallinfo2 mi = mallinfo2();
  gauge("ingot_malloc_in_use_bytes", "Bytes the C library's malloc has handed out.", "gauge",
        static_cast<double>(mi.uordblks + mi.hblkhd));
  gauge("ingot_malloc_free_bytes",
        "Bytes free inside the C library's malloc arenas (held, not returned to the system).",
        "gauge", static_cast<double>(mi.fordblks));
#endif
  return out;
}

void Server::setup_routes() {
  httplib::Server& h = *http_;

  // Requests are counted before their response goes out (so a client that got its answer sees
  // it in /metrics); the logger counts only what no handler saw (404s, malformed HTTP).
  static thread_local bool counted = false;
  auto count = [this](const std::string& path, int status) {
    // Only the served routes are labels (arbitrary paths would grow the map without bound).
    static const char* const kRoutes[] = {"/v1/completions", "/v1/chat/completions",
                                          "/v1/embeddings",  "/v1/classify",
                                          "/v1/models",      "/health",
                                          "/metrics"};
    std::string label = "other";
    for (const char* r : kRoutes)
      if (path == r) label = r;
    std::lock_guard<std::mutex> lk(metrics_.mu);
    ++metrics_.requests[{label, status}];
    counted = true;
  };
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  auto get = [&h, count](const std::string& path, Handler f) {
    h.Get(path, [count, path, f](const httplib::Request& req, httplib::Response& res) {
      f(req, res);
      count(path, res.status == -1 ? 200 : res.status);
    });
  };
  auto post = [&h, count](const std::string& path, Handler f) {
    h.Post(path, [count, path, f](const httplib::Request& req, httplib::Response& res) {
      f(req, res);
      count(path, res.status == -1 ? 200 : res.status);
    });
  };

  h.set_pre_routing_handler([this, count](const httplib::Request& req, httplib::Response& res) {
    counted = false;
    if (opt_.api_key.empty() || req.path.rfind("/v1/", 0) != 0)
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + opt_.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "missing or invalid API key (Authorization: Bearer KEY)", "",
                             "invalid_api_key"));
    count(req.path, 401);
    return httplib::Server::HandlerResponse::Handled;
  });

  h.set_logger([this, count](const httplib::Request& req, const httplib::Response& res) {
    if (!counted) count(req.path, res.status);
    counted = false;
    if (opt_.log_requests)
      std::fprintf(stderr, "serve: %s %s %d %s\n", req.method.c_str(), req.path.c_str(), res.status,
                   req.remote_addr.c_str());
  });

  get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", kJson);
  });

  get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });

  get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m = {
        {"id", opt_.model_id}, {"object", "model"}, {"created", created_}, {"owned_by", "ingot"}};
    res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), kJson);
  });

  // Runs a job on the scheduler and waits for its reply (non-streaming requests).
  auto run_and_wait = [this](httplib::Response& res,
                             std::function<Reply(std::atomic<bool> & cancelled)> work) {
    auto done = std::make_shared<std::promise<Reply>>();
    auto fut = done->get_future();
    auto job = std::make_shared<Job>();
    job->run = [done, work, cancelled = job->cancelled] {
      try {
        done->set_value(work(*cancelled));
      } catch (...) {
        done->set_value(reply_for_exception(std::current_exception()));
      }
    };
    job->fail = [done](int status, const std::string& msg) {
      done->set_value({status, error_body(msg, "server_error", "", "")});
    };
    if (!submit(job))
      throw ApiError(429, "the server is busy (request queue full); retry later", "", "queue_full",
                     "server_error");
    Reply r = fut.get();
    res.status = r.status;
    res.set_content(r.body, kJson);
  };

  auto check_model = [this](const std::string& model) {
    if (model != opt_.model_id)
      throw ApiError(400, "unknown model '" + model + "' (this server has '" + opt_.model_id + "')",
                     "model", "model_not_found");
  };

  // Token ids of each prompt (encoded, or checked against the vocabulary).
  auto prompt_ids = [this](const std::vector<Prompt>& prompts, const char* param) {
    std::vector<std::vector<int32_t>> out;
    const int64_t vocab = tm_.model->config().vocab_size;
    for (const Prompt& p : prompts) {
      if (p.ids.empty()) {
        out.push_back(llm::encode_prompt(tm_, p.text));
      } else {
        for (int32_t id : p.ids)
          if (id < 0 || id >= vocab)
            throw ApiError(400,
                           fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab),
                           param);
        out.push_back(p.ids);
      }
      if (out.back().empty()) throw ApiError(400, "a prompt encodes to no tokens", param);
      if (static_cast<int64_t>(out.back().size()) > context_limit())
        throw ApiError(400,
                       fmt::format("this model's maximum context length is {} tokens, but the "
                                   "input has {} tokens",
                                   context_limit(), out.back().size()),
                       param, "context_length_exceeded");
    }
    return out;
  };

  auto completions = [this, run_and_wait, check_model, prompt_ids](
                         const httplib::Request& req, httplib::Response& res, bool chat) {
    try {
      CompletionRequest r = parse_completion_request(req.body, chat);
      check_model(r.model);
      std::vector<std::vector<int32_t>> prompts;
      if (chat) {
        try {
          prompts.push_back(llm::encode_chat(tm_, r.messages_json));
        } catch (const Error& e) {
          throw ApiError(400, std::string("cannot render the chat template: ") + e.what(),
                         "messages");
        }
        // A forced call in a template that wraps calls in <tool_call> tags (Qwen3, Hermes):
        // the prompt opens the tag and the grammar writes the JSON inside it.
        if (r.forced_tool() &&
            tm_.tokenizer->chat_template().find("<tool_call>") != std::string::npos) {
          const auto open = tm_.tokenizer->encode("<tool_call>\n", {.add_special_tokens = false});
          prompts[0].insert(prompts[0].end(), open.begin(), open.end());
        }
      } else {
        prompts = prompt_ids(r.prompts, "prompt");
      }
      // max_tokens per prompt: given (checked against the context) or the default (capped).
      const int64_t ctx = context_limit();
      std::vector<int64_t> max_tokens;
      for (const auto& p : prompts) {
        const int64_t len = static_cast<int64_t>(p.size());
        // (Echo with max_tokens 0 scores a prompt that may fill the whole context.)
        const bool score_only = r.max_tokens && *r.max_tokens == 0;
        if (len > ctx || (len == ctx && !score_only) || (r.max_tokens && *r.max_tokens > ctx - len))
          throw ApiError(
              400,
              fmt::format("this model's maximum context length is {} tokens, but {} tokens "
                          "are in the prompt and {} were requested for the completion",
                          ctx, len, r.max_tokens.value_or(1)),
              chat ? "messages" : "prompt", "context_length_exceeded");
        max_tokens.push_back(r.max_tokens ? *r.max_tokens
                                          : std::min(opt_.default_max_tokens, ctx - len));
        // A request that could never join the batch (alone over the KV budget) is refused
        // now instead of waiting forever.
        if (kv_max_blocks_ > 0 && kv_blocks(len + max_tokens.back()) > kv_max_blocks_)
          throw ApiError(
              400,
              fmt::format("{} prompt + {} completion tokens need {} KV blocks ({} bytes of "
                          "keys/values), more than this server's KV budget of {} blocks ({} "
                          "bytes); ask for fewer max_tokens or send a shorter prompt",
                          len, max_tokens.back(), kv_blocks(len + max_tokens.back()),
                          kv_blocks(len + max_tokens.back()) * kv_block_bytes(), kv_max_blocks_,
                          kv_budget_),
              "max_tokens", "kv_budget_exceeded");
      }
      // Echo: the prompt as given (token ids: their text, special tokens left out).
      std::vector<std::string> echo_texts(prompts.size());
      if (r.echo)
        for (size_t i = 0; i < prompts.size(); ++i)
          echo_texts[i] = r.prompts[i].ids.empty()
                              ? r.prompts[i].text
                              : tm_.tokenizer->decode(prompts[i], {.skip_special_tokens = true});
      // Tool calls parsed out of a finished chat choice (finish_reason becomes "tool_calls").
      auto finalize = [r](Choice c) {
        if (!r.parse_tools()) return c;
        std::string content;
        std::vector<ToolCall> calls = parse_tool_calls(c.text, r.tools, content);
        if (!calls.empty()) {
          c.tool_calls = std::move(calls);
          c.text = content;
          c.finish_reason = "tool_calls";
        }
        return c;
      };
      const uint64_t seed = r.seed ? *r.seed : std::random_device{}();
      const std::string id = random_id(chat ? "chatcmpl-" : "cmpl-");
      const int64_t created = now_seconds();

      // Generates every choice (prompt i, sample j -> index i*n+j) in order; `on_piece` gets
      // streamed text with the logprobs of the tokens since the last piece, `on_finish` the
      // finish reason with the logprobs not passed on yet; returns the choices and usage.
      using Piece = std::function<void(int, const std::string&, std::vector<TokenLogprob>)>;
      const std::vector<int32_t> eos = eos_ids();
      auto generate_all = [this, r, prompts, max_tokens, seed, finalize, eos, echo_texts](
                              std::atomic<bool>& cancelled, const Piece& on_piece,
                              const Piece& on_finish) {
        std::vector<Choice> choices;
        Usage usage;
        for (size_t i = 0; i < prompts.size(); ++i) {
          usage.prompt_tokens += static_cast<int64_t>(prompts[i].size());
          // Echo: the prompt's entries, computed once for its n choices.
          std::vector<TokenLogprob> echo_lps;
          if (r.echo && r.logprobs >= 0 && !cancelled.load())
            echo_lps = echo_logprobs(prompts[i], r.logprobs);
          for (int j = 0; j < r.n; ++j) {
            const int index = static_cast<int>(i) * r.n + j;
            if (cancelled.load()) break;
            if (r.echo && on_piece) on_piece(index, echo_texts[i], echo_lps);
            if (max_tokens[i] == 0) {  // echo scoring the prompt: no completion
              metrics_.prompt_tokens += static_cast<int64_t>(prompts[i].size());
              if (on_finish) on_finish(index, "length", {});
              Choice c{index, echo_texts[i], "length", {}, std::nullopt};
              if (r.logprobs >= 0) c.logprobs = echo_lps;
              choices.push_back(std::move(c));
              continue;
            }
            llm::TextGenerateOptions t;
            t.gen.max_tokens = max_tokens[i];
            t.gen.stop_ids = opt_.stop_ids;
            t.gen.sampler.temperature = r.temperature;
            t.gen.sampler.top_p = r.top_p;
            t.gen.sampler.presence_penalty = r.presence_penalty;
            t.gen.sampler.frequency_penalty = r.frequency_penalty;
            t.gen.sampler.seed = seed + static_cast<uint64_t>(index);
            t.gen.on_token = [&cancelled](int, int32_t) { return !cancelled.load(); };
            std::unique_ptr<llm::grammar::TokenConstraint> con = constraint(r.grammar);
            if (con)
              t.gen.token_mask = [&con](int, const std::vector<int32_t>& gen) {
                return con->next_mask(gen);
              };
            t.stop_strings = r.stop;
            // Logprobs of every sampled token but an EOS (it adds no text).
            std::vector<TokenLogprob> all, pending;
            if (r.logprobs >= 0) {
              t.gen.logprobs = r.logprobs;
              t.gen.on_logprobs = [&](int, const llm::TokenLogprobs& lp) {
                if (std::find(eos.begin(), eos.end(), lp.id) != eos.end()) return;
                pending.push_back(token_logprob(lp));
                all.push_back(pending.back());
              };
            }
            if (on_piece)
              t.on_text = [&](const std::string& piece) {
                on_piece(index, piece, std::move(pending));
                pending.clear();
              };
            llm::TextResult tr = llm::generate_text(tm_, prompts[i], t);
            count_mask_work(con.get());
            usage.completion_tokens += static_cast<int64_t>(tr.tokens.size());
            metrics_.prompt_tokens += static_cast<int64_t>(prompts[i].size());
            metrics_.generated_tokens += static_cast<int64_t>(tr.tokens.size());
            ++metrics_.generate_calls;
            ++metrics_.batched_rows;
            {
              std::lock_guard<std::mutex> lk(metrics_.mu);
              metrics_.decode_seconds += tr.metrics.decode_seconds;
              metrics_.last_tokens_per_second = tr.metrics.decode_tokens_per_second();
            }
            const std::string finish = tr.finish == llm::FinishReason::length ? "length" : "stop";
            if (on_finish) on_finish(index, finish, std::move(pending));
            Choice c{index, echo_texts[i] + tr.text, finish, {}, std::nullopt};
            if (r.logprobs >= 0) {
              c.logprobs = echo_lps;
              c.logprobs->insert(c.logprobs->end(), all.begin(), all.end());
            }
            choices.push_back(finalize(std::move(c)));
          }
        }
        return std::make_pair(choices, usage);
      };

      // Single-choice requests run as rows of the scheduler's continuous batch. (A stream
      // whose output is parsed for tool calls is answered when it is complete: it runs alone.)
      // Echo with max_tokens 0 generates nothing: it runs alone too.
      const bool batchable =
          prompts.size() == 1 && r.n == 1 && !(r.stream && r.parse_tools()) && max_tokens[0] > 0;
      auto make_row = [&] {
        auto row = std::make_shared<BatchRow>();
        row->prompt = prompts[0];
        row->max_tokens = max_tokens[0];
        row->sampler.temperature = r.temperature;
        row->sampler.top_p = r.top_p;
        row->sampler.presence_penalty = r.presence_penalty;
        row->sampler.frequency_penalty = r.frequency_penalty;
        row->sampler.seed = seed;
        row->stop = r.stop;
        row->grammar = r.grammar;
        row->logprobs = r.logprobs;
        row->echo = r.echo;
        return row;
      };
      const Usage prompt_usage{static_cast<int64_t>(prompts[0].size()), 0};

      if (!r.stream && batchable) {
        auto done = std::make_shared<std::promise<Reply>>();
        auto fut = done->get_future();
        auto job = std::make_shared<Job>();
        job->row = make_row();
        // Echo: the prompt's entries, set at admission (on the scheduler thread, as on_done).
        auto echo_lps = std::make_shared<std::vector<TokenLogprob>>();
        job->row->on_prompt = [echo_lps](std::vector<TokenLogprob> lps) {
          *echo_lps = std::move(lps);
        };
        job->row->on_done = [=](const std::string& text, int64_t ntok, int64_t cached,
                                const std::string& fin, std::vector<TokenLogprob> lps) {
          if (fin == "cancelled") {
            done->set_value(
                {503, error_body("the server is shutting down", "server_error", "", "")});
            return;
          }
          Choice c{0, echo_texts[0] + text, fin, {}, std::nullopt};
          if (r.logprobs >= 0) {
            c.logprobs = std::move(*echo_lps);
            c.logprobs->insert(c.logprobs->end(), lps.begin(), lps.end());
          }
          done->set_value(
              {200, completion_response(chat, id, created, r.model, {finalize(std::move(c))},
                                        {prompt_usage.prompt_tokens, ntok, cached})});
        };
        job->row->on_error = [done](std::exception_ptr ep) {
          done->set_value(reply_for_exception(ep));
        };
        job->fail = [done](int status, const std::string& msg) {
          done->set_value({status, error_body(msg, "server_error", "", "")});
        };
        if (!submit(job))
          throw ApiError(429, "the server is busy (request queue full); retry later", "",
                         "queue_full", "server_error");
        Reply rep = fut.get();
        res.status = rep.status;
        res.set_content(rep.body, kJson);
        return;
      }

      if (!r.stream) {
        run_and_wait(res, [=](std::atomic<bool>& cancelled) {
          auto [choices, usage] = generate_all(cancelled, nullptr, nullptr);
          return Reply{200, completion_response(chat, id, created, r.model, choices, usage)};
        });
        return;
      }

      // Streaming: the scheduler pushes SSE events, this connection's thread writes them; a
      // failed write (client gone) cancels the job.
      auto events = std::make_shared<EventStream>();
      auto job = std::make_shared<Job>();
      auto cancelled = job->cancelled;
      job->run = [=] {
        try {
          const size_t nchoices = static_cast<size_t>(r.n) * prompts.size();
          std::vector<bool> started(nchoices, false);
          std::vector<int64_t> offsets(nchoices, 0);  // completions' text_offset per choice
          auto lp_json = [&](int index, const std::vector<TokenLogprob>& lps) {
            return r.logprobs >= 0 ? logprobs_json(chat, lps, offsets[index]) : json(nullptr);
          };
          auto on_piece = [&](int index, const std::string& piece, std::vector<TokenLogprob> lps) {
            const bool role = chat && !started[index];
            started[index] = true;
            events->push(stream_chunk(chat, id, created, r.model, index, piece, "", role,
                                      lp_json(index, lps)));
          };
          auto on_finish = [&](int index, const std::string& finish,
                               std::vector<TokenLogprob> lps) {
            if ((chat && !started[index]) || !lps.empty()) {
              // The role once (no text at all), the logprobs not sent yet (EOS, stop string).
              events->push(stream_chunk(chat, id, created, r.model, index, "", "",
                                        chat && !started[index], lp_json(index, lps)));
              started[index] = true;
            }
            events->push(stream_chunk(chat, id, created, r.model, index, "", finish));
          };
          if (r.parse_tools()) {  // buffered: text, tool calls and finish at the end
            auto [choices, usage] = generate_all(*cancelled, nullptr, nullptr);
            for (const Choice& c : choices) {
              events->push(
                  stream_chunk(chat, id, created, r.model, c.index, c.text, "", true,
                               c.logprobs ? lp_json(c.index, *c.logprobs) : json(nullptr)));
              if (!c.tool_calls.empty())
                events->push(stream_tool_calls_chunk(id, created, r.model, c.index, c.tool_calls));
              events->push(stream_chunk(chat, id, created, r.model, c.index, "", c.finish_reason));
            }
            if (r.include_usage)
              events->push(stream_usage_chunk(chat, id, created, r.model, usage));
            events->push(stream_done());
            events->finish();
            return;
          }
          auto [choices, usage] = generate_all(*cancelled, on_piece, on_finish);
          if (r.include_usage) events->push(stream_usage_chunk(chat, id, created, r.model, usage));
        } catch (...) {
          Reply e = reply_for_exception(std::current_exception());
          events->push("data: " + e.body + "\n\n");
        }
        events->push(stream_done());
        events->finish();
      };
      if (batchable) {
        job->row = make_row();
        auto started = std::make_shared<bool>(false);
        auto offset = std::make_shared<int64_t>(0);  // completions' text_offset
        auto lp_json = [=](const std::vector<TokenLogprob>& lps) {
          return r.logprobs >= 0 ? logprobs_json(chat, lps, *offset) : json(nullptr);
        };
        job->row->on_prompt = [=](std::vector<TokenLogprob> lps) {
          events->push(
              stream_chunk(chat, id, created, r.model, 0, echo_texts[0], "", false, lp_json(lps)));
        };
        job->row->on_text = [=](const std::string& piece, std::vector<TokenLogprob> lps) {
          events->push(stream_chunk(chat, id, created, r.model, 0, piece, "", chat && !*started,
                                    lp_json(lps)));
          *started = true;
        };
        job->row->on_done = [=](const std::string&, int64_t ntok, int64_t cached,
                                const std::string& fin, std::vector<TokenLogprob> lps) {
          if (fin != "cancelled") {
            // The role once (no text at all), the logprobs not sent yet (EOS, stop string).
            if ((chat && !*started) || !lps.empty())
              events->push(stream_chunk(chat, id, created, r.model, 0, "", "", chat && !*started,
                                        lp_json(lps)));
            events->push(stream_chunk(chat, id, created, r.model, 0, "", fin));
            if (r.include_usage)
              events->push(stream_usage_chunk(chat, id, created, r.model,
                                              {prompt_usage.prompt_tokens, ntok, cached}));
          }
          events->push(stream_done());
          events->finish();
        };
        job->row->on_error = [events](std::exception_ptr ep) {
          events->push("data: " + reply_for_exception(ep).body + "\n\n");
          events->push(stream_done());
          events->finish();
        };
      }
      job->fail = [events](int status, const std::string& msg) {
        events->push("data: " + error_body(msg, "server_error", "", "") + "\n\n");
        events->push(stream_done());
        events->finish();
      };
      if (!submit(job))
        throw ApiError(429, "the server is busy (request queue full); retry later", "",
                       "queue_full", "server_error");
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, events, cancelled](size_t, httplib::DataSink& sink) {
            std::deque<std::string> batch;
            bool done = false;
            {
              std::unique_lock<std::mutex> lk(events->mu);
              events->cv.wait_for(lk, std::chrono::milliseconds(200),
                                  [&] { return !events->events.empty() || events->done; });
              batch.swap(events->events);
              done = events->done;
            }
            for (const std::string& e : batch)
              if (!sink.write(e.data(), e.size())) {
                if (!cancelled->exchange(true)) ++metrics_.cancelled;
                return false;
              }
            if (done) sink.done();
            return true;
          },
          [this, cancelled](bool success) {
            if (!success && !cancelled->exchange(true)) ++metrics_.cancelled;
          });
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (...) {
      Reply r = reply_for_exception(std::current_exception());
      res.status = r.status;
      res.set_content(r.body, kJson);
    }
  };

  post("/v1/completions", [completions](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, false);
  });
  post("/v1/chat/completions", [completions](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, true);
  });

  post("/v1/embeddings", [this, run_and_wait, check_model, prompt_ids](const httplib::Request& req,
                                                                       httplib::Response& res) {
    try {
      EmbeddingRequest r = parse_embedding_request(req.body);
      check_model(r.model);
      auto prompts = prompt_ids(r.inputs, "input");
      run_and_wait(res, [this, r, prompts](std::atomic<bool>&) {
        auto vecs = llm::embed(*tm_.model, prompts,
                               r.mean_pooling ? llm::Pooling::mean : llm::Pooling::last);
        json data = json::array();
        int64_t ntok = 0;
        for (size_t i = 0; i < vecs.size(); ++i) {
          // base64: the float32 values' little-endian bytes (what the openai clients ask for).
          json emb = r.base64 ? json(base64_encode(
                                    std::string_view(reinterpret_cast<const char*>(vecs[i].data()),
                                                     vecs[i].size() * sizeof(float))))
                              : json(vecs[i]);
          data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", emb}});
          ntok += static_cast<int64_t>(prompts[i].size());
        }
        metrics_.prompt_tokens += ntok;
        json out = {{"object", "list"},
                    {"data", data},
                    {"model", r.model},
                    {"usage", {{"prompt_tokens", ntok}, {"total_tokens", ntok}}}};
        return Reply{200, out.dump(-1, ' ', false, json::error_handler_t::replace)};
      });
    } catch (...) {
      Reply r = reply_for_exception(std::current_exception());
      res.status = r.status;
      res.set_content(r.body, kJson);
    }
  });

  post("/v1/classify",
       [this, run_and_wait, check_model](const httplib::Request& req, httplib::Response& res) {
         try {
           ClassifyRequest r = parse_classify_request(req.body);
           check_model(r.model);
           run_and_wait(res, [this, r](std::atomic<bool>&) {
             llm::TextClassifier c{r.tmpl, r.labels};
             auto probs = llm::classify_texts(tm_, c, r.texts);
             json data = json::array();
             for (size_t i = 0; i < probs.size(); ++i) {
               json p = json::object();
               size_t best = 0;
               for (size_t k = 0; k < r.labels.size(); ++k) {
                 p[r.labels[k]] = probs[i][k];
                 if (probs[i][k] > probs[i][best]) best = k;
               }
               data.push_back({{"index", i}, {"label", r.labels[best]}, {"probs", p}});
             }
             json out = {{"object", "list"}, {"data", data}, {"model", r.model}};
             return Reply{200, out.dump(-1, ' ', false, json::error_handler_t::replace)};
           });
         } catch (...) {
           Reply r = reply_for_exception(std::current_exception());
           res.status = r.status;
           res.set_content(r.body, kJson);
         }
       });
}

}  // namespace ingot::server
