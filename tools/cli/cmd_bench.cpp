// `ingot bench`: throughput of the library's main paths on any checkpoint (random token ids, no
// tokenizer needed), one JSON line per run on stdout: decode (B rows, P-token prompts, N new
// tokens each), prefill (B x L tokens, last-position hidden states), classify (N prompts of
// L tokens sharing an S-token prefix, K single-token labels) and lora (LoRA training steps of
// the `ingot lora train` trainer on B x L tokens: AdamW, optional gradient checkpointing). Each
// figure follows warm-up run(s) of the same shapes; the device is synchronised before every
// clock read.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.h"
#include "core/ingot.h"
#include "llm/generate.h"
#include "llm/kv_cache.h"
#include "llm/score.h"
#include "llm_common.h"
#include "train/trainer.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

struct BenchArgs {
  ModelArgs model;
  std::string task;
  int64_t batch = 1;          // decode / prefill rows
  int64_t prompt_len = 32;    // decode prompt tokens; prefill / classify tokens per row
  int64_t new_tokens = 256;   // decode
  int64_t texts = 512;        // classify prompts
  int64_t shared_prefix = 0;  // classify: tokens every prompt starts with
  int64_t min_len = 0;     // classify: shortest prompt (lengths uniform in [min_len, len]; 0: len)
  int64_t labels = 3;      // classify
  int64_t batch_size = 0;  // classify rows per forward pass (0: auto)
  int repeat = 3;          // measured runs (the best is reported)
  uint64_t seed = 0;
  // lora
  int rank = 16;
  float alpha = 0.0f;  // 0: 2 x rank
  std::string targets = "all-linear";
  bool grad_checkpoint = false;
  int64_t steps = 5;         // measured optimizer steps
  int64_t warmup_steps = 2;  // optimizer steps before the clock starts
  double lr = 1e-4;
  double max_grad_norm = 1.0;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// `rows` random id sequences of `len` tokens, the first `shared` equal in every row. Ids avoid
/// the first 16 entries (special tokens of most vocabularies).
std::vector<std::vector<int32_t>> random_ids(int64_t rows, int64_t len, int64_t shared,
                                             int64_t vocab, std::mt19937_64& g) {
  const int64_t hi = std::max<int64_t>(17, std::min<int64_t>(vocab, 32000));
  std::uniform_int_distribution<int32_t> d(16, static_cast<int32_t>(hi - 1));
  std::vector<int32_t> prefix(static_cast<size_t>(shared));
  for (int32_t& t : prefix) t = d(g);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(rows), prefix);
  for (auto& r : out)
    while (static_cast<int64_t>(r.size()) < len) r.push_back(d(g));
  return out;
}

