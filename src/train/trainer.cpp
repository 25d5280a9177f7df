// The LoRA fine-tuning loop (see trainer.h).
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/allocator.h"
#include "core/dist/ops.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "models/transformer.h"
#include "nn/losses.h"
#include "util/env.h"
#include "util/error.h"

namespace ingot::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const nn::Module& child(const nn::Module& m, const std::string& name) {
  for (const auto& [n, c] : m.children())
    if (n == name) return *c;
  raise<Unsupported>(
      "[train] the model has no '{}' module (gradient checkpointing needs "
      "model.embed_tokens, model.layers, model.norm)",
      name);
}

/// The attention mask of layer `layer` for a packed batch (`mask`, on the model's device): the
/// batch's mask, ANDed with the layer's window band on sliding-window layers (as
/// DecoderLM::hidden does).
std::optional<Array> layer_mask(const models::Model& model, const std::optional<Array>& mask,
                                int layer) {
  if (!mask) return std::nullopt;
  const models::LayerSpec& spec = model.config().layers.at(static_cast<size_t>(layer));
  if (spec.kind != models::AttentionKind::sliding) return mask;
  const Device dev = model.device();
  const int64_t l = mask->shape(-1);
  Array q = reshape(arange(l, int32, dev), {l, 1});
  Array k = reshape(arange(l, int32, dev), {1, l});
  return logical_and(*mask, (q - k) < Array(static_cast<int32_t>(spec.window)));
}

/// Key of the dropout masks of decoder layer `layer` for a micro-batch seeded `seed`.
uint64_t block_seed(uint64_t seed, int layer) {
  return seed ^ (static_cast<uint64_t>(layer + 1) * 0xBF58476D1CE4E5B9ull);
}

/// What a block's (checkpointed) function takes besides its input: arrays, and how to put them
/// on the block before it runs.
struct BlockInputs {
  std::vector<Array> arrays;
  std::function<void(const std::vector<Array>&)> install;
};
using BlockInputsFn = std::function<BlockInputs(models::Block&, const std::string& prefix)>;

/// The decoder forward of DecoderLM::hidden (no cache) walked block by block: every block runs
/// under ingot::checkpoint when `ckpt` (only the block inputs and the arrays of `inputs_of` are
/// kept for the backward pass, which recomputes the block), and seeds the global random key
/// from (`seed`, layer) before it runs when `seed` is set (dropout masks then do not depend on
/// how often the block runs).
Array walked_logits(models::Model& model, const Batch& batch, bool ckpt,
                    std::optional<uint64_t> seed, const BlockInputsFn& inputs_of) {
  const nn::Module& backbone = child(model, "model");
  const auto& embed = dynamic_cast<const nn::Embedding&>(child(backbone, "embed_tokens"));
  const nn::Module& layers = child(backbone, "layers");
  const auto& norm = dynamic_cast<const nn::RMSNorm&>(child(backbone, "norm"));
  Array x = embed(to_device(batch.inputs, model.device()));  // [B, L, E]
  std::optional<Array> attention;
  if (batch.attention) attention = to_device(*batch.attention, model.device());
  // DecoderOptions::embed_scale is not visible from here: Gemma3 (make_gemma3) is the one
  // architecture that sets it, to sqrt(E). The checkpointing test compares with forward().
  if (model.architecture() == "gemma3")
    x = x * Array(static_cast<float>(std::sqrt(static_cast<double>(model.config().hidden_size))),
                  model.dtype());
  for (const auto& [lname, lmod] : layers.children()) {
    auto* block = dynamic_cast<models::Block*>(lmod.get());
    if (!block) raise<Unsupported>("[train] layer {} is not a decoder block", lname);
    BlockInputs bi = inputs_of(*block, "model.layers." + lname + ".");
    std::vector<Array> inputs{x};
    inputs.insert(inputs.end(), bi.arrays.begin(), bi.arrays.end());
    const std::optional<Array> mask = layer_mask(model, attention, block->layer());
    std::optional<uint64_t> bseed;
    if (seed) bseed = block_seed(*seed, block->layer());
    ArrayFn fn = [block, install = bi.install, mask, bseed](const std::vector<Array>& in) {
      install(std::vector<Array>(in.begin() + 1, in.end()));
      if (bseed) random::seed(*bseed);
      return std::vector<Array>{(*block)(in[0], {.mask = mask})};
    };
    x = (ckpt ? checkpoint(fn) : fn)(inputs)[0];
  }
  return model.lm_head(norm(x));
}

}  // namespace

