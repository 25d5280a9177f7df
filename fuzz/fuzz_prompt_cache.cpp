// libFuzzer target: PromptCache::load on files whose "ingot" metadata (the fuzz input after its
// first byte) is arbitrary, with the buffers of a real cache of the llama_f32 fixture; the first
// byte drops or reshapes some buffers. Every rejection must be an ingot::Error, and a cache that
// loads must be usable by a forward pass.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "llm/generate.h"
#include "util/error.h"

namespace {

using namespace ingot;

struct Setup {
  std::shared_ptr<models::Model> model;
  std::map<std::string, Array> buffers;
  std::string path;
  Setup() {
    model = models::load_model(std::string(INGOT_SOURCE_DIR) + "/tests/data/models/llama_f32",
                               {.dtype = float32, .warn = false});
    llm::PromptCache c(*model);
    llm::generate(*model, {{1, 2, 3, 4, 5}}, {.max_tokens = 3}, &c);
    for (int i = 0; i < c.num_layers(); ++i) {
      auto r = c.layer(i).raw();
      buffers.emplace("layers." + std::to_string(i) + ".keys", r.keys);
      buffers.emplace("layers." + std::to_string(i) + ".values", r.values);
    }
    path = (std::filesystem::temp_directory_path() /
            ("ingot_fuzz_prompt_cache_" + std::to_string(getpid()) + ".safetensors"))
               .string();
    // A valid input (mode 0 + the real metadata) seeds the corpus when asked to.
    if (const char* dir = std::getenv("INGOT_FUZZ_SEED_DIR")) {
      c.save(path);
      std::map<std::string, std::string> md;
      load_safetensors(path, {}, &md);
      std::ofstream(std::string(dir) + "/seed_valid", std::ios::binary) << '\0' << md["ingot"];
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Setup s;  // before any early return: its constructor also writes the seed
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string meta(reinterpret_cast<const char*>(data + 1), size - 1);
  std::map<std::string, Array> arrays = s.buffers;
  if (mode & 1) arrays.erase("layers.0.keys");
  if (mode & 2) arrays["layers.1.values"] = zeros({1, 2, 3}, float32);
  if (mode & 4) arrays["layers.0.keys"] = zeros({2, 1, 1, 1}, float32);
  try {
    save_safetensors(s.path, arrays, {{"ingot", meta}});
    llm::PromptCache c(*s.model);
    c.load(s.path);
    // Loaded: it must work (or fail cleanly) as a prefix cache.
    (void)llm::generate(*s.model, {{1, 2, 3, 4, 5, 6}}, {.max_tokens = 2}, &c);
  } catch (const Error&) {
  }
  return 0;
}
