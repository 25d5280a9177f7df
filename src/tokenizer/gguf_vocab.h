// The tokenizer a GGUF file describes in its tokenizer.ggml.* metadata, turned into the
// equivalent tokenizer.json and loaded through the same pipeline. The tokenizer layer has no
// tensors, so the caller reads the metadata (core/io/gguf.h) into a GgufVocab.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ingot::tokenizer {

/// The tokenizer.ggml.* metadata of a GGUF file.
struct GgufVocab {
  /// tokenizer.ggml.model: "gpt2" (byte-level BPE) is supported; "llama" (SentencePiece) not yet.
  std::string model;
  /// tokenizer.ggml.pre: "gpt-2"/"default", "llama-bpe" (Llama 3), "qwen2".
  std::string pre;
  /// tokenizer.ggml.tokens, token_type (1 normal, 2 unknown, 3 control, 4 user-defined,
  /// 5 unused, 6 byte) and merges ("a b").
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;
  std::optional<int32_t> bos_id;
  /// tokenizer.ggml.add_bos_token.
  bool add_bos = false;
  /// tokenizer.ggml.eos_token_id, eot_token_id, eom_token_id (end of turn / message: where
  /// generation stops too), padding_token_id and unknown_token_id.
  std::optional<int32_t> eos_id, eot_id, eom_id, pad_id, unk_id;
  /// tokenizer.chat_template ("" when absent).
  std::string chat_template;
};

/// tokenizer.json text equivalent to `v` (model BPE over the tokens and merges, the
/// pre-tokenizer `pre` names, control and user-defined tokens as added tokens, BOS prepended
/// when add_bos). Throws Unsupported "[tokenizer] <source>: ..." for other models and
/// pre-tokenizers, FormatError for inconsistent lists.
std::string gguf_vocab_to_tokenizer_json(const GgufVocab& v, const std::string& source);

/// tokenizer_config.json text of `v`: bos/eos/pad/unk tokens, add_bos_token, chat_template.
std::string gguf_vocab_to_tokenizer_config(const GgufVocab& v);
/// generation_config.json text of `v`: eos_token_id = [eos, eot, eom] (those present,
/// distinct), bos_token_id, pad_token_id.
std::string gguf_vocab_to_generation_config(const GgufVocab& v);

/// The tokenizer of gguf_vocab_to_tokenizer_json(v) with the special tokens and chat template
/// of the two configs above (as Tokenizer::from_dir would load the three files). Ids outside
/// the vocabulary are FormatErrors naming the key.
Tokenizer tokenizer_from_gguf_vocab(const GgufVocab& v, const std::string& source);

}  // namespace ingot::tokenizer
