// Shared helpers of the llm tests: fixture models in float32 and reference id lists.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/parity_util.h"

namespace ingot::llm {

using Ids = std::vector<int32_t>;

/// A fixture loaded with float32 compute (the greedy references were computed in float32).
inline std::shared_ptr<models::Model> load_f32(const std::string& fx) {
  return models::load_model(models::fixture_dir(fx), {.dtype = float32, .warn = false});
}

/// Id lists of reference.json; some are stored as their Python repr, which is JSON too.
inline std::vector<Ids> parse_ids(const nlohmann::json& j) {
  return (j.is_string() ? nlohmann::json::parse(j.get<std::string>()) : j).get<std::vector<Ids>>();
}

/// The message of the InvalidArgument that fn throws, or "no error".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace ingot::llm
