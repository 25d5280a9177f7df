// Internals of the LLM level of the C ABI: the structs behind the tokenizer, model and adapter
// handles, shared by capi_llm.cpp and capi_lora.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ingot/ingot.h"
#include "llm/kv_cache.h"
#include "llm/text/text.h"

namespace ingot::train {
class LoraAdapter;
}

struct ingot_tokenizer_s {
  std::shared_ptr<ingot::tokenizer::Tokenizer> tok;
};
struct ingot_model_s {
  ingot::llm::TextModel tm;  // tokenizer may be null
  /// The directory it was loaded from (config and tokenizer files for ingot_model_save).
  std::string dir;
  /// The adapter applied unfused, if any (a snapshot), and the adapter it was taken from.
  std::shared_ptr<ingot::train::LoraAdapter> applied;
  const ingot::train::LoraAdapter* applied_from = nullptr;
  /// Bumped whenever the weights the forward pass uses change (an adapter applied, removed or
  /// fused): prompt caches filled before are stale.
  uint64_t weights_version = 0;
};
struct ingot_adapter_s {
  std::shared_ptr<ingot::train::LoraAdapter> a;
  /// The model it was made for (an adapter fits only its model's layers).
  std::weak_ptr<ingot::models::Model> model;
};
struct ingot_prompt_cache_s {
  std::unique_ptr<ingot::llm::PromptCache> pc;
  /// The model it was made for.
  std::weak_ptr<ingot::models::Model> model;
  /// The model's weights_version when it was filled, and whether an adapter was applied then.
  uint64_t weights_version = 0;
  bool with_adapter = false;
};

namespace ingot::capi {

/// Id lists from C arrays of pointers and lengths (each non-NULL when its length is > 0);
/// throws InvalidArgument naming `what`.
std::vector<std::vector<int32_t>> id_lists(const int32_t* const* p, const size_t* len, size_t n,
                                           const char* what);

/// The body of ingot_generate with an optional prompt cache (prefix reuse; see
/// ingot_generate_cached); throws on failure.
void generate_impl(ingot_model m, llm::PromptCache* cache, const char* what, const int32_t* prompt,
                   size_t n_prompt, const ingot_generate_options* opts, ingot_token_fn on_token,
                   ingot_text_fn on_text, void* ctx, ingot_generation* out);

}  // namespace ingot::capi