Array batch_loss(const models::Model& model, const Batch& batch) {
  const Device dev = model.device();
  models::ForwardOptions fo;
  if (batch.attention) fo.mask = to_device(*batch.attention, dev);
  Array logits = model.forward(batch.inputs, fo);
  return nn::cross_entropy(logits, to_device(batch.targets, dev),
                           {.mask = to_device(batch.mask, dev)});
}

Array lora_loss(models::Model& model, const LoraAdapter& adapter, const ParamMap& params,
                const Batch& batch, bool checkpoint, uint64_t dropout_seed) {
  const float dropout = adapter.config().dropout;
  const bool drop = dropout > 0.0f && model.training();
  if (!checkpoint && !drop) {
    set_branches(model, adapter, params);
    return batch_loss(model, batch);
  }
  // Walked block by block: the block's adapter factors are inputs of its function, which puts
  // them on the block's layers as low-rank branches (also when the backward pass recomputes it).
  const float s = adapter.config().scale();
  auto inputs_of = [&](models::Block& block, const std::string& prefix) {
    std::vector<nn::Linear*> targets;  // the block's adapted layers
    BlockInputs bi;
    for (const auto& t : adapter.targets()) {
      if (t.module.rfind(prefix, 0) != 0) continue;
      targets.push_back(&linear_at(block, t.module.substr(prefix.size())));
      bi.arrays.push_back(params.at(t.module + ".lora_A.weight"));
      bi.arrays.push_back(params.at(t.module + ".lora_B.weight"));
    }
    bi.install = [targets, s, dropout](const std::vector<Array>& in) {
      for (size_t i = 0; i < targets.size(); ++i)
        targets[i]->set_branch(nn::LowRankBranch{in[2 * i], in[2 * i + 1], s, dropout});
    };
    return bi;
  };
  Array logits =
      walked_logits(model, batch, checkpoint,
                    drop ? std::optional<uint64_t>(dropout_seed) : std::nullopt, inputs_of);
  const Device dev = model.device();
  return nn::cross_entropy(logits, to_device(batch.targets, dev),
                           {.mask = to_device(batch.mask, dev)});
}

std::pair<Array, ParamMap> lora_value_and_grad(models::Model& model, const LoraAdapter& adapter,
                                               const ParamMap& params, const Batch& batch,
                                               bool checkpoint, uint64_t dropout_seed) {
  auto fn = [&](const ParamMap& p) {
    return lora_loss(model, adapter, p, batch, checkpoint, dropout_seed);
  };
  try {
    auto r = value_and_grad(fn, params);
    clear_branches(model, adapter);
    return r;
  } catch (...) {
    clear_branches(model, adapter);
    throw;
  }
}

namespace {

/// `params` cast to the dtypes of the model's parameters they replace; InvalidArgument for a
/// name the model does not have.
ParamMap cast_to_model(const models::Model& model, const ParamMap& params) {
  const ParamMap current = model.parameters();
  ParamMap out;
  for (const auto& [n, v] : params) {
    auto it = current.find(n);
    if (it == current.end()) raise("[train] the model has no parameter '{}'", n);
    out.emplace(n, v.dtype() == it->second.dtype() ? v : astype(v, it->second.dtype()));
  }
  return out;
}

}  // namespace

