// LoRA adapters: targets, config files, PEFT/mlx-lm tensors, merging (see adapter.h).
#include "train/adapter.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "nn/layers.h"
#include "util/error.h"

namespace ingot::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
constexpr const char* kAllLinear = "all-linear";

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) raise<IoError>("[lora] cannot open {}", path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) raise<IoError>("[lora] cannot write {}", path);
}

/// Layer index of "model.layers.N.<rest>", or -1.
int layer_of(const std::string& path) {
  const std::string key = "model.layers.";
  if (path.rfind(key, 0) != 0) return -1;
  size_t i = key.size(), j = i;
  while (j < path.size() && std::isdigit(static_cast<unsigned char>(path[j]))) ++j;
  if (j == i || j >= path.size() || path[j] != '.' || j - i > 6) return -1;
  return std::stoi(path.substr(i, j - i));
}

std::string last_component(const std::string& path) {
  size_t d = path.rfind('.');
  return d == std::string::npos ? path : path.substr(d + 1);
}

/// Every Linear inside the decoder layers, by model path.
void collect_linears(const nn::Module& m, const std::string& prefix,
                     std::vector<std::pair<std::string, const nn::Linear*>>& out) {
  for (const auto& [name, child] : m.children()) {
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    if (auto* lin = dynamic_cast<const nn::Linear*>(child.get()); lin && layer_of(path) >= 0) {
      out.emplace_back(path, lin);
      continue;
    }
    collect_linears(*child, path, out);
  }
}

template <typename T>
T get_field(const json& j, const char* key, const std::string& source, T fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  // Numbers are range-checked here: nlohmann's conversions cast without checks.
  if constexpr (std::is_same_v<T, int>) {
    if (v.is_number_integer()) {
      const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > INT32_MAX
                            ? int64_t{INT32_MAX} + 1
                            : v.get<int64_t>();
      if (x >= INT32_MIN && x <= INT32_MAX) return static_cast<int>(x);
    }
  } else if constexpr (std::is_same_v<T, float>) {
    if (v.is_number()) {
      const double x = v.get<double>();
      if (std::isfinite(x) && std::abs(x) <= 1e30) return static_cast<float>(x);
    }
  } else if constexpr (std::is_same_v<T, std::vector<int>>) {
    if (v.is_array()) {
      std::vector<int> out;
      for (size_t i = 0; i < v.size(); ++i) {
        json item{{"v", v[i]}};
        out.push_back(get_field<int>(item, "v", source, 0));
        if (v[i].is_null()) raise<FormatError>("[lora] {}: \"{}\" holds null", source, key);
      }
      return out;
    }
  } else {
    try {
      return v.get<T>();
    } catch (const json::exception&) {
    }
  }
  raise<FormatError>("[lora] {}: \"{}\" has the wrong type or range ({})", source, key,
                     v.dump().substr(0, 80));
}

}  // namespace

float LoraConfig::scale() const {
  if (explicit_scale) return *explicit_scale;
  return use_rslora ? alpha / std::sqrt(static_cast<float>(rank))
                    : alpha / static_cast<float>(rank);
}