double mib(int64_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

nlohmann::json bench_decode(const models::Model& m, const BenchArgs& a, std::mt19937_64& g) {
  const auto prompts = random_ids(a.batch, a.prompt_len, 0, m.vocab_size(), g);
  llm::GenerateOptions opt;
  opt.max_tokens = std::min<int64_t>(a.new_tokens, 8);
  llm::generate(m, prompts, opt);  // warm-up: kernels, caches, allocator
  opt.max_tokens = a.new_tokens;
  nlohmann::json best;
  double best_rate = -1;
  for (int r = 0; r < a.repeat; ++r) {
    memory::reset_peak(m.device());
    const llm::GenerationResult res = llm::generate(m, prompts, opt);
    const llm::GenerationMetrics& x = res.metrics;
    if (x.decode_tokens_per_second() <= best_rate) continue;
    best_rate = x.decode_tokens_per_second();
    best = {{"decode_tok_s", x.decode_tokens_per_second()},
            {"decode_tok_s_per_row", x.decode_tokens_per_second() / static_cast<double>(a.batch)},
            {"prefill_tok_s", x.prefill_tokens_per_second()},
            {"ttft_ms", x.time_to_first_token * 1e3},
            {"generated_tokens", x.generated_tokens},
            {"peak_memory_mib", mib(x.peak_memory_bytes)}};
  }
  return best;
}

nlohmann::json bench_prefill(const models::Model& m, const BenchArgs& a, std::mt19937_64& g) {
  const auto ids = random_ids(a.batch, a.prompt_len, 0, m.vocab_size(), g);
  double best = 1e300;
  int64_t peak = 0;
  for (int r = 0; r <= a.repeat; ++r) {  // run 0 is the warm-up
    memory::reset_peak(m.device());
    const auto t0 = Clock::now();
    llm::PromptCache cache(m);
    Array h = llm::prefill(m, ids, cache, 0, 1);
    h.eval();
    synchronize(m.device());
    const double s = seconds_since(t0);
    if (r > 0 && s < best) {
      best = s;
      peak = static_cast<int64_t>(memory::peak(m.device()));
    }
  }
  const double tokens = static_cast<double>(a.batch * a.prompt_len);
  return {{"prefill_tok_s", tokens / best}, {"seconds", best}, {"peak_memory_mib", mib(peak)}};
}

nlohmann::json bench_classify(const models::Model& m, const BenchArgs& a, std::mt19937_64& g) {
  if (a.shared_prefix >= a.prompt_len)
    raise("[bench] --shared-prefix {} must be below --len {}", a.shared_prefix, a.prompt_len);
  const int64_t lo = a.min_len > 0 ? a.min_len : a.prompt_len;
  if (lo > a.prompt_len || lo <= a.shared_prefix)
    raise("[bench] --min-len {} must be above --shared-prefix {} and at most --len {}", lo,
          a.shared_prefix, a.prompt_len);
  auto prompts = random_ids(a.texts, a.prompt_len, a.shared_prefix, m.vocab_size(), g);
  // Mixed lengths: each prompt cut to a length uniform in [lo, len].
  std::uniform_int_distribution<int64_t> cut(lo, a.prompt_len);
  int64_t tokens = 0;
  for (auto& p : prompts) {
    p.resize(static_cast<size_t>(cut(g)));
    tokens += static_cast<int64_t>(p.size());
  }
  std::vector<std::vector<int32_t>> labels;
  for (int64_t k = 0; k < a.labels; ++k) labels.push_back({static_cast<int32_t>(100 + 7 * k)});
  llm::ClassifyOptions opt;
  opt.batch_size = a.batch_size;
  const std::vector<std::vector<int32_t>> warm(prompts.begin(),
                                               prompts.begin() + std::min<int64_t>(a.texts, 1024));
  llm::classify(m, warm, labels, opt);
  double best = 1e300;
  int64_t peak = 0;
  for (int r = 0; r < a.repeat; ++r) {
    memory::reset_peak(m.device());
    const auto t0 = Clock::now();
    llm::classify(m, prompts, labels, opt);
    synchronize(m.device());
    const double s = seconds_since(t0);
    if (s < best) {
      best = s;
      peak = static_cast<int64_t>(memory::peak(m.device()));
    }
  }
  return {{"seq_s", static_cast<double>(a.texts) / best},
          {"tok_s", static_cast<double>(tokens) / best},
          {"seconds", best},
          {"peak_memory_mib", mib(peak)}};
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// LoRA training steps through train::Trainer (what `ingot lora train` runs): `batch` random
/// sequences of len + 1 ids, so that every step feeds batch x len tokens and predicts as many;
/// loss on every position. The warm-up steps update the adapter like the measured ones.
nlohmann::json bench_lora(models::Model& m, const BenchArgs& a, std::mt19937_64& g) {
  if (a.batch > (1 << 20)) raise("[bench] lora: --batch {} is too large", a.batch);
  const auto rows = random_ids(a.batch, a.prompt_len + 1, 0, m.vocab_size(), g);
  std::vector<train::Example> examples;
  for (const auto& r : rows) examples.push_back({r, std::vector<uint8_t>(r.size(), 1)});
  train::LoraConfig c{.rank = a.rank,
                      .alpha = a.alpha > 0.0f ? a.alpha : 2.0f * static_cast<float>(a.rank),
                      .targets = split_list(a.targets),
                      .base_model = a.model.dir};
  if (c.targets.empty()) raise("[bench] lora: --targets is empty");
  train::LoraAdapter adapter = train::LoraAdapter::init(m, c, a.seed);
  train::TrainOptions o{.iters = a.warmup_steps + a.steps,
                        .batch_size = static_cast<int>(a.batch),
                        .lr = static_cast<float>(a.lr),
                        .schedule = "constant",
                        .max_grad_norm = static_cast<float>(a.max_grad_norm),
                        .seed = a.seed,
                        .grad_checkpoint = a.grad_checkpoint,
                        .log_every = 0};
  train::Trainer t(m, adapter, std::move(examples), {}, o);
  nlohmann::json warm_losses = nlohmann::json::array();
  for (int64_t i = 0; i < a.warmup_steps; ++i) warm_losses.push_back(t.step().loss);
  synchronize(m.device());
  memory::reset_peak(m.device());
  std::vector<double> step_s;
  std::vector<float> losses;
  int64_t predicted = 0;
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) {
    const auto ts = Clock::now();
    const train::StepStats st = t.step();
    synchronize(m.device());
    step_s.push_back(seconds_since(ts));
    losses.push_back(st.loss);
    predicted += st.tokens;
  }
  const double total = seconds_since(t0);
  const auto peak = static_cast<int64_t>(memory::peak(m.device()));
  const double tokens = static_cast<double>(a.batch * a.prompt_len * a.steps);
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"tok_s", tokens / total},
          {"step_ms", total / static_cast<double>(a.steps) * 1e3},
          {"step_ms_min", *std::min_element(step_s.begin(), step_s.end()) * 1e3},
          {"step_ms_max", *std::max_element(step_s.begin(), step_s.end()) * 1e3},
          {"peak_memory_mib", mib(peak)},
          {"loss_first", num(losses.front())},
          {"loss_last", num(losses.back())},
          {"warmup_losses", warm_losses},
          {"predicted_tokens_per_step", predicted / a.steps},
          {"lora_modules", adapter.targets().size()},
          {"trainable_params", adapter.num_parameters()},
          {"rank", c.rank},
          {"alpha", c.alpha},
          {"targets", a.targets},
          {"grad_checkpoint", a.grad_checkpoint},
          {"steps", a.steps},
          {"warmup_steps", a.warmup_steps},
          {"lr", a.lr},
          {"max_grad_norm", a.max_grad_norm},
          {"dtype", std::string(dtype_name(m.dtype()))}};
}

