// The LoRA fine-tuning loop (see trainer.h).
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/allocator.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "models/transformer.h"
#include "nn/losses.h"
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

/// Per-block gradient checkpointing: the decoder forward of DecoderLM::hidden (no mask, no
/// cache) with every block under ingot::checkpoint. The block's adapter factors are inputs of
/// the checkpointed function, which puts them on the block's layers as low-rank branches (also
/// when the backward pass recomputes the block).
Array checkpointed_logits(models::Model& model, const LoraAdapter& adapter, const ParamMap& params,
                          const Array& ids) {
  if (adapter.config().dropout > 0.0f)
    raise<Unsupported>(
        "[train] LoRA dropout ({}) with gradient checkpointing is not supported yet (the "
        "recomputed blocks would draw other dropout masks): use one or the other",
        adapter.config().dropout);
  const nn::Module& backbone = child(model, "model");
  const auto& embed = dynamic_cast<const nn::Embedding&>(child(backbone, "embed_tokens"));
  const nn::Module& layers = child(backbone, "layers");
  const auto& norm = dynamic_cast<const nn::RMSNorm&>(child(backbone, "norm"));
  Array x = embed(to_device(ids, model.device()));  // [B, L, E]
  // DecoderOptions::embed_scale is not visible from here: Gemma3 (make_gemma3) is the one
  // architecture that sets it, to sqrt(E). The checkpointing test compares with forward().
  if (model.architecture() == "gemma3")
    x = x * Array(static_cast<float>(std::sqrt(static_cast<double>(model.config().hidden_size))),
                  model.dtype());
  const float s = adapter.config().scale();
  for (const auto& [lname, lmod] : layers.children()) {
    auto* block = dynamic_cast<models::Block*>(lmod.get());
    if (!block) raise<Unsupported>("[train] layer {} is not a decoder block", lname);
    const std::string prefix = "model.layers." + lname + ".";
    std::vector<nn::Linear*> targets;  // the block's adapted layers
    std::vector<Array> inputs{x};
    for (const auto& t : adapter.targets()) {
      if (t.module.rfind(prefix, 0) != 0) continue;
      targets.push_back(&linear_at(*block, t.module.substr(prefix.size())));
      inputs.push_back(params.at(t.module + ".lora_A.weight"));
      inputs.push_back(params.at(t.module + ".lora_B.weight"));
    }
    ArrayFn fn = [block, targets, s](const std::vector<Array>& in) {
      for (size_t i = 0; i < targets.size(); ++i)
        targets[i]->set_branch(nn::LowRankBranch{in[1 + 2 * i], in[2 + 2 * i], s, 0.0f});
      return std::vector<Array>{(*block)(in[0], {})};
    };
    x = checkpoint(fn)(inputs)[0];
  }
  return model.lm_head(norm(x));
}

}  // namespace

Array lora_loss(models::Model& model, const LoraAdapter& adapter, const ParamMap& params,
                const Batch& batch, bool checkpoint) {
  Array logits = [&] {
    if (checkpoint) return checkpointed_logits(model, adapter, params, batch.inputs);
    set_branches(model, adapter, params);
    return model.forward(batch.inputs);
  }();
  const Device dev = model.device();
  return nn::cross_entropy(logits, to_device(batch.targets, dev),
                           {.mask = to_device(batch.mask, dev)});
}

