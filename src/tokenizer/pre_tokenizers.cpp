// Pre-tokenizers of tokenizer.json: Split (regex/string, every behaviour, invert), ByteLevel,
// Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer, Sequence.
#include <functional>

#include "tokenizer/pipeline.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

namespace {

struct Span {
  size_t b, e;
  bool flag;  // is_match before the behaviour, "remove" after it
};

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const json& j) {
  std::string b = j.get<std::string>();
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  raise<FormatError>("[tokenizer] unknown split behavior '{}'", b);
}

// Turns match ranges into `tokenizers`' (offsets, is_match) list covering the whole string.
std::vector<Span> spans_from_matches(std::string_view s,
                                     const std::vector<std::pair<size_t, size_t>>& m) {
  std::vector<Span> out;
  if (s.empty()) return {{0, 0, false}};
  size_t prev = 0;
  for (auto [b, e] : m) {
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev != s.size()) out.push_back({prev, s.size(), false});
  return out;
}

std::vector<Span> spans_from_predicate(std::string_view s,
                                       const std::function<bool(char32_t)>& pred) {
  std::vector<Span> out;
  size_t last = 0, i = 0;
  while (i < s.size()) {
    size_t b = i;
    char32_t c = utf8::next(s, i);
    if (pred(c)) {
      if (last < b) out.push_back({last, b, false});
      out.push_back({b, i, true});
      last = i;
    }
  }
  if (s.size() > last) out.push_back({last, s.size(), false});
  return out;
}

// Applies a split behaviour to one piece and appends the non-empty results to `out`.
void split_piece(Piece&& p, std::vector<Span> m, Behavior behavior, bool invert,
                 std::vector<Piece>& out) {
  if (invert)
    for (auto& x : m) x.flag = !x.flag;
  std::vector<Span> sp;
  sp.reserve(m.size());
  bool prev_match = false;
  switch (behavior) {
    case Behavior::Isolated:
      for (auto& x : m) sp.push_back({x.b, x.e, false});
      break;
    case Behavior::Removed:
      sp = std::move(m);
      break;
    case Behavior::Contiguous:
      for (auto& x : m) {
        if (x.flag == prev_match && !sp.empty())
          sp.back().e = x.e;
        else
          sp.push_back({x.b, x.e, false});
        prev_match = x.flag;
      }
      break;
    case Behavior::MergedWithPrevious:
      for (auto& x : m) {
        if (x.flag && !prev_match && !sp.empty())
          sp.back().e = x.e;
        else
          sp.push_back({x.b, x.e, false});
        prev_match = x.flag;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->flag && !prev_match && !sp.empty())
          sp.back().b = it->b;
        else
          sp.push_back({it->b, it->e, false});
        prev_match = it->flag;
      }
      std::reverse(sp.begin(), sp.end());
      break;
  }
  for (auto& x : sp) {
    if (x.flag || x.e == x.b) continue;
    out.push_back({p.text.substr(x.b, x.e - x.b), p.at_origin && x.b == 0});
  }
}

// Base for pre-tokenizers that split each piece independently.
class Splitter : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    for (auto& p : pieces) split_one(std::move(p), out);
    pieces = std::move(out);
  }
  virtual void split_one(Piece&& p, std::vector<Piece>& out) const = 0;
};

