// Internal state of Tokenizer (pimpl): the loaded pipeline stages and config-derived data.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace ingot::tokenizer {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Bpe> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;

  std::vector<AddedToken> added;
  TokenMap added_by_content;
  std::unordered_map<int32_t, size_t> added_by_id;  // id -> index into `added`
  AddedMatcher raw_matcher, normalized_matcher;

  SpecialTokens specials;
  std::string chat_template;
  std::string config_json = "{}";

  /// Reads the tree of tokenizer.json; `tables`: the BPE model's vocab and merges read apart
  /// from the tree (scan_tokenizer_json), or null when they are in it. A `model` already set
  /// (e.g. from the cache) is kept and the tree's model then only checked to be there.
  void load(const json& j, BpeTables* tables = nullptr);
  /// Parses tokenizer.json's text (`source` names it in errors) and loads it; `root`, if given,
  /// receives the tree without the model's "vocab" and "merges".
  void load_text(std::string_view text, const std::string& source, json* root = nullptr);
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
  const std::string* token_of(int32_t id) const;
};

}  // namespace ingot::tokenizer
