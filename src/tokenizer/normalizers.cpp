// Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace,
// Prepend, BertNormalizer and Sequence, with `tokenizers`' semantics.
#include <utf8proc.h>

#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

namespace {

class FnNormalizer : public Normalizer {
 public:
  explicit FnNormalizer(std::string (*fn)(std::string_view)) : fn_(fn) {}
  void normalize(std::string& s) const override { s = fn_(s); }

 private:
  std::string (*fn_)(std::string_view);
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_whitespace(utf8::next(s, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(utf8::next(s, i))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Replace : public Normalizer {
 public:
  explicit Replace(const json& j)
      : pattern_(j.at("pattern")), content_(j.at("content").get<std::string>()) {}
  void normalize(std::string& s) const override {
    auto m = pattern_.find(s);
    if (m.empty()) return;
    std::string out;
    out.reserve(s.size());
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s = prepend_ + s;
  }

 private:
  std::string prepend_;
};

bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNormalizer : public Normalizer {
 public:
  explicit BertNormalizer(const json& j)
      : clean_(j.value("clean_text", true)),
        chinese_(j.value("handle_chinese_chars", true)),
        lower_(j.value("lowercase", true)) {
    strip_ = j.contains("strip_accents") && !j["strip_accents"].is_null()
                 ? j["strip_accents"].get<bool>()
                 : lower_;
  }
  void normalize(std::string& s) const override {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      char32_t c = utf8::next(s, i);
      if (clean_) {
        auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
        bool control = c != '\t' && c != '\n' && c != '\r' &&
                       (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                        cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO);
        if (c == 0 || c == 0xFFFD || control) continue;
        if (is_whitespace(c)) c = ' ';
      }
      if (chinese_ && is_chinese_char(c)) {
        out += ' ';
        utf8::append(out, c);
        out += ' ';
      } else {
        utf8::append(out, c);
      }
    }
    if (strip_) out = strip_accents(nfd(out));
    if (lower_) out = to_lower(out);
    s = std::move(out);
  }

 private:
  bool clean_, chinese_, lower_, strip_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    const auto& table = bytes_to_unicode();
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char b : s) out += table[b];
    s = std::move(out);
  }
};

class Sequence : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> items;
  void normalize(std::string& s) const override {
    for (auto& n : items) n->normalize(s);
  }
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = j.at("type").get<std::string>();
  if (type == "NFC") return std::make_unique<FnNormalizer>(&nfc);
  if (type == "NFD") return std::make_unique<FnNormalizer>(&nfd);
  if (type == "NFKC") return std::make_unique<FnNormalizer>(&nfkc);
  if (type == "NFKD") return std::make_unique<FnNormalizer>(&nfkd);
  if (type == "Lowercase") return std::make_unique<FnNormalizer>(&to_lower);
  if (type == "StripAccents") return std::make_unique<FnNormalizer>(&strip_accents);
  if (type == "Strip")
    return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "Replace") return std::make_unique<Replace>(j);
  if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
  if (type == "BertNormalizer") return std::make_unique<BertNormalizer>(j);
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Sequence") {
    auto seq = std::make_unique<Sequence>();
    for (auto& n : j.at("normalizers"))
      if (auto p = make_normalizer(n)) seq->items.push_back(std::move(p));
    return seq;
  }
  raise<FormatError>("[tokenizer] unsupported normalizer type '{}'", type);
}

}  // namespace ingot::tokenizer
