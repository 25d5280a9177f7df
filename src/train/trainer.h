// The fine-tuning loop, LoRA or full (every weight trainable, float32 master copies): AdamW
// with warmup and cosine/linear decay, gradient clipping and accumulation, optional per-block
// gradient checkpointing, packing of short examples, validation, checkpoints that resume bit
// for bit (weights + optimizer state + step + data position), NaN/Inf detection, progress on
// stderr and a loss-curve JSONL file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dist/group.h"
#include "nn/optimizers.h"
#include "train/adapter.h"
#include "train/data.h"

namespace ingot::train {

/// Options of a fine-tuning run.
struct TrainOptions {
  /// Optimizer steps to run (each grad_accum micro-batches).
  int64_t iters = 100;
  int batch_size = 4;
  int grad_accum = 1;
  float lr = 1e-4f;
  /// Linear warmup steps from 0, then the decay (transformers' schedules).
  int64_t warmup = 0;
  /// "cosine", "linear" (both to 0 at `iters`) or "constant".
  std::string schedule = "cosine";
  float weight_decay = 0.01f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  /// Global gradient-norm clipping (0 = off).
  float max_grad_norm = 1.0f;
  /// Seeds the batch order.
  uint64_t seed = 0;
  /// Recompute each decoder block in the backward pass instead of keeping its activations.
  bool grad_checkpoint = false;
  /// Validation loss every N steps (0 = never) over at most `eval_batches` batches (0 = all).
  int64_t eval_every = 0;
  int64_t eval_batches = 0;
  /// Adapter checkpoint (resumable) every N steps into out_dir/checkpoint-<step> (0 = never).
  int64_t save_every = 0;
  /// Final adapter, checkpoints and the default loss log go here ("" = nothing written).
  std::string out_dir;
  /// Loss-curve JSONL ("" = out_dir/loss.jsonl when out_dir is set).
  std::string loss_log;
  /// Progress lines on stderr every N steps (0 = none).
  int64_t log_every = 1;
  int32_t pad_id = 0;
  /// Pack several examples into each row of at most `seq_len` tokens (pack_examples; attention
  /// stays inside each example), training and validation data alike.
  bool pack = false;
  int64_t seq_len = 2048;
  /// Full fine-tuning only: the checkpoint directory the model was loaded from (config.json
  /// and the tokenizer files are copied from it into every saved checkpoint).
  std::string base_dir;
  /// Data parallelism (docs/multi-gpu.md): every rank of the group runs this loop on the same
  /// data and options; of each step's grad_accum micro-batches rank r computes those whose
  /// index modulo the group's size is r, and the gradients and losses are summed over the
  /// ranks before the update, so every rank makes the update one process with these options
  /// would. grad_accum must be a multiple of the group's size. Only rank 0 writes (out_dir,
  /// the loss log) and prints progress. Null: one process.
  std::shared_ptr<dist::Group> data_parallel;
};

/// One optimizer step's figures.
struct StepStats {
  int64_t step = 0;  // 1-based, after the update
  float loss = 0.0f;
  float lr = 0.0f;
  float grad_norm = 0.0f;
  int64_t tokens = 0;
  double seconds = 0.0;
};

/// Mean masked next-token loss of a batch, float32, with the batch's attention mask (packed
/// rows) when it has one.
Array batch_loss(const models::Model& model, const Batch& batch);

/// Mean masked next-token loss of a batch, float32, for the model with the adapter parameters
/// `params` on its target layers as low-rank branches (the base weights are untouched). With
/// `checkpoint` each decoder block runs under ingot::checkpoint. While the model is in
/// training mode with LoRA dropout, every block draws its dropout masks from a key seeded by
/// (`dropout_seed`, layer) just before it runs, so a recomputed block draws the masks of the
/// first pass and the checkpointed loss equals the plain one. The branches stay on the layers:
/// remove them with clear_branches.
Array lora_loss(models::Model& model, const LoraAdapter& adapter, const ParamMap& params,
                const Batch& batch, bool checkpoint = false, uint64_t dropout_seed = 0);

/// Loss and gradients w.r.t. the adapter parameters; the branches are removed afterwards.
std::pair<Array, ParamMap> lora_value_and_grad(models::Model& model, const LoraAdapter& adapter,
                                               const ParamMap& params, const Batch& batch,
                                               bool checkpoint = false, uint64_t dropout_seed = 0);

/// Full fine-tuning: the loss with the model's parameters replaced by `params` (every
/// parameter by name, any float dtype: each is cast to the dtype of the parameter it replaces,
/// so float32 master copies drive a bf16 model). The model keeps them: restore it yourself.
Array full_loss(models::Model& model, const ParamMap& params, const Batch& batch,
                bool checkpoint = false);

/// Loss and gradients (in the dtype of `params`) w.r.t. every parameter; the model's
/// parameters are restored afterwards.
std::pair<Array, ParamMap> full_value_and_grad(models::Model& model, const ParamMap& params,
                                               const Batch& batch, bool checkpoint = false);

/// Fine-tunes `adapter` on `model` (the base stays as it was), or every weight of `model`.
class Trainer {
 public:
  /// LoRA: only the adapter's parameters are trained.
  Trainer(models::Model& model, LoraAdapter& adapter, std::vector<Example> train,
          std::vector<Example> valid, TrainOptions opt);
  /// Full fine-tuning: every parameter of the model is trained, from float32 master copies
  /// (AdamW state float32 too); after each step the model holds the masters rounded to its
  /// dtype. Saves write full checkpoints (options().base_dir is required with an out_dir):
  /// the resumable checkpoint-<step> in float32 (the masters), the final one in OUT in the
  /// model's dtype. Unsupported for a quantized model.
  Trainer(models::Model& model, std::vector<Example> train, std::vector<Example> valid,
          TrainOptions opt);
  ~Trainer();
  /// One optimizer step. Error "[train] loss is NaN/Inf at step N ..." when it diverges (the
  /// adapter keeps its last good values).
  StepStats step();
  /// Steps until options().iters, with validation, checkpoints, progress, loss log and the
  /// final adapter in out_dir. Returns every step's figures.
  std::vector<StepStats> run();
  /// Token-weighted mean loss over the validation batches (NaN when there are none).
  float evaluate();
  /// Writes a resumable checkpoint: the adapter files (full fine-tuning: model.safetensors in
  /// float32 with config and tokenizer files), optimizer.safetensors and trainer_state.json
  /// (step, data position, seed, mode).
  void save_checkpoint(const std::string& dir) const;
  /// Continues from a save_checkpoint directory (same model, data and options); FormatError
  /// when it does not fit (other data or options, another mode, an adapter of other targets,
  /// rank or scale, optimizer state of other parameters). Nothing changes when it fails.
  void resume(const std::string& dir);
  /// Appends step `st`'s line to the loss curve ({"step", "loss", "lr", "grad_norm", "tokens",
  /// "tok_per_s"}), as run() does after every step; nothing without a loss log.
  void log_step(const StepStats& st);
  /// Appends a validation line ({"step", "val_loss"}) to the loss curve, as run() does.
  void log_validation(int64_t step, float val_loss);

