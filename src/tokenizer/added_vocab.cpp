// Added-token matching (see added_vocab.h).
#include "tokenizer/added_vocab.h"

#include "tokenizer/regex.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

void AddedMatcher::build(const std::vector<std::string>& patterns,
                         const std::vector<const AddedToken*>& tokens) {
  nodes_.assign(1, Node{});
  edges_.clear();
  tokens_ = tokens;
  first_.fill(false);
  for (size_t t = 0; t < patterns.size(); ++t) {
    const std::string& p = patterns[t];
    if (p.empty()) continue;
    first_[static_cast<unsigned char>(p[0])] = true;
    int32_t node = 0;
    for (unsigned char c : p) {
      uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        nodes_.push_back(Node{});
        it = edges_.emplace(key, static_cast<int32_t>(nodes_.size() - 1)).first;
      }
      node = it->second;
    }
    if (nodes_[node].terminal < 0) nodes_[node].terminal = static_cast<int32_t>(t);
  }
}

namespace {
char32_t last_char(std::string_view s) {
  size_t b = s.size() - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  size_t i = b;
  return utf8::next(s, i);
}
bool is_word(char32_t c) {
  return is_alphanumeric(c);
}
}  // namespace

std::vector<Segment> AddedMatcher::split(std::string_view s) const {
  std::vector<Segment> out;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    if (!first_[static_cast<unsigned char>(s[pos])]) {
      ++pos;
      continue;
    }
    // Longest match starting at pos.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t k = pos; k < s.size(); ++k) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(s[k]));
      if (it == edges_.end()) break;
      node = it->second;
      if (nodes_[node].terminal >= 0) {
        best = nodes_[node].terminal;
        best_end = k + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = *tokens_[best];
    size_t start = pos, stop = best_end;
    pos = best_end;
    if (tok.single_word) {
      bool start_space = start == 0 || !is_word(last_char(s.substr(0, start)));
      size_t j = stop;
      bool stop_space = stop == s.size() || !is_word(utf8::next(s, j));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) {
      size_t b = start;
      while (b > 0) {
        size_t cb = b - 1;
        while (cb > 0 && (static_cast<unsigned char>(s[cb]) & 0xC0) == 0x80) --cb;
        size_t j = cb;
        if (!is_whitespace(utf8::next(s, j))) break;
        b = cb;
      }
      start = std::max(b, start_offset);
    }
    if (tok.rstrip) {
      while (stop < s.size()) {
        size_t j = stop;
        if (!is_whitespace(utf8::next(s, j))) break;
        stop = j;
      }
      pos = std::max(pos, stop);
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset < s.size()) out.push_back({start_offset, s.size(), -1});
  return out;
}

}  // namespace ingot::tokenizer
