// GGUF tokenizer metadata -> tokenizer.json. llama.cpp's converter stores the vocabulary of a
// byte-level BPE tokenizer ("gpt2") as it is in tokenizer.json (tokens already in the
// byte-to-unicode alphabet, merges as "a b") and names the pre-tokenizer's regex by a tag; the
// tags map back to the Hugging Face pre-tokenizers they were made from. A SentencePiece BPE
// vocabulary ("llama": Llama 2, Gemma) has pieces and scores but no merges; the merges are
// derived from the scores as transformers' converter derives them from the SentencePiece model.
#include "tokenizer/gguf_vocab.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

namespace {

using json = nlohmann::json;

// The Split regexes of the Llama 3 and Qwen2 tokenizer.json files.
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// llama.cpp's token types.
constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4;

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

/// A converted vocabulary: the tokenizer.json tree without model.vocab and model.merges, which
/// are the tables (as the fast reader of a tokenizer.json file gives them to the BPE model).
struct Converted {
  json tree;
  BpeTables tables;
};

json added_token(size_t id, const std::string& content, bool normalized, bool special) {
  return {{"id", static_cast<int64_t>(id)},
          {"content", content},
          {"single_word", false},
          {"lstrip", false},
          {"rstrip", false},
          {"normalized", normalized},
          {"special", special}};
}

json bpe_model(bool byte_fallback, bool ignore_merges, const json& unk) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", unk},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", byte_fallback},
          {"byte_fallback", byte_fallback},
          {"ignore_merges", ignore_merges}};
}

/// TemplateProcessing adding BOS before and EOS after each sequence (those of add_bos/add_eos
/// with an id inside the vocabulary), or null when neither is added.
json bos_eos_processor(const GgufVocab& v, const std::vector<std::string>& tokens) {
  auto token = [&](bool add, const std::optional<int32_t>& id) -> std::optional<size_t> {
    if (!add || !id || *id < 0 || static_cast<size_t>(*id) >= tokens.size()) return std::nullopt;
    return static_cast<size_t>(*id);
  };
  const std::optional<size_t> bos = token(v.add_bos, v.bos_id), eos = token(v.add_eos, v.eos_id);
  if (!bos && !eos) return nullptr;
  json special = json::object();
  auto sequence = [&](const char* name, int type_id) {
    json s = json::array();
    auto add = [&](size_t id) {
      s.push_back({{"SpecialToken", {{"id", tokens[id]}, {"type_id", type_id}}}});
      special[tokens[id]] = {
          {"id", tokens[id]}, {"ids", {static_cast<int64_t>(id)}}, {"tokens", {tokens[id]}}};
    };
    if (bos) add(*bos);
    s.push_back({{"Sequence", {{"id", name}, {"type_id", type_id}}}});
    if (eos) add(*eos);
    return s;
  };
  json single = sequence("A", 0), pair = sequence("A", 0);
  for (auto& e : sequence("B", 1)) pair.push_back(e);
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", special}};
}

/// Lists that must agree whatever the model: token types (one per token, 0..6) and valid UTF-8.
void check_lists(const GgufVocab& v, const std::string& source) {
  if (!v.token_types.empty() && v.token_types.size() != v.tokens.size())
    raise<FormatError>("[tokenizer] {}: tokenizer.ggml.token_type has {} entries for {} tokens",
                       source, v.token_types.size(), v.tokens.size());
  for (size_t i = 0; i < v.token_types.size(); ++i)
    if (v.token_types[i] < 0 || v.token_types[i] > 6)
      raise<FormatError>("[tokenizer] {}: tokenizer.ggml.token_type[{}] is {} (0..6)", source, i,
                         v.token_types[i]);
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (!utf8::is_valid(v.tokens[i]))
      raise<FormatError>(
          "[tokenizer] {}: tokenizer metadata is not valid UTF-8: tokenizer.ggml.tokens[{}]",
          source, i);
}

int32_t type_of(const GgufVocab& v, size_t i) {
  return v.token_types.empty() || v.token_types[i] == 0 ? kNormal : v.token_types[i];
}

