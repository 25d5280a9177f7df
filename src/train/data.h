// Fine-tuning data: JSONL records ({"text"}, {"prompt","completion"}, {"messages":[...]}),
// checked line by line before training, tokenized with the model's tokenizer (chat template for
// messages) into token ids plus a loss mask, and grouped into length-sorted padded batches.
#pragma once

#include <cstdint>
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
struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
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
  /// Number of counted targets.
  int64_t tokens = 0;
};

/// Pads (with `pad_id`) the examples `idx` of `examples` to their longest length.
Batch make_batch(const std::vector<Example>& examples, const std::vector<size_t>& idx,
                 int32_t pad_id = 0);

/// The batches of one epoch: examples sorted by length, cut into groups of `batch_size`, group
/// order shuffled from (seed, epoch); the same arguments give the same batches.
std::vector<std::vector<size_t>> epoch_batches(const std::vector<Example>& examples, int batch_size,
                                               uint64_t seed, int64_t epoch, bool shuffle = true);

}  // namespace ingot::train