LoraConfig parse_adapter_config(const std::string& text, const std::string& source,
                                int num_hidden_layers) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    raise<FormatError>("[lora] {}: not valid JSON: {}", source, e.what());
  }
  if (!j.is_object()) raise<FormatError>("[lora] {}: expected a JSON object", source);
  LoraConfig c;
  c.targets.clear();
  if (j.contains("lora_parameters")) {  // mlx-lm
    const json& p = j["lora_parameters"];
    if (!p.is_object())
      raise<FormatError>("[lora] {}: \"lora_parameters\" is not an object", source);
    const std::string type = get_field<std::string>(j, "fine_tune_type", source, "lora");
    if (type != "lora")
      raise<FormatError>("[lora] {}: fine_tune_type \"{}\" is not supported (only lora)", source,
                         type);
    if (get_field<bool>(j, "use_dora", source, false))  // older mlx-lm spelling of "dora"
      raise<FormatError>("[lora] {}: DoRA adapters (use_dora) are not supported", source);
    c.rank = get_field<int>(p, "rank", source, 8);
    c.explicit_scale = get_field<float>(p, "scale", source, 20.0f);
    c.alpha = *c.explicit_scale * static_cast<float>(c.rank);
    c.dropout = get_field<float>(p, "dropout", source, 0.0f);
    std::vector<std::string> keys = get_field<std::vector<std::string>>(p, "keys", source, {});
    for (auto& k : keys) c.targets.push_back(last_component(k));
    const int n = get_field<int>(j, "num_layers", source, -1);
    if (n > 0 && num_hidden_layers > 0)
      for (int i = std::max(0, num_hidden_layers - n); i < num_hidden_layers; ++i)
        c.layers.push_back(i);
    c.base_model = get_field<std::string>(j, "model", source, "");
  } else {
    const std::string type = get_field<std::string>(j, "peft_type", source, "");
    if (type != "LORA")
      raise<FormatError>("[lora] {}: peft_type is \"{}\", expected \"LORA\"", source, type);
    c.rank = get_field<int>(j, "r", source, 8);
    c.alpha = get_field<float>(j, "lora_alpha", source, 8.0f);
    c.dropout = get_field<float>(j, "lora_dropout", source, 0.0f);
    c.use_rslora = get_field<bool>(j, "use_rslora", source, false);
    const std::string bias = get_field<std::string>(j, "bias", source, "none");
    if (bias != "none")
      raise<FormatError>("[lora] {}: bias \"{}\" is not supported (only \"none\")", source, bias);
    if (j.contains("use_dora") && j["use_dora"].is_boolean() && j["use_dora"].get<bool>())
      raise<FormatError>("[lora] {}: DoRA adapters (use_dora) are not supported", source);
    const json& t = j.contains("target_modules") ? j["target_modules"] : json();
    if (t.is_string()) {
      c.targets.push_back(t.get<std::string>());
    } else if (t.is_array()) {
      c.targets = get_field<std::vector<std::string>>(j, "target_modules", source, {});
    } else {
      raise<FormatError>("[lora] {}: \"target_modules\" must be a list or a string", source);
    }
    const json& l = j.contains("layers_to_transform") ? j["layers_to_transform"] : json();
    if (l.is_number_integer()) {
      c.layers.push_back(get_field<int>(j, "layers_to_transform", source, 0));
    } else if (l.is_array()) {
      c.layers = get_field<std::vector<int>>(j, "layers_to_transform", source, {});
    } else if (!l.is_null()) {
      raise<FormatError>("[lora] {}: \"layers_to_transform\" must be an int or a list", source);
    }
    c.base_model = get_field<std::string>(j, "base_model_name_or_path", source, "");
  }
  if (c.rank <= 0 || c.rank > 65536)
    raise<FormatError>("[lora] {}: rank {} is invalid", source, c.rank);
  if (!std::isfinite(c.alpha) || !std::isfinite(c.scale()))
    raise<FormatError>("[lora] {}: alpha/scale must be finite", source);
  if (!(c.dropout >= 0.0f && c.dropout < 1.0f))
    raise<FormatError>("[lora] {}: dropout {} is not in [0, 1)", source, c.dropout);
  if (c.targets.empty() && !j.contains("lora_parameters"))
    raise<FormatError>("[lora] {}: no target modules", source);
  for (int l : c.layers)
    if (l < 0) raise<FormatError>("[lora] {}: negative layer index {}", source, l);
  return c;
}

std::string adapter_config_json(const LoraConfig& c) {
  json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["r"] = c.rank;
  j["lora_alpha"] = c.alpha;
  j["lora_dropout"] = c.dropout;
  j["target_modules"] =
      c.targets.size() == 1 && c.targets[0] == kAllLinear ? json(kAllLinear) : json(c.targets);
  j["use_rslora"] = c.use_rslora;
  j["use_dora"] = false;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  j["modules_to_save"] = nullptr;
  j["base_model_name_or_path"] = c.base_model;
  j["layers_to_transform"] = c.layers.empty() ? json(nullptr) : json(c.layers);
  j["layers_pattern"] = nullptr;
  j["rank_pattern"] = json::object();
  j["alpha_pattern"] = json::object();
  j["revision"] = nullptr;
  return j.dump(2) + "\n";
}