std::pair<Array, ParamMap> lora_value_and_grad(models::Model& model, const LoraAdapter& adapter,
                                               const ParamMap& params, const Batch& batch,
                                               bool checkpoint) {
  auto fn = [&](const ParamMap& p) { return lora_loss(model, adapter, p, batch, checkpoint); };
  try {
    auto r = value_and_grad(fn, params);
    clear_branches(model, adapter);
    return r;
  } catch (...) {
    clear_branches(model, adapter);
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
      adapter_(adapter),
      train_(std::move(train)),
      valid_(std::move(valid)),
      opt_(std::move(opt)) {
  if (train_.empty()) raise("[train] no training examples");
  if (opt_.iters <= 0) raise("[train] iters must be positive, got {}", opt_.iters);
  if (opt_.grad_accum <= 0) raise("[train] grad_accum must be positive, got {}", opt_.grad_accum);
  if (opt_.batch_size <= 0) raise("[train] batch size must be positive, got {}", opt_.batch_size);
  (void)learning_rate(opt_, 0);  // validates the schedule name
  const TrainOptions o = opt_;
  optim_ = std::make_unique<nn::AdamW>(
      [o](int64_t s) { return learning_rate(o, s); },
      nn::AdamOptions{
          .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay});
  log_path_ = opt_.loss_log;
  if (log_path_.empty() && !opt_.out_dir.empty())
    log_path_ = (fs::path(opt_.out_dir) / "loss.jsonl").string();
}

Trainer::~Trainer() = default;

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
  const ParamMap params = adapter_.params();
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
  const bool dropout = adapter_.config().dropout > 0.0f;
  for (int k = 0; k < opt_.grad_accum; ++k) {
    if (dropout)
      random::seed(opt_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(position_) + 1);
    Batch b = next_batch();
    auto [loss, g] = lora_value_and_grad(model_, adapter_, params, b, opt_.grad_checkpoint);
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
    const float l = loss.item<float>();
    if (!std::isfinite(l))
      raise<Error>(
          "[train] loss is {} at step {} (micro-batch {}); stopping, the adapter keeps "
          "its values from step {}",
          std::isnan(l) ? "NaN" : "Inf", step_ + 1, k + 1, step_);
    loss_sum += l;
    tokens += b.tokens;
  }
  StepStats st;
  st.lr = optim_->learning_rate();
  if (opt_.max_grad_norm > 0.0f) {
    auto [clipped, norm] = nn::clip_grad_norm(grads, opt_.max_grad_norm);
    grads = std::move(clipped);
    st.grad_norm = norm.item<float>();
  }
  ParamMap next = optim_->apply(params, grads);
  std::vector<Array> outs;
  for (auto& [n, v] : next) outs.push_back(v);
  for (auto& [n, v] : optim_->state()) outs.push_back(v);
  eval(outs);
  adapter_.set_params(next);
  ++step_;
  st.step = step_;
  st.loss = static_cast<float>(loss_sum / opt_.grad_accum);
  st.tokens = tokens;
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

float Trainer::evaluate() {
  if (valid_.empty()) return std::nanf("");
  auto batches = epoch_batches(valid_, opt_.batch_size, 0, 0, false);
  if (opt_.eval_batches > 0 && static_cast<int64_t>(batches.size()) > opt_.eval_batches)
    batches.resize(static_cast<size_t>(opt_.eval_batches));
  double sum = 0.0;
  int64_t n = 0;
  try {
    for (auto& idx : batches) {
      Batch b = make_batch(valid_, idx, opt_.pad_id);
      Array loss = lora_loss(model_, adapter_, adapter_.params(), b, false);
      sum += static_cast<double>(loss.item<float>()) * static_cast<double>(b.tokens);
      n += b.tokens;
    }
  } catch (...) {
    clear_branches(model_, adapter_);
    throw;
  }
  clear_branches(model_, adapter_);
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

std::vector<StepStats> Trainer::run() {
  std::vector<StepStats> all;
  double seconds = 0.0;
  int64_t tokens = 0;
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  while (step_ < opt_.iters) {
    StepStats st = step();
    all.push_back(st);
    seconds += st.seconds;
    tokens += st.tokens;
    log(json{{"step", st.step},
             {"loss", num(st.loss)},
             {"lr", num(st.lr)},
             {"grad_norm", num(st.grad_norm)},
             {"tokens", st.tokens},
             {"tok_per_s", num(st.tokens / std::max(st.seconds, 1e-9))}}
            .dump());
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
      log(json{{"step", st.step}, {"val_loss", num(v)}}.dump());
      if (opt_.log_every > 0)
        fmt::print(stderr, "step {}/{}  val_loss {:.4f}\n", st.step, opt_.iters, v);
    }
    if (opt_.save_every > 0 && !opt_.out_dir.empty() && st.step % opt_.save_every == 0)
      save_checkpoint((fs::path(opt_.out_dir) / fmt::format("checkpoint-{}", st.step)).string());
  }
  if (!opt_.out_dir.empty()) adapter_.save(opt_.out_dir);
  return all;
}

void Trainer::save_checkpoint(const std::string& dir) const {
  // Written to DIR.tmp and renamed, so an interrupted save never leaves a half checkpoint.
  const std::string tmp = dir + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  adapter_.save(tmp);
  save_safetensors((fs::path(tmp) / "optimizer.safetensors").string(), optim_->state());
  json st{{"step", step_},
          {"data_position", position_},
          {"seed", opt_.seed},
          {"batch_size", opt_.batch_size},
          {"grad_accum", opt_.grad_accum},
          {"num_examples", train_.size()}};
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
    if (st.at("num_examples").get<size_t>() != train_.size() ||
        st.at("batch_size").get<int>() != opt_.batch_size ||
        st.at("seed").get<uint64_t>() != opt_.seed)
      raise<FormatError>(
          "[train] {}: written for other data or options (examples {}, batch "
          "size {}, seed {}); resume with the same ones",
          state_path, st.at("num_examples").dump(), st.at("batch_size").dump(),
          st.at("seed").dump());
    if (step < 0 || pos < 0)
      raise<FormatError>("[train] {}: negative step or position", state_path);
    LoraAdapter saved = LoraAdapter::load(dir, model_);
    ParamMap p = saved.params();
    if (p.size() != adapter_.params().size())
      raise<FormatError>("[train] {}: the checkpoint's adapter has other target modules", dir);
    adapter_.set_params(p);
    optim_->load_state(
        load_safetensors((fs::path(dir) / "optimizer.safetensors").string(), {.copy = true}));
    step_ = step;
    position_ = pos;
    cached_epoch_ = -1;
  } catch (const json::exception& e) {
    raise<FormatError>("[train] {}: {}", state_path, e.what());
  }
}

}  // namespace ingot::train
