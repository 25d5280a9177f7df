// Token bytes of a tokenizer's vocabulary (see structured.h).
#include "server/structured.h"

#include <optional>

#include "util/utf8.h"

namespace ingot::server {

namespace {

// GPT-2's ByteLevel alphabet: printable bytes stand for themselves, the other 68 bytes for the
// code points 256, 257, ... in byte order. Returns the byte of code point `cp`, or -1.
int byte_of_code_point(char32_t cp) {
  static const std::vector<int> table = [] {
    std::vector<int> t(256 + 68, -1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      t[static_cast<size_t>(printable ? b : 256 + extra++)] = b;
    }
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

// Decodes UTF-8 into code points (nullopt when invalid).
std::optional<std::u32string> code_points(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + static_cast<size_t>(n) > s.size()) return std::nullopt;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((d & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (d & 0x3F);
    }
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::vector<std::string> token_bytes(const tokenizer::Tokenizer& tok, int64_t vocab) {
  std::vector<std::string> out(static_cast<size_t>(vocab));
  const int64_t n = std::min<int64_t>(vocab, tok.vocab_size());
  for (int64_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    if (tok.is_special(id)) continue;
    const std::optional<std::string> t = tok.id_to_token(id);
    if (!t || t->empty()) continue;
    // ByteLevel: every code point is in the byte alphabet and the decoder agrees.
    if (auto cps = code_points(*t)) {
      std::string bytes;
      bool ok = true;
      for (char32_t cp : *cps) {
        const int b = byte_of_code_point(cp);
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (ok && utf8::to_valid_lossy(bytes) == tok.decode({id}, {.skip_special_tokens = false})) {
        out[static_cast<size_t>(i)] = std::move(bytes);
        continue;
      }
    }
    if (t->size() == 6 && t->rfind("<0x", 0) == 0 && (*t)[5] == '>' && hex_value((*t)[3]) >= 0 &&
        hex_value((*t)[4]) >= 0) {
      out[static_cast<size_t>(i)] =
          std::string(1, static_cast<char>(hex_value((*t)[3]) * 16 + hex_value((*t)[4])));
      continue;
    }
    std::string s;
    for (size_t k = 0; k < t->size();) {
      if (t->compare(k, 3, "\xE2\x96\x81") == 0) {
        s += ' ';
        k += 3;
      } else {
        s += (*t)[k++];
      }
    }
    out[static_cast<size_t>(i)] = std::move(s);
  }
  return out;
}

}  // namespace ingot::server
