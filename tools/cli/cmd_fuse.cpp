// `ingot lora fuse` (also `ingot fuse`): merges a LoRA adapter into its base model (W + scale * B
// A) and writes a full Hugging Face checkpoint (model.safetensors, config, tokenizer files) that
// transformers loads.
#include <memory>
#include <string>

#include <fmt/format.h>

#include "command.h"
#include "llm_common.h"
#include "models/gguf_checkpoint.h"
#include "train/adapter.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

struct FuseArgs {
  ModelArgs model;
  std::string out;
};

int run_fuse(const FuseArgs& a) {
  if (a.model.adapter.empty()) raise("[fuse] --adapter DIR is required");
  // The output is a Hugging Face checkpoint: its config.json comes from the model directory.
  if (models::is_gguf_file(a.model.dir))
    raise<Unsupported>(
        "[fuse] {} is a GGUF file: fuse writes a Hugging Face checkpoint (config.json and "
        "model.safetensors) and needs the safetensors checkpoint the GGUF file was made from; "
        "or apply the adapter unfused (--adapter)",
        a.model.dir);
  auto model = models::load_model(a.model.dir, base_load_options(a.model));
  train::LoraAdapter adapter = train::LoraAdapter::load(a.model.adapter, *model);
  train::fuse_adapter(*model, adapter);
  train::save_checkpoint(*model, a.model.dir, a.out, model->dtype());
  fmt::print(stderr, "fuse: {} layers of {} merged (scale {}), {} written to {}\n",
             adapter.targets().size(), a.model.dir, adapter.config().scale(),
             dtype_name(model->dtype()), a.out);
  return 0;
}

}  // namespace

/// Adds the options of `ingot lora fuse` (also `ingot fuse`) to `app`; returns its runner.
std::function<int()> setup_lora_fuse(CLI::App& app, const std::string& spelling) {
  auto a = std::make_shared<FuseArgs>();
  add_model_options(app, a->model);
  app.add_option("--out", a->out, "Output checkpoint directory")->required();
  app.footer(
      "--adapter DIR (required): the PEFT or mlx-lm adapter to merge.\n"
      "The merged weights are computed in float32 and stored in the model's dtype "
      "(--dtype, default the checkpoint's).\n"
      "Example: " +
      spelling + " --model ./Llama-3.2-1B --adapter ./my-adapter --out ./fused");
  return [a] { return run_fuse(*a); };
}

/// The subcommands of `ingot lora` (cmd_lora.cpp).
std::vector<Command>& lora_commands();

namespace {

const bool lora_fuse_registered =
    (lora_commands().push_back(
         Command{"fuse", "Merge a LoRA adapter into the base model and write a full checkpoint",
                 [](CLI::App& app) { return setup_lora_fuse(app, "ingot lora fuse"); }}),
     true);

const Registrar reg({"fuse",
                     "Merge a LoRA adapter into the base model and write a full checkpoint "
                     "(also `ingot lora fuse`)",
                     [](CLI::App& app) { return setup_lora_fuse(app, "ingot fuse"); }});

}  // namespace
}  // namespace ingot::cli
