// UTF-8 helpers shared by the tokenizer and the chat-template engine: decoding code points,
// encoding them, and repairing invalid input the way Rust's String::from_utf8_lossy does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ingot::utf8 {

/// Length in bytes of the sequence introduced by lead byte `b` (1 for invalid leads).
inline int seq_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}

/// Decodes the code point at `s[i]` of valid UTF-8 and advances `i`.
char32_t next(std::string_view s, size_t& i);

/// Appends the UTF-8 encoding of `cp` to `out`.
void append(std::string& out, char32_t cp);

/// Returns `cp` encoded as UTF-8.
std::string encode(char32_t cp);

/// Length of the longest prefix of `s` that is valid UTF-8.
size_t valid_prefix(std::string_view s);

/// True when `s` is entirely valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF).
inline bool is_valid(std::string_view s) {
  return valid_prefix(s) == s.size();
}

/// Replaces each maximal invalid subpart with U+FFFD, exactly as Rust's from_utf8_lossy and
/// Python's bytes.decode("utf-8", "replace") do.
std::string to_valid_lossy(std::string_view s);

/// Number of code points in valid UTF-8 `s`.
size_t count(std::string_view s);

}  // namespace ingot::utf8
