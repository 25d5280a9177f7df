// C ABI: LoRA adapters (fresh, loaded, saved, applied unfused, fused), saving a model as a
// checkpoint, and fine-tuning with a per-step progress callback that can stop the run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "capi/capi_internal.h"
#include "capi/capi_llm_internal.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter.h"
#include "train/data.h"
#include "train/trainer.h"

using namespace ingot;        // NOLINT
using namespace ingot::capi;  // NOLINT

namespace {

models::Model& model_ref(ingot_model m, const char* what) {
  if (!m || !m->tm.model) raise("[capi] {}: null model handle", what);
  return *m->tm.model;
}
train::LoraAdapter& adapter_ref(ingot_adapter a, const char* what) {
  if (!a || !a->a) raise("[capi] {}: null adapter handle", what);
  return *a->a;
}
/// The adapter, checked to belong to model m.
train::LoraAdapter& adapter_of_model(ingot_model m, ingot_adapter a, const char* what) {
  models::Model& model = model_ref(m, what);
  train::LoraAdapter& ad = adapter_ref(a, what);
  auto owner = a->model.lock();
  if (owner.get() != &model)
    raise(
        "[capi] {}: the adapter was made for another model (load it for this one with "
        "ingot_adapter_load)",
        what);
  return ad;
}
void need_str(const char* s, const char* what) {
  if (!s) raise("[capi] {}: null string", what);
}
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}
ingot_adapter wrap(train::LoraAdapter a, const std::shared_ptr<models::Model>& model) {
  auto h = std::make_unique<ingot_adapter_s>();
  h->a = std::make_shared<train::LoraAdapter>(std::move(a));
  h->model = model;
  return h.release();
}

/// ingot_lora_train(_ex), named `what` in its messages.
int lora_train(const char* what, ingot_model m, ingot_adapter a, const char* train_jsonl,
               const char* valid_jsonl, const ingot_train_options* opts,
               const ingot_train_checkpoint_options* ckpt, ingot_train_fn on_step, void* ctx,
               ingot_train_result* out) {
  return guard([&] {
    auto& ad = adapter_of_model(m, a, what);
    need_str(train_jsonl, what);
    need_out(out, what);
    std::memset(out, 0, sizeof *out);
    out->val_loss = std::numeric_limits<double>::quiet_NaN();
    if (m->applied)
      raise(
          "[capi] {}: the model has an adapter applied (remove it, or load the "
          "base model, to train)",
          what);
    if (!m->tm.tokenizer) raise("[capi] {}: the model has no tokenizer", what);
    const ingot_train_options d = ingot_train_options_default();
    const ingot_train_options& o = opts ? *opts : d;
    const ingot_train_checkpoint_options dc = ingot_train_checkpoint_options_default();
    const ingot_train_checkpoint_options& c = ckpt ? *ckpt : dc;
    if (o.iters <= 0 || o.batch_size <= 0 || o.grad_accum <= 0)
      raise(
          "[capi] {}: iters, batch_size and grad_accum must be positive (got "
          "{}, {}, {})",
          what, o.iters, o.batch_size, o.grad_accum);
    if (o.max_seq_len < 0 || o.warmup < 0 || o.eval_every < 0 || o.eval_batches < 0)
      raise("[capi] {}: negative max_seq_len, warmup, eval_every or eval_batches", what);
    const std::string schedule = o.schedule ? o.schedule : "cosine";
    if (schedule != "cosine" && schedule != "linear" && schedule != "constant")
      raise("[capi] {}: unknown schedule '{}' (cosine, linear, constant)", what, schedule);
    if (c.save_every < 0) raise("[capi] {}: negative save_every ({})", what, c.save_every);
    const char* ckpt_root = c.checkpoint_dir ? c.checkpoint_dir : o.out_dir;
    if (c.save_every > 0 && !ckpt_root)
      raise(
          "[capi] {}: save_every {} needs a checkpoint_dir or an out_dir for the "
          "checkpoints",
          what, c.save_every);

    if (c.loss_log) {  // an unwritable loss log is reported before the adapter changes
      const std::filesystem::path log_path(c.loss_log);
      std::error_code ec;
      if (log_path.has_parent_path())
        std::filesystem::create_directories(log_path.parent_path(), ec);
      std::ofstream probe(log_path, std::ios::app);
      if (!probe) raise<IoError>("[capi] {}: cannot write the loss log {}", what, c.loss_log);
    }

    // Data first: malformed lines are reported before any work.
    auto train_records = train::read_jsonl(train_jsonl);
    std::vector<train::Record> valid_records;
    if (valid_jsonl) valid_records = train::read_jsonl(valid_jsonl);
    const auto& tok = *m->tm.tokenizer;
    const train::TokenizeOptions to{.mask_prompt = o.mask_prompt != 0,
                                    .max_seq_len = o.max_seq_len};
    auto train_ex = train::tokenize(train_records, tok, to, train_jsonl);
    std::vector<train::Example> valid_ex;
    if (!valid_records.empty()) valid_ex = train::tokenize(valid_records, tok, to, valid_jsonl);
    int32_t pad = 0;
    if (auto p = tok.special_tokens().pad_token; !p.empty())
      if (auto id = tok.token_to_id(p)) pad = *id;

    // out_dir stays empty: this loop writes the checkpoints and the final adapter itself (the
    // Trainer would also default the loss log to out_dir/loss.jsonl).
    train::TrainOptions t{.iters = o.iters,
                          .batch_size = o.batch_size,
                          .grad_accum = o.grad_accum,
                          .lr = o.learning_rate,
                          .warmup = o.warmup,
                          .schedule = schedule,
                          .weight_decay = o.weight_decay,
                          .max_grad_norm = o.max_grad_norm,
                          .seed = o.seed,
                          .grad_checkpoint = o.grad_checkpoint != 0,
                          .eval_every = o.eval_every,
                          .eval_batches = o.eval_batches,
                          .loss_log = c.loss_log ? c.loss_log : "",
                          .log_every = 0,
                          .pad_id = pad};
    const bool has_valid = !valid_ex.empty();
    train::Trainer trainer(*m->tm.model, ad, std::move(train_ex), std::move(valid_ex), t);
    if (c.resume) trainer.resume(c.resume);
    while (trainer.step_count() < o.iters) {
      const train::StepStats st = trainer.step();
      trainer.log_step(st);
      ingot_train_progress p;
      std::memset(&p, 0, sizeof p);
      p.step = st.step;
      p.iters = o.iters;
      p.loss = st.loss;
      p.learning_rate = st.lr;
      p.grad_norm = st.grad_norm;
      p.tokens = st.tokens;
      p.seconds = st.seconds;
      p.val_loss = std::numeric_limits<double>::quiet_NaN();
      if (has_valid && o.eval_every > 0 && (st.step % o.eval_every == 0 || st.step == o.iters)) {
        p.val_loss = trainer.evaluate();
        out->val_loss = p.val_loss;
        trainer.log_validation(st.step, static_cast<float>(p.val_loss));
      }
      if (c.save_every > 0 && st.step % c.save_every == 0)
        trainer.save_checkpoint(
            (std::filesystem::path(ckpt_root) / fmt::format("checkpoint-{}", st.step)).string());
      out->steps += 1;
      out->final_loss = st.loss;
      out->tokens += st.tokens;
      out->seconds += st.seconds;
      if (on_step && on_step(ctx, &p) != 0) {
        out->cancelled = 1;
        break;
      }
    }
    if (o.out_dir) ad.save(o.out_dir);
  });
}

}  // namespace

