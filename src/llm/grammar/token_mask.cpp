// Token masks over a byte trie of the vocabulary (see token_mask.h).
#include "llm/grammar/token_mask.h"

#include <algorithm>
#include <chrono>

#include "util/error.h"

namespace ingot::llm::grammar {

TokenVocabulary::TokenVocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos_ids)
    : bytes_(std::move(token_bytes)), eos_(std::move(eos_ids)) {
  for (int32_t id : eos_)
    if (id < 0 || id >= size())
      raise("[token_mask] EOS id {} is outside the vocabulary [0, {})", id, size());
  trie_.emplace_back();
  for (size_t id = 0; id < bytes_.size(); ++id) {
    const std::string& b = bytes_[id];
    if (b.empty() || is_eos(static_cast<int32_t>(id))) continue;
    int32_t node = 0;
    for (char ch : b) {
      const auto c = static_cast<uint8_t>(ch);
      auto& next = trie_[static_cast<size_t>(node)].next;
      auto it = std::lower_bound(next.begin(), next.end(), c,
                                 [](const auto& e, uint8_t x) { return e.first < x; });
      if (it != next.end() && it->first == c) {
        node = it->second;
      } else {
        const auto child = static_cast<int32_t>(trie_.size());
        next.insert(it, {c, child});
        trie_.emplace_back();  // invalidates `next`; not used after this
        node = child;
      }
    }
    trie_[static_cast<size_t>(node)].ids.push_back(static_cast<int32_t>(id));
  }
}

bool TokenVocabulary::is_eos(int32_t id) const {
  return std::find(eos_.begin(), eos_.end(), id) != eos_.end();
}

void TokenVocabulary::walk(int32_t node, const JsonMatcher& m, std::vector<uint8_t>& mask) const {
  for (const auto& [c, child] : trie_[static_cast<size_t>(node)].next) {
    JsonMatcher n = m;
    if (!n.feed(c)) continue;
    for (int32_t id : trie_[static_cast<size_t>(child)].ids) mask[static_cast<size_t>(id)] = 1;
    walk(child, n, mask);
  }
}

void TokenVocabulary::allowed(const JsonMatcher& m, std::vector<uint8_t>& mask) const {
  walk(0, m, mask);
  if (m.accepting())
    for (int32_t id : eos_) mask[static_cast<size_t>(id)] = 1;
}

TokenConstraint::TokenConstraint(std::shared_ptr<const JsonGrammar> g,
                                 std::shared_ptr<const TokenVocabulary> v)
    : m_(std::move(g)), v_(std::move(v)) {
  if (!v_) raise("[token_mask] a constraint needs a vocabulary");
}

const std::vector<uint8_t>* TokenConstraint::next_mask(const std::vector<int32_t>& generated) {
  const auto t0 = std::chrono::steady_clock::now();
  for (; consumed_ < generated.size(); ++consumed_) {
    const int32_t id = generated[consumed_];
    if (id < 0 || id >= v_->size())
      raise("[token_mask] generated id {} is outside the vocabulary [0, {})", id, v_->size());
    if (v_->is_eos(id)) {
      ended_ = true;
      continue;
    }
    if (ended_ || !m_.feed(v_->bytes(id)))
      raise("[token_mask] generated token {} does not continue the constrained document", id);
  }
  const std::string key = m_.key();
  auto it = cache_.find(key);
  if (it != cache_.end()) {
    current_ = it->second;
    ++stats_.cached;
  } else {
    auto mask = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(v_->size()), 0);
    v_->allowed(m_, *mask);
    if (std::find(mask->begin(), mask->end(), uint8_t{1}) == mask->end())
      for (int32_t id : v_->eos_ids()) (*mask)[static_cast<size_t>(id)] = 1;  // dead end: stop
    current_ = mask;
    cache_.emplace(key, mask);
    ++stats_.computed;
  }
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return current_.get();
}

}  // namespace ingot::llm::grammar