std::vector<LoraTarget> lora_targets(const models::Model& model, const LoraConfig& c) {
  std::vector<std::pair<std::string, const nn::Linear*>> linears;
  collect_linears(model, "", linears);
  const bool all = std::find(c.targets.begin(), c.targets.end(), kAllLinear) != c.targets.end();
  for (int l : c.layers)
    if (l >= model.num_layers())
      raise("[lora] layer {} is outside the model ({} layers)", l, model.num_layers());
  std::set<std::string> names;
  for (auto& [path, lin] : linears) names.insert(last_component(path));
  for (const auto& t : c.targets) {
    if (t == kAllLinear) continue;
    if (!names.count(last_component(t))) {
      std::string known;
      for (auto& n : names) known += (known.empty() ? "" : ", ") + n;
      raise("[lora] target module '{}' matches no linear layer of the model (there are: {})", t,
            known);
    }
  }
  std::vector<LoraTarget> out;
  for (auto& [path, lin] : linears) {
    const int layer = layer_of(path);
    if (!c.layers.empty() && std::find(c.layers.begin(), c.layers.end(), layer) == c.layers.end())
      continue;
    bool hit = all;
    for (const auto& t : c.targets)  // PEFT: the name equals the path or ends the path
      hit = hit || path == t || (path.size() > t.size() && path.ends_with("." + t));
    if (hit) out.push_back({path, layer, lin->in_features(), lin->out_features()});
  }
  return out;
}

LoraAdapter LoraAdapter::init(const models::Model& model, const LoraConfig& c, uint64_t seed) {
  if (c.rank <= 0) raise("[lora] rank must be positive, got {}", c.rank);
  LoraAdapter a;
  a.config_ = c;
  a.targets_ = lora_targets(model, c);
  if (a.targets_.empty()) raise("[lora] the configuration selects no linear layer");
  Array key = random::key(seed);
  Array keys = random::split(key, static_cast<int>(a.targets_.size()) + 1);
  std::vector<Array> all;
  const Device dev = model.device();
  for (size_t i = 0; i < a.targets_.size(); ++i) {
    const LoraTarget& t = a.targets_[i];
    const double bound = 1.0 / std::sqrt(static_cast<double>(t.in));
    Array k =
        reshape(slice(keys, {static_cast<int64_t>(i), 0}, {static_cast<int64_t>(i) + 1, 2}), {2});
    Array A = to_device(random::uniform({c.rank, t.in}, float32, -bound, bound, k), dev);
    Array B = zeros({t.out, c.rank}, float32, dev);
    a.params_.emplace(t.module + ".lora_A.weight", A);
    a.params_.emplace(t.module + ".lora_B.weight", B);
    all.push_back(A);
    all.push_back(B);
  }
  eval(all);
  return a;
}

namespace {

/// lora_A [r, in] and lora_B [out, r] (float32, PEFT layout) of one module of an adapter file,
/// with the shapes as the file stores them (for messages: mlx-lm stores the transposes).
struct ModuleFactors {
  std::optional<Array> A, B;
  Shape file_a, file_b;
};
using Factors = std::map<std::string, ModuleFactors>;

Factors read_factors(const std::string& file, bool mlx) {
  Factors by_module;
  for (auto& [name, t] : load_safetensors(file, {.copy = true})) {
    std::string n = name;
    if (n.rfind(kPeftPrefix, 0) == 0) n = n.substr(std::string(kPeftPrefix).size());
    std::string module;
    auto strip = [&](const std::string& suffix) {
      if (n.size() <= suffix.size() || !n.ends_with(suffix)) return false;
      module = n.substr(0, n.size() - suffix.size());
      return true;
    };
    bool is_a = false;
    if (mlx) {
      is_a = strip(".lora_a");
      if (!is_a && !strip(".lora_b"))
        raise<FormatError>(
            "[lora] {}: unexpected tensor '{}' (an mlx-lm LoRA adapter holds *.lora_a / "
            "*.lora_b; DoRA magnitudes and fully trained weights are not supported)",
            file, name);
    } else {
      is_a = strip(".lora_A.weight") || strip(".lora_A.default.weight");
      if (!is_a && !strip(".lora_B.weight") && !strip(".lora_B.default.weight"))
        raise<FormatError>(
            "[lora] {}: unexpected tensor '{}' (expected *.lora_A.weight / *.lora_B.weight; "
            "bias, DoRA and modules_to_save are not supported)",
            file, name);
    }
    if (!is_floating(t.dtype()))
      raise<FormatError>("[lora] {}: tensor '{}' has dtype {}, expected a float type", file, name,
                         dtype_name(t.dtype()));
    if (t.ndim() != 2)
      raise<FormatError>("[lora] {}: tensor '{}' has shape {}, expected 2 dimensions", file, name,
                         shape_str(t.shape()));
    // mlx-lm stores lora_a [in, r] and lora_b [r, out]: transpose to PEFT's layout.
    auto& slot = by_module[module];
    (is_a ? slot.file_a : slot.file_b) = t.shape();
    (is_a ? slot.A : slot.B) = astype(mlx ? transpose(t) : t, float32);
  }
  if (by_module.empty()) raise<FormatError>("[lora] {}: holds no tensors", file);
  return by_module;
}

}  // namespace