class Split : public Splitter {
 public:
  explicit Split(const json& j)
      : pattern_(j.at("pattern")),
        behavior_(parse_behavior(j.at("behavior"))),
        invert_(j.value("invert", false)) {}
  void split_one(Piece&& p, std::vector<Piece>& out) const override {
    auto m = spans_from_matches(p.text, pattern_.find(p.text));
    split_piece(std::move(p), std::move(m), behavior_, invert_, out);
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class PredicateSplit : public Splitter {
 public:
  PredicateSplit(std::function<bool(char32_t)> pred, Behavior b) : pred_(std::move(pred)), b_(b) {}
  void split_one(Piece&& p, std::vector<Piece>& out) const override {
    auto m = spans_from_predicate(p.text, pred_);
    split_piece(std::move(p), std::move(m), b_, false, out);
  }

 private:
  std::function<bool(char32_t)> pred_;
  Behavior b_;
};

class Whitespace : public Splitter {
 public:
  Whitespace() : re_("\\w+|[^\\w\\s]+") {}
  void split_one(Piece&& p, std::vector<Piece>& out) const override {
    auto m = spans_from_matches(p.text, re_.find_all(p.text));
    split_piece(std::move(p), std::move(m), Behavior::Removed, true, out);
  }

 private:
  Regex re_;
};

const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevel : public PreTokenizer {
 public:
  explicit ByteLevel(const json& j)
      : add_prefix_space_(j.value("add_prefix_space", true)),
        use_regex_(j.value("use_regex", true)) {
    if (use_regex_) re_ = std::make_unique<Regex>(kGpt2Pattern);
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    const auto& table = bytes_to_unicode();
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (auto& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text = " " + p.text;
      size_t first = out.size();
      if (use_regex_) {
        auto m = spans_from_matches(p.text, re_->find_all(p.text));
        split_piece(std::move(p), std::move(m), Behavior::Isolated, false, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
      for (size_t k = first; k < out.size(); ++k) {
        std::string mapped;
        mapped.reserve(out[k].text.size() * 2);
        for (unsigned char b : out[k].text) mapped += table[b];
        out[k].text = std::move(mapped);
      }
    }
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_, use_regex_;
  std::unique_ptr<Regex> re_;
};

class Metaspace : public PreTokenizer {
 public:
  explicit Metaspace(const json& j) : split_(j.value("split", true)) {
    replacement_ = j.value("replacement", std::string("\xE2\x96\x81"));
    std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme.empty()) scheme = j.value("add_prefix_space", true) ? "always" : "never";
    scheme_ = scheme == "always" ? 0 : scheme == "first" ? 1 : 2;
    size_t i = 0;
    rep_cp_ = replacement_.empty() ? U'\u2581' : utf8::next(replacement_, i);
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + 3);
      for (char c : p.text) {
        if (c == ' ')
          t += replacement_;
        else
          t += c;
      }
      bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == 0 || (scheme_ == 1 && p.at_origin))) t = replacement_ + t;
      p.text = std::move(t);
      if (split_) {
        char32_t r = rep_cp_;
        auto m = spans_from_predicate(p.text, [r](char32_t c) { return c == r; });
        split_piece(std::move(p), std::move(m), Behavior::MergedWithNext, false, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  char32_t rep_cp_;
  int scheme_;  // 0 always, 1 first, 2 never
  bool split_;
};

class Sequence : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> items;
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (auto& p : items) p->pre_tokenize(pieces);
  }
};

class BertPre : public PreTokenizer {
 public:
  BertPre()
      : ws_(is_whitespace, Behavior::Removed),
        punct_([](char32_t c) { return is_punctuation(c); }, Behavior::Isolated) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    ws_.pre_tokenize(pieces);
    punct_.pre_tokenize(pieces);
  }

 private:
  PredicateSplit ws_, punct_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = j.at("type").get<std::string>();
  if (type == "Split") return std::make_unique<Split>(j);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(j);
  if (type == "Metaspace") return std::make_unique<Metaspace>(j);
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit")
    return std::make_unique<PredicateSplit>(is_whitespace, Behavior::Removed);
  if (type == "BertPreTokenizer") return std::make_unique<BertPre>();
  if (type == "Digits") {
    bool individual = j.value("individual_digits", false);
    return std::make_unique<PredicateSplit>(is_numeric,
                                            individual ? Behavior::Isolated : Behavior::Contiguous);
  }
  if (type == "Punctuation") {
    Behavior b = j.contains("behavior") ? parse_behavior(j["behavior"]) : Behavior::Isolated;
    return std::make_unique<PredicateSplit>(is_punctuation, b);
  }
  if (type == "CharDelimiterSplit") {
    std::string d = j.at("delimiter").get<std::string>();
    size_t i = 0;
    char32_t dc = d.empty() ? U' ' : utf8::next(d, i);
    return std::make_unique<PredicateSplit>([dc](char32_t c) { return c == dc; },
                                            Behavior::Removed);
  }
  if (type == "Sequence") {
    auto seq = std::make_unique<Sequence>();
    for (auto& p : j.at("pretokenizers"))
      if (auto x = make_pre_tokenizer(p)) seq->items.push_back(std::move(x));
    return seq;
  }
  raise<FormatError>("[tokenizer] unsupported pre_tokenizer type '{}'", type);
}

const std::vector<std::string>& bytes_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      t[b] = utf8::encode(cp);
    }
    return t;
  }();
  return table;
}

int unicode_to_byte(char32_t c) {
  static const std::vector<int> inv = [] {
    std::vector<int> v(512, -1);
    const auto& t = bytes_to_unicode();
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      v[utf8::next(t[b], i)] = b;
    }
    return v;
  }();
  return c < 512 ? inv[c] : -1;
}

}  // namespace ingot::tokenizer
