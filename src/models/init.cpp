// init_model: a model of a config's architecture with transformers' random initialisation.
#include <cstdint>
#include <string>

#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "models/checkpoint.h"
#include "models/model.h"
#include "models/registry.h"
#include "models/transformer.h"
#include "nn/layers.h"
#include "util/error.h"

namespace ingot::models {

namespace {

/// The key of parameter `name`: FNV-1a of the name mixed with the seed (splitmix64 finaliser),
/// so a parameter's values depend neither on the order of the others nor on the device.
Array param_key(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (seed + 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return random::key(z ^ (z >> 31));
}

struct Init {
  const ModelConfig& config;
  const InitModelOptions& opt;
  Device device;
  ParamMap values;

  Array normal(const std::string& name, const Shape& shape) const {
    // Drawn in float32 and rounded: a bf16 model holds the float32 model's values rounded.
    Array w = random::normal(shape, float32, 0.0, config.initializer_range,
                             param_key(opt.seed, name), device);
    return opt.dtype == float32 ? w : astype(w, opt.dtype);
  }

  void walk(const nn::Module& m, const std::string& prefix) {
    auto own = [&](const char* p) { return prefix + p; };
    if (dynamic_cast<const nn::Linear*>(&m)) {
      const std::string w = own("weight");
      values.emplace(w, normal(w, m.param("weight").shape()));
      if (m.has_param("bias"))
        values.emplace(own("bias"), zeros(m.param("bias").shape(), opt.dtype, device));
    } else if (dynamic_cast<const nn::Embedding*>(&m)) {
      const std::string w = own("weight");
      const Shape shape = m.param("weight").shape();
      Array t = normal(w, shape);
      // nn.Embedding(padding_idx=pad_token_id): _init_weights zeroes that row.
      if (config.pad_token_id && *config.pad_token_id >= 0 && *config.pad_token_id < shape[0]) {
        Array rows = reshape(arange(shape[0], int32, device), {shape[0], 1});
        Array pad = equal(rows, Array(static_cast<int32_t>(*config.pad_token_id)));
        t = where(pad, zeros({1}, opt.dtype, device), t);
      }
      values.emplace(w, t);
    } else if (const auto* norm = dynamic_cast<const nn::RMSNorm*>(&m)) {
      const Shape shape = m.param("weight").shape();
      // (1 + w) norms (Gemma3) start at w = 0; the others at 1: both scale by 1.
      values.emplace(own("weight"), norm->options().unit_offset ? zeros(shape, opt.dtype, device)
                                                                : ones(shape, opt.dtype, device));
    }
    for (const auto& [name, child] : m.children()) walk(*child, prefix + name + ".");
  }
};

}  // namespace

std::shared_ptr<Model> init_model(const ModelConfig& config, const InitModelOptions& opt) {
  register_builtin_architectures();
  if (config.quantization)
    raise<Unsupported>(
        "[models] {}: init_model builds a float model; the config has a quantization section",
        config.source);
  if (!is_floating(opt.dtype))
    raise("[models] init_model: dtype {} is not a floating-point dtype", dtype_name(opt.dtype));
  Checkpoint ckpt =
      Checkpoint::from_config(config, {.dtype = opt.dtype, .warn = false, .device = opt.device});
  std::shared_ptr<Model> model = model_factory(ckpt.architecture())(ckpt);
  Init init{config, opt, model->device(), {}};
  init.walk(*model, "");
  const ParamMap params = model->parameters();
  for (const auto& [name, p] : params) {
    auto it = init.values.find(name);
    if (it == init.values.end())
      raise<Unsupported>(
          "[models] init_model: no initialisation rule for parameter '{}' of a {} model", name,
          model->architecture());
    if (it->second.shape() != p.shape())
      raise<Error>("[models] init_model: '{}' initialised as {}, the model has {}", name,
                   shape_str(it->second.shape()), shape_str(p.shape()));
  }
  model->update(init.values);
  std::vector<Array> outs;
  for (auto& [n, v] : init.values) outs.push_back(v);
  eval(outs);
  if (model->device().type == Device::Type::cuda) fuse_projections(*model);
  return model;
}

std::shared_ptr<Model> init_model(const std::string& path, const InitModelOptions& opt) {
  return init_model(load_model_config(path), opt);
}

}  // namespace ingot::models