LoraAdapter LoraAdapter::load(const std::string& dir, const models::Model& model) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) raise<IoError>("[lora] adapter directory {} does not exist", dir);
  const fs::path cfg_path = d / "adapter_config.json";
  if (!fs::exists(cfg_path)) raise<IoError>("[lora] {} is missing", cfg_path.string());
  const bool mlx =
      !fs::exists(d / "adapter_model.safetensors") && fs::exists(d / "adapters.safetensors");
  const fs::path st_path = d / (mlx ? "adapters.safetensors" : "adapter_model.safetensors");
  if (!fs::exists(st_path))
    raise<IoError>(
        "[lora] {} has neither adapter_model.safetensors (PEFT) nor "
        "adapters.safetensors (mlx-lm)",
        dir);
  LoraAdapter a;
  const std::string cfg_text = read_text(cfg_path.string());
  if (mlx) {  // name the mismatch instead of complaining about a missing peft_type
    const json j = json::parse(cfg_text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && !j.contains("lora_parameters"))
      raise<FormatError>(
          "[lora] {}: the adapter is in mlx-lm's layout (adapters.safetensors) but its "
          "adapter_config.json has no \"lora_parameters\" (rank, scale)",
          cfg_path.string());
  }
  a.config_ = parse_adapter_config(cfg_text, cfg_path.string(), model.num_layers());
  const std::string file = st_path.string();
  Factors by_module = read_factors(file, mlx);
  std::vector<std::pair<std::string, const nn::Linear*>> linears;
  collect_linears(model, "", linears);
  const Device dev = model.device();
  std::vector<Array> all;
  for (auto& [path, lin] : linears) {  // model order
    auto it = by_module.find(path);
    if (it == by_module.end()) continue;
    const auto& [A, B, file_a, file_b] = it->second;
    const char* na = mlx ? "lora_a" : "lora_A";
    const char* nb = mlx ? "lora_b" : "lora_B";
    if (!A || !B)
      raise<FormatError>("[lora] {}: module '{}' has {} but not {}", file, path, A ? na : nb,
                         A ? nb : na);
    const int64_t in = lin->in_features(), out = lin->out_features(), r = a.config_.rank;
    const Shape want_a{r, in}, want_b{out, r};
    if (A->shape() != want_a || B->shape() != want_b)
      raise<FormatError>(
          "[lora] {}: module '{}': {} {} / {} {} do not fit the model's layer ({} -> {}) "
          "with rank {} (expected {} / {}; is this adapter for another base model?)",
          file, path, na, shape_str(file_a), nb, shape_str(file_b), in, out, r,
          shape_str(mlx ? Shape{in, r} : want_a), shape_str(mlx ? Shape{r, out} : want_b));
    a.targets_.push_back({path, layer_of(path), in, out});
    all.push_back(to_device(*A, dev));
    all.push_back(to_device(*B, dev));
    a.params_.emplace(path + ".lora_A.weight", all[all.size() - 2]);
    a.params_.emplace(path + ".lora_B.weight", all.back());
    by_module.erase(it);
  }
  if (!by_module.empty())
    raise<FormatError>("[lora] {}: module '{}' is not a linear layer of the model", file,
                       by_module.begin()->first);
  if (a.config_.targets.empty())  // mlx-lm config without "keys": the tensors say
    for (auto& t : a.targets_)
      if (std::find(a.config_.targets.begin(), a.config_.targets.end(), last_component(t.module)) ==
          a.config_.targets.end())
        a.config_.targets.push_back(last_component(t.module));
  // Every module the config targets has its tensors.
  std::vector<LoraTarget> expected;
  try {
    expected = lora_targets(model, a.config_);
  } catch (const InvalidArgument& e) {
    raise<FormatError>("[lora] {}: {}", cfg_path.string(), e.what());
  }
  std::set<std::string> targeted;
  for (auto& t : expected) {
    if (!a.params_.count(t.module + ".lora_A.weight"))
      raise<FormatError>("[lora] {}: module '{}' is targeted by {} but has no tensors", file,
                         t.module, cfg_path.string());
    targeted.insert(t.module);
  }
  // ...and nothing else: PEFT and mlx-lm would leave such tensors unused.
  for (auto& t : a.targets_)
    if (!targeted.count(t.module))
      raise<FormatError>("[lora] {}: module '{}' has tensors but {} does not target it ({} and {})",
                         file, t.module, cfg_path.string(),
                         mlx ? "lora_parameters.keys" : "target_modules",
                         mlx ? "num_layers" : "layers_to_transform");
  eval(all);
  return a;
}