  int64_t step_count() const { return step_; }
  /// Steps that used a micro-batch built ahead by the step before (INGOT_TRAIN_LOOKAHEAD).
  int64_t steps_built_ahead() const { return built_ahead_; }
  /// Micro-batches consumed so far.
  int64_t data_position() const { return position_; }
  int64_t batches_per_epoch() const;
  const TrainOptions& options() const { return opt_; }
  /// The trained parameters: the adapter's (LoRA) or the float32 master copies (full).
  ParamMap params() const;
  bool full() const { return adapter_ == nullptr; }

 private:
  void init();
  Batch next_batch();
  /// Whether step() builds the next step's graph before reading this step's loss (see
  /// Lookahead in trainer.cpp): LoRA, one process, INGOT_TRAIN_LOOKAHEAD not "0".
  bool lookahead_enabled() const;
  void log(const std::string& json_line);
  void set_params(const ParamMap& p);
  void save_weights(const std::string& dir, bool final) const;
  /// Sums the ranks' gradients, loss and token count (data parallelism).
  void reduce_over_ranks(ParamMap& grads, double& loss_sum, int64_t& tokens) const;

  models::Model& model_;
  LoraAdapter* adapter_ = nullptr;  // null: full fine-tuning
  ParamMap master_;                 // full fine-tuning: float32 master copies
  std::vector<Example> train_, valid_;
  TrainOptions opt_;
  std::unique_ptr<nn::AdamW> optim_;
  int64_t step_ = 0, position_ = 0, built_ahead_ = 0;
  int64_t cached_epoch_ = -1;
  std::vector<std::vector<size_t>> epoch_;
  std::string log_path_;
  /// The first micro-batch of the next step, built ahead (trainer.cpp); null when none.
  struct Lookahead;
  std::unique_ptr<Lookahead> ahead_;
};

/// The learning rate of `opt` at 0-based step `step` (warmup, then cosine/linear/constant).
float learning_rate(const TrainOptions& opt, int64_t step);

}  // namespace ingot::train