int run_bench(const BenchArgs& a) {
  if (a.task == "lora" && !a.model.adapter.empty())
    raise("[bench] lora: --adapter is not supported (the benchmark trains a fresh adapter)");
  const auto t0 = Clock::now();
  auto model = load_model(a.model);
  const double load_s = seconds_since(t0);
  std::mt19937_64 g(a.seed);
  nlohmann::json r;
  if (a.task == "decode") {
    r = bench_decode(*model, a, g);
    r["batch"] = a.batch;
    r["prompt_len"] = a.prompt_len;
    r["new_tokens"] = a.new_tokens;
  } else if (a.task == "prefill") {
    r = bench_prefill(*model, a, g);
    r["batch"] = a.batch;
    r["len"] = a.prompt_len;
  } else if (a.task == "lora") {
    r = bench_lora(*model, a, g);
    r["batch"] = a.batch;
    r["len"] = a.prompt_len;
  } else {
    r = bench_classify(*model, a, g);
    r["texts"] = a.texts;
    r["len"] = a.prompt_len;
    r["shared_prefix"] = a.shared_prefix;
    r["min_len"] = a.min_len > 0 ? a.min_len : a.prompt_len;
    r["labels"] = a.labels;
    r["batch_size"] = a.batch_size;
  }
  r["task"] = a.task;
  r["model"] = a.model.dir;
  r["device"] = model->device().str();
  r["load_s"] = load_s;
  write_stdout(r.dump() + "\n", true);
  return 0;
}

