// Jinja lexer: splits a template into data and tag tokens, applying jinja2's whitespace control
// (`-`/`+` modifiers, trim_blocks, lstrip_blocks) and newline normalisation.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ingot::jinja {

/// One lexical token; `pos` is its byte offset in the normalized source.
struct Token {
  enum class Kind {
    Data,
    VarBegin,
    VarEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Int,
    Float,
    Op,
    End
  };
  Kind kind;
  std::string text;  // Data text, name, decoded string literal, number text or operator
  size_t pos;
};

/// Tokenizes `src` (already newline-normalized) with trim_blocks and lstrip_blocks on.
std::vector<Token> lex(const std::string& src);

/// Python str.isspace() for one code point.
bool py_isspace(char32_t c);

}  // namespace ingot::jinja
