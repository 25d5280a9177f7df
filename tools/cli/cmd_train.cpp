// `ingot lora train`: LoRA fine-tuning on JSONL data ({"text"}, {"prompt","completion"} or
// {"messages"}), writing a PEFT-compatible adapter, resumable checkpoints and a loss curve;
// `--full` trains every weight and writes a full checkpoint. `ingot train`: full-parameter
// pretraining of a new model initialised at random from a config (models::init_model), on the
// same trainer loop with packing.
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "command.h"
#include "core/dist/group.h"
#include "llm_common.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"
#include "train/pretrain.h"
#include "train/trainer.h"
#include "util/error.h"

namespace ingot::cli {
namespace {
namespace fs = std::filesystem;

/// The training loop's settings that `ingot lora train` and `ingot train` share (their defaults
/// differ: each command's Args sets its own and default_iters).
struct LoopArgs {
  std::string data, valid, out, resume, loss_log, schedule = "cosine";
  int64_t iters = 0, default_iters = 100;
  double epochs = 0;
  int batch_size = 4, grad_accum = 1;
  int64_t seq_len = 2048, warmup = 0, eval_every = 0, eval_batches = 0, save_every = 0;
  int64_t log_every = 10;
  float lr = 1e-4f, weight_decay = 0.01f, max_grad_norm = 1.0f;
  uint64_t seed = 0;
  bool grad_checkpoint = false;
};

/// Registers the shared loop options (help texts show `a`'s defaults).
void add_loop_options(CLI::App& app, LoopArgs& a) {
  app.add_option("--grad-accum", a.grad_accum, "Micro-batches per step (default 1)")
      ->check(CLI::PositiveNumber);
  app.add_option("--iters", a.iters, fmt::format("Optimizer steps (default {})", a.default_iters))
      ->check(CLI::PositiveNumber);
  app.add_option("--epochs", a.epochs, "Passes over the data instead of --iters")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", a.lr, fmt::format("Peak learning rate (default {:g})", a.lr));
  app.add_option("--warmup", a.warmup, "Linear warmup steps (default 0)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--schedule", a.schedule, "cosine, linear or constant (default cosine)")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}));
  app.add_option("--weight-decay", a.weight_decay,
                 fmt::format("AdamW weight decay (default {:g})", a.weight_decay));
  app.add_option("--max-grad-norm", a.max_grad_norm,
                 "Clip the global gradient norm (default 1, 0 = off)");
  app.add_flag("--grad-checkpoint", a.grad_checkpoint,
               "Recompute each decoder block in the backward pass (less memory)");
  app.add_option("--eval-every", a.eval_every, "Validation loss every N steps (0 = off)");
  app.add_option("--eval-batches", a.eval_batches, "Validation batches (0 = all)");
  app.add_option("--save-every", a.save_every,
                 "Resumable checkpoint OUT/checkpoint-<step> every N steps (0 = off)");
  app.add_option("--resume", a.resume, "Continue from a checkpoint-<step> directory");
  app.add_option("--loss-log", a.loss_log, "Loss-curve JSONL (default OUT/loss.jsonl)");
  app.add_option("--log-every", a.log_every, "Progress line every N steps (default 10)");
}

/// The trainer's options from the shared settings; `per_epoch` batches make an epoch (--epochs).
train::TrainOptions loop_options(const LoopArgs& a, int32_t pad, bool pack, std::string base_dir,
                                 int64_t per_epoch) {
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
                        .pad_id = pad,
                        .pack = pack,
                        .seq_len = a.seq_len,
                        .base_dir = std::move(base_dir)};
  if (a.epochs > 0)
    o.iters = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(a.epochs * static_cast<double>(per_epoch) /
                                          static_cast<double>(a.grad_accum))));
  else
    o.iters = a.iters > 0 ? a.iters : a.default_iters;
  return o;
}

