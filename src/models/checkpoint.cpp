// Checkpoint: directory layout (single file or index + shards), name mapping for multimodal
// checkpoints, and validation against an architecture's expected tensors.
#include "models/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "core/transforms/eval.h"
#include "models/gguf_checkpoint.h"
#include "models/registry.h"
#include "models/tensor_parallel.h"
#include "util/error.h"

namespace ingot::models {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

/// The first few names of a list, for messages.
std::string some(const std::vector<std::string>& v, size_t n = 5) {
  std::vector<std::string> head(v.begin(), v.begin() + static_cast<long>(std::min(n, v.size())));
  std::string r = fmt::format("{}", fmt::join(head, ", "));
  if (v.size() > n) r += fmt::format(", ... ({} in all)", v.size());
  return r;
}

/// weight_map of model.safetensors.index.json: tensor name -> shard file name.
std::map<std::string, std::string> read_index(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) raise<IoError>("[checkpoint] {}: cannot open", path);
  std::stringstream ss;
  ss << f.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    raise<FormatError>("[checkpoint] {}: not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) raise<FormatError>("[checkpoint] {}: expected a JSON object", path);
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object())
    raise<FormatError>("[checkpoint] {}: missing \"weight_map\" object", path);
  std::map<std::string, std::string> m;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string())
      raise<FormatError>("[checkpoint] {}: \"weight_map\" entry for tensor '{}' is not a string",
                         path, it.key());
    std::string shard = it->get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      raise<FormatError>("[checkpoint] {}: tensor '{}' points to an invalid shard name '{}'", path,
                         it.key(), shard);
    m[it.key()] = shard;
  }
  return m;
}

}  // namespace

void Checkpoint::apply_tensor_parallel() {
  if (opts_.tensor_parallel) config_ = shard_config(config_, opts_.tensor_parallel);
}

Checkpoint Checkpoint::open(const std::string& dir, const CheckpointOptions& opts) {
  if (is_gguf_file(dir)) {
    Checkpoint c = open_gguf_checkpoint(dir, opts);
    c.apply_tensor_parallel();
    return c;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) raise<IoError>("[checkpoint] {}: no such directory", dir);
  if (!S_ISDIR(st.st_mode))
    raise<IoError>("[checkpoint] {}: not a directory (pass the checkpoint directory)", dir);
  Checkpoint c;
  c.dir_ = dir;
  c.opts_ = opts;
  c.device_ = opts.device.value_or(default_device());
  if (c.device_.type == Device::Type::cuda && c.device_.index >= gpu::device_count())
    raise("[device] {} requested but {} CUDA device(s) are available", c.device_.str(),
          gpu::device_count());
  std::string cfg = (fs::path(dir) / "config.json").string();
  if (!is_file(cfg)) raise<IoError>("[checkpoint] {}: missing config.json", dir);
  c.config_ = load_model_config(cfg);
  c.architecture_ = resolve_architecture(c.config_.model_type, cfg);
  c.open_weights();
  c.apply_tensor_parallel();
  return c;
}

Checkpoint Checkpoint::from_config(ModelConfig config, const CheckpointOptions& opts) {
  Checkpoint c;
  c.opts_ = opts;
  c.device_ = opts.device.value_or(default_device());
  if (c.device_.type == Device::Type::cuda && c.device_.index >= gpu::device_count())
    raise("[device] {} requested but {} CUDA device(s) are available", c.device_.str(),
          gpu::device_count());
  c.architecture_ = resolve_architecture(config.model_type, config.source);
  c.config_ = std::move(config);
  c.config_only_ = true;
  c.apply_tensor_parallel();
  return c;
}

