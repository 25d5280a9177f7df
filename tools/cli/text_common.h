// Tokenizers for the text commands of `ingot` (generate, chat, score, classify, embed, serve,
// tokenize, detokenize, chat-template): a checkpoint directory's tokenizer.json, or the tokenizer
// a GGUF file describes in its metadata. Built only with the tokenizer (INGOT_TOKENIZER).
#pragma once

#include <memory>
#include <string>

#include "llm/text/text.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"

namespace ingot::cli {

/// The tokenizer of a --model / --tokenizer path:
///  - a directory: its tokenizer.json with tokenizer_config.json and generation_config.json
///    (Tokenizer::from_dir);
///  - a tokenizer.json file: that file;
///  - a GGUF file: the tokenizer of its tokenizer.ggml.* metadata (special tokens, EOS/EOT ids
///    and chat template included); when the file has no tokenizer metadata, or one of a kind
///    not supported yet, the tokenizer.json in the same directory if there is one; otherwise
///    the error (IoError naming the file when it has no tokenizer at all).
std::shared_ptr<tokenizer::Tokenizer> load_tokenizer(const std::string& path);

/// llm::load_text_model with load_tokenizer: the model at `path` (a checkpoint directory or a
/// GGUF file) and its tokenizer (IoError "[text] DIR: no tokenizer.json ..." for a directory
/// without one).
llm::TextModel load_text_model(const std::string& path, const models::LoadModelOptions& opt);

}  // namespace ingot::cli
