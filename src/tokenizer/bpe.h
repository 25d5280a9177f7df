// BPE model of tokenizer.json: vocab + ranked merges applied with a priority queue (O(n log n)
// per word), byte_fallback, unk fusing, ignore_merges, subword prefix/suffix, a word cache.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/pipeline.h"

namespace ingot::tokenizer {

/// Hash allowing string_view lookups in string-keyed maps.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

/// The vocab and merges of a BPE model read straight from tokenizer.json's text (without a
/// JSON tree for them): vocab entries in file order (a repeated key: the last one counts, as in
/// the tree), merges as (left, right) pairs in rank order.
struct BpeTables {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
};

/// The BPE model ("model": {"type": "BPE", ...}).
class Bpe {
 public:
  explicit Bpe(const json& model);
  /// The same model with its "vocab" and "merges" given as tables (`model`'s own entries for
  /// them, if any, are ignored): the result equals Bpe(model with those entries).
  Bpe(const json& model, BpeTables tables);

  /// Appends the ids of one pre-tokenized word to `out`.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  const TokenMap& vocab() const { return vocab_; }
  /// Token string of `id`, or nullptr.
  const std::string* id_to_token(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < id_to_token_.size() && has_id_[id]
               ? &id_to_token_[id]
               : nullptr;
  }

 private:
  void load_options(const json& model);
  void build(BpeTables tables);
  void set_unk(const json& model);
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, new id)
  int32_t byte_ids_[256];
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  std::string prefix_, suffix_;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace ingot::tokenizer