Converted convert_gpt2(const GgufVocab& v, const std::string& source) {
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
  Converted c;
  json added = json::array();
  TokenMap seen;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t type = type_of(v, i);
    if (type == kControl || type == kUserDefined)
      added.push_back(added_token(i, v.tokens[i], type == kUserDefined, type == kControl));
    if (seen.emplace(v.tokens[i], static_cast<int32_t>(i)).second)  // a repeated token: the first
      c.tables.vocab.emplace_back(v.tokens[i], static_cast<int32_t>(i));
  }
  c.tables.merges.reserve(v.merges.size());
  for (const auto& m : v.merges) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == m.size())
      raise<FormatError>("[tokenizer] {}: tokenizer.ggml.merges entry '{}' is not \"a b\"", source,
                         m);
    c.tables.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  c.tree = {{"version", "1.0"},
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
            {"model", bpe_model(false, ignore_merges, nullptr)}};
  c.tree["post_processor"] = bos_eos_processor(v, v.tokens);
  return c;
}

}  // namespace

namespace {

// Hashes of every prefix of a string in one pass (h(s + c) = h(s) * K + c + 1, mod 2^64), so
// that the hash of any prefix or suffix of a piece costs O(1): h(s[k:]) = h(s) - h(s[:k]) K^(n-k).
constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ull;

uint64_t finish_hash(uint64_t h) {  // splitmix64's finalizer: the table uses the low bits
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

/// The pieces by content (open addressing over 8-byte slots: hash bits and id), the last id of
/// a repeated piece. Lookups take the polynomial hash of the string with the string.
class PieceIndex {
 public:
  explicit PieceIndex(const std::vector<std::string>& pieces) : pieces_(pieces) {
    size_t cap = 16;
    while (cap < pieces.size() * 2) cap *= 2;
    slots_.assign(cap, Slot{0, -1});
    mask_ = cap - 1;
    for (size_t i = 0; i < pieces.size(); ++i) {
      uint64_t h = 0;
      for (unsigned char c : pieces[i]) h = h * kHashMul + c + 1;
      const uint64_t f = finish_hash(h);
      for (size_t s = f & mask_;; s = (s + 1) & mask_) {
        Slot& slot = slots_[s];
        if (slot.id < 0 || (slot.tag == static_cast<uint32_t>(f >> 32) &&
                            pieces_[static_cast<size_t>(slot.id)] == pieces[i])) {
          slot = {static_cast<uint32_t>(f >> 32), static_cast<int32_t>(i)};
          break;
        }
      }
    }
  }
  /// The id of `s` (polynomial hash `h`), or -1.
  int32_t find(std::string_view s, uint64_t h) const {
    const uint64_t f = finish_hash(h);
    for (size_t i = f & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.tag == static_cast<uint32_t>(f >> 32) && pieces_[static_cast<size_t>(slot.id)] == s)
        return slot.id;
    }
  }

 private:
  struct Slot {
    uint32_t tag;
    int32_t id;
  };
  const std::vector<std::string>& pieces_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

/// A float's bits as an unsigned integer of the same order (-0 as +0; NaN last).
uint32_t ordered_bits(float x) {
  if (x == 0.0f) x = 0.0f;
  if (std::isnan(x)) return 0;
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> sentencepiece_merges(
    const std::vector<std::string>& pieces, const std::vector<float>& scores) {
  INGOT_ASSERT(pieces.size() == scores.size());
  const PieceIndex index(pieces);
  // Every split of every piece into two pieces of the vocabulary, ranked by (the piece's score,
  // the left part's length in characters, the right part's) descending, then piece order (a
  // piece's splits differ in the left length): the order of transformers'
  // SentencePieceExtractor, a stable sort by the first three keys of the splits listed piece
  // by piece. The three keys are packed in `key` (descending order as ascending numbers) while
  // the lengths fit 16 bits, which real pieces always do; otherwise `long_lens` is set and the
  // lengths are compared as they are.
  struct Split {
    uint64_t key;
    uint32_t piece, at;  // at: byte offset of the split in the piece
    uint32_t len_l, len_r;
  };
  const size_t n = pieces.size();
  const size_t threads =
      n < 65536 ? 1 : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  std::vector<std::vector<Split>> found(threads);
  std::vector<char> long_lens(threads, 0);
  const auto scan = [&](size_t w) {
    std::vector<Split>& out = found[w];
    out.reserve(n * 2 / threads);
    std::vector<uint64_t> pre, pow;  // prefix hashes and powers of kHashMul, by byte offset
    std::vector<uint32_t> ends;      // byte offsets where the piece's characters end
    for (size_t i = n * w / threads; i < n * (w + 1) / threads; ++i) {
      const std::string_view p = pieces[i];
      if (p.size() < 2) continue;
      pre.assign(p.size() + 1, 0);
      pow.assign(p.size() + 1, 1);
      for (size_t b = 0; b < p.size(); ++b) {
        pre[b + 1] = pre[b] * kHashMul + static_cast<unsigned char>(p[b]) + 1;
        pow[b + 1] = pow[b] * kHashMul;
      }
      ends.clear();
      for (size_t at = 0; at < p.size();) {
        at = std::min(p.size(),
                      at + static_cast<size_t>(utf8::seq_len(static_cast<uint8_t>(p[at]))));
        ends.push_back(static_cast<uint32_t>(at));
      }
      const auto chars = static_cast<uint32_t>(ends.size());
      const uint64_t score_key = ~ordered_bits(scores[i]);
      for (uint32_t k = 1; k < chars; ++k) {
        const uint32_t at = ends[k - 1];
        if (index.find(p.substr(0, at), pre[at]) < 0) continue;
        const uint64_t h_right = pre[p.size()] - pre[at] * pow[p.size() - at];
        if (index.find(p.substr(at), h_right) < 0) continue;
        const uint32_t len_r = chars - k;
        if (chars > 0xFFFF) long_lens[w] = 1;
        const uint64_t key = (score_key << 32) |
                             (static_cast<uint64_t>(0xFFFF - std::min(k, 0xFFFFu)) << 16) |
                             (0xFFFF - std::min(len_r, 0xFFFFu));
        out.push_back({key, static_cast<uint32_t>(i), at, k, len_r});
      }
    }
  };
  if (threads == 1) {
    scan(0);
  } else {
    std::vector<std::thread> pool;
    for (size_t w = 1; w < threads; ++w) pool.emplace_back(scan, w);
    scan(0);
    for (auto& t : pool) t.join();
  }
  std::vector<Split> splits = std::move(found[0]);
  for (size_t w = 1; w < threads; ++w)
    splits.insert(splits.end(), found[w].begin(), found[w].end());
  if (std::find(long_lens.begin(), long_lens.end(), 1) == long_lens.end()) {
    std::sort(splits.begin(), splits.end(), [](const Split& a, const Split& b) {
      return a.key != b.key ? a.key < b.key : a.piece < b.piece;
    });
  } else {
    std::sort(splits.begin(), splits.end(), [](const Split& a, const Split& b) {
      if ((a.key >> 32) != (b.key >> 32)) return a.key < b.key;
      if (a.len_l != b.len_l) return a.len_l > b.len_l;
      if (a.len_r != b.len_r) return a.len_r > b.len_r;
      return a.piece < b.piece;
    });
  }
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(splits.size());
  for (const Split& s : splits) {
    const std::string& p = pieces[s.piece];
    merges.emplace_back(p.substr(0, s.at), p.substr(s.at));
  }
  return merges;
}

namespace {

/// SentencePiece BPE ("llama"), as transformers' converter (GemmaConverter, LlamaConverter)
/// writes the tokenizer.json of the SentencePiece model the GGUF vocabulary came from.
Converted convert_llama(const GgufVocab& v, const std::string& source) {
  if (v.scores.size() != v.tokens.size())
    raise<FormatError>("[tokenizer] {}: tokenizer.ggml.scores has {} entries for {} tokens", source,
                       v.scores.size(), v.tokens.size());
  // The pieces as the SentencePiece model has them: llama.cpp's converter writes user-defined
  // pieces with "▁" turned back into " " ("pre-normalized"); SentencePiece pieces never hold a
  // plain space, so every " " of a user-defined piece was a "▁".
  std::vector<std::string> pieces(v.tokens);
  std::vector<float> scores(v.scores);
  json added = json::array();
  json unk = nullptr;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (std::isnan(scores[i]))
      raise<FormatError>("[tokenizer] {}: tokenizer.ggml.scores[{}] is NaN", source, i);
    const int32_t type = type_of(v, i);
    if (type != kUnknown && type != kControl && type != kUserDefined) continue;
    if (type == kUserDefined)
      for (size_t at = 0; (at = pieces[i].find(' ', at)) != std::string::npos; at += 3)
        pieces[i].replace(at, 1, kSpace);
    // SentencePiece scores control, unknown and user-defined pieces 0; llama.cpp's converter
    // overwrites the score of every added token of tokenizer_config.json with -1000, which
    // would move their merges (Gemma's runs of spaces) below the learned ones.
    scores[i] = 0.0f;
    // As transformers: unknown and control pieces are special added tokens, user-defined ones
    // plain added tokens, all matched on the text before normalization.
    added.push_back(added_token(i, pieces[i], false, type != kUserDefined));
    if (type == kUnknown && unk.is_null()) unk = pieces[i];
  }
  if (v.unk_id && *v.unk_id >= 0 && static_cast<size_t>(*v.unk_id) < pieces.size())
    unk = pieces[static_cast<size_t>(*v.unk_id)];
  Converted c;
  c.tables.merges = sentencepiece_merges(pieces, scores);
  c.tables.vocab.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i)
    c.tables.vocab.emplace_back(pieces[i], static_cast<int32_t>(i));
  const json to_meta = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}};
  json normalizer = to_meta;
  json decoders = {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                   {{"type", "ByteFallback"}},
                   {{"type", "Fuse"}}};
  if (v.add_space_prefix) {
    normalizer = {{"type", "Sequence"},
                  {"normalizers", {{{"type", "Prepend"}, {"prepend", kSpace}}, to_meta}}};
    decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  }
  c.tree = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", normalizer},
            {"pre_tokenizer", nullptr},
            {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
            {"model", bpe_model(true, false, unk)}};
  c.tree["post_processor"] = bos_eos_processor(v, pieces);
  return c;
}

