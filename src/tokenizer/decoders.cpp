// Decoders (ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, WordPiece, BPEDecoder,
// Sequence) and post-processors (TemplateProcessing, ByteLevel, Roberta/Bert, Sequence).
#include "tokenizer/pipeline.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

namespace {

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (auto& t : tokens) {
      size_t start = bytes.size();
      size_t i = 0;
      bool ok = true;
      while (i < t.size()) {
        int b = unicode_to_byte(utf8::next(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes += static_cast<char>(b);
      }
      if (!ok) {
        bytes.resize(start);
        bytes += t;
      }
    }
    tokens.assign(1, utf8::to_valid_lossy(bytes));
  }
};

class ByteFallback : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (utf8::is_valid(pending))
        out.push_back(pending);
      else
        for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      pending.clear();
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        auto hex = [](char c) {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;
        };
        int hi = hex(t[3]), lo = hex(t[4]);
        if (hi >= 0 && lo >= 0) byte = hi * 16 + lo;
      }
      if (byte >= 0) {
        pending += static_cast<char>(byte);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class Fuse : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

std::vector<char32_t> to_cps(std::string_view s) {
  std::vector<char32_t> v;
  size_t i = 0;
  while (i < s.size()) v.push_back(utf8::next(s, i));
  return v;
}

class StripDecoder : public Decoder {
 public:
  explicit StripDecoder(const json& j) : start_(j.value("start", 0)), stop_(j.value("stop", 0)) {
    auto c = to_cps(j.at("content").get<std::string>());
    content_ = c.empty() ? U' ' : c[0];
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      auto cps = to_cps(t);
      size_t b = 0, e = cps.size();
      for (size_t i = 0; i < start_ && i < cps.size() && cps[i] == content_; ++i) b = i + 1;
      for (size_t i = 0; i < stop_ && i < cps.size(); ++i) {
        size_t idx = cps.size() - i - 1;
        if (cps[idx] != content_) break;
        e = idx;
      }
      std::string out;
      for (size_t i = b; i < e; ++i) utf8::append(out, cps[i]);
      t = std::move(out);
    }
  }

 private:
  size_t start_, stop_;
  char32_t content_;
};

class ReplaceDecoder : public Decoder {
 public:
  explicit ReplaceDecoder(const json& j)
      : pattern_(j.at("pattern")), content_(j.at("content").get<std::string>()) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      auto m = pattern_.find(t);
      if (m.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (auto [b, e] : m) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class MetaspaceDecoder : public Decoder {
 public:
  explicit MetaspaceDecoder(const json& j) {
    auto c = to_cps(j.value("replacement", std::string("\xE2\x96\x81")));
    rep_ = c.empty() ? U'\u2581' : c[0];
    std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme.empty()) scheme = j.value("add_prefix_space", true) ? "always" : "never";
    never_ = scheme == "never";
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      size_t k = 0;
      const auto& t = tokens[i];
      while (k < t.size()) {
        char32_t c = utf8::next(t, k);
        if (c == rep_) {
          if (i == 0 && !never_) continue;
          out += ' ';
        } else {
          utf8::append(out, c);
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  char32_t rep_;
  bool never_;
};

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (s.find(from) == std::string::npos) return;
  std::string out;
  size_t pos = 0, hit;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

void cleanup(std::string& s) {
  for (auto [a, b] : {std::pair{" .", "."},
                      {" ?", "?"},
                      {" !", "!"},
                      {" ,", ","},
                      {" ' ", "'"},
                      {" n't", "n't"},
                      {" 'm", "'m"},
                      {" do not", " don't"},
                      {" 's", "'s"},
                      {" 've", "'ve"},
                      {" 're", "'re"}})
    replace_all(s, a, b);
}

class WordPieceDecoder : public Decoder {
 public:
  explicit WordPieceDecoder(const json& j)
      : prefix_(j.value("prefix", std::string("##"))), cleanup_(j.value("cleanup", true)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0)
          t.erase(0, prefix_.size());
        else
          t = " " + t;
      }
      if (cleanup_) cleanup(t);
    }
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class BpeDecoder : public Decoder {
 public:
  explicit BpeDecoder(const json& j) : suffix_(j.value("suffix", std::string("</w>"))) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i)
      replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
  }

 private:
  std::string suffix_;
};

class DecoderSequence : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> items;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& d : items) d->decode_chain(tokens);
  }
};