Array full_loss(models::Model& model, const ParamMap& params, const Batch& batch, bool checkpoint) {
  const ParamMap cast = cast_to_model(model, params);
  model.update(cast);
  if (!checkpoint) return batch_loss(model, batch);
  // Each block's parameters are inputs of its checkpointed function, which puts them on the
  // block (the recomputation too); embedding, final norm and head take theirs from update().
  auto inputs_of = [&](models::Block& block, const std::string& prefix) {
    std::vector<std::string> names;
    BlockInputs bi;
    for (const auto& [n, v] : cast) {
      if (n.rfind(prefix, 0) != 0) continue;
      names.push_back(n.substr(prefix.size()));
      bi.arrays.push_back(v);
    }
    bi.install = [&block, names](const std::vector<Array>& in) {
      ParamMap p;
      for (size_t i = 0; i < names.size(); ++i) p.emplace(names[i], in[i]);
      block.update(p);
    };
    return bi;
  };
  Array logits = walked_logits(model, batch, true, std::nullopt, inputs_of);
  const Device dev = model.device();
  return nn::cross_entropy(logits, to_device(batch.targets, dev),
                           {.mask = to_device(batch.mask, dev)});
}

std::pair<Array, ParamMap> full_value_and_grad(models::Model& model, const ParamMap& params,
                                               const Batch& batch, bool checkpoint) {
  const ParamMap current = model.parameters();
  ParamMap before;
  for (const auto& [n, v] : params) {
    auto it = current.find(n);
    if (it == current.end()) raise("[train] the model has no parameter '{}'", n);
    before.emplace(n, it->second);
  }
  auto fn = [&](const ParamMap& p) { return full_loss(model, p, batch, checkpoint); };
  try {
    auto r = value_and_grad(fn, params);
    model.update(before);
    return r;
  } catch (...) {
    model.update(before);
    throw;
  }
}

float learning_rate(const TrainOptions& opt, int64_t step) {
  if (opt.schedule != "cosine" && opt.schedule != "linear" && opt.schedule != "constant")
    raise("[train] unknown schedule '{}' (cosine, linear, constant)", opt.schedule);
  if (opt.warmup > 0 && step < opt.warmup)
    return opt.lr * static_cast<float>(step) / static_cast<float>(opt.warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, opt.iters - opt.warmup));
  const double p = std::min(1.0, static_cast<double>(step - opt.warmup) / span);
  if (opt.schedule == "cosine")
    return static_cast<float>(opt.lr * 0.5 * (1.0 + std::cos(M_PI * p)));
  if (opt.schedule == "linear") return static_cast<float>(opt.lr * (1.0 - p));
  return opt.lr;  // constant
}

Trainer::Trainer(models::Model& model, LoraAdapter& adapter, std::vector<Example> train,
                 std::vector<Example> valid, TrainOptions opt)
    : model_(model),
      adapter_(&adapter),
      train_(std::move(train)),
      valid_(std::move(valid)),
      opt_(std::move(opt)) {
  init();
}

Trainer::Trainer(models::Model& model, std::vector<Example> train, std::vector<Example> valid,
                 TrainOptions opt)
    : model_(model), train_(std::move(train)), valid_(std::move(valid)), opt_(std::move(opt)) {
  for (const auto& [n, v] : model_.parameters()) {
    if (!is_floating(v.dtype()))
      raise<Unsupported>(
          "[train] full fine-tuning of a quantized model is not supported ('{}' is {}): load "
          "the float checkpoint, or train a LoRA adapter",
          n, dtype_name(v.dtype()));
    master_.emplace(n, astype(v, float32));
  }
  if (!opt_.out_dir.empty() && opt_.base_dir.empty())
    raise(
        "[train] full fine-tuning writes full checkpoints: base_dir (the model's checkpoint "
        "directory, for config.json and the tokenizer files) is required with out_dir");
  std::vector<Array> outs;
  for (auto& [n, v] : master_) outs.push_back(v);
  eval(outs);
  init();
}

