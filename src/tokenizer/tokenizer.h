// Hugging Face tokenizer.json pipeline (DESIGN.md §5): added tokens, normalizer, pre-tokenizer,
// BPE model, post-processor and decoder, agreeing with the `tokenizers` library token for token.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ingot::tokenizer {

/// Options of Tokenizer::encode.
struct EncodeOptions {
  bool add_special_tokens = true;  ///< apply the post-processor's template (BOS etc.)
};

/// Options of Tokenizer::decode.
struct DecodeOptions {
  bool skip_special_tokens = false;  ///< drop ids of special added tokens
};

/// BOS/EOS/PAD/UNK as tokenizer_config.json and generation_config.json declare them.
struct SpecialTokens {
  std::optional<int32_t> bos_id, pad_id, unk_id;
  std::vector<int32_t> eos_ids;  ///< generation_config's list first, then tokenizer_config's
  std::string bos_token, eos_token, pad_token, unk_token;  ///< "" when not set
  bool add_bos_token = false;  ///< tokenizer_config's add_bos_token (informational)
  bool add_eos_token = false;  ///< tokenizer_config's add_eos_token (informational)
};

/// A loaded tokenizer. Immutable after loading; encode/decode are safe to call concurrently.
class Tokenizer {
 public:
  /// Loads `dir`/tokenizer.json plus, when present, tokenizer_config.json and
  /// generation_config.json. `dir` may also name a tokenizer.json file directly. A large
  /// tokenizer.json goes through the per-user load cache (tokenizer_cache.h, docs/tokenizer.md).
  static Tokenizer from_dir(const std::string& dir);
  /// Loads a tokenizer.json given as text (no config files; never the load cache).
  static Tokenizer from_json(std::string_view json_text);
  /// The texts of the files from_dir reads besides tokenizer.json (nullopt: absent), and the
  /// names errors give them.
  struct ConfigTexts {
    std::optional<std::string> tokenizer_config, chat_template, generation_config;
    std::string tokenizer_config_source = "tokenizer_config.json";
    std::string generation_config_source = "generation_config.json";
  };
  /// Loads a tokenizer.json given as text (`source` names it in errors) with the config texts
  /// `c`, exactly as from_dir does with the files (e.g. a tokenizer described by GGUF metadata).
  static Tokenizer from_texts(std::string_view tokenizer_json, const std::string& source,
                              const ConfigTexts& c);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// Encodes UTF-8 text. Invalid UTF-8 is first repaired: each maximal invalid subpart becomes
  /// U+FFFD (as Rust's from_utf8_lossy), so arbitrary bytes never fail.
  std::vector<int32_t> encode(std::string_view text, EncodeOptions opts = {}) const;
  /// Decodes ids to UTF-8 text as `tokenizers`' decode does; unknown ids are skipped.
  std::string decode(const std::vector<int32_t>& ids, DecodeOptions opts = {}) const;

  /// The token's string, or nullopt for an id outside the vocabulary.
  std::optional<std::string> id_to_token(int32_t id) const;
  /// The id of a token string (vocabulary or added token), or nullopt.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  /// One past the largest id (vocabulary and added tokens).
  int32_t vocab_size() const;
  /// True for ids of added tokens marked special.
  bool is_special(int32_t id) const;

  /// Special tokens from the config files (empty when loaded from_json).
  const SpecialTokens& special_tokens() const;
  /// The chat template of tokenizer_config.json or chat_template.jinja ("" when none).
  const std::string& chat_template() const;
  /// The raw tokenizer_config.json text ("{}" when absent).
  const std::string& config_json() const;

  struct Impl;
  /// Internal access for the streaming decoder.
  const Impl& impl() const { return *impl_; }
  /// Internal: a pipeline built in code (tokenizer_impl.h; e.g. from GGUF metadata without a
  /// tokenizer.json text) with the config texts `c` applied exactly as from_texts does.
  static Tokenizer from_impl(std::unique_ptr<Impl> impl, const ConfigTexts& c);

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Incremental detokenizer: feed ids one at a time; pieces never split a UTF-8 character and
/// their concatenation (plus finish()) equals decode() of all ids.
class StreamDecoder {
 public:
  /// Borrows `tok`, which must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tok, DecodeOptions opts = {});
  /// Adds one id; returns the newly completed text ("" while a character is incomplete).
  std::string step(int32_t id);
  /// Returns the text still held back (e.g. an incomplete character at the end) and resets.
  std::string finish();

 private:
  const Tokenizer* tok_;
  DecodeOptions opts_;
  std::vector<int32_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
};

}  // namespace ingot::tokenizer
