// GGUF tokenizer metadata -> tokenizer.json. llama.cpp's converter stores the vocabulary of a
// byte-level BPE tokenizer as it is in tokenizer.json (tokens already in the byte-to-unicode
// alphabet, merges as "a b") and names the pre-tokenizer's regex by a tag; the tags map back to
// the Hugging Face pre-tokenizers they were made from.
#include "tokenizer/gguf_vocab.h"

#include <algorithm>

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

/// j.dump(), with invalid UTF-8 in a token or template (from the file) as a FormatError.
std::string dump_checked(const json& j, const std::string& source) {
  try {
    return j.dump();
  } catch (const json::exception& e) {
    raise<FormatError>("[tokenizer] {}: tokenizer metadata is not valid UTF-8: {}", source,
                       e.what());
  }
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
  return dump_checked(j, source);
}

namespace {

/// The token string of an id, or null when absent.
json token_or_null(const GgufVocab& v, const std::optional<int32_t>& id) {
  if (!id || *id < 0 || static_cast<size_t>(*id) >= v.tokens.size()) return nullptr;
  return v.tokens[static_cast<size_t>(*id)];
}

}  // namespace

std::string gguf_vocab_to_tokenizer_config(const GgufVocab& v) {
  json c = {{"add_bos_token", v.add_bos},
            {"add_eos_token", false},
            {"bos_token", token_or_null(v, v.bos_id)},
            {"eos_token", token_or_null(v, v.eos_id)},
            {"pad_token", token_or_null(v, v.pad_id)},
            {"unk_token", token_or_null(v, v.unk_id)}};
  if (!v.chat_template.empty()) c["chat_template"] = v.chat_template;
  return dump_checked(c, "tokenizer.chat_template");
}

std::string gguf_vocab_to_generation_config(const GgufVocab& v) {
  json eos = json::array();
  for (const auto& id : {v.eos_id, v.eot_id, v.eom_id})
    if (id && std::find(eos.begin(), eos.end(), json(*id)) == eos.end()) eos.push_back(*id);
  json g = {{"eos_token_id", eos}};
  if (v.bos_id) g["bos_token_id"] = *v.bos_id;
  if (v.pad_id) g["pad_token_id"] = *v.pad_id;
  return g.dump();
}

Tokenizer tokenizer_from_gguf_vocab(const GgufVocab& v, const std::string& source) {
  const std::pair<const char*, std::optional<int32_t>> ids[] = {
      {"bos_token_id", v.bos_id}, {"eos_token_id", v.eos_id},     {"eot_token_id", v.eot_id},
      {"eom_token_id", v.eom_id}, {"padding_token_id", v.pad_id}, {"unknown_token_id", v.unk_id}};
  for (const auto& [key, id] : ids)
    if (id && (*id < 0 || static_cast<size_t>(*id) >= v.tokens.size()))
      raise<FormatError>(
          "[tokenizer] {}: tokenizer.ggml.{} {} is outside the vocabulary ({} tokens)", source, key,
          *id, v.tokens.size());
  Tokenizer::ConfigTexts c;
  c.tokenizer_config = gguf_vocab_to_tokenizer_config(v);
  c.generation_config = gguf_vocab_to_generation_config(v);
  c.tokenizer_config_source = source + " (tokenizer.ggml.* metadata)";
  c.generation_config_source = c.tokenizer_config_source;
  return Tokenizer::from_texts(gguf_vocab_to_tokenizer_json(v, source), source, c);
}

}  // namespace ingot::tokenizer
