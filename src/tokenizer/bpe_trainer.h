// Byte-level BPE trainer (issue 15): learns merges from a text corpus and writes a Hugging Face
// tokenizer.json (GPT-2/Llama 3 layout: Split regex + ByteLevel pre-tokenizer, ByteLevel decoder)
// and a tokenizer_config.json with a ChatML-like chat template.
//
// Id layout: the 256 byte tokens (ids 0..255, in byte order, as GPT-2's printable stand-ins),
// then one token per merge in the order learned, then the special tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/regex.h"

namespace ingot::tokenizer {

/// The Llama 3 pre-tokenizer regex (digits in groups of up to three).
extern const char* const kLlama3SplitRegex;

/// Options of BpeTrainer.
struct BpeTrainOptions {
  /// Total vocabulary: 256 bytes + merges + special tokens. Must be >= 256 + special_tokens.
  size_t vocab_size = 8192;
  /// A pair seen fewer times than this is never merged (training stops early then).
  uint64_t min_frequency = 2;
  /// Added after the merges, in this order; the first is BOS and the second EOS.
  std::vector<std::string> special_tokens = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",
                                             "<|im_end|>"};
  /// Pre-tokenizer regex (Split, Isolated).
  std::string pattern = kLlama3SplitRegex;
  /// Whether the post-processor puts BOS in front of every encoded text.
  bool add_bos = true;
};

/// What training produced.
struct BpeModel {
  std::vector<std::string> tokens;  ///< byte-level token strings by id (bytes + merges)
  std::vector<std::pair<int32_t, int32_t>> merges;  ///< merge i creates token 256 + i
  std::vector<uint64_t> merge_counts;               ///< pair frequency when merge i was chosen
  std::vector<std::string> special_tokens;          ///< ids tokens.size() + i
  std::string pattern;
  bool add_bos = true;

  /// Ids in use: tokens plus special tokens.
  size_t vocab_size() const { return tokens.size() + special_tokens.size(); }
  /// tokenizer.json text (pretty-printed).
  std::string tokenizer_json() const;
  /// tokenizer_config.json text: bos/eos tokens, add_bos_token, ChatML-like chat_template.
  std::string tokenizer_config_json() const;
  /// Writes tokenizer.json and tokenizer_config.json into `dir` (created when absent).
  void save(const std::string& dir) const;
};

/// Counts pre-tokenized words over any number of texts, then learns merges.
class BpeTrainer {
 public:
  /// Validates the options (vocab size, special tokens, pattern); throws InvalidArgument.
  explicit BpeTrainer(BpeTrainOptions opts);
  ~BpeTrainer();
  BpeTrainer(const BpeTrainer&) = delete;
  BpeTrainer& operator=(const BpeTrainer&) = delete;

  /// Adds a text: invalid UTF-8 is repaired (U+FFFD) and occurrences of the special tokens are
  /// cut out, as the trained tokenizer would treat them, before pre-tokenizing.
  void add_text(std::string_view text);
  /// Adds a UTF-8 text file, read in pieces of a few MiB cut after a newline that a pre-tokenizer
  /// match cannot cross (so the words equal those of add_text on the whole file). Throws
  /// IoError naming the file when it cannot be opened or read, or is not a regular file.
  void add_file(const std::string& path);
  /// Bytes of text added so far.
  uint64_t bytes_seen() const { return bytes_; }
  /// Distinct pre-tokenized words so far.
  size_t distinct_words() const { return words_.size(); }

  /// Learns merges by pair frequency until the vocabulary is full or no pair is seen
  /// min_frequency times. Ties go to the pair with the lower (left id, right id). Pair counts
  /// are updated incrementally for the words a merge touches. Throws InvalidArgument when no
  /// text was added. `progress` (may be empty) is called with (merges done, merges wanted).
  BpeModel train(const std::function<void(size_t, size_t)>& progress = {});

 private:
  BpeTrainOptions opts_;
  std::unordered_map<std::string, uint64_t> words_;
  uint64_t bytes_ = 0;
  std::unique_ptr<Regex> regex_;
};

/// Convenience: trains on `texts` with `opts`.
BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opts);

}  // namespace ingot::tokenizer