void LoraAdapter::save(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) raise<IoError>("[lora] cannot create {}: {}", dir, ec.message());
  std::map<std::string, Array> out;
  for (auto& [name, v] : params_) out.emplace(kPeftPrefix + name, astype(v, float32));
  save_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), out, {{"format", "pt"}});
  LoraConfig c = config_;
  c.explicit_scale.reset();
  if (config_.explicit_scale) {  // an mlx-lm adapter saved in PEFT form keeps its scale
    c.use_rslora = false;
    c.alpha = *config_.explicit_scale * static_cast<float>(c.rank);
  }
  write_text((fs::path(dir) / "adapter_config.json").string(), adapter_config_json(c));
}

void LoraAdapter::set_params(const ParamMap& p) {
  if (p.size() != params_.size())
    raise("[lora] set_params: {} arrays given, the adapter has {}", p.size(), params_.size());
  for (auto& [name, v] : p) {
    auto it = params_.find(name);
    if (it == params_.end()) raise("[lora] set_params: unknown parameter '{}'", name);
    if (it->second.shape() != v.shape())
      raise("[lora] set_params: '{}' has shape {}, got {}", name, shape_str(it->second.shape()),
            shape_str(v.shape()));
  }
  params_ = p;
}

int64_t LoraAdapter::num_parameters() const {
  int64_t n = 0;
  for (auto& [k, v] : params_) n += v.size();
  return n;
}

ParamMap base_weights(const models::Model& model, const LoraAdapter& a) {
  ParamMap all = model.parameters(), out;
  for (const auto& t : a.targets()) {
    const std::string w = t.module + ".weight";
    auto it = all.find(w);
    if (it == all.end()) raise("[lora] the model has no parameter '{}'", w);
    out.emplace(w, it->second);
  }
  return out;
}

ParamMap merged_weights(const ParamMap& base, const LoraAdapter& a, const ParamMap& params,
                        std::optional<Dtype> dtype) {
  const ParamMap& p = params.empty() ? a.params() : params;
  const float s = a.config().scale();
  ParamMap out;
  for (const auto& t : a.targets()) {
    const std::string w = t.module + ".weight";
    auto bw = base.find(w);
    auto pa = p.find(t.module + ".lora_A.weight");
    auto pb = p.find(t.module + ".lora_B.weight");
    if (bw == base.end() || pa == p.end() || pb == p.end())
      raise("[lora] merged_weights: missing arrays for '{}'", t.module);
    if (!is_floating(bw->second.dtype()))
      raise<Unsupported>("[lora] merged_weights: '{}' is stored as {}, not a float type", w,
                         dtype_name(bw->second.dtype()));
    Array m = astype(bw->second, float32) + matmul(pb->second, pa->second) * Array(s);
    out.emplace(w, dtype ? astype(m, *dtype) : m);
  }
  return out;
}

