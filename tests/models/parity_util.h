// Helpers of the model parity tests: fixture paths, reference.json, temporary checkpoint
// directories with another config file, relative errors, and a summary printed at exit.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/ingot.h"

namespace ingot::models {

inline std::string fixture_dir(const std::string& fixture) {
  return std::string(INGOT_SOURCE_DIR) + "/tests/data/models/" + fixture;
}

inline nlohmann::json load_reference(const std::string& fixture) {
  std::ifstream f(fixture_dir(fixture) + "/reference.json");
  if (!f) throw std::runtime_error("cannot open reference.json of " + fixture);
  return nlohmann::json::parse(f);
}

/// A temporary directory removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ingot_models_XXXXXX").string();
    path = mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

/// The fixture itself when `config` is config.json, else a directory under `tmp` holding
/// `config` as config.json and links to the other files.
inline std::string fixture_with_config(const std::string& fixture, const std::string& config,
                                       const std::string& tmp) {
  const std::string src = fixture_dir(fixture);
  if (config == "config.json") return src;
  namespace fs = std::filesystem;
  const std::string dst = tmp + "/" + fixture;
  fs::create_directories(dst);
  fs::copy_file(src + "/" + config, dst + "/config.json");
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("config", 0) != 0) fs::create_symlink(e.path(), dst + "/" + name);
  }
  return dst;
}

/// ids [1, L] int32.
inline Array ids_array(const std::vector<int32_t>& ids) {
  return Array(ids, {1, static_cast<int64_t>(ids.size())}, int32);
}

/// Flattens nested JSON numbers.
inline void flatten(const nlohmann::json& j, std::vector<double>& out) {
  if (j.is_array())
    for (const auto& v : j) flatten(v, out);
  else
    out.push_back(j.get<double>());
}

/// max |x - ref| / max |ref| (x of any shape with ref's element count).
inline double rel_err(const Array& x, const nlohmann::json& ref) {
  std::vector<double> r;
  flatten(ref, r);
  std::vector<double> v = astype(x, float64).to_vector<double>();
  EXPECT_EQ(v.size(), r.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(v.size(), r.size()); ++i) {
    num = std::max(num, std::abs(v[i] - r[i]));
    den = std::max(den, std::abs(r[i]));
  }
  return std::isfinite(num) ? num / den : INFINITY;
}

/// Worst error per label, printed when the test program ends (the figures quoted in reports).
inline std::map<std::string, double>& error_table() {
  static std::map<std::string, double> t;
  return t;
}
inline void record_error(const std::string& label, double err) {
  double& e = error_table()[label];
  e = std::max(e, err);
}
struct ErrorTablePrinter : testing::Environment {
  void TearDown() override {
    for (const auto& [k, v] : error_table()) std::printf("  %-60s %.3g\n", k.c_str(), v);
  }
};
inline const testing::Environment* const kErrorTablePrinter =
    testing::AddGlobalTestEnvironment(new ErrorTablePrinter);

}  // namespace ingot::models
