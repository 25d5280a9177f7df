// load_model: opens the checkpoint and builds the registered architecture.
#include "models/model.h"

#include <cstdio>
#include <mutex>

#include "models/checkpoint.h"
#include "models/registry.h"

namespace ingot::models {

// Defined by the architecture files; called here so that a static link keeps them.
void register_llama();
void register_qwen3();
void register_gemma3();

namespace {
void register_builtin_architectures() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_llama();
    register_qwen3();
    register_gemma3();
  });
}
}  // namespace

std::shared_ptr<Model> load_model(const std::string& dir, const LoadModelOptions& opt) {
  register_builtin_architectures();
  Checkpoint ckpt = Checkpoint::open(dir, {.dtype = opt.dtype, .warn = opt.warn});
  if (opt.warn && !ckpt.ignored().empty())
    std::fprintf(stderr,
                 "[models] warning: %s: skipping %zu tensors outside the text model (first: %s)\n",
                 dir.c_str(), ckpt.ignored().size(), ckpt.ignored().front().c_str());
  std::shared_ptr<Model> model = model_factory(ckpt.architecture())(ckpt);
  model->set_attention_impl(opt.attention);
  return model;
}

}  // namespace ingot::models