void Checkpoint::open_weights() {
  const std::string index = (fs::path(dir_) / "model.safetensors.index.json").string();
  const std::string single = (fs::path(dir_) / "model.safetensors").string();
  std::map<std::string, size_t> stored;  // stored name -> file
  auto add_file = [&](const std::string& path) {
    st_.push_back(std::make_shared<SafetensorsFile>(path));
    files_.push_back({path, st_.back()->file_size(), st_.back()->header().tensors.size()});
    return st_.size() - 1;
  };
  if (is_file(index)) {
    index_path_ = index;
    auto wm = read_index(index);
    std::map<std::string, size_t> shard_of;  // shard file name -> file index
    for (auto& [tensor, shard] : wm) {
      if (shard_of.count(shard)) continue;
      std::string p = (fs::path(dir_) / shard).string();
      if (!is_file(p))
        raise<IoError>("[checkpoint] {}: shard '{}' (listed for tensor '{}') is missing", index,
                       shard, tensor);
      shard_of[shard] = add_file(p);
    }
    for (auto& [tensor, shard] : wm) {
      size_t fi = shard_of[shard];
      if (!st_[fi]->contains(tensor))
        raise<FormatError>(
            "[checkpoint] {}: tensor '{}' is listed in shard '{}' but {} has no "
            "such tensor",
            index, tensor, shard, files_[fi].path);
      stored[tensor] = fi;
    }
    std::vector<std::string> unlisted;
    for (size_t fi = 0; fi < st_.size(); ++fi)
      for (auto& t : st_[fi]->header().tensors) {
        auto it = stored.find(t.name);
        if (it == stored.end()) {
          unlisted.push_back(t.name);
          stored[t.name] = fi;
        } else if (it->second != fi) {
          raise<FormatError>("[checkpoint] {}: tensor '{}' is in both {} and {}", index, t.name,
                             files_[it->second].path, files_[fi].path);
        }
      }
    if (!unlisted.empty() && opts_.warn)
      std::fprintf(stderr, "[checkpoint] warning: %s: %zu tensors not listed in the index: %s\n",
                   index.c_str(), unlisted.size(), some(unlisted).c_str());
  } else if (is_file(single)) {
    size_t fi = add_file(single);
    for (auto& t : st_[fi]->header().tensors) stored[t.name] = fi;
  } else {
    std::vector<std::string> found;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir_, ec))
      if (e.path().extension() == ".safetensors") found.push_back(e.path().filename().string());
    std::sort(found.begin(), found.end());
    raise<IoError>(
        "[checkpoint] {}: missing weights: no model.safetensors or "
        "model.safetensors.index.json{}",
        dir_, found.empty() ? "" : " (found " + some(found) + ")");
  }
  map_names(stored);
}

