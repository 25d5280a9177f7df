// Oniguruma regex wrapper (the engine Hugging Face `tokenizers` uses) and Unicode character
// classes (Rust's char::is_whitespace etc.) used by normalizers and pre-tokenizers.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ingot::tokenizer {

/// A compiled Oniguruma regex (Ruby syntax, UTF-8), safe for concurrent searches.
class Regex {
 public:
  /// Compiles `pattern`; throws FormatError naming the pattern on a syntax error.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Non-overlapping matches [start, end) left to right, skipping an empty match that directly
  /// follows the previous match (the `onig` crate's find_iter, as `tokenizers` uses it).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  void* re_;  // regex_t*
};

/// Non-overlapping occurrences of a literal (what `tokenizers` does with an escaped pattern).
std::vector<std::pair<size_t, size_t>> find_all_literal(std::string_view text,
                                                        std::string_view needle);

/// Unicode White_Space (Rust char::is_whitespace).
bool is_whitespace(char32_t c);
/// Rust char::is_numeric (general categories Nd, Nl, No).
bool is_numeric(char32_t c);
/// ASCII punctuation or a Unicode P* category (`tokenizers`' is_punctuation).
bool is_punctuation(char32_t c);
/// Rust char::is_alphanumeric.
bool is_alphanumeric(char32_t c);
/// Unicode normalization forms via utf8proc; input must be valid UTF-8.
std::string nfc(std::string_view s);
std::string nfd(std::string_view s);
std::string nfkc(std::string_view s);
std::string nfkd(std::string_view s);
/// Rust str::to_lowercase (full Unicode lowercase mapping).
std::string to_lower(std::string_view s);
/// Removes combining marks (category Mn), as the StripAccents normalizer does.
std::string strip_accents(std::string_view s);

}  // namespace ingot::tokenizer