// ---- post-processors ----

class Template : public PostProcessor {
 public:
  Template(const json& j) {
    std::unordered_map<std::string, std::vector<int32_t>> specials;
    if (j.contains("special_tokens"))
      for (auto& [name, v] : j["special_tokens"].items())
        specials[name] = v.at("ids").get<std::vector<int32_t>>();
    for (auto& piece : j.at("single")) {
      if (piece.contains("SpecialToken")) {
        std::string id = piece["SpecialToken"].at("id").get<std::string>();
        auto it = specials.find(id);
        if (it == specials.end())
          raise<FormatError>("[tokenizer] TemplateProcessing: missing special token '{}'", id);
        items_.push_back({false, it->second});
      } else {
        items_.push_back({true, {}});
      }
    }
  }
  void process(std::vector<int32_t>& ids, bool add_special) const override {
    if (!add_special) return;
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (auto& it : items_) {
      if (it.sequence)
        out.insert(out.end(), ids.begin(), ids.end());
      else
        out.insert(out.end(), it.ids.begin(), it.ids.end());
    }
    ids = std::move(out);
  }

 private:
  struct Item {
    bool sequence;
    std::vector<int32_t> ids;
  };
  std::vector<Item> items_;
};

class NoOpProcessor : public PostProcessor {
 public:
  void process(std::vector<int32_t>&, bool) const override {}
};

class ClsSep : public PostProcessor {
 public:
  ClsSep(int32_t cls, int32_t sep) : cls_(cls), sep_(sep) {}
  void process(std::vector<int32_t>& ids, bool add_special) const override {
    if (!add_special) return;
    ids.insert(ids.begin(), cls_);
    ids.push_back(sep_);
  }

 private:
  int32_t cls_, sep_;
};

class ProcessorSequence : public PostProcessor {
 public:
  std::vector<std::unique_ptr<PostProcessor>> items;
  void process(std::vector<int32_t>& ids, bool add_special) const override {
    for (auto& p : items) p->process(ids, add_special);
  }
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = j.at("type").get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") return std::make_unique<StripDecoder>(j);
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(j);
  if (type == "Metaspace") return std::make_unique<MetaspaceDecoder>(j);
  if (type == "WordPiece") return std::make_unique<WordPieceDecoder>(j);
  if (type == "BPEDecoder") return std::make_unique<BpeDecoder>(j);
  if (type == "Sequence") {
    auto seq = std::make_unique<DecoderSequence>();
    for (auto& d : j.at("decoders"))
      if (auto x = make_decoder(d)) seq->items.push_back(std::move(x));
    return seq;
  }
  raise<FormatError>("[tokenizer] unsupported decoder type '{}'", type);
}

std::unique_ptr<PostProcessor> make_post_processor(
    const json& j, const std::unordered_map<std::string, int32_t>& token_ids) {
  if (j.is_null()) return nullptr;
  std::string type = j.at("type").get<std::string>();
  if (type == "TemplateProcessing") return std::make_unique<Template>(j);
  if (type == "ByteLevel") return std::make_unique<NoOpProcessor>();
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto id_of = [&](const json& pair) {
      if (pair.is_array() && pair.size() == 2 && pair[1].is_number_integer())
        return pair[1].get<int32_t>();
      raise<FormatError>("[tokenizer] {}: bad cls/sep {}", type, pair.dump());
    };
    return std::make_unique<ClsSep>(id_of(j.at("cls")), id_of(j.at("sep")));
  }
  if (type == "Sequence") {
    auto seq = std::make_unique<ProcessorSequence>();
    for (auto& p : j.at("processors"))
      if (auto x = make_post_processor(p, token_ids)) seq->items.push_back(std::move(x));
    return seq;
  }
  raise<FormatError>("[tokenizer] unsupported post_processor type '{}'", type);
}

}  // namespace ingot::tokenizer
