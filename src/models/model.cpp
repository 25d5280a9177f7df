// load_model: opens the checkpoint and builds the registered architecture.
#include "models/model.h"

#include <chrono>
#include <cstdio>
#include <mutex>

#include "core/transforms/eval.h"
#include "models/checkpoint.h"
#include "models/registry.h"

namespace ingot::models {

// Defined by the architecture files; called here so that a static link keeps them.
void register_llama();
void register_qwen3();
void register_gemma3();

void register_builtin_architectures() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_llama();
    register_qwen3();
    register_gemma3();
  });
}

std::shared_ptr<Model> load_model(const std::string& dir, const LoadModelOptions& opt) {
  register_builtin_architectures();
  const auto t0 = std::chrono::steady_clock::now();
  Checkpoint ckpt = Checkpoint::open(dir, {.dtype = opt.dtype,
                                           .warn = opt.warn,
                                           .device = opt.device,
                                           .tensor_parallel = opt.tensor_parallel,
                                           .gguf_native = opt.gguf_native});
  if (opt.warn && !ckpt.ignored().empty())
    std::fprintf(stderr,
                 "[models] warning: %s: skipping %zu tensors outside the text model (first: %s)\n",
                 dir.c_str(), ckpt.ignored().size(), ckpt.ignored().front().c_str());
  std::shared_ptr<Model> model = model_factory(ckpt.architecture())(ckpt);
  model->set_attention_impl(opt.attention);
  synchronize(ckpt.device());  // the copies and casts are queued; the load time includes them
  model->load_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return model;
}

}  // namespace ingot::models