nn::Linear& linear_at(nn::Module& root, const std::string& path) {
  nn::Module* m = &root;
  size_t from = 0;
  while (from <= path.size()) {
    const size_t dot = std::min(path.find('.', from), path.size());
    const std::string part = path.substr(from, dot - from);
    nn::Module* next = nullptr;
    for (const auto& [n, c] : m->children())
      if (n == part) next = c.get();
    if (next == nullptr) raise("[lora] the model has no module '{}'", path);
    m = next;
    from = dot + 1;
  }
  auto* lin = dynamic_cast<nn::Linear*>(m);
  if (lin == nullptr) raise("[lora] module '{}' is not a linear layer", path);
  return *lin;
}

void set_branches(models::Model& model, const LoraAdapter& a, const ParamMap& params) {
  const ParamMap& p = params.empty() ? a.params() : params;
  for (const auto& t : a.targets()) {
    auto pa = p.find(t.module + ".lora_A.weight");
    auto pb = p.find(t.module + ".lora_B.weight");
    if (pa == p.end() || pb == p.end())
      raise("[lora] set_branches: missing arrays for '{}'", t.module);
    linear_at(model, t.module)
        .set_branch(
            nn::LowRankBranch{pa->second, pb->second, a.config().scale(), a.config().dropout});
  }
}

void clear_branches(models::Model& model, const LoraAdapter& a) {
  for (const auto& t : a.targets()) linear_at(model, t.module).set_branch(std::nullopt);
}

void apply_adapter(models::Model& model, const LoraAdapter& a) {
  ParamMap on_device;
  std::vector<Array> vals;
  for (const auto& [k, v] : a.params()) {
    on_device.emplace(k, to_device(v, model.device()));
    vals.push_back(on_device.at(k));
  }
  eval(vals);
  set_branches(model, a, on_device);
}

void fuse_adapter(models::Model& model, const LoraAdapter& a) {
  // W + s B A needs W in floating point: a packed quantized weight would be read as integers.
  for (const auto& t : a.targets())
    if (const auto& q = linear_at(model, t.module).quantization())
      raise<Unsupported>(
          "[lora] fuse: '{}' is quantized ({}-bit, group size {}); merging an adapter into "
          "quantized weights is not supported: fuse into the float checkpoint, then quantize the "
          "result (ingot quantize), or apply the adapter unfused (--adapter)",
          t.module, q->bits, q->group_size);
  clear_branches(model, a);
  ParamMap merged = merged_weights(base_weights(model, a), a, {}, model.dtype());
  std::vector<Array> vals;
  for (auto& [k, v] : merged) vals.push_back(v);
  eval(vals);
  model.update(merged);
}

LoraAdapter load_and_apply_adapter(models::Model& model, const std::string& dir) {
  LoraAdapter a = LoraAdapter::load(dir, model);
  apply_adapter(model, a);
  return a;
}

void save_checkpoint(const models::Model& model, const std::string& src_dir,
                     const std::string& out_dir, Dtype storage) {
  save_checkpoint(model.parameters(), src_dir, out_dir, storage);
}

void save_checkpoint(const ParamMap& weights, const std::string& src_dir,
                     const std::string& out_dir, Dtype storage) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) raise<IoError>("[lora] cannot create {}: {}", out_dir, ec.message());
  if (fs::equivalent(fs::path(src_dir), fs::path(out_dir), ec))
    raise("[lora] the output directory {} must differ from the model directory", out_dir);
  if (!fs::is_regular_file(fs::path(src_dir) / "config.json"))
    raise<IoError>(
        "[lora] {} has no config.json: a checkpoint is written from a Hugging Face checkpoint "
        "directory",
        src_dir);
  std::map<std::string, Array> out;
  for (auto& [name, v] : weights)
    out.emplace(name, is_floating(v.dtype()) ? astype(v, storage) : v);
  save_safetensors((fs::path(out_dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  for (const char* f :
       {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "chat_template.jinja"}) {
    const fs::path from = fs::path(src_dir) / f;
    if (!fs::exists(from)) continue;
    fs::copy_file(from, fs::path(out_dir) / f, fs::copy_options::overwrite_existing, ec);
    if (ec) raise<IoError>("[lora] cannot copy {} to {}: {}", from.string(), out_dir, ec.message());
  }
}

}  // namespace ingot::train
