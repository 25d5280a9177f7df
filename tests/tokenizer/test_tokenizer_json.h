// scan_tokenizer_json's parts against nlohmann's tree of the same text (unit and golden tests).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_json.h"

namespace ingot::tokenizer {

/// The tree of `text` with model.vocab and model.merges taken out equals parts.root; the vocab
/// (as a map: the tree keeps a repeated key's last id) and the merges equal the tables.
inline void expect_parts_match_tree(const TokenizerJsonParts& parts, std::string_view text) {
  nlohmann::json tree = nlohmann::json::parse(text);
  nlohmann::json& model = tree["model"];
  std::map<std::string, int32_t> scanned, want;
  for (const auto& [key, id] : parts.tables.vocab) scanned[key] = id;
  for (const auto& [key, id] : model["vocab"].items()) want[key] = id.get<int32_t>();
  EXPECT_EQ(scanned.size(), want.size());
  EXPECT_TRUE(scanned == want);
  std::vector<std::pair<std::string, std::string>> merges;
  if (model.contains("merges"))
    for (const auto& m : model["merges"]) {
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      }
    }
  EXPECT_EQ(parts.tables.merges.size(), merges.size());
  EXPECT_TRUE(parts.tables.merges == merges);
  model.erase("vocab");
  model.erase("merges");
  EXPECT_EQ(parts.root, tree);
}

}  // namespace ingot::tokenizer
