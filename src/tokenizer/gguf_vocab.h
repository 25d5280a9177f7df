// The tokenizer a GGUF file describes in its tokenizer.ggml.* metadata, turned into the
// equivalent tokenizer.json and loaded through the same pipeline. The tokenizer layer has no
// tensors, so the caller reads the metadata (core/io/gguf.h) into a GgufVocab.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ingot::tokenizer {

/// The tokenizer.ggml.* metadata of a GGUF file.
struct GgufVocab {
  /// tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE: Llama 2,
  /// Gemma); others are Unsupported.
  std::string model;
  /// tokenizer.ggml.pre (gpt2 only): "gpt-2"/"default", "llama-bpe" (Llama 3), "qwen2".
  std::string pre;
  /// tokenizer.ggml.tokens, token_type (0 or 1 normal, 2 unknown, 3 control, 4 user-defined,
  /// 5 unused, 6 byte), merges ("a b"; gpt2) and scores (llama: one per token, the
  /// SentencePiece piece scores the merge order derives from).
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;
  std::vector<float> scores;
  std::optional<int32_t> bos_id;
  /// tokenizer.ggml.add_bos_token and add_eos_token (read_gguf_vocab: when absent, BOS is
  /// added for llama vocabularies, as llama.cpp does, and EOS never).
  bool add_bos = false;
  bool add_eos = false;
  /// tokenizer.ggml.add_space_prefix (llama only): "▁" prepended to the text, as SentencePiece's
  /// add_dummy_prefix (Llama 2 true, Gemma false; llama.cpp's default when absent: true).
  bool add_space_prefix = true;
  /// tokenizer.ggml.eos_token_id, eot_token_id, eom_token_id (end of turn / message: where
  /// generation stops too), padding_token_id and unknown_token_id.
  std::optional<int32_t> eos_id, eot_id, eom_id, pad_id, unk_id;
  /// tokenizer.chat_template ("" when absent).
  std::string chat_template;
};

/// tokenizer.json text equivalent to `v`. gpt2: model BPE over the tokens and merges, the
/// pre-tokenizer `pre` names, control and user-defined tokens as added tokens. llama: what
/// transformers' converter makes of the SentencePiece model (BPE with byte fallback, merges
/// derived from the scores, spaces as "▁", control/unknown/user-defined pieces as added
/// tokens). BOS/EOS added when add_bos/add_eos. Throws Unsupported "[tokenizer] <source>: ..."
/// for other models and pre-tokenizers, FormatError naming the key for inconsistent lists.
std::string gguf_vocab_to_tokenizer_json(const GgufVocab& v, const std::string& source);

/// The merges, in rank order, that transformers derives from a SentencePiece BPE model with
/// these pieces and scores (one per piece): every split of a piece into two pieces of the
/// vocabulary, ranked by the piece's score, then the left and right parts' lengths in
/// characters (all descending), then piece order and the parts' ids.
std::vector<std::pair<std::string, std::string>> sentencepiece_merges(
    const std::vector<std::string>& pieces, const std::vector<float>& scores);

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
