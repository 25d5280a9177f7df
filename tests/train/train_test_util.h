// Helpers of the train tests: fixture paths, temporary directories, array comparisons.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/ingot.h"
#include "models/model.h"
#include "train/data.h"

namespace ingot::train::test {

inline std::string source_path(const std::string& rel) {
  return std::string(INGOT_SOURCE_DIR) + "/" + rel;
}
inline std::string fixture(const std::string& name) {
  return source_path("tests/data/models/" + name);
}
inline std::shared_ptr<models::Model> load(const std::string& name,
                                           std::optional<Dtype> dtype = float32) {
  return models::load_model(fixture(name), {.dtype = dtype, .warn = false});
}

/// A temporary directory removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ingot_train_XXXXXX").string();
    path = mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

/// Largest |a - b| over all elements (as float64).
inline double max_abs_diff(const Array& a, const Array& b) {
  auto x = astype(a, float64).to_vector<double>();
  auto y = astype(b, float64).to_vector<double>();
  if (x.size() != y.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}
inline double max_abs(const Array& a) {
  double m = 0;
  for (double v : astype(a, float64).to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

/// Token ids [B, L] of a fixed pseudo-random batch.
inline Array fixed_ids(int64_t b, int64_t l, int64_t vocab, uint32_t seed = 7) {
  std::vector<int32_t> v(static_cast<size_t>(b * l));
  uint32_t s = seed;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<int32_t>(3 + (s >> 8) % static_cast<uint32_t>(vocab - 3));
  }
  return Array(v, {b, l}, int32);
}

/// n short examples of a few fixed patterns (easy to learn), every token in the loss.
inline std::vector<Example> toy_examples(size_t n, int64_t vocab) {
  std::vector<Example> out;
  for (size_t i = 0; i < n; ++i) {
    Example e;
    const int32_t start = static_cast<int32_t>(3 + (i % 4) * 20);
    const size_t len = 6 + (i % 3) * 2;
    for (size_t k = 0; k < len; ++k) e.ids.push_back(static_cast<int32_t>((start + 3 * k) % vocab));
    e.loss_mask.assign(e.ids.size(), 1);
    out.push_back(e);
  }
  return out;
}

/// Mean masked cross-entropy in float64 as host loops: `logits` [rows, vocab] flattened, one
/// target and one mask value per row (rows with mask 0 are left out).
inline double float64_masked_loss(const std::vector<double>& logits, size_t vocab,
                                  const std::vector<int32_t>& targets,
                                  const std::vector<float>& mask) {
  double total = 0, count = 0;
  for (size_t r = 0; r < targets.size(); ++r) {
    if (mask[r] == 0) continue;
    double mx = -INFINITY, se = 0;
    for (size_t j = 0; j < vocab; ++j) mx = std::max(mx, logits[r * vocab + j]);
    for (size_t j = 0; j < vocab; ++j) se += std::exp(logits[r * vocab + j] - mx);
    total += mx + std::log(se) - logits[r * vocab + static_cast<size_t>(targets[r])];
    count += 1;
  }
  return total / count;
}

}  // namespace ingot::train::test
