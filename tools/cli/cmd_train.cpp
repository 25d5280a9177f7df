// `ingot train`: LoRA fine-tuning on JSONL data ({"text"}, {"prompt","completion"} or
// {"messages"}), writing a PEFT-compatible adapter, resumable checkpoints and a loss curve.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "command.h"
#include "llm_common.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"
#include "util/error.h"

namespace ingot::cli {
namespace {
namespace fs = std::filesystem;

struct TrainArgs {
  ModelArgs model;
  std::string data, valid, out = "adapters", resume, targets = "q_proj,v_proj", loss_log;
  int64_t iters = 0;
  double epochs = 0;
  int batch_size = 4, grad_accum = 1, rank = 8, num_layers = 0;
  int64_t seq_len = 2048, warmup = 0, eval_every = 0, eval_batches = 0, save_every = 0;
  int64_t log_every = 10;
  float alpha = 16.0f, dropout = 0.0f, lr = 1e-4f, weight_decay = 0.01f, max_grad_norm = 1.0f;
  std::string schedule = "cosine";
  uint64_t seed = 0;
  bool rslora = false, grad_checkpoint = false, mask_prompt = false;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_train(const TrainArgs& a) {
  if (a.iters > 0 && a.epochs > 0) raise("[train] give --iters or --epochs, not both");
  std::string train_path = a.data, valid_path = a.valid;
  if (fs::is_directory(a.data)) {  // mlx-lm layout: DIR/train.jsonl (+ DIR/valid.jsonl)
    train_path = (fs::path(a.data) / "train.jsonl").string();
    if (valid_path.empty() && fs::exists(fs::path(a.data) / "valid.jsonl"))
      valid_path = (fs::path(a.data) / "valid.jsonl").string();
  }
  // Data first: malformed lines are reported before the model is loaded.
  auto train_records = train::read_jsonl(train_path);
  std::vector<train::Record> valid_records;
  if (!valid_path.empty()) valid_records = train::read_jsonl(valid_path);

  auto model = models::load_model(a.model.dir, base_load_options(a.model));
  auto tok = tokenizer::Tokenizer::from_dir(a.model.dir);
  const train::TokenizeOptions to{.mask_prompt = a.mask_prompt, .max_seq_len = a.seq_len};
  auto train_ex = train::tokenize(train_records, tok, to, train_path);
  std::vector<train::Example> valid_ex;
  if (!valid_records.empty()) valid_ex = train::tokenize(valid_records, tok, to, valid_path);
  int32_t pad = 0;
  if (auto p = tok.special_tokens().pad_token; !p.empty())
    if (auto id = tok.token_to_id(p)) pad = *id;

  train::LoraConfig c{.rank = a.rank,
                      .alpha = a.alpha,
                      .dropout = a.dropout,
                      .targets = split_list(a.targets),
                      .use_rslora = a.rslora,
                      .base_model = a.model.dir};
  if (a.num_layers > 0)
    for (int i = std::max(0, model->num_layers() - a.num_layers); i < model->num_layers(); ++i)
      c.layers.push_back(i);
  train::LoraAdapter adapter = a.model.adapter.empty()
                                   ? train::LoraAdapter::init(*model, c, a.seed)
                                   : train::LoraAdapter::load(a.model.adapter, *model);

  train::TrainOptions o{.batch_size = a.batch_size,
                        .grad_accum = a.grad_accum,
                        .lr = a.lr,
                        .warmup = a.warmup,
                        .schedule = a.schedule,
                        .weight_decay = a.weight_decay,
                        .max_grad_norm = a.max_grad_norm,
                        .seed = a.seed,
                        .grad_checkpoint = a.grad_checkpoint,
                        .eval_every = a.eval_every,
                        .eval_batches = a.eval_batches,
                        .save_every = a.save_every,
                        .out_dir = a.out,
                        .loss_log = a.loss_log,
                        .log_every = a.log_every,
                        .pad_id = pad};
  const int64_t per_epoch =
      (static_cast<int64_t>(train_ex.size()) + a.batch_size - 1) / a.batch_size;
  if (a.epochs > 0)
    o.iters = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(a.epochs * static_cast<double>(per_epoch) /
                                          static_cast<double>(a.grad_accum))));
  else
    o.iters = a.iters > 0 ? a.iters : 100;
  fmt::print(stderr,
             "train: {} examples ({} batches of {} per epoch), {} valid; LoRA r={} alpha={} on "
             "{} modules ({} trainable parameters); {} steps on {}\n",
             train_ex.size(), per_epoch, a.batch_size, valid_ex.size(), adapter.config().rank,
             adapter.config().alpha, adapter.targets().size(), adapter.num_parameters(), o.iters,
             model->device().str());
  train::Trainer t(*model, adapter, std::move(train_ex), std::move(valid_ex), o);
  if (!a.resume.empty()) {
    t.resume(a.resume);
    fmt::print(stderr, "train: resumed from {} at step {}\n", a.resume, t.step_count());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto stats = t.run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t tokens = 0;
  for (auto& s : stats) tokens += s.tokens;
  fmt::print(stderr, "train: done, {} steps in {:.1f}s ({:.0f} tok/s); adapter in {}\n",
             stats.size(), secs, static_cast<double>(tokens) / std::max(secs, 1e-9), a.out);
  return 0;
}

const Registrar reg(
    {"train", "LoRA fine-tuning on JSONL data; writes a PEFT-compatible adapter",
     [](CLI::App& app) {
       auto a = std::make_shared<TrainArgs>();
       add_model_options(app, a->model);
       app.add_option("--data", a->data,
                      "Training JSONL, or a directory with train.jsonl (and valid.jsonl)")
           ->required();
       app.add_option("--valid", a->valid, "Validation JSONL");
       app.add_option("--out", a->out, "Adapter output directory (default ./adapters)");
       app.add_option("--iters", a->iters, "Optimizer steps (default 100)")
           ->check(CLI::PositiveNumber);
       app.add_option("--epochs", a->epochs, "Passes over the data instead of --iters")
           ->check(CLI::PositiveNumber);
       app.add_option("--batch-size", a->batch_size, "Examples per micro-batch (default 4)")
           ->check(CLI::PositiveNumber);
       app.add_option("--grad-accum", a->grad_accum, "Micro-batches per step (default 1)")
           ->check(CLI::PositiveNumber);
       app.add_option("--seq-len", a->seq_len, "Truncate examples to this many tokens (2048)")
           ->check(CLI::PositiveNumber);
       app.add_option("--rank", a->rank, "LoRA rank r (default 8)")->check(CLI::PositiveNumber);
       app.add_option("--alpha", a->alpha, "LoRA alpha; scale = alpha / r (default 16)");
       app.add_option("--dropout", a->dropout, "LoRA dropout (only 0 is implemented)");
       app.add_option("--targets", a->targets,
                      "Modules, comma-separated, or all-linear (default q_proj,v_proj)");
       app.add_option("--num-layers", a->num_layers, "Adapt only the last N layers (0 = all)")
           ->check(CLI::NonNegativeNumber);
       app.add_flag("--rslora", a->rslora, "Scale by alpha / sqrt(r) (rsLoRA)");
       app.add_option("--lr", a->lr, "Peak learning rate (default 1e-4)");
       app.add_option("--warmup", a->warmup, "Linear warmup steps (default 0)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--schedule", a->schedule, "cosine, linear or constant (default cosine)")
           ->check(CLI::IsMember({"cosine", "linear", "constant"}));
       app.add_option("--weight-decay", a->weight_decay, "AdamW weight decay (default 0.01)");
       app.add_option("--max-grad-norm", a->max_grad_norm,
                      "Clip the global gradient norm (default 1, 0 = off)");
       app.add_flag("--grad-checkpoint", a->grad_checkpoint,
                    "Recompute each decoder block in the backward pass (less memory)");
       app.add_flag("--mask-prompt", a->mask_prompt,
                    "Loss on completions / assistant messages only");
       app.add_option("--seed", a->seed, "Seed of the adapter init and batch order (0)");
       app.add_option("--eval-every", a->eval_every, "Validation loss every N steps (0 = off)");
       app.add_option("--eval-batches", a->eval_batches, "Validation batches (0 = all)");
       app.add_option("--save-every", a->save_every,
                      "Resumable checkpoint OUT/checkpoint-<step> every N steps (0 = off)");
       app.add_option("--resume", a->resume, "Continue from a checkpoint-<step> directory");
       app.add_option("--loss-log", a->loss_log, "Loss-curve JSONL (default OUT/loss.jsonl)");
       app.add_option("--log-every", a->log_every, "Progress line every N steps (default 10)");
       app.footer(
           "--adapter DIR starts from an existing adapter instead of a fresh one.\n"
           "Data lines: {\"text\": ...}, {\"prompt\": ..., \"completion\": ...} or "
           "{\"messages\": [{\"role\": ..., \"content\": ...}, ...]} (chat template).\n"
           "Writes OUT/adapter_model.safetensors + adapter_config.json (PEFT) and "
           "OUT/loss.jsonl.\n"
           "Example: ingot train --model ./Qwen3-0.6B --data data/ --iters 200 --batch-size 8 "
           "--rank 16 --targets all-linear --lr 2e-4 --warmup 20 --mask-prompt --out ./my-adapter");
       return std::function<int()>([a] { return run_train(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
