// Shared helpers of the tokenizer tests: locating the fetched tokenizers and the committed data.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace ingot::tokenizer::testing {

/// Directory holding gemma3/, qwen3/, llama3_1/ (fetched by scripts/tokenizer_fetch.sh).
inline std::string models_dir() {
  if (const char* e = std::getenv("INGOT_TOKENIZER_MODELS")) return e;
  return INGOT_TOKENIZER_MODELS_DEFAULT;
}

/// tests/data/tokenizer in the source tree.
inline std::string data_dir() {
  return INGOT_TOKENIZER_DATA;
}

inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace ingot::tokenizer::testing
