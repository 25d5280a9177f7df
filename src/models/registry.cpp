// The model_type table and the architecture -> factory map.
#include "models/registry.h"

#include <algorithm>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/error.h"

namespace ingot::models {

namespace {

/// model_type -> architecture. Add aliases here (e.g. "qwen2" once an architecture handles it).
const std::map<std::string, std::string>& model_types() {
  static const std::map<std::string, std::string> m = {
      {"llama", "llama"},
      {"qwen3", "qwen3"},
      {"gemma3", "gemma3"},
      {"gemma3_text", "gemma3"},
  };
  return m;
}

struct Factories {
  std::mutex mu;
  std::map<std::string, ModelFactory> map;
};
Factories& factories() {
  static Factories f;
  return f;
}

}  // namespace

std::optional<std::string> architecture_of(const std::string& model_type) {
  auto it = model_types().find(model_type);
  if (it == model_types().end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> r;
  for (auto& [k, v] : model_types()) r.push_back(k);
  return r;
}

std::string resolve_architecture(const std::string& model_type, const std::string& source) {
  if (auto a = architecture_of(model_type)) return *a;
  raise<FormatError>("[config] {}: unsupported model_type '{}' (supported: {})", source, model_type,
                     fmt::join(supported_model_types(), ", "));
}

void register_architecture(const std::string& architecture, ModelFactory factory) {
  auto& f = factories();
  std::lock_guard<std::mutex> lock(f.mu);
  f.map[architecture] = std::move(factory);
}

const ModelFactory& model_factory(const std::string& architecture) {
  auto& f = factories();
  std::lock_guard<std::mutex> lock(f.mu);
  auto it = f.map.find(architecture);
  if (it == f.map.end() || !it->second)
    raise<Unsupported>("[models] architecture '{}' has no implementation in this build",
                       architecture);
  return it->second;
}

bool has_model_factory(const std::string& architecture) {
  auto& f = factories();
  std::lock_guard<std::mutex> lock(f.mu);
  return f.map.count(architecture) != 0;
}

}  // namespace ingot::models
