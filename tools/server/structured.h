// Structured output and tool calls of `ingot serve`: the tokenizer's vocabulary as token bytes
// for constrained decoding (llm/grammar), and the chat tool-call formats.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llm/grammar/token_mask.h"
#include "tokenizer/tokenizer.h"

namespace ingot::server {

/// The bytes each id of a `vocab`-entry model vocabulary adds to the text: ByteLevel tokens are
/// mapped back through GPT-2's byte table, "<0xHH>" byte-fallback tokens to their byte, other
/// tokens are their text with "▁" as a space; special tokens and ids past the tokenizer are
/// empty (never allowed by a mask).
std::vector<std::string> token_bytes(const tokenizer::Tokenizer& tok, int64_t vocab);

}  // namespace ingot::server
