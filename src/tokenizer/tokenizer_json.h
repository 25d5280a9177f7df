// tokenizer.json read in two parts: the BPE model's "vocab" object and "merges" array straight
// into tables, everything else as a JSON tree. A 262k-token vocab with ~500k merges is most of
// the file; as tree nodes (or through a SAX pass that builds a std::string per key) they cost
// more than the BPE model built from them.
#pragma once

#include <optional>
#include <string_view>

#include "tokenizer/bpe.h"

namespace ingot::tokenizer {

/// tokenizer.json's root without model.vocab and model.merges, and those two as tables.
struct TokenizerJsonParts {
  json root;
  BpeTables tables;
};

/// A hand-written scanner for the common form of tokenizer.json: a root object whose "model"
/// object holds a "vocab" object of string keys and non-negative integer ids (<= 2^30) and,
/// optionally, a "merges" array of "a b" strings or ["a", "b"] pairs. Every other value is
/// parsed by nlohmann::json from its span of the text. Strings are decoded as JSON says
/// (escapes, surrogate pairs) and must be valid UTF-8 without raw control characters.
///
/// Returns nullopt for anything else (a syntax error, a vocab id that is not such an integer, a
/// merge of another form, a repeated "model", "vocab" or "merges" key, no vocab): the caller
/// then parses the whole tree, which raises the errors it always raised. When it returns
/// tables, they and `root` hold what the tree would (vocab entries in file order, a repeated
/// vocab key included; merges in rank order; a repeated key elsewhere: its last value).
std::optional<TokenizerJsonParts> scan_tokenizer_json(std::string_view text);

}  // namespace ingot::tokenizer