Converted convert(const GgufVocab& v, const std::string& source) {
  if (v.model != "gpt2" && v.model != "llama")
    raise<Unsupported>(
        "[tokenizer] {}: tokenizer.ggml.model '{}' is not supported yet (supported: gpt2, llama)",
        source, v.model);
  check_lists(v, source);
  return v.model == "gpt2" ? convert_gpt2(v, source) : convert_llama(v, source);
}

}  // namespace

std::string gguf_vocab_to_tokenizer_json(const GgufVocab& v, const std::string& source) {
  Converted c = convert(v, source);
  json vocab = json::object();
  for (auto& [tok, id] : c.tables.vocab) vocab[tok] = id;
  json merges = json::array();
  for (auto& [a, b] : c.tables.merges) merges.push_back(json::array({a, b}));
  c.tree["model"]["vocab"] = std::move(vocab);
  c.tree["model"]["merges"] = std::move(merges);
  return dump_checked(c.tree, source);
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
            {"add_eos_token", v.add_eos},
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
  // The tree and tables go to the pipeline directly: no tokenizer.json text is written and
  // parsed again (for Gemma's 262k pieces that text is 33 MB).
  Converted conv = convert(v, source);
  auto impl = std::make_unique<Tokenizer::Impl>();
  try {
    impl->load(conv.tree, &conv.tables);
  } catch (const json::exception& e) {
    raise<FormatError>("[tokenizer] {}: {}", source, e.what());
  }
  return Tokenizer::from_impl(std::move(impl), c);
}

}  // namespace ingot::tokenizer
