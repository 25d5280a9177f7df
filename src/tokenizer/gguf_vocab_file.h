// Reads the tokenizer.ggml.* metadata of a parsed GGUF header (core/io/gguf.h) into a
// GgufVocab. Header-only so that the tokenizer library itself keeps no dependency on the core
// library: the callers (the CLI, the GGUF fuzz target, tests) link both.
#pragma once

#include <climits>
#include <optional>
#include <string>

#include "core/io/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "util/error.h"

namespace ingot::tokenizer {

/// The tokenizer a GGUF header describes, or nullopt when it has no tokenizer.ggml.model.
/// FormatError "[gguf] <source>: ..." naming the key for values of the wrong type (tokens and
/// merges must be string arrays, token_type an integer array of 0..6 and scores a float array
/// as long as tokens, scores present for a llama vocabulary, ids non-negative 32-bit integers).
inline std::optional<GgufVocab> read_gguf_vocab(const GgufHeader& h, const std::string& source) {
  const GgufValue* model = h.find("tokenizer.ggml.model");
  if (model == nullptr) return std::nullopt;
  GgufVocab v;
  v.model = gguf_string(*model, source, "tokenizer.ggml.model");
  if (const GgufValue* pre = h.find("tokenizer.ggml.pre"))
    v.pre = gguf_string(*pre, source, "tokenizer.ggml.pre");
  auto strings = [&](const char* key, bool required) {
    const GgufValue* x = h.find(key);
    if (x == nullptr) {
      if (required) raise<FormatError>("[gguf] {}: missing metadata key '{}'", source, key);
      return std::vector<std::string>{};
    }
    if (!x->is_array() || x->element_type != GgufValueType::STRING)
      raise<FormatError>("[gguf] {}: key '{}' must be an array of strings", source, key);
    return x->strings;
  };
  v.tokens = strings("tokenizer.ggml.tokens", true);
  v.merges = strings("tokenizer.ggml.merges", false);
  if (const GgufValue* x = h.find("tokenizer.ggml.token_type")) {
    if (!x->is_array() || x->ints.size() != x->size() || x->size() != v.tokens.size())
      raise<FormatError>(
          "[gguf] {}: key 'tokenizer.ggml.token_type' must be an integer array with one entry "
          "per token ({})",
          source, v.tokens.size());
    for (size_t i = 0; i < x->ints.size(); ++i) {
      const int64_t t = x->ints[i];
      if (t < 0 || t > 6)
        raise<FormatError>(
            "[gguf] {}: key 'tokenizer.ggml.token_type' entry {} is {} (token types are 0..6)",
            source, i, t);
      v.token_types.push_back(static_cast<int32_t>(t));
    }
  }
  if (const GgufValue* x = h.find("tokenizer.ggml.scores")) {
    if (!x->is_array() || x->floats.size() != x->size() || x->size() != v.tokens.size())
      raise<FormatError>(
          "[gguf] {}: key 'tokenizer.ggml.scores' must be a float array with one entry per token "
          "({})",
          source, v.tokens.size());
    v.scores.assign(x->floats.begin(), x->floats.end());
  } else if (v.model == "llama") {
    raise<FormatError>(
        "[gguf] {}: missing metadata key 'tokenizer.ggml.scores' (a llama "
        "tokenizer derives its merges from the scores)",
        source);
  }
  auto id = [&](const char* key) -> std::optional<int32_t> {
    const GgufValue* x = h.find(key);
    if (x == nullptr) return std::nullopt;
    const int64_t i = gguf_int(*x, source, key);
    if (i < 0 || i > INT32_MAX)
      raise<FormatError>("[gguf] {}: key '{}' holds {}, not a token id", source, key, i);
    return static_cast<int32_t>(i);
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  v.eot_id = id("tokenizer.ggml.eot_token_id");
  v.eom_id = id("tokenizer.ggml.eom_token_id");
  v.pad_id = id("tokenizer.ggml.padding_token_id");
  v.unk_id = id("tokenizer.ggml.unknown_token_id");
  auto flag = [&](const char* key, bool absent) {
    const GgufValue* x = h.find(key);
    return x == nullptr ? absent : gguf_int(*x, source, key) != 0;
  };
  // Defaults when absent as llama.cpp's: a SentencePiece vocabulary adds BOS and the space prefix.
  v.add_bos = flag("tokenizer.ggml.add_bos_token", v.model == "llama");
  v.add_eos = flag("tokenizer.ggml.add_eos_token", false);
  v.add_space_prefix = flag("tokenizer.ggml.add_space_prefix", true);
  if (const GgufValue* x = h.find("tokenizer.chat_template"))
    v.chat_template = gguf_string(*x, source, "tokenizer.chat_template");
  return v;
}

}  // namespace ingot::tokenizer
