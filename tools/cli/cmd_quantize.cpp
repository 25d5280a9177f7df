// `ingot quantize`: writes an mlx-community style affine-quantized checkpoint (uint32 packed
// weight + scales + biases per quantized module, "quantization" in config.json) from a float
// checkpoint: the embedding, every Linear of the decoder layers and lm_head; norms stay float.
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "llm_common.h"
#include "nn/quantized.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

namespace fs = std::filesystem;

struct QuantizeArgs {
  ModelArgs model;
  std::string out;
  int bits = 4;
  int group_size = 64;
};

/// Module paths mlx-lm quantizes: the embedding, the head, and every Linear in the layers.
bool quantizable(const std::string& path) {
  return path == "model.embed_tokens" || path == "lm_head" || path.rfind("model.layers.", 0) == 0;
}

int run_quantize(const QuantizeArgs& a) {
  const QuantizeOptions opt{.group_size = a.group_size, .bits = a.bits};
  check_quantize_options(opt, "quantize");
  if (!a.model.adapter.empty()) raise("[quantize] --adapter is not supported (fuse it first)");
  std::error_code ec;
  if (fs::exists(a.out) && fs::equivalent(fs::path(a.model.dir), fs::path(a.out), ec))
    raise("[quantize] the output directory must differ from the model directory");
  auto model = models::load_model(a.model.dir, base_load_options(a.model));
  if (model->config().quantization) raise("[quantize] {} is already quantized", a.model.dir);
  int skipped = 0;
  const int n = nn::quantize_modules(*model, [&](const std::string& path, const nn::Module& m) {
    std::optional<QuantizeOptions> r;
    if (!quantizable(path)) return r;
    if (m.param("weight").shape(-1) % opt.group_size != 0) {  // as mlx-lm: left in float
      ++skipped;
      return r;
    }
    r = opt;
    return r;
  });
  fs::create_directories(a.out, ec);
  if (ec) raise<IoError>("[quantize] cannot create {}: {}", a.out, ec.message());
  std::map<std::string, Array> tensors;
  std::vector<Array> all;
  for (auto& [name, v] : model->parameters()) {
    tensors.emplace(name, v);
    all.push_back(v);
  }
  eval(all);
  save_safetensors((fs::path(a.out) / "model.safetensors").string(), tensors, {{"format", "mlx"}});
  // config.json: the source's, plus the quantization (mlx-lm writes both keys).
  const fs::path src_cfg = fs::path(a.model.dir) / "config.json";
  std::ifstream in(src_cfg);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json cfg = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object()) raise<FormatError>("[quantize] {}: not a JSON object", src_cfg.string());
  nlohmann::json q = {{"group_size", opt.group_size}, {"bits", opt.bits}};
  cfg["quantization"] = q;
  cfg["quantization_config"] = q;
  cfg["torch_dtype"] = dtype_name(model->dtype());
  if (cfg.contains("dtype")) cfg["dtype"] = dtype_name(model->dtype());
  std::ofstream(fs::path(a.out) / "config.json") << cfg.dump(2) << "\n";
  for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "chat_template.jinja"}) {
    const fs::path from = fs::path(a.model.dir) / f;
    if (!fs::exists(from)) continue;
    fs::copy_file(from, fs::path(a.out) / f, fs::copy_options::overwrite_existing, ec);
    if (ec)
      raise<IoError>("[quantize] cannot copy {} to {}: {}", from.string(), a.out, ec.message());
  }
  fmt::print(stderr,
             "quantize: {} modules of {} quantized to {} bits (group size {}), {} left in {} "
             "(width not a multiple of the group size); written to {}\n",
             n, a.model.dir, opt.bits, opt.group_size, skipped, dtype_name(model->dtype()), a.out);
  return 0;
}

const Registrar reg(
    {"quantize", "Write an mlx-style 4- or 8-bit affine-quantized checkpoint", [](CLI::App& app) {
       auto a = std::make_shared<QuantizeArgs>();
       add_model_options(app, a->model);
       app.add_option("--out", a->out, "Output checkpoint directory")->required();
       app.add_option("--bits", a->bits, "Bits per weight: 4 or 8")->capture_default_str();
       app.add_option("--group-size", a->group_size, "Weights per scale/bias: 32, 64 or 128")
           ->capture_default_str();
       app.footer(
           "Quantizes the embedding, every Linear of the decoder layers and lm_head in the "
           "mlx-community layout (uint32 weight, scales, biases; \"quantization\" in "
           "config.json); norms stay in the model's dtype. mlx-lm and ingot load the result.\n"
           "Example: ingot quantize --model ./Qwen3-0.6B --bits 4 --group-size 64 --out ./q4");
       return std::function<int()>([a] { return run_quantize(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