const Registrar reg(
    {"bench", "Measure decode, prefill, classify or LoRA training throughput on random token ids",
     [](CLI::App& app) {
       auto a = std::make_shared<BenchArgs>();
       add_model_options(app, a->model);
       add_tp_option(app, a->model);
       app.add_option("task", a->task, "decode | prefill | classify | lora")
           ->required()
           ->check(CLI::IsMember({"decode", "prefill", "classify", "lora"}));
       auto* batch =
           app.add_option("--batch", a->batch, "decode/prefill/lora: rows (default 1; lora: 8)")
               ->check(CLI::PositiveNumber);
       auto* len = app.add_option("--len,--seq-len", a->prompt_len,
                                  "Tokens per prompt (decode: prompt before the new tokens; "
                                  "lora: tokens fed per row and step; default 32, lora 512)")
                       ->check(CLI::PositiveNumber);
       app.add_option("--new", a->new_tokens, "decode: new tokens per row (default 256)")
           ->check(CLI::PositiveNumber);
       app.add_option("--texts", a->texts, "classify: prompts (default 512)")
           ->check(CLI::PositiveNumber);
       app.add_option("--shared-prefix", a->shared_prefix,
                      "classify: leading tokens shared by every prompt (default 0)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--min-len", a->min_len,
                      "classify: shortest prompt; lengths are uniform in [min-len, len] "
                      "(default: every prompt has --len tokens)")
           ->check(CLI::PositiveNumber);
       app.add_option("--labels", a->labels, "classify: single-token labels (default 3)")
           ->check(CLI::Range(2, 64));
       app.add_option("--batch-size", a->batch_size,
                      "classify: rows per forward (default 0: auto, as ingot classify)")
           ->check(CLI::PositiveNumber);
       app.add_option("--repeat", a->repeat, "Measured runs; the best is reported (default 3)")
           ->check(CLI::PositiveNumber);
       app.add_option("--seed", a->seed, "Seed of the random token ids (and the LoRA init)");
       app.add_option("--rank", a->rank, "lora: LoRA rank r (default 16)")
           ->check(CLI::PositiveNumber);
       app.add_option("--alpha", a->alpha, "lora: LoRA alpha (default 2 x rank)")
           ->check(CLI::PositiveNumber);
       app.add_option("--targets", a->targets,
                      "lora: modules, comma-separated, or all-linear (default all-linear)");
       app.add_flag("--grad-checkpoint", a->grad_checkpoint,
                    "lora: recompute each decoder block in the backward pass");
       app.add_option("--steps", a->steps, "lora: measured optimizer steps (default 5)")
           ->check(CLI::PositiveNumber);
       app.add_option("--warmup-steps", a->warmup_steps,
                      "lora: optimizer steps before the measured ones (default 2)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--lr", a->lr, "lora: AdamW learning rate, constant (default 1e-4)")
           ->check(CLI::PositiveNumber);
       app.add_option("--max-grad-norm", a->max_grad_norm,
                      "lora: clip the global gradient norm (default 1, 0 = off)")
           ->check(CLI::NonNegativeNumber);
       app.footer(
           "Prints one JSON line, e.g.\n"
           "  ingot bench decode --model DIR --device cuda --batch 8 --len 32 --new 256\n"
           "  ingot bench prefill --model DIR --batch 64 --len 512\n"
           "  ingot bench classify --model DIR --texts 512 --len 64 --shared-prefix 40\n"
           "  ingot bench lora --model DIR --device cuda --batch 8 --len 512 --rank 16 "
           "--grad-checkpoint\n"
           "lora reports tok_s (batch x len x steps / seconds), step_ms, the device's peak memory "
           "over the measured steps and the loss of the first and last measured step.");
       return std::function<int()>([a, batch, len] {
         if (a->task == "lora") {  // the training benchmark's own defaults
           if (batch->count() == 0) a->batch = 8;
           if (len->count() == 0) a->prompt_len = 512;
         }
         return run_bench(*a);
       });
     }});

}  // namespace
}  // namespace ingot::cli
