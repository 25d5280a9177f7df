// Text-level generation, chat, scoring and classification: a model plus its tokenizer (and chat
// template), streamed text through the streaming detokenizer, stop strings, label templates.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm/generate.h"
#include "llm/score.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"

namespace ingot::llm {

/// A model and the tokenizer of the same checkpoint directory.
struct TextModel {
  std::shared_ptr<models::Model> model;
  std::shared_ptr<tokenizer::Tokenizer> tokenizer;
};

/// Loads model and tokenizer from one directory (IoError naming tokenizer.json when absent).
TextModel load_text_model(const std::string& dir, const models::LoadModelOptions& opt = {});

/// Options of generate_text.
struct TextGenerateOptions {
  /// Token-level options; the tokenizer's EOS ids are added to stop_ids unless stop_at_eos is
  /// false.
  GenerateOptions gen;
  bool stop_at_eos = true;
  /// Generation stops when the text contains one of these; the text is cut before it.
  std::vector<std::string> stop_strings;
  /// Receives the text as it is produced (never a partial UTF-8 character, nothing past a stop
  /// string).
  std::function<void(const std::string& piece)> on_text;
  /// Drop special tokens (EOS etc.) from the text.
  bool skip_special_tokens = true;
};

/// Result of generate_text.
struct TextResult {
  std::string text;
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::length;
  GenerationMetrics metrics;
};

/// Generates from prompt ids (e.g. tm.tokenizer->encode(prompt) or a rendered chat), streaming
/// text; `cache` as in generate() (prefix reuse across calls, e.g. chat turns).
TextResult generate_text(const TextModel& tm, const std::vector<int32_t>& prompt_ids,
                         const TextGenerateOptions& opt = {}, PromptCache* cache = nullptr);

/// Encodes text as the model's tokenizer does with special tokens (BOS) added.
std::vector<int32_t> encode_prompt(const TextModel& tm, const std::string& text);

/// Renders `messages_json` (an array of {"role","content"} objects) with the chat template and
/// add_generation_prompt, then encodes it without adding special tokens again.
std::vector<int32_t> encode_chat(const TextModel& tm, const std::string& messages_json);

/// A classification template: `tmpl` contains "{text}" once; labels are strings. Each label is
/// tokenized as it continues the filled template (the tokens of prompt+label after the prompt's
/// own tokens), so labels like " yes" / " no" get the ids the model would produce.
struct TextClassifier {
  std::string tmpl;
  std::vector<std::string> labels;
};

/// Fills the template for every text, tokenizes and classifies (see llm::classify).
std::vector<LabelProbs> classify_texts(
    const TextModel& tm, const TextClassifier& c, const std::vector<std::string>& texts,
    const ClassifyOptions& opt = {},
    const std::function<void(int64_t, const LabelProbs&)>& on_result = nullptr);

}  // namespace ingot::llm
