// Jinja lexer (see lexer.h). Mirrors jinja2.lexer: OptionalLStrip handling for block and comment
// starts, `-`/`+` modifiers, trim_blocks newline removal after `%}`/`#}`, raw blocks.
#include "tokenizer/jinja/lexer.h"

#include "tokenizer/jinja/ast.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::jinja {

bool py_isspace(char32_t c) {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x1C:
    case 0x1D:
    case 0x1E:
    case 0x1F:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

namespace {

[[noreturn]] void fail(const std::string& src, size_t pos, const std::string& msg) {
  raise<FormatError>("[chat_template] {}: {}", location(src, pos), msg);
}

// Length of the whitespace run starting at p.
size_t ws_run(const std::string& s, size_t p) {
  size_t i = p;
  while (i < s.size()) {
    size_t j = i;
    if (!py_isspace(utf8::next(s, j))) break;
    i = j;
  }
  return i - p;
}

std::string rstrip_ws(const std::string& s) {
  size_t e = s.size();
  while (e > 0) {
    size_t b = e - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    size_t j = b;
    if (!py_isspace(utf8::next(s, j))) break;
    e = b;
  }
  return s.substr(0, e);
}

bool all_ws(const std::string& s, size_t from) {
  return ws_run(s, from) == s.size() - from;
}

// lstrip_blocks: drop spaces between the last newline (or a line start) and the tag.
void lstrip_text(std::string& text, bool line_starting) {
  size_t nl = text.rfind('\n');
  size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
  if ((l_pos > 0 || line_starting) && all_ws(text, l_pos)) text.resize(l_pos);
}

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Decodes a Python string literal body (unicode-escape rules).
std::string decode_string(const std::string& src, size_t start, size_t end) {
  std::string out;
  size_t i = start;
  while (i < end) {
    char c = src[i];
    if (c != '\\' || i + 1 >= end) {
      out += c;
      ++i;
      continue;
    }
    char e = src[i + 1];
    i += 2;
    auto hex = [&](int n) {
      char32_t v = 0;
      for (int k = 0; k < n; ++k) {
        if (i >= end) fail(src, i, "truncated escape in string literal");
        char h = src[i++];
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) fail(src, i, "bad escape in string literal");
        v = v * 16 + static_cast<char32_t>(d);
      }
      return v;
    };
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case '\n':
        break;
      case 'x':
        utf8::append(out, hex(2));
        break;
      case 'u':
        utf8::append(out, hex(4));
        break;
      case 'U':
        utf8::append(out, hex(8));
        break;
      default:
        if (e >= '0' && e <= '7') {
          char32_t v = static_cast<char32_t>(e - '0');
          for (int k = 0; k < 2 && i < end && src[i] >= '0' && src[i] <= '7'; ++k)
            v = v * 8 + static_cast<char32_t>(src[i++] - '0');
          utf8::append(out, v);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

struct Lexer {
  const std::string& s;
  std::vector<Token> out;
  bool line_starting = true;

  void data(std::string text, size_t pos) {
    if (!text.empty()) out.push_back({Token::Kind::Data, std::move(text), pos});
  }

  // Tries to match `{%[-+]?\s*WORD\s*` at p; returns the position after it or npos.
  size_t match_tag_word(size_t p, std::string_view word, char* modifier) const {
    if (s.compare(p, 2, "{%") != 0) return std::string::npos;
    size_t i = p + 2;
    *modifier = 0;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) *modifier = s[i++];
    i += ws_run(s, i);
    if (s.compare(i, word.size(), word) != 0) return std::string::npos;
    i += word.size();
    if (i < s.size() && is_name_char(s[i])) return std::string::npos;
    return i + ws_run(s, i);
  }

  void run() {
    size_t pos = 0;
    while (pos < s.size()) {
      size_t tag = pos;
      while (true) {
        tag = s.find('{', tag);
        if (tag == std::string::npos || tag + 1 >= s.size()) {
          tag = std::string::npos;
          break;
        }
        char k = s[tag + 1];
        if (k == '{' || k == '%' || k == '#') break;
        ++tag;
      }
      if (tag == std::string::npos) {
        data(s.substr(pos), pos);
        break;
      }
      std::string text = s.substr(pos, tag - pos);
      char kind = s[tag + 1];
      char mod = tag + 2 < s.size() && (s[tag + 2] == '-' || s[tag + 2] == '+') ? s[tag + 2] : 0;
      if (mod == '-')
        text = rstrip_ws(text);
      else if (mod != '+' && kind != '{')
        lstrip_text(text, line_starting);
      data(std::move(text), pos);
      if (kind == '#') {
        pos = comment(tag);
        continue;
      }
      char raw_mod;
      size_t after_raw = kind == '%' ? match_tag_word(tag, "raw", &raw_mod) : std::string::npos;
      if (after_raw != std::string::npos &&
          (s.compare(after_raw, 3, "-%}") == 0 || s.compare(after_raw, 2, "%}") == 0)) {
        pos = raw(tag, after_raw);
        continue;
      }
      pos = tag_tokens(tag, kind, mod);
    }
    out.push_back({Token::Kind::End, "", s.size()});
  }

  size_t comment(size_t tag) {
    size_t end = s.find("#}", tag + 2);
    if (end == std::string::npos) fail(s, tag, "Missing end of comment tag");
    size_t after = end + 2;
    char before = end > tag + 2 ? s[end - 1] : 0;
    if (before == '-')
      after += ws_run(s, after);
    else if (before != '+' && after < s.size() && s[after] == '\n')
      ++after;
    line_starting = s[after - 1] == '\n';
    return after;
  }

  size_t raw(size_t tag, size_t after_raw) {
    size_t body = after_raw;
    if (s.compare(body, 3, "-%}") == 0)
      body += 3 + ws_run(s, body + 3);
    else
      body += 2;
    size_t p = body;
    while (true) {
      p = s.find("{%", p);
      if (p == std::string::npos) fail(s, tag, "Missing end of raw directive");
      char mod;
      size_t e = match_tag_word(p, "endraw", &mod);
      if (e != std::string::npos) {
        size_t after;
        char end_mod = 0;
        if (s.compare(e, 3, "+%}") == 0)
          after = e + 3, end_mod = '+';
        else if (s.compare(e, 3, "-%}") == 0)
          after = e + 3 + ws_run(s, e + 3), end_mod = '-';
        else if (s.compare(e, 2, "%}") == 0)
          after = e + 2 + (s.compare(e + 2, 1, "\n") == 0 ? 1 : 0);
        else {
          ++p;
          continue;
        }
        (void)end_mod;
        std::string text = s.substr(body, p - body);
        if (mod == '-')
          text = rstrip_ws(text);
        else if (mod != '+')
          lstrip_text(text, false);
        data(std::move(text), body);
        line_starting = s[after - 1] == '\n';
        return after;
      }
      p += 2;
    }
  }

  size_t tag_tokens(size_t tag, char kind, char mod) {
    bool var = kind == '{';
    out.push_back({var ? Token::Kind::VarBegin : Token::Kind::BlockBegin, "", tag});
    size_t i = tag + 2 + (mod ? 1 : 0);
    int depth = 0;
    while (true) {
      i += ws_run(s, i);
      if (i >= s.size())
        fail(s, tag,
             var ? "unexpected end of template, expected '}}'"
                 : "unexpected end of template, expected '%}'");
      if (depth == 0) {
        if (var) {
          if (s.compare(i, 3, "-}}") == 0) {
            out.push_back({Token::Kind::VarEnd, "", i});
            size_t after = i + 3 + ws_run(s, i + 3);
            line_starting = s[after - 1] == '\n';
            return after;
          }
          if (s.compare(i, 2, "}}") == 0) {
            out.push_back({Token::Kind::VarEnd, "", i});
            line_starting = false;
            return i + 2;
          }
        } else {
          size_t after = std::string::npos;
          if (s.compare(i, 3, "-%}") == 0)
            after = i + 3 + ws_run(s, i + 3);
          else if (s.compare(i, 3, "+%}") == 0)
            after = i + 3;
          else if (s.compare(i, 2, "%}") == 0)
            after = i + 2 + (i + 2 < s.size() && s[i + 2] == '\n' ? 1 : 0);
          if (after != std::string::npos) {
            out.push_back({Token::Kind::BlockEnd, "", i});
            line_starting = s[after - 1] == '\n';
            return after;
          }
        }
      }
      char c = s[i];
      if (is_name_start(c)) {
        size_t b = i;
        while (i < s.size() && is_name_char(s[i])) ++i;
        out.push_back({Token::Kind::Name, s.substr(b, i - b), b});
      } else if (is_digit(c)) {
        size_t b = i;
        while (i < s.size() && (is_digit(s[i]) || s[i] == '_')) ++i;
        bool is_float = false;
        if (i + 1 < s.size() && s[i] == '.' && is_digit(s[i + 1])) {
          is_float = true;
          ++i;
          while (i < s.size() && (is_digit(s[i]) || s[i] == '_')) ++i;
        }
        if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
          size_t j = i + 1;
          if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
          if (j < s.size() && is_digit(s[j])) {
            is_float = true;
            i = j;
            while (i < s.size() && is_digit(s[i])) ++i;
          }
        }
        std::string num;
        for (size_t k = b; k < i; ++k)
          if (s[k] != '_') num += s[k];
        out.push_back({is_float ? Token::Kind::Float : Token::Kind::Int, num, b});
      } else if (c == '\'' || c == '"') {
        size_t b = i++;
        while (i < s.size() && s[i] != c) i += s[i] == '\\' ? 2 : 1;
        if (i >= s.size()) fail(s, b, "unterminated string");
        out.push_back({Token::Kind::String, decode_string(s, b + 1, i), b});
        ++i;
      } else {
        static const char* two[] = {"//", "**", "==", "!=", ">=", "<="};
        std::string op;
        for (auto* t : two)
          if (s.compare(i, 2, t) == 0) op = t;
        if (op.empty()) {
          if (std::string_view("+-/*%~[](){}<>=.:|,;").find(c) == std::string_view::npos)
            fail(s, i, fmt::format("unexpected char '{}'", c));
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        }
        out.push_back({Token::Kind::Op, op, i});
        i += op.size();
      }
    }
  }
};

}  // namespace

std::vector<Token> lex(const std::string& src) {
  Lexer lx{src, {}, true};
  lx.run();
  return std::move(lx.out);
}

}  // namespace ingot::jinja