void Trainer::init() {
  if (train_.empty()) raise("[train] no training examples");
  if (opt_.iters <= 0) raise("[train] iters must be positive, got {}", opt_.iters);
  if (opt_.grad_accum <= 0) raise("[train] grad_accum must be positive, got {}", opt_.grad_accum);
  if (opt_.batch_size <= 0) raise("[train] batch size must be positive, got {}", opt_.batch_size);
  (void)learning_rate(opt_, 0);  // validates the schedule name
  if (const auto& g = opt_.data_parallel; g && g->size() > 1) {
    if (opt_.grad_accum % g->size() != 0)
      raise("[train] data parallelism over {} ranks needs grad_accum divisible by {}, got {}",
            g->size(), g->size(), opt_.grad_accum);
    if (g->rank() != 0) {  // rank 0 writes and reports for the group
      opt_.out_dir.clear();
      opt_.loss_log.clear();
      opt_.log_every = 0;
    }
  }
  if (opt_.pack) {
    train_ = pack_examples(train_, opt_.seq_len);
    if (!valid_.empty()) valid_ = pack_examples(valid_, opt_.seq_len);
  }
  const TrainOptions o = opt_;
  optim_ = std::make_unique<nn::AdamW>(
      [o](int64_t s) { return learning_rate(o, s); },
      nn::AdamOptions{
          .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay});
  log_path_ = opt_.loss_log;
  if (log_path_.empty() && !opt_.out_dir.empty())
    log_path_ = (fs::path(opt_.out_dir) / "loss.jsonl").string();
}

ParamMap Trainer::params() const {
  return adapter_ ? adapter_->params() : master_;
}

void Trainer::set_params(const ParamMap& p) {
  if (adapter_) {
    adapter_->set_params(p);
    return;
  }
  for (const auto& [n, v] : p) {
    auto it = master_.find(n);
    if (it == master_.end() || it->second.shape() != v.shape())
      raise<FormatError>("[train] parameter '{}' ({}) does not fit the model", n,
                         shape_str(v.shape()));
  }
  if (p.size() != master_.size())
    raise<FormatError>("[train] {} parameters given, the model has {}", p.size(), master_.size());
  ParamMap next;
  // Loaded (resume) values live on the CPU: the masters live with the model.
  for (const auto& [n, v] : p) next.emplace(n, to_device(astype(v, float32), model_.device()));
  // The model computes with the masters rounded to its dtype.
  ParamMap cast = cast_to_model(model_, next);
  std::vector<Array> outs;
  for (auto& [n, v] : next) outs.push_back(v);
  for (auto& [n, v] : cast) outs.push_back(v);
  eval(outs);
  master_ = std::move(next);
  model_.update(cast);
}

void Trainer::save_weights(const std::string& dir, bool final) const {
  if (adapter_)
    adapter_->save(dir);
  else
    train::save_checkpoint(master_, opt_.base_dir, dir, final ? model_.dtype() : float32);
}

// A step of LoRA training on an asynchronous device (CUDA) used to leave the device idle while
// the host built the next step's graph (autodiff over ~6,000 nodes for a 1B model), because
// the step read its loss (a synchronisation) before returning. Now, once a step's work is
// queued, the host builds the next step's first micro-batch (its loss and gradients, lazily,
// from the parameters the queued update will produce) and only then reads this step's loss:
// the build overlaps the device's work. The next step() uses it when nothing changed in
// between (the same parameter arrays and data position), else builds afresh. A non-finite
// loss, now seen after the update was queued, puts back the parameters and optimizer state
// from before the step. The results are those of building each step when it runs.
struct Trainer::Lookahead {
  int64_t position = 0;       // data position the micro-batch was drawn at
  int64_t next_position = 0;  // data position after it
  std::vector<Array> params;  // the parameter arrays it was built from
  Array loss;
  ParamMap grads;
  int64_t tokens = 0;
};

Trainer::~Trainer() = default;

bool Trainer::lookahead_enabled() const {
  // INGOT_TRAIN_LOOKAHEAD, read per step: tests switch it.
  return env::flag("INGOT_TRAIN_LOOKAHEAD", true) && adapter_ != nullptr && !opt_.data_parallel;
}

int64_t Trainer::batches_per_epoch() const {
  return (static_cast<int64_t>(train_.size()) + opt_.batch_size - 1) / opt_.batch_size;
}

