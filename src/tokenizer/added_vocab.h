// Added tokens of tokenizer.json: matched leftmost-longest (as `tokenizers`' Aho-Corasick
// matcher) before the model, with lstrip/rstrip/single_word handling.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ingot::tokenizer {

/// One entry of "added_tokens".
struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

/// A segment of input: either plain text (token < 0) or an added token's id.
struct Segment {
  size_t begin, end;
  int32_t token;
};

/// Leftmost-longest matcher over a set of added tokens.
class AddedMatcher {
 public:
  /// `patterns[i]` is the text to match for `tokens[i]` (normalized where the token is).
  void build(const std::vector<std::string>& patterns,
             const std::vector<const AddedToken*>& tokens);
  /// Splits `s` into segments as `tokenizers`' AddedVocabulary::find_matches; empty segments
  /// are dropped.
  std::vector<Segment> split(std::string_view s) const;
  bool empty() const { return tokens_.empty(); }

 private:
  struct Node {
    int32_t terminal = -1;  // index into tokens_
  };
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child
  std::vector<const AddedToken*> tokens_;
  std::array<bool, 256> first_{};
};

}  // namespace ingot::tokenizer
