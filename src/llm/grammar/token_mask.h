// Token masks for constrained decoding: the vocabulary's token bytes in a byte trie, walked
// with a JsonMatcher to find every token that can continue the document, and a per-sequence
// constraint that follows the generated ids and caches masks by matcher state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llm/grammar/json_schema.h"

namespace ingot::llm::grammar {

/// The bytes each token id adds to the text, arranged for mask computation. Built once per
/// tokenizer and shared by every constrained sequence.
class TokenVocabulary {
 public:
  /// `token_bytes[id]` is what id adds to the output (empty: never allowed, e.g. special
  /// tokens); `eos_ids` are allowed exactly when the document is complete.
  TokenVocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos_ids);

  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  bool is_eos(int32_t id) const;
  const std::vector<int32_t>& eos_ids() const { return eos_; }
  /// Sets mask[id] = 1 for every token that can follow state `m` (mask has size() entries,
  /// zeroed by the caller); EOS ids when `m` is accepting.
  void allowed(const JsonMatcher& m, std::vector<uint8_t>& mask) const;

 private:
  struct TrieNode {
    std::vector<std::pair<uint8_t, int32_t>> next;  // byte -> child, sorted by byte
    std::vector<int32_t> ids;                       // tokens whose bytes end here
  };
  void walk(int32_t node, const JsonMatcher& m, std::vector<uint8_t>& mask) const;

  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_;
  std::vector<TrieNode> trie_;
};

/// Counters of one constraint's mask work.
struct MaskStats {
  int64_t computed = 0;  ///< masks computed by a trie walk
  int64_t cached = 0;    ///< masks served from the state cache
  double seconds = 0;    ///< time spent in next_mask (walks, cache lookups, feeding)
};

/// Constrained decoding of one sequence: the matcher state after the ids generated so far and
/// the mask of the next id. Masks are cached by matcher state, so a long string or a repeated
/// structure costs one walk.
class TokenConstraint {
 public:
  TokenConstraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const TokenVocabulary> v);

  /// Mask (1 = allowed) of the id that follows `generated` (all ids generated so far; the ones
  /// not seen before are consumed). Never all zero: when nothing can continue, EOS is allowed.
  /// Throws InvalidArgument when a generated id is one the grammar refuses.
  const std::vector<uint8_t>* next_mask(const std::vector<int32_t>& generated);
  /// True when the ids so far form a complete document.
  bool complete() const { return m_.accepting(); }
  const MaskStats& stats() const { return stats_; }

 private:
  JsonMatcher m_;
  std::shared_ptr<const TokenVocabulary> v_;
  size_t consumed_ = 0;
  bool ended_ = false;  // an EOS id was generated
  std::unordered_map<std::string, std::shared_ptr<const std::vector<uint8_t>>> cache_;
  std::shared_ptr<const std::vector<uint8_t>> current_;
  MaskStats stats_;
};

}  // namespace ingot::llm::grammar
