// The hand-written tokenizer.json scanner (tokenizer_json.h). It only has to be right about the
// form it accepts: whatever else it meets, it gives up and the caller parses the whole tree.
#include "tokenizer/tokenizer_json.h"

#include <cstdint>
#include <string>

#include "util/utf8.h"

namespace ingot::tokenizer {

namespace {

class Scanner {
 public:
  explicit Scanner(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  std::optional<TokenizerJsonParts> document() {
    TokenizerJsonParts parts;
    parts.root = json::object();
    // Room for the tables up front (the vectors' regrowth moved every string, up to a quarter of
    // the scan): an estimate from the text's size that covers the tokenizers seen (Gemma3's 33
    // MB: room for 521k vocab entries and 695k merges); a larger table grows as usual.
    const size_t bytes = static_cast<size_t>(end_ - p_);
    parts.tables.vocab.reserve(bytes / 64);
    parts.tables.merges.reserve(bytes / 48);
    if (!eat('{')) return std::nullopt;
    if (!eat('}')) {
      std::string key;
      do {
        if (!string(key) || !eat(':')) return std::nullopt;
        if (key == "model") {
          if (seen_model_ || !peek('{')) return std::nullopt;
          seen_model_ = true;
          json model = json::object();
          if (!model_object(model, parts.tables)) return std::nullopt;
          parts.root[key] = std::move(model);
        } else if (!parse_value(parts.root[key])) {
          return std::nullopt;
        }
      } while (eat(','));
      if (!eat('}')) return std::nullopt;
    }
    ws();
    if (p_ != end_ || !has_vocab_) return std::nullopt;
    return parts;
  }

 private:
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool peek(char c) {
    ws();
    return p_ < end_ && *p_ == c;
  }
  bool eat(char c) {
    if (!peek(c)) return false;
    ++p_;
    return true;
  }

  bool hex4(uint32_t& v) {
    if (end_ - p_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<uint32_t>(c - 'A' + 10);
      else
        return false;
    }
    return true;
  }

  /// A JSON string (after whitespace), decoded into `out`.
  bool string(std::string& out) {
    if (!eat('"')) return false;
    out.clear();
    bool ascii = true;
    for (;;) {
      const char* run = p_;
      while (p_ < end_) {
        const auto c = static_cast<unsigned char>(*p_);
        if (c == '"' || c == '\\' || c < 0x20) break;
        ascii = ascii && c < 0x80;
        ++p_;
      }
      if (p_ >= end_ || static_cast<unsigned char>(*p_) < 0x20) return false;
      out.append(run, p_);
      if (*p_++ == '"') break;
      if (p_ >= end_) return false;
      switch (*p_++) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: its low half must follow
            uint32_t lo = 0;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          utf8::append(out, static_cast<char32_t>(cp));
          break;
        }
        default:
          return false;
      }
    }
    return ascii || utf8::is_valid(out);
  }

  /// Skips one value (after whitespace) without judging it (nlohmann parses the span): strings
  /// with their escapes, brackets by depth, a scalar up to the next delimiter.
  bool skip_value(std::string_view& span) {
    ws();
    const char* start = p_;
    int depth = 0;
    while (p_ < end_) {
      const char c = *p_;
      if (c == '"') {
        ++p_;
        while (p_ < end_ && *p_ != '"') {
          if (*p_ == '\\' && ++p_ == end_) return false;
          ++p_;
        }
        if (p_ >= end_) return false;
        ++p_;
      } else if (c == '{' || c == '[') {
        ++depth;
        ++p_;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        --depth;
        ++p_;
      } else if (c == ',' && depth == 0) {
        break;
      } else {
        ++p_;
      }
      if (depth == 0 && (c == '"' || c == '}' || c == ']')) break;
    }
    if (depth != 0 || p_ == start) return false;
    span = std::string_view(start, static_cast<size_t>(p_ - start));
    return true;
  }

  bool parse_value(json& slot) {
    std::string_view span;
    if (!skip_value(span)) return false;
    try {
      slot = json::parse(span);
    } catch (const json::exception&) {
      return false;
    }
    return true;
  }

  bool model_object(json& model, BpeTables& tables) {
    if (!eat('{')) return false;
    if (eat('}')) return true;
    std::string key;
    do {
      if (!string(key) || !eat(':')) return false;
      if (key == "vocab") {
        if (has_vocab_ || !peek('{')) return false;
        has_vocab_ = true;
        if (!vocab(tables.vocab)) return false;
      } else if (key == "merges") {
        if (has_merges_ || !peek('[')) return false;
        has_merges_ = true;
        if (!merges(tables.merges)) return false;
      } else if (!parse_value(model[key])) {
        return false;
      }
    } while (eat(','));
    return eat('}');
  }

  /// {"token": id, ...}: ids are integers in [0, 2^30] without a sign, fraction or exponent.
  bool vocab(std::vector<std::pair<std::string, int32_t>>& out) {
    if (!eat('{')) return false;
    if (eat('}')) return true;
    std::string key;
    do {
      if (!string(key) || !eat(':')) return false;
      ws();
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') return false;
      if (*p_ == '0' && p_ + 1 < end_ && p_[1] >= '0' && p_[1] <= '9') return false;
      int64_t id = 0;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
        id = id * 10 + (*p_++ - '0');
        if (id > (int64_t{1} << 30)) return false;
      }
      if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return false;
      out.emplace_back(std::move(key), static_cast<int32_t>(id));
    } while (eat(','));
    return eat('}');
  }

  /// ["a b", ["a", "b"], ...]: a string with exactly one space, or a pair of strings.
  bool merges(std::vector<std::pair<std::string, std::string>>& out) {
    if (!eat('[')) return false;
    if (eat(']')) return true;
    std::string a, b;
    do {
      if (peek('"')) {
        if (!string(a)) return false;
        const size_t sp = a.find(' ');
        if (sp == std::string::npos || a.find(' ', sp + 1) != std::string::npos) return false;
        out.emplace_back(a.substr(0, sp), a.substr(sp + 1));
      } else {
        if (!eat('[') || !string(a) || !eat(',') || !string(b) || !eat(']')) return false;
        out.emplace_back(std::move(a), std::move(b));
      }
    } while (eat(','));
    return eat(']');
  }

  const char* p_;
  const char* end_;
  bool seen_model_ = false, has_vocab_ = false, has_merges_ = false;
};

}  // namespace

std::optional<TokenizerJsonParts> scan_tokenizer_json(std::string_view text) {
  return Scanner(text).document();
}

}  // namespace ingot::tokenizer
