// libFuzzer target: config.json parsing (both forms, nested text_config) on arbitrary text.
// Every rejection must be an ingot::Error; anything else (crash, other exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/config.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    std::string text(reinterpret_cast<const char*>(data), size);
    ingot::models::ModelConfig c = ingot::models::parse_model_config(text, "fuzz/config.json");
    (void)c.attention_summary();
    for (const auto& l : c.layers) (void)l.rope.supported();
  } catch (const ingot::Error&) {
  }
  return 0;
}