void Checkpoint::map_names(const std::map<std::string, size_t>& stored) {
  // Multimodal layouts: (old) language_model.model.* + language_model.lm_head.*,
  // (transformers 5.x) model.language_model.* + lm_head.*.
  std::vector<std::pair<std::string, std::string>> rules;
  for (auto& [name, fi] : stored) {
    if (name.rfind("language_model.model.", 0) == 0) {
      rules = {{"language_model.model.", "model."}, {"language_model.lm_head.", "lm_head."}};
      break;
    }
    if (name.rfind("model.language_model.", 0) == 0) {
      rules = {{"model.language_model.", "model."}, {"lm_head.", "lm_head."}};
      break;
    }
  }
  for (auto& [name, fi] : stored) {
    std::string canon = name;
    if (!rules.empty()) {
      bool matched = false;
      for (auto& [from, to] : rules)
        if (name.rfind(from, 0) == 0) {
          canon = to + name.substr(from.size());
          matched = true;
          break;
        }
      if (!matched) {
        ignored_.push_back(name);
        continue;
      }
    }
    auto [it, inserted] = tensors_.emplace(canon, Entry{name, fi});
    if (!inserted)
      raise<FormatError>("[checkpoint] {}: tensors '{}' and '{}' both map to '{}'", dir_,
                         it->second.stored, name, canon);
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> r;
  r.reserve(tensors_.size());
  for (auto& [k, v] : tensors_) r.push_back(k);
  return r;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    raise<FormatError>("[checkpoint] {}: no tensor '{}' in the weights", dir_, name);
  return stored_info(it->second);
}

const std::string& Checkpoint::stored_name(const std::string& name) const {
  info(name);
  return tensors_.at(name).stored;
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  info(name);
  return files_[tensors_.at(name).file].path;
}

Array Checkpoint::load(const std::string& name) const {
  info(name);
  const Entry& e = tensors_.at(name);
  // Move first, then cast: the cast runs on the device, and the copy moves the stored bytes
  // (bf16 weights cross the bus at half the size of their float32 cast).
  Array stored = source_ ? source_->load(e.stored) : st_[e.file]->load(e.stored);
  if (auto axis = shard_axis(config_, name)) {
    // This rank's slice, cut from the mapping on the CPU: only the shard is copied or moved.
    const int64_t n = stored.shape(*axis) / config_.tp->size();
    const int64_t start = n * config_.tp->rank();
    stored = contiguous(slice_axis(stored, *axis, start, start + n, 1, cpu_device), cpu_device);
  }
  Array a = to_device(stored, device_);
  if (opts_.dtype && is_floating(a.dtype()) && *opts_.dtype != a.dtype())
    a = astype(a, *opts_.dtype);
  // A GPU copy is made now: lazy nodes would keep the mapping alive and move the load time
  // into the first forward pass.
  if (device_.type != Device::Type::cpu) eval({a});
  return a;
}

std::optional<std::string> Checkpoint::dtype_problem(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (is_floating(t.dtype())) return std::nullopt;
  // Integer storage is valid only for the packed weight of a module the quantization config
  // quantizes (mlx-community layout: uint32 "<module>.weight" beside "<module>.scales").
  const std::string suffix = ".weight";
  const bool is_weight = name.size() > suffix.size() &&
                         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  const std::string module = is_weight ? name.substr(0, name.size() - suffix.size()) : "";
  if (config_.quantization && is_weight) {
    const bool has_scales = contains(module + ".scales");
    if (config_.quantization->for_module(module, has_scales)) {
      if (t.dtype() == uint32) return std::nullopt;
      return fmt::format(
          "tensor '{}' is stored as {}, but a quantized weight is packed in uint32 (the "
          "mlx-community layout)",
          stored_name(name), st_dtype_name(t.stored_dtype));
    }
  }
  return fmt::format(
      "tensor '{}' is stored as {}, but {} needs a floating-point weight (float32, float16 or "
      "bfloat16; integer storage is only valid for a weight the checkpoint's quantization config "
      "quantizes{})",
      stored_name(name), st_dtype_name(t.stored_dtype), architecture_,
      config_.quantization ? "" : ", and this checkpoint has no quantization config");
}

void Checkpoint::check_floating(const std::string& name) const {
  if (auto p = dtype_problem(name)) raise<FormatError>("[checkpoint] {}: {}", file_of(name), *p);
}

int64_t Checkpoint::parameter_count() const {
  int64_t n = 0;
  for (auto& [k, e] : tensors_) n += shape_size(stored_info(e).shape);
  return n;
}

ValidationReport Checkpoint::validate(const std::vector<ExpectedTensor>& expected) const {
  ValidationReport rep;
  std::vector<std::string> missing;
  std::set<std::string> want;
  for (const auto& x : expected) {
    want.insert(x.name);
    auto it = tensors_.find(x.name);
    if (it == tensors_.end()) {
      (x.optional ? rep.missing_optional : missing).push_back(x.name);
      continue;
    }
    const TensorInfo& t = stored_info(it->second);
    Shape shape = t.shape;  // this rank's slice of a split tensor
    if (auto axis = shard_axis(config_, x.name); axis && *axis < static_cast<int>(shape.size())) {
      int64_t& d = shape[static_cast<size_t>(*axis)];
      if (d % config_.tp->size() != 0)
        raise<FormatError>(
            "[checkpoint] {}: tensor '{}' of shape {} cannot be split {} ways along axis {}",
            files_[it->second.file].path, it->second.stored, shape_str(t.shape), config_.tp->size(),
            *axis);
      d /= config_.tp->size();
    }
    if (shape != x.shape)
      raise<FormatError>("[checkpoint] {}: tensor '{}' has shape {}, expected {} for {}",
                         files_[it->second.file].path, it->second.stored, shape_str(shape),
                         shape_str(x.shape), architecture_);
    check_floating(x.name);
  }
  if (!missing.empty()) {
    std::string where = index_path_.empty() ? files_.front().path : index_path_;
    raise<FormatError>("[checkpoint] {}: missing tensor '{}' needed by {} ({} missing: {})", where,
                       missing.front(), architecture_, missing.size(), some(missing));
  }
  for (auto& [k, e] : tensors_)
    if (!want.count(k)) rep.extra.push_back(k);
  if (!rep.extra.empty() && opts_.warn)
    std::fprintf(stderr, "[checkpoint] warning: %s: %zu unexpected tensors ignored: %s\n",
                 dir_.c_str(), rep.extra.size(), some(rep.extra).c_str());
  return rep;
}

}  // namespace ingot::models
