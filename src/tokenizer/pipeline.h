// Internal stages of the tokenizer.json pipeline: normalizers, pre-tokenizers, post-processors
// and decoders, each built from its JSON node as `tokenizers` serializes it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"
#include "util/error.h"

namespace ingot::tokenizer {

using json = nlohmann::json;

/// Pattern of Replace / Split: {"String": s} or {"Regex": r}.
struct Pattern {
  std::string literal;
  std::unique_ptr<Regex> regex;
  explicit Pattern(const json& j) {
    if (j.contains("Regex")) {
      regex = std::make_unique<Regex>(j.at("Regex").get<std::string>());
    } else if (j.contains("String")) {
      literal = j.at("String").get<std::string>();
    } else {
      ingot::raise<FormatError>("[tokenizer] pattern needs String or Regex: {}", j.dump());
    }
  }
  std::vector<std::pair<size_t, size_t>> find(std::string_view s) const {
    return regex ? regex->find_all(s) : find_all_literal(s, literal);
  }
};

/// A piece of text on its way to the model; `at_origin` is true when it starts at offset 0 of
/// the original input (Metaspace's prepend_scheme "first" needs it).
struct Piece {
  std::string text;
  bool at_origin = false;
};

/// Rewrites a string (NFC, Replace, Prepend, ...).
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

/// Splits pieces into smaller pieces and may rewrite them (ByteLevel, Metaspace).
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

/// Adds special tokens around the model's ids (TemplateProcessing, ...).
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Number of ids added to a single sequence when add_special is on.
  virtual void process(std::vector<int32_t>& ids, bool add_special) const = 0;
};

/// Turns token strings back into text pieces (`tokenizers`' decode_chain).
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

/// Builders; `j` is the node ("normalizer", "pre_tokenizer", ...) and may be null.
std::unique_ptr<Normalizer> make_normalizer(const json& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j);
/// `token_ids` resolves token strings named by the processor (e.g. "[CLS]").
std::unique_ptr<PostProcessor> make_post_processor(
    const json& j, const std::unordered_map<std::string, int32_t>& token_ids);
std::unique_ptr<Decoder> make_decoder(const json& j);

/// GPT-2's byte -> printable code point table, as UTF-8 strings, and its inverse.
const std::vector<std::string>& bytes_to_unicode();
/// Maps a code point of that table back to its byte, or -1.
int unicode_to_byte(char32_t c);

}  // namespace ingot::tokenizer
