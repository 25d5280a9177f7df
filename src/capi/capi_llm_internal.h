// Internals of the LLM level of the C ABI: the structs behind the tokenizer, model and adapter
// handles, shared by capi_llm.cpp and capi_lora.cpp.
#pragma once

#include <memory>
#include <string>

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
};
struct ingot_adapter_s {
  std::shared_ptr<ingot::train::LoraAdapter> a;
  /// The model it was made for (an adapter fits only its model's layers).
  std::weak_ptr<ingot::models::Model> model;
};
