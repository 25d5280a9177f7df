// libFuzzer target: LoRA adapter_config.json parsing (PEFT and mlx-lm forms) on arbitrary text.
// Every rejection must be an ingot::Error; an accepted config with targets must survive a
// write/parse round trip with the same rank, targets and layers. Anything else (crash, other
// exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "train/adapter.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ingot::train::LoraConfig c;
  try {
    std::string text(reinterpret_cast<const char*>(data), size);
    c = ingot::train::parse_adapter_config(text, "fuzz/adapter_config.json", 28);
  } catch (const ingot::Error&) {
    return 0;
  }
  (void)c.scale();
  if (c.targets.empty()) return 0;  // mlx-lm without "keys": targets come from the tensors
  const auto back = ingot::train::parse_adapter_config(ingot::train::adapter_config_json(c),
                                                       "fuzz/round_trip.json", 28);
  if (back.rank != c.rank || back.targets != c.targets || back.layers != c.layers) std::abort();
  return 0;
}