Batch Trainer::next_batch() {
  const int64_t nb = batches_per_epoch();
  const int64_t epoch = position_ / nb, index = position_ % nb;
  if (epoch != cached_epoch_) {
    epoch_ = epoch_batches(train_, opt_.batch_size, opt_.seed, epoch);
    cached_epoch_ = epoch;
  }
  ++position_;
  return make_batch(train_, epoch_[static_cast<size_t>(index)], opt_.pad_id);
}

StepStats Trainer::step() {
  const auto t0 = std::chrono::steady_clock::now();
  const ParamMap params = this->params();
  const int64_t start_position = position_;
  ParamMap grads;
  double loss_sum = 0.0;
  int64_t tokens = 0;
  const float inv = 1.0f / static_cast<float>(opt_.grad_accum);
  // Training mode (LoRA dropout on) for this step; dropout masks are seeded by the data
  // position, so a resumed run draws the same masks as an uninterrupted one.
  struct TrainMode {
    models::Model& m;
    explicit TrainMode(models::Model& model) : m(model) { m.train(true); }
    ~TrainMode() { m.train(false); }
  } mode(model_);
  const auto& dp = opt_.data_parallel;
  const int ranks = dp ? dp->size() : 1, me = dp ? dp->rank() : 0;
  const bool ahead = lookahead_enabled();
  // The micro-batch's loss and gradients at the current data position (which it advances).
  auto build = [&](Batch& b) {
    const uint64_t dropout_seed =
        opt_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(position_) + 1;
    b = next_batch();
    return adapter_ ? lora_value_and_grad(model_, *adapter_, this->params(), b,
                                          opt_.grad_checkpoint, dropout_seed)
                    : full_value_and_grad(model_, this->params(), b, opt_.grad_checkpoint);
  };
  // The built-ahead micro-batch, when it was built from these parameters at this position.
  std::unique_ptr<Lookahead> pre = std::move(ahead_);
  if (pre && pre->position == position_ && pre->params.size() == params.size()) {
    size_t i = 0;
    for (const auto& [n, v] : params)
      if (!v.same_node(pre->params[i++])) {
        pre.reset();
        break;
      }
  } else {
    pre.reset();
  }
  std::vector<Array> losses;  // lookahead: the micro-batches' losses, read at the end
  // The error of a non-finite loss l at micro-batch k (0-based) of step step_ + 1.
  auto diverged = [&](float l, size_t k) {
    raise<Error>(
        "[train] loss is {} at step {} (micro-batch {}); stopping, the {} keeps its values from "
        "step {}",
        std::isnan(l) ? "NaN" : "Inf", step_ + 1, k + 1, adapter_ ? "adapter" : "model", step_);
  };
  for (int k = 0; k < opt_.grad_accum; ++k) {
    Array loss;
    ParamMap g;
    int64_t batch_tokens = 0;
    if (k == 0 && pre) {
      loss = pre->loss;
      g = std::move(pre->grads);
      batch_tokens = pre->tokens;
      position_ = pre->next_position;
      pre.reset();
      ++built_ahead_;
    } else {
      Batch b;
      if (k % ranks != me) {  // another rank's micro-batch
        next_batch();
        continue;
      }
      std::tie(loss, g) = build(b);
      batch_tokens = b.tokens;
    }
    std::vector<Array> outs{loss};
    for (auto& [n, v] : g) {
      auto it = grads.find(n);
      Array scaled = opt_.grad_accum == 1 ? v : v * Array(inv);
      if (it == grads.end())
        grads.emplace(n, scaled);
      else
        it->second = it->second + scaled;
    }
    for (auto& [n, v] : grads) outs.push_back(v);
    eval(outs);
    tokens += batch_tokens;
    if (ahead) {
      losses.push_back(loss);
      continue;
    }
    const float l = loss.item<float>();
    if (!std::isfinite(l)) diverged(l, static_cast<size_t>(k));
    loss_sum += l;
  }
  if (ranks > 1) reduce_over_ranks(grads, loss_sum, tokens);
  StepStats st;
  st.lr = optim_->learning_rate();
  // Clipping as a factor the optimizer applies to each gradient (in its fused step on the
  // GPU): the same update as stepping on clip_grad_norm's scaled gradients.
  std::optional<Array> grad_scale, grad_norm;
  if (opt_.max_grad_norm > 0.0f) {
    auto [scale, norm] = nn::clip_grad_scale(grads, opt_.max_grad_norm);
    grad_scale = scale;
    grad_norm = norm;
    if (!ahead) st.grad_norm = norm.item<float>();
  }
  // Lookahead: the state to put back if this step's loss turns out not finite.
  std::map<std::string, Array> state_before;
  if (ahead) state_before = optim_->state();
  ParamMap next = optim_->apply(params, grads, grad_scale);
  std::vector<Array> outs;
  for (auto& [n, v] : next) outs.push_back(v);
  for (auto& [n, v] : optim_->state()) outs.push_back(v);
  if (grad_norm) outs.push_back(*grad_norm);
  eval(outs);
  set_params(next);
  ++step_;
  if (ahead) {
    if (step_ < opt_.iters) {  // run() takes another step: build its first micro-batch now
      // A failure here is left to the next step, which builds it again and reports it.
      const int64_t here = position_;
      auto la = std::make_unique<Lookahead>();
      la->position = here;
      for (const auto& [n, v] : this->params()) la->params.push_back(v);
      try {
        Batch b;
        std::tie(la->loss, la->grads) = build(b);
        la->tokens = b.tokens;
        la->next_position = position_;
        ahead_ = std::move(la);
      } catch (const std::exception&) {
        ahead_.reset();
      }
      position_ = here;  // the next step moves it on when it takes the micro-batch
    }
    for (size_t k = 0; k < losses.size(); ++k) {
      const float l = losses[k].item<float>();
      if (!std::isfinite(l)) {
        ahead_.reset();
        set_params(params);
        optim_->load_state(state_before);
        --step_;
        position_ = start_position;
        diverged(l, k);
      }
      loss_sum += l;
    }
    if (grad_norm) st.grad_norm = grad_norm->item<float>();
  }
  st.step = step_;
  st.loss = static_cast<float>(loss_sum / opt_.grad_accum);
  st.tokens = tokens;
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

void Trainer::reduce_over_ranks(ParamMap& grads, double& loss_sum, int64_t& tokens) const {
  // One all_sum per dtype of the flattened gradients (few large messages, not one per tensor),
  // and one of [loss, tokens] in float64.
  std::map<Dtype, std::vector<std::string>> by_dtype;
  for (const auto& [n, v] : grads) by_dtype[v.dtype()].push_back(n);
  std::vector<Array> outs;
  std::vector<std::pair<std::string, Array>> summed;
  for (const auto& [t, names] : by_dtype) {
    std::vector<Array> flat;
    for (const auto& n : names) flat.push_back(reshape(grads.at(n), {-1}));
    const Array total = dist::all_sum(concatenate(flat, 0), opt_.data_parallel);
    int64_t at = 0;
    for (const auto& n : names) {
      const Array& g = grads.at(n);
      summed.emplace_back(n, reshape(slice_axis(total, 0, at, at + g.size()), g.shape()));
      at += g.size();
    }
    outs.push_back(total);
  }
  const Array scalars =
      dist::all_sum(Array(std::vector<double>{loss_sum, static_cast<double>(tokens)}, {2}, float64),
                    opt_.data_parallel, cpu_device);
  outs.push_back(scalars);
  eval(outs);
  for (auto& [n, v] : summed) grads.at(n) = v;
  const auto s = scalars.to_vector<double>();
  loss_sum = s[0];
  tokens = static_cast<int64_t>(std::llround(s[1]));
}

float Trainer::evaluate() {
  if (valid_.empty()) return std::nanf("");
  auto batches = epoch_batches(valid_, opt_.batch_size, 0, 0, false);
  if (opt_.eval_batches > 0 && static_cast<int64_t>(batches.size()) > opt_.eval_batches)
    batches.resize(static_cast<size_t>(opt_.eval_batches));
  double sum = 0.0;
  int64_t n = 0;
  // Full fine-tuning: the model holds the current weights.
  auto clear = [&] {
    if (adapter_) clear_branches(model_, *adapter_);
  };
  try {
    for (auto& idx : batches) {
      Batch b = make_batch(valid_, idx, opt_.pad_id);
      Array loss = adapter_ ? lora_loss(model_, *adapter_, adapter_->params(), b, false)
                            : batch_loss(model_, b);
      sum += static_cast<double>(loss.item<float>()) * static_cast<double>(b.tokens);
      n += b.tokens;
    }
  } catch (...) {
    clear();
    throw;
  }
  clear();
  return n ? static_cast<float>(sum / static_cast<double>(n)) : std::nanf("");
}

void Trainer::log(const std::string& line) {
  if (log_path_.empty()) return;
  std::error_code ec;
  if (fs::path(log_path_).has_parent_path())
    fs::create_directories(fs::path(log_path_).parent_path(), ec);
  std::ofstream f(log_path_, std::ios::app);
  f << line << "\n";
  if (!f) raise<IoError>("[train] cannot write {}", log_path_);
}

namespace {
json num(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}
}  // namespace

void Trainer::log_step(const StepStats& st) {
  log(json{{"step", st.step},
           {"loss", num(st.loss)},
           {"lr", num(st.lr)},
           {"grad_norm", num(st.grad_norm)},
           {"tokens", st.tokens},
           {"tok_per_s", num(st.tokens / std::max(st.seconds, 1e-9))}}
          .dump());
}

void Trainer::log_validation(int64_t step, float val_loss) {
  log(json{{"step", step}, {"val_loss", num(val_loss)}}.dump());
}

std::vector<StepStats> Trainer::run() {
  std::vector<StepStats> all;
  double seconds = 0.0;
  int64_t tokens = 0;
  while (step_ < opt_.iters) {
    StepStats st = step();
    all.push_back(st);
    seconds += st.seconds;
    tokens += st.tokens;
    log_step(st);
    if (opt_.log_every > 0 && (st.step % opt_.log_every == 0 || st.step == opt_.iters)) {
      const double eta =
          seconds / static_cast<double>(all.size()) * static_cast<double>(opt_.iters - st.step);
      fmt::print(stderr,
                 "step {}/{}  loss {:.4f}  lr {:.3e}  tok/s {:.0f}  peak {:.1f} MiB  eta {:.0f}s\n",
                 st.step, opt_.iters, st.loss, st.lr, tokens / std::max(seconds, 1e-9),
                 static_cast<double>(memory::peak(model_.device())) / (1024.0 * 1024.0), eta);
    }
    if (opt_.eval_every > 0 && (st.step % opt_.eval_every == 0 || st.step == opt_.iters) &&
        !valid_.empty()) {
      const float v = evaluate();
      log_validation(st.step, v);
      if (opt_.log_every > 0)
        fmt::print(stderr, "step {}/{}  val_loss {:.4f}\n", st.step, opt_.iters, v);
    }
    if (opt_.save_every > 0 && !opt_.out_dir.empty() && st.step % opt_.save_every == 0)
      save_checkpoint((fs::path(opt_.out_dir) / fmt::format("checkpoint-{}", st.step)).string());
  }
  if (!opt_.out_dir.empty()) save_weights(opt_.out_dir, true);
  return all;
}

void Trainer::save_checkpoint(const std::string& dir) const {
  // Written to DIR.tmp and renamed, so an interrupted save never leaves a half checkpoint.
  const std::string tmp = dir + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  save_weights(tmp, false);
  save_safetensors((fs::path(tmp) / "optimizer.safetensors").string(), optim_->state());
  json st{{"step", step_},
          {"data_position", position_},
          {"seed", opt_.seed},
          {"batch_size", opt_.batch_size},
          {"grad_accum", opt_.grad_accum},
          {"num_examples", train_.size()},
          {"mode", adapter_ ? "lora" : "full"},
          {"pack", opt_.pack}};
  std::ofstream f((fs::path(tmp) / "trainer_state.json").string());
  f << st.dump(2) << "\n";
  f.close();
  if (!f) raise<IoError>("[train] cannot write {}/trainer_state.json", tmp);
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) raise<IoError>("[train] cannot move {} to {}: {}", tmp, dir, ec.message());
}

