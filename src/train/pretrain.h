// Pretraining of a new model from a config (`ingot train`): the corpus (JSONL {"text"} lines or
// plain text with blank-line separated documents), long documents split into rows that fit,
// the tokenizer checked against the config, and the directory a run's checkpoints copy their
// config and tokenizer files from. The loop itself is the full fine-tuning Trainer over a
// model from models::init_model, with packing on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "models/config.h"
#include "train/data.h"

namespace ingot::tokenizer {
class Tokenizer;
}

namespace ingot::train {

/// The documents of a pretraining corpus as text records. A path ending in ".txt" is plain
/// text: documents are separated by blank lines (whitespace only), the lines of one joined with
/// "\n", each record's line its first line. Anything else is JSONL read by read_jsonl (malformed
/// lines reported together as "[data] FILE:LINE: ..."), where every line must be {"text": ...}:
/// FormatError naming FILE:LINE of the first other one. IoError when the file cannot be read;
/// FormatError when it holds no document.
std::vector<Record> read_corpus(const std::string& path);

/// Examples longer than `max_tokens` split into pieces of at most `max_tokens` tokens, each
/// starting on the last token of the previous piece (which is out of its loss): every
/// next-token prediction of the document is kept exactly once. Shorter examples are unchanged.
/// InvalidArgument for max_tokens < 2.
std::vector<Example> split_long_examples(const std::vector<Example>& examples, int64_t max_tokens);

/// Checks that tokenizer `tok` (from `tokenizer_dir`, for messages) fits model config `c`: its
/// vocabulary (added tokens included) is at most c.vocab_size, and its BOS / EOS tokens, where
/// both sides name them, are the config's bos_token_id / one of its eos_token_id.
/// InvalidArgument naming both files otherwise.
void check_tokenizer(const models::ModelConfig& c, const tokenizer::Tokenizer& tok,
                     const std::string& tokenizer_dir);

/// The config.json text of a pretrained checkpoint stored in `dtype`: the JSON of the file at
/// `config_path` with "torch_dtype" and "dtype" set to dtype's name and "architectures" filled
/// in from model_type when absent (LlamaForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM).
std::string pretrained_config_json(const std::string& config_path, Dtype dtype);

/// Writes DIR/config.json (pretrained_config_json) and copies the tokenizer files of
/// `tokenizer_dir` (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
/// chat_template.jinja, where present; tokenizer.json is required) into DIR: the base
/// directory (TrainOptions::base_dir) of a pretraining run. IoError naming what is missing or
/// cannot be written.
void write_pretrain_base(const std::string& config_path, const std::string& tokenizer_dir,
                         Dtype dtype, const std::string& dir);

}  // namespace ingot::train