extern "C" {

ingot_lora_config ingot_lora_config_default(void) {
  ingot_lora_config c;
  std::memset(&c, 0, sizeof c);
  c.rank = 8;
  c.alpha = 16.0f;
  return c;
}

int ingot_adapter_new(ingot_model m, const ingot_lora_config* c, ingot_adapter* out) {
  return guard([&] {
    models::Model& model = model_ref(m, "ingot_adapter_new");
    need_out(out, "ingot_adapter_new");
    *out = nullptr;
    const ingot_lora_config d = ingot_lora_config_default();
    if (!c) c = &d;
    if (c->rank <= 0) raise("[capi] ingot_adapter_new: rank must be positive, got {}", c->rank);
    if (c->num_layers < 0 || c->num_layers > model.num_layers())
      raise("[capi] ingot_adapter_new: num_layers {} outside [0, {}]", c->num_layers,
            model.num_layers());
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
      raise("[capi] ingot_adapter_new: dropout must be in [0, 1), got {}", c->dropout);
    train::LoraConfig cfg;
    cfg.rank = c->rank;
    cfg.alpha = c->alpha;
    cfg.dropout = c->dropout;
    if (c->targets) cfg.targets = split_list(c->targets);
    if (cfg.targets.empty()) raise("[capi] ingot_adapter_new: no target modules");
    cfg.use_rslora = c->use_rslora != 0;
    cfg.base_model = m->dir;
    if (c->num_layers > 0)
      for (int i = model.num_layers() - c->num_layers; i < model.num_layers(); ++i)
        cfg.layers.push_back(i);
    *out = wrap(train::LoraAdapter::init(model, cfg, c->seed), m->tm.model);
  });
}

int ingot_adapter_load(ingot_model m, const char* dir, ingot_adapter* out) {
  return guard([&] {
    models::Model& model = model_ref(m, "ingot_adapter_load");
    need_str(dir, "ingot_adapter_load");
    need_out(out, "ingot_adapter_load");
    *out = nullptr;
    *out = wrap(train::LoraAdapter::load(dir, model), m->tm.model);
  });
}

int ingot_adapter_free(ingot_adapter a) {
  return guard([&] { delete a; });
}

int ingot_adapter_save(ingot_adapter a, const char* dir) {
  return guard([&] {
    const auto& ad = adapter_ref(a, "ingot_adapter_save");
    need_str(dir, "ingot_adapter_save");
    ad.save(dir);
  });
}

int ingot_adapter_rank(ingot_adapter a, int* out) {
  return guard([&] {
    need_out(out, "ingot_adapter_rank");
    *out = adapter_ref(a, "ingot_adapter_rank").config().rank;
  });
}
int ingot_adapter_scale(ingot_adapter a, float* out) {
  return guard([&] {
    need_out(out, "ingot_adapter_scale");
    *out = adapter_ref(a, "ingot_adapter_scale").config().scale();
  });
}
int ingot_adapter_num_targets(ingot_adapter a, size_t* out) {
  return guard([&] {
    need_out(out, "ingot_adapter_num_targets");
    *out = adapter_ref(a, "ingot_adapter_num_targets").targets().size();
  });
}
int ingot_adapter_num_parameters(ingot_adapter a, int64_t* out) {
  return guard([&] {
    need_out(out, "ingot_adapter_num_parameters");
    *out = adapter_ref(a, "ingot_adapter_num_parameters").num_parameters();
  });
}
int ingot_adapter_parameters(ingot_adapter a, ingot_named_arrays* out) {
  return guard([&] {
    const auto& ad = adapter_ref(a, "ingot_adapter_parameters");
    need_out(out, "ingot_adapter_parameters");
    auto m = std::make_unique<ingot_named_arrays_s>();
    for (const auto& [k, v] : ad.params()) m->m.emplace(k, v);
    *out = m.release();
  });
}

int ingot_model_apply_adapter(ingot_model m, ingot_adapter a) {
  return guard([&] {
    auto& ad = adapter_of_model(m, a, "ingot_model_apply_adapter");
    if (m->applied)
      raise(
          "[capi] ingot_model_apply_adapter: the model has an adapter applied already (remove "
          "it first)");
    auto snapshot = std::make_shared<train::LoraAdapter>(ad);
    ++m->weights_version;  // prompt caches filled before are stale (even if this fails midway)
    train::apply_adapter(*m->tm.model, *snapshot);
    m->applied = std::move(snapshot);
    m->applied_from = &ad;
  });
}

int ingot_model_remove_adapter(ingot_model m) {
  return guard([&] {
    models::Model& model = model_ref(m, "ingot_model_remove_adapter");
    if (m->applied) {
      ++m->weights_version;
      train::clear_branches(model, *m->applied);
    }
    m->applied.reset();
    m->applied_from = nullptr;
  });
}

int ingot_model_fuse_adapter(ingot_model m, ingot_adapter a) {
  return guard([&] {
    auto& ad = adapter_of_model(m, a, "ingot_model_fuse_adapter");
    if (m->applied && m->applied_from != &ad)
      raise("[capi] ingot_model_fuse_adapter: another adapter is applied (remove it first)");
    ++m->weights_version;
    if (m->applied) train::clear_branches(*m->tm.model, *m->applied);
    m->applied.reset();
    m->applied_from = nullptr;
    train::fuse_adapter(*m->tm.model, ad);
  });
}

int ingot_model_save(ingot_model m, const char* out_dir, const char* dtype) {
  return guard([&] {
    const models::Model& model = model_ref(m, "ingot_model_save");
    need_str(out_dir, "ingot_model_save");
    if (m->applied)
      raise(
          "[capi] ingot_model_save: the model has an unfused adapter applied (fuse it with "
          "ingot_model_fuse_adapter, or remove it)");
    if (m->dir.empty()) raise("[capi] ingot_model_save: the model was not loaded from a directory");
    const Dtype storage = dtype ? dtype_from_name(dtype) : model.dtype();
    if (!is_floating(storage))
      raise("[capi] ingot_model_save: dtype must be a float type, got {}", dtype);
    train::save_checkpoint(model, m->dir, out_dir, storage);
  });
}

ingot_train_options ingot_train_options_default(void) {
  const train::TrainOptions d;
  ingot_train_options o;
  std::memset(&o, 0, sizeof o);
  o.iters = d.iters;
  o.batch_size = d.batch_size;
  o.grad_accum = d.grad_accum;
  o.learning_rate = d.lr;
  o.warmup = d.warmup;
  o.weight_decay = d.weight_decay;
  o.max_grad_norm = d.max_grad_norm;
  o.seed = d.seed;
  return o;
}

ingot_train_checkpoint_options ingot_train_checkpoint_options_default(void) {
  ingot_train_checkpoint_options c;
  std::memset(&c, 0, sizeof c);
  return c;
}

int ingot_lora_train_ex(ingot_model m, ingot_adapter a, const char* train_jsonl,
                        const char* valid_jsonl, const ingot_train_options* opts,
                        const ingot_train_checkpoint_options* ckpt, ingot_train_fn on_step,
                        void* ctx, ingot_train_result* out) {
  return lora_train("ingot_lora_train_ex", m, a, train_jsonl, valid_jsonl, opts, ckpt, on_step, ctx,
                    out);
}

int ingot_lora_train(ingot_model m, ingot_adapter a, const char* train_jsonl,
                     const char* valid_jsonl, const ingot_train_options* opts,
                     ingot_train_fn on_step, void* ctx, ingot_train_result* out) {
  return lora_train("ingot_lora_train", m, a, train_jsonl, valid_jsonl, opts, nullptr, on_step, ctx,
                    out);
}

}  // extern "C"