void Trainer::resume(const std::string& dir) {
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  std::ifstream f(state_path);
  if (!f) raise<IoError>("[train] cannot open {}", state_path);
  json st;
  try {
    st = json::parse(f);
    const int64_t step = st.at("step").get<int64_t>();
    const int64_t pos = st.at("data_position").get<int64_t>();
    // Written before modes and packing existed: a LoRA run without packing.
    const std::string mode = st.value("mode", std::string("lora"));
    const bool pack = st.value("pack", false);
    if (mode != (adapter_ ? "lora" : "full"))
      raise<FormatError>("[train] {}: a checkpoint of {} fine-tuning, this run is {}", state_path,
                         mode, adapter_ ? "LoRA" : "full");
    if (st.at("num_examples").get<size_t>() != train_.size() ||
        st.at("batch_size").get<int>() != opt_.batch_size ||
        st.at("seed").get<uint64_t>() != opt_.seed || pack != opt_.pack)
      raise<FormatError>(
          "[train] {}: written for other data or options ({} {}, batch size {}, seed {}, "
          "packing {}); resume with the same ones",
          state_path, st.at("num_examples").dump(), pack ? "packed rows" : "examples",
          st.at("batch_size").dump(), st.at("seed").dump(), pack ? "on" : "off");
    if (step < 0 || pos < 0)
      raise<FormatError>("[train] {}: negative step or position", state_path);
    // Everything is read and checked before anything changes.
    ParamMap weights;  // LoRA: the checkpoint's factors; full: its float32 masters
    if (adapter_) {
      LoraAdapter saved = LoraAdapter::load(dir, model_);
      const LoraConfig& sc = saved.config();
      const LoraConfig& cc = adapter_->config();
      if (sc.rank != cc.rank || sc.scale() != cc.scale())
        raise<FormatError>(
            "[train] {}: the checkpoint's adapter has rank {} and scale {}, this one rank {} and "
            "scale {}",
            dir, sc.rank, sc.scale(), cc.rank, cc.scale());
      weights = saved.params();
      const ParamMap current = adapter_->params();
      for (const auto& [n, v] : current) {
        auto it = weights.find(n);
        if (it == weights.end() || it->second.shape() != v.shape())
          raise<FormatError>(
              "[train] {}: the checkpoint's adapter has other target modules ({} tensors; "
              "'{}' {})",
              dir, weights.size(), n, it == weights.end() ? "is missing" : "has another shape");
      }
      if (weights.size() != current.size())
        raise<FormatError>("[train] {}: the checkpoint's adapter has other target modules", dir);
    } else {
      weights = load_safetensors((fs::path(dir) / "model.safetensors").string(), {.copy = true});
    }
    auto state =
        load_safetensors((fs::path(dir) / "optimizer.safetensors").string(), {.copy = true});
    if (!state.count("step"))
      raise<FormatError>("[train] {}/optimizer.safetensors has no 'step'", dir);
    const ParamMap current = params();
    for (const auto& [k, v] : state) {
      if (k == "step") {
        if (v.size() != 1 || is_floating(v.dtype()) || v.item<int64_t>() != step)
          raise<FormatError>(
              "[train] {}/optimizer.safetensors: 'step' is not the integer {} of "
              "trainer_state.json",
              dir, step);
        continue;
      }
      const auto dot = k.rfind('.');
      auto it = dot == std::string::npos ? current.end() : current.find(k.substr(0, dot));
      if (it == current.end() || it->second.shape() != v.shape())
        raise<FormatError>(
            "[train] {}/optimizer.safetensors: state '{}' ({}) does not fit the trained "
            "parameters",
            dir, k, shape_str(v.shape()));
    }
    if (adapter_)
      adapter_->set_params(weights);
    else
      set_params(weights);  // checks every name and shape before it changes anything
    optim_->load_state(state);
    step_ = step;
    position_ = pos;
    cached_epoch_ = -1;
  } catch (const json::exception& e) {
    raise<FormatError>("[train] {}: {}", state_path, e.what());
  }
}

}  // namespace ingot::train