struct TrainArgs : LoopArgs {
  ModelArgs model;
  std::string targets = "q_proj,v_proj";
  int rank = 8, num_layers = 0;
  float alpha = 16.0f, dropout = 0.0f;
  bool rslora = false, mask_prompt = false, pack = false, full = false;
  int dp = 1;  // data-parallel ranks (--dp)
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_train(TrainArgs a) {
  if (a.iters > 0 && a.epochs > 0) raise("[train] give --iters or --epochs, not both");
  if (a.full && !a.model.adapter.empty())
    raise("[train] --full trains every weight: it takes no --adapter (fuse it first)");
  if (a.full && a.out.empty())
    raise("[train] --full writes a full checkpoint: give --out DIR (not the model directory)");
  if (a.full) {  // checked before training, not when the checkpoint is written
    std::error_code ec;
    if (fs::equivalent(fs::path(a.out), fs::path(a.model.dir), ec))
      raise("[train] --out {} is the model directory: --full writes a new checkpoint", a.out);
    if (!fs::is_regular_file(fs::path(a.model.dir) / "config.json"))
      raise<Unsupported>(
          "[train] --full writes a Hugging Face checkpoint and needs a checkpoint directory with "
          "config.json, got {}",
          a.model.dir);
  }
  if (a.out.empty()) a.out = "adapters";
  // --dp N: N ranks share each step's micro-batches (grad_accum counts the group's).
  std::shared_ptr<dist::Group> dp;
  if (a.dp > 1) {
    if (a.model.tp > 1) raise("[train] --dp with --tp is not supported yet");
    dp = dist::world();
    if (dp->size() != a.dp)
      raise("[train] --dp {} needs {} ranks, but this process is one of {} (INGOT_WORLD_SIZE)",
            a.dp, a.dp, dp->size());
    a.grad_accum *= a.dp;
  }
  const bool report = !dp || dp->rank() == 0;  // rank 0 speaks for the group
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

  std::optional<train::LoraAdapter> adapter;
  if (!a.full) {
    train::LoraConfig c{.rank = a.rank,
                        .alpha = a.alpha,
                        .dropout = a.dropout,
                        .targets = split_list(a.targets),
                        .use_rslora = a.rslora,
                        .base_model = a.model.dir};
    if (a.num_layers > 0)
      for (int i = std::max(0, model->num_layers() - a.num_layers); i < model->num_layers(); ++i)
        c.layers.push_back(i);
    adapter.emplace(a.model.adapter.empty() ? train::LoraAdapter::init(*model, c, a.seed)
                                            : train::LoraAdapter::load(a.model.adapter, *model));
  }

  // Batches per epoch: of examples, or of packed rows with --pack.
  const int64_t rows = a.pack
                           ? static_cast<int64_t>(train::pack_examples(train_ex, a.seq_len).size())
                           : static_cast<int64_t>(train_ex.size());
  const int64_t per_epoch = (rows + a.batch_size - 1) / a.batch_size;
  train::TrainOptions o = loop_options(a, pad, a.pack, a.model.dir, per_epoch);
  o.data_parallel = dp;
  const std::string what =
      adapter ? fmt::format("LoRA r={} alpha={} on {} modules ({} trainable parameters)",
                            adapter->config().rank, adapter->config().alpha,
                            adapter->targets().size(), adapter->num_parameters())
              : fmt::format("full fine-tuning ({} trainable parameters, float32 masters)",
                            model->num_parameters());
  if (report)
    fmt::print(stderr,
               "train: {} examples{} ({} batches of {} per epoch), {} valid; {}; {} steps on {}\n",
               train_ex.size(),
               a.pack ? fmt::format(" packed into {} rows of <= {} tokens", rows, a.seq_len)
                      : std::string(),
               per_epoch, a.batch_size, valid_ex.size(), what, o.iters, model->device().str());
  std::unique_ptr<train::Trainer> t =
      adapter
          ? std::make_unique<train::Trainer>(*model, *adapter, std::move(train_ex),
                                             std::move(valid_ex), o)
          : std::make_unique<train::Trainer>(*model, std::move(train_ex), std::move(valid_ex), o);
  if (!a.resume.empty()) {
    t->resume(a.resume);
    if (report)
      fmt::print(stderr, "train: resumed from {} at step {}\n", a.resume, t->step_count());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto stats = t->run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t tokens = 0;
  for (auto& s : stats) tokens += s.tokens;
  if (report)
    fmt::print(stderr, "train: done, {} steps in {:.1f}s ({:.0f} tok/s); {} in {}\n", stats.size(),
               secs, static_cast<double>(tokens) / std::max(secs, 1e-9),
               adapter ? "adapter" : "checkpoint", a.out);
  return 0;
}

}  // namespace

/// Adds the options of `ingot lora train` to `app`; returns its runner.
std::function<int()> setup_lora_train(CLI::App& app) {
  const std::string spelling = "ingot lora train";
  auto a = std::make_shared<TrainArgs>();
  add_model_options(app, a->model);
  app.add_option("--data", a->data,
                 "Training JSONL, or a directory with train.jsonl (and valid.jsonl)")
      ->required();
  app.add_option("--valid", a->valid, "Validation JSONL");
  app.add_option("--out", a->out,
                 "Output directory: the adapter (default ./adapters), or the full checkpoint "
                 "with --full (required then)");
  app.add_option("--batch-size", a->batch_size,
                 "Examples (packed rows with --pack) per micro-batch (default 4)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seq-len", a->seq_len,
                 "Truncate examples to this many tokens; the row length with --pack (2048)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--pack", a->pack,
               "Pack several examples into each row of --seq-len tokens (attention kept inside "
               "each example)");
  app.add_flag("--full", a->full,
               "Full fine-tuning: train every weight (float32 master copies) instead of a LoRA "
               "adapter; writes a full checkpoint to --out");
  app.add_option("--rank", a->rank, "LoRA rank r (default 8)")->check(CLI::PositiveNumber);
  app.add_option("--alpha", a->alpha, "LoRA alpha; scale = alpha / r (default 16)");
  app.add_option("--dropout", a->dropout, "LoRA dropout probability (default 0)")
      ->check(CLI::Range(0.0, 0.999));
  app.add_option("--targets", a->targets,
                 "Modules, comma-separated, or all-linear (default q_proj,v_proj)");
  app.add_option("--num-layers", a->num_layers, "Adapt only the last N layers (0 = all)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--rslora", a->rslora, "Scale by alpha / sqrt(r) (rsLoRA)");
  app.add_option("--dp", a->dp,
                 "Data-parallel ranks, one per GPU: each step's micro-batches are shared out "
                 "and the gradients summed (NCCL), the same updates as one process with "
                 "--grad-accum x N (relaunches under ingot launch)")
      ->check(CLI::PositiveNumber);
  add_loop_options(app, *a);
  app.add_flag("--mask-prompt", a->mask_prompt, "Loss on completions / assistant messages only");
  app.add_option("--seed", a->seed, "Seed of the adapter init, batch order and dropout (0)");
  app.footer(
      "--adapter DIR starts from an existing adapter instead of a fresh one.\n"
      "Data lines: {\"text\": ...}, {\"prompt\": ..., \"completion\": ...} or "
      "{\"messages\": [{\"role\": ..., \"content\": ...}, ...]} (chat template).\n"
      "Writes OUT/adapter_model.safetensors + adapter_config.json (PEFT) and OUT/loss.jsonl;\n"
      "with --full, OUT/model.safetensors + config and tokenizer files (the model's dtype).\n"
      "Example: " +
      spelling +
      " --model ./Qwen3-0.6B --data data/ --iters 200 --batch-size 8 --rank 16 "
      "--targets all-linear --lr 2e-4 --warmup 20 --mask-prompt --out ./my-adapter\n"
      "Example: " +
      spelling +
      " --model ./SmolLM2-135M --data data/ --full --pack --seq-len 1024 --lr 1e-5 "
      "--out ./SmolLM2-135M-tuned");
  return [a] { return run_train(*a); };
}

namespace {

struct PretrainArgs : LoopArgs {
  PretrainArgs() {
    batch_size = 8;
    seq_len = 256;
    lr = 1e-3f;
    weight_decay = 0.1f;
    default_iters = 1000;
  }
  std::string config, tokenizer, device, dtype = "bfloat16";
};

/// A temporary directory removed at scope exit: the base directory (config.json with the saved
/// dtype, tokenizer files) that the run's checkpoints copy their files from.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ingot_pretrain_XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      raise<IoError>("[train] cannot create a temporary directory in {}",
                     fs::temp_directory_path().string());
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

int run_pretrain(const PretrainArgs& a) {
  if (a.iters > 0 && a.epochs > 0) raise("[train] give --iters or --epochs, not both");
  // Everything is checked before the model is built: the config (IoError naming it), the
  // tokenizer against it, the data (malformed lines with file:line), the output directory.
  const models::ModelConfig config = models::load_model_config(a.config);
  if (config.max_position_embeddings > 0 && a.seq_len > config.max_position_embeddings)
    raise("[train] --seq-len {} is longer than max_position_embeddings {} of {}", a.seq_len,
          config.max_position_embeddings, config.source);
  const auto tok = tokenizer::Tokenizer::from_dir(a.tokenizer);
  train::check_tokenizer(config, tok, a.tokenizer);
  std::error_code ec;
  if (fs::equivalent(fs::path(a.out), fs::path(a.tokenizer), ec))
    raise("[train] --out {} is the tokenizer directory: give a new directory", a.out);
  const auto train_records = train::read_corpus(a.data);
  std::vector<train::Record> valid_records;
  if (!a.valid.empty()) valid_records = train::read_corpus(a.valid);
  const Dtype dtype = a.dtype == "float32" ? float32 : a.dtype == "float16" ? float16 : bfloat16;
  TempDir base;
  train::write_pretrain_base(a.config, a.tokenizer, dtype, base.path);
  const Device device = select_device(a.device);

  // Documents end with EOS; longer ones are split into pieces that fit a row.
  const train::TokenizeOptions to{.mask_prompt = false, .add_eos = true, .max_seq_len = 0};
  auto train_ex =
      train::split_long_examples(train::tokenize(train_records, tok, to, a.data), a.seq_len);
  std::vector<train::Example> valid_ex;
  if (!valid_records.empty())
    valid_ex =
        train::split_long_examples(train::tokenize(valid_records, tok, to, a.valid), a.seq_len);
  int64_t tokens = 0;
  for (const auto& e : train_ex) tokens += static_cast<int64_t>(e.ids.size());
  const int64_t rows = static_cast<int64_t>(train::pack_examples(train_ex, a.seq_len).size());
  const int64_t per_epoch = (rows + a.batch_size - 1) / a.batch_size;
  int32_t pad = 0;
  if (auto p = tok.special_tokens().pad_token; !p.empty())
    if (auto id = tok.token_to_id(p)) pad = *id;

  const train::TrainOptions o = loop_options(a, pad, true, base.path, per_epoch);

  auto model = models::init_model(config, {.dtype = dtype, .device = device, .seed = a.seed});
  const int64_t rows_per_step = static_cast<int64_t>(a.batch_size) * a.grad_accum;
  fmt::print(stderr,
             "train: pretraining a {} model of {} parameters ({}, {}); {} tokens in {} "
             "documents, {} rows of <= {} tokens ({} steps per epoch); {} steps of {} rows "
             "(about {} tokens/step); {} valid pieces\n",
             model->architecture(), model->num_parameters(), dtype_name(dtype), device.str(),
             tokens, train_records.size(), rows, a.seq_len,
             (per_epoch + a.grad_accum - 1) / a.grad_accum, o.iters, rows_per_step,
             tokens * rows_per_step / std::max<int64_t>(rows, 1), valid_ex.size());
  train::Trainer t(*model, std::move(train_ex), std::move(valid_ex), o);
  if (!a.resume.empty()) {
    t.resume(a.resume);
    fmt::print(stderr, "train: resumed from {} at step {}\n", a.resume, t.step_count());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto stats = t.run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t trained = 0;
  for (auto& s : stats) trained += s.tokens;
  fmt::print(stderr,
             "train: done, {} steps in {:.1f}s ({:.0f} tok/s), last loss {:.4f}; checkpoint in "
             "{}\n",
             stats.size(), secs, static_cast<double>(trained) / std::max(secs, 1e-9),
             stats.empty() ? std::nanf("") : stats.back().loss, a.out);
  return 0;
}

std::function<int()> setup_pretrain(CLI::App& app) {
  auto a = std::make_shared<PretrainArgs>();
  app.add_option("--model-config", a->config,
                 "config.json of the model to build (llama, qwen3, gemma3_text), or a "
                 "directory holding one")
      ->required();
  app.add_option("--tokenizer", a->tokenizer,
                 "Tokenizer directory (tokenizer.json, tokenizer_config.json), e.g. from `ingot "
                 "tokenizer train`; at most the config's vocab_size tokens")
      ->required();
  app.add_option("--data", a->data,
                 "Training text: JSONL {\"text\": ...} lines, or a .txt file of documents "
                 "separated by blank lines")
      ->required();
  app.add_option("--valid", a->valid, "Validation text (same formats)");
  app.add_option("--out", a->out,
                 "Output directory: config.json, model.safetensors, tokenizer files, loss.jsonl, "
                 "checkpoint-<step>/")
      ->required();
  app.add_option("--dtype", a->dtype, "Dtype of the model and the saved weights (bfloat16)")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
  add_device_option(app, a->device);
  app.add_option("--seq-len", a->seq_len,
                 "Tokens per packed row; longer documents are split (default 256)")
      ->check(CLI::Range(int64_t{2}, std::numeric_limits<int64_t>::max()));
  app.add_option("--batch-size", a->batch_size, "Packed rows per micro-batch (default 8)")
      ->check(CLI::PositiveNumber);
  add_loop_options(app, *a);
  app.add_option("--seed", a->seed, "Seed of the initial weights and the batch order (0)");
  app.footer(
      "Full-parameter pretraining of a NEW model: its weights start at random (transformers' "
      "init,\nNormal(0, initializer_range)), every one is trained (float32 master copies, "
      "AdamW, warmup +\ncosine decay, clipping); documents end with EOS and are packed into rows "
      "of --seq-len tokens,\nattention kept inside each document. Fine-tuning an existing "
      "checkpoint: `ingot lora train`\n(--full for every weight).\n"
      "Writes OUT/config.json (torch_dtype = --dtype), OUT/model.safetensors, the tokenizer "
      "files and\nOUT/loss.jsonl; the result loads with `ingot generate --model OUT` and "
      "transformers.\n"
      "Example: ingot tokenizer train --data corpus.txt --vocab-size 4096 --out tok\n"
      "Example: ingot train --model-config config.json --tokenizer tok --data corpus.txt "
      "--seq-len 256 --batch-size 8 --iters 2000 --lr 1e-3 --warmup 100 --save-every 500 "
      "--out ./my-model");
  return [a] { return run_pretrain(*a); };
}

}  // namespace

/// The subcommands of `ingot lora` (cmd_lora.cpp).
std::vector<Command>& lora_commands();

namespace {

const bool lora_train_registered =
    (lora_commands().push_back(Command{"train",
                                       "Fine-tune a LoRA adapter (or, with --full, every "
                                       "weight) on JSONL data",
                                       [](CLI::App& app) { return setup_lora_train(app); }}),
     true);

const Registrar reg({"train",
                     "Pretrain a new model from a config.json on raw text (every weight, random "
                     "init); LoRA fine-tuning is `ingot lora train`",
                     setup_pretrain});

}  // namespace
}  // namespace ingot::cli
