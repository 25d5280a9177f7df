// Fine-tuning data: JSONL records ({"text"}, {"prompt","completion"}, {"messages":[...]}),
// checked line by line before training, tokenized with the model's tokenizer (chat template for
// messages) into token ids plus a loss mask, and grouped into length-sorted padded batches.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/array.h"

namespace ingot::tokenizer {
class Tokenizer;
}

namespace ingot::train {

/// One JSONL line.
struct Record {
  enum class Kind { text, prompt_completion, chat } kind = Kind::text;
  std::string text, prompt, completion;
  /// The "messages" array as JSON text (chat).
  std::string messages;
  size_t line = 0;
};

/// Reads every line of a JSONL file (blank lines skipped). All lines are checked first; the
/// malformed ones (not JSON, not an object, no known format, wrong types, an empty text, a
/// message without a string role/content) are reported together in one FormatError
/// "[data] FILE:LINE: ..." (at most 20 listed). IoError when the file cannot be read.
std::vector<Record> read_jsonl(const std::string& path);

/// A tokenized example: ids and, per position t, whether predicting ids[t] counts in the loss.
/// A packed row (pack_examples) also says which example each token belongs to.
struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
  /// Per token, the index of its example inside a packed row (0, 1, ...); empty = one example.
  std::vector<int32_t> segments;
};

/// How records become examples.
struct TokenizeOptions {
  /// Loss only on the completion (prompt/completion) or assistant messages (chat).
  bool mask_prompt = false;
  /// Append the tokenizer's first EOS id to text and prompt/completion examples.
  bool add_eos = true;
  /// Examples longer than this are truncated (0 = no limit).
  int64_t max_seq_len = 0;
};

/// Tokenizes records (text and prompt/completion with special tokens such as BOS added; chat
/// rendered with the tokenizer's chat template, then encoded without adding them again).
/// FormatError "[data] SOURCE:LINE: ..." when a chat template fails or an example has fewer
/// than two tokens or no position in the loss.
std::vector<Example> tokenize(const std::vector<Record>& records, const tokenizer::Tokenizer& tok,
                              const TokenizeOptions& opt, const std::string& source);

/// A padded batch for next-token training: inputs [B, L-1] int32, targets [B, L-1] int32 and
/// mask [B, L-1] float32 (1 where the target counts; padding and masked prompts are 0).
struct Batch {
  Array inputs, targets, mask;
  /// Packed rows only: the attention mask [B, 1, L-1, L-1] boolean (true = attend), causal
  /// and block-diagonal (a token sees the earlier tokens of its own example only; padding sees
  /// padding). Absent: plain causal attention.
  std::optional<Array> attention;
  /// Number of counted targets.
  int64_t tokens = 0;
};

/// Pads (with `pad_id`) the examples `idx` of `examples` to their longest length. When one of
/// them is a packed row (segments set), the batch gets the block-diagonal attention mask.
Batch make_batch(const std::vector<Example>& examples, const std::vector<size_t>& idx,
                 int32_t pad_id = 0);

/// Packs examples into rows of at most `max_tokens` tokens: in their order, each row takes
/// examples while the next one fits (greedy, deterministic), their ids concatenated, each
/// example's loss mask kept except on its first token (the position the previous example's
/// last token would predict), `segments` telling them apart. A row of one example equals the
/// example. InvalidArgument for an example longer than `max_tokens` or a non-positive limit.
std::vector<Example> pack_examples(const std::vector<Example>& examples, int64_t max_tokens);

/// The batches of one epoch: examples sorted by length, cut into groups of `batch_size`, group
/// order shuffled from (seed, epoch); the same arguments give the same batches.
std::vector<std::vector<size_t>> epoch_batches(const std::vector<Example>& examples, int batch_size,
                                               uint64_t seed, int64_t epoch, bool shuffle = true);

}  // namespace ingot::train
