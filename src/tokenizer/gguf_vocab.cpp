// GGUF tokenizer metadata -> tokenizer.json. llama.cpp's converter stores the vocabulary of a
// byte-level BPE tokenizer as it is in tokenizer.json (tokens already in the byte-to-unicode
// alphabet, merges as "a b") and names the pre-tokenizer's regex by a tag; the tags map back to
// the Hugging Face pre-tokenizers they were made from.
#include "tokenizer/gguf_vocab.h"

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace ingot::tokenizer {

namespace {

using json = nlohmann::json;

// The Split regexes of the Llama 3 and Qwen2 tokenizer.json files.
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json split_then_bytelevel(const char* regex) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", regex}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", false}}}}};
}

}  // namespace

std::string gguf_vocab_to_tokenizer_json(const GgufVocab& v, const std::string& source) {
  if (v.model != "gpt2")
    raise<Unsupported>(
        "[tokenizer] {}: tokenizer.ggml.model '{}' is not supported yet (supported: gpt2)", source,
        v.model);
  json pre;
  json normalizer = nullptr;
  bool ignore_merges = false;
  if (v.pre.empty() || v.pre == "default" || v.pre == "gpt-2") {
    pre = {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", true}};
  } else if (v.pre == "llama-bpe" || v.pre == "llama3") {
    pre = split_then_bytelevel(kLlama3Regex);
    ignore_merges = true;  // as Llama 3's tokenizer.json
  } else if (v.pre == "qwen2") {
    pre = split_then_bytelevel(kQwen2Regex);
    normalizer = {{"type", "NFC"}};  // Qwen2/Qwen3 tokenizer.json normalize to NFC first
  } else {
    raise<Unsupported>(
        "[tokenizer] {}: tokenizer.ggml.pre '{}' is not supported (supported: gpt-2, default, "
        "llama-bpe, qwen2)",
        source, v.pre);
  }
  if (!v.token_types.empty() && v.token_types.size() != v.tokens.size())
    raise<FormatError>("[tokenizer] {}: tokenizer.ggml.token_type has {} entries for {} tokens",
                       source, v.token_types.size(), v.tokens.size());
  json vocab = json::object();
  json added = json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t type = v.token_types.empty() ? 1 : v.token_types[i];
    const auto id = static_cast<int64_t>(i);
    if (type == 3 || type == 4)
      added.push_back({{"id", id},
                       {"content", v.tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", type == 4},
                       {"special", type == 3}});
    if (!vocab.contains(v.tokens[i])) vocab[v.tokens[i]] = id;
  }
  json merges = json::array();
  for (const auto& m : v.merges) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == m.size())
      raise<FormatError>("[tokenizer] {}: tokenizer.ggml.merges entry '{}' is not \"a b\"", source,
                         m);
    merges.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
  }
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", normalizer},
            {"pre_tokenizer", pre},
            {"decoder",
             {{"type", "ByteLevel"},
              {"add_prefix_space", true},
              {"trim_offsets", true},
              {"use_regex", true}}},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", ignore_merges},
              {"vocab", vocab},
              {"merges", merges}}}};
  j["post_processor"] = nullptr;
  if (v.add_bos && v.bos_id && *v.bos_id >= 0 && static_cast<size_t>(*v.bos_id) < v.tokens.size()) {
    const std::string& bos = v.tokens[static_cast<size_t>(*v.bos_id)];
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 0}}}}}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {*v.bos_id}}, {"tokens", {bos}}}}}}};
  }
  return j.dump();
}

Tokenizer tokenizer_from_gguf_vocab(const GgufVocab& v, const std::string& source) {
  return Tokenizer::from_json(gguf_vocab_to_tokenizer_json(v, source));
}

}  // namespace ingot::tokenizer
