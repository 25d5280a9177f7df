// Byte-level BPE training: words counted once per distinct pre-tokenized string, pair counts kept
// in a hash map with a lazily invalidated max-heap, and each merge touching only the words that
// contain its pair (an index pair -> words, extended as merges create new pairs).
#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <queue>

#include <nlohmann/json.hpp>

#include "tokenizer/pipeline.h"
#include "util/error.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

const char* const kLlama3SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
int32_t key_left(uint64_t k) {
  return static_cast<int32_t>(k >> 32);
}
int32_t key_right(uint64_t k) {
  return static_cast<int32_t>(k & 0xffffffffu);
}

/// A heap entry: a pair's count when pushed (stale when it differs from the current count).
struct Entry {
  uint64_t count;
  uint64_t key;
};
/// Max count first; on equal counts the lower (left id, right id), i.e. the lower key.
struct EntryLess {
  bool operator()(const Entry& x, const Entry& y) const {
    if (x.count != y.count) return x.count < y.count;
    return x.key > y.key;
  }
};

struct Word {
  std::vector<int32_t> syms;
  uint64_t count;
};

}  // namespace

BpeTrainer::BpeTrainer(BpeTrainOptions opts) : opts_(std::move(opts)) {
  if (opts_.special_tokens.size() < 2)
    raise<InvalidArgument>(
        "[bpe-train] need at least two special tokens (BOS and EOS, in that order), got {}",
        opts_.special_tokens.size());
  for (size_t i = 0; i < opts_.special_tokens.size(); ++i) {
    const std::string& s = opts_.special_tokens[i];
    if (s.empty()) raise<InvalidArgument>("[bpe-train] special token #{} is empty", i);
    if (utf8::to_valid_lossy(s) != s)
      raise<InvalidArgument>("[bpe-train] special token #{} is not valid UTF-8", i);
    for (size_t j = 0; j < i; ++j)
      if (opts_.special_tokens[j] == s)
        raise<InvalidArgument>("[bpe-train] special token '{}' is given twice", s);
  }
  const size_t min_vocab = 256 + opts_.special_tokens.size();
  if (opts_.vocab_size < min_vocab)
    raise<InvalidArgument>(
        "[bpe-train] vocab size {} is smaller than the 256 byte tokens plus {} special tokens "
        "(at least {})",
        opts_.vocab_size, opts_.special_tokens.size(), min_vocab);
  if (opts_.vocab_size > (size_t{1} << 30))
    raise<InvalidArgument>("[bpe-train] vocab size {} is too large", opts_.vocab_size);
  if (opts_.min_frequency == 0) opts_.min_frequency = 1;
  regex_ = std::make_unique<Regex>(opts_.pattern);
}

BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_text(std::string_view text) {
  bytes_ += text.size();
  const std::string valid = utf8::to_valid_lossy(text);
  auto count_segment = [&](std::string_view seg) {
    size_t prev = 0;
    auto add = [&](size_t b, size_t e) {
      if (e > b) ++words_[std::string(seg.substr(b, e - b))];
    };
    for (auto [b, e] : regex_->find_all(seg)) {
      add(prev, b);  // text between matches is a piece too (Split, Isolated)
      add(b, e);
      prev = e;
    }
    add(prev, seg.size());
  };
  // Special tokens are matched before pre-tokenizing when encoding: cut them out here too.
  std::string_view v = valid;
  size_t pos = 0;
  while (pos < v.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    for (const auto& s : opts_.special_tokens) {
      size_t f = v.find(s, pos);
      if (f < best || (f == best && f != std::string_view::npos && s.size() > best_len)) {
        best = f;
        best_len = s.size();
      }
    }
    if (best == std::string_view::npos) {
      count_segment(v.substr(pos));
      break;
    }
    count_segment(v.substr(pos, best - pos));
    pos = best + best_len;
  }
}

void BpeTrainer::add_file(const std::string& path) {
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st))
    raise<IoError>("[bpe-train] cannot read '{}': no such file", path);
  if (!std::filesystem::is_regular_file(st))
    raise<IoError>("[bpe-train] cannot read '{}': not a regular file", path);
  std::ifstream f(path, std::ios::binary);
  if (!f) raise<IoError>("[bpe-train] cannot open '{}'", path);
  constexpr size_t kChunk = size_t{4} << 20;
  std::string buf;
  std::vector<char> block(kChunk);
  while (true) {
    f.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto got = static_cast<size_t>(f.gcount());
    if (f.bad()) raise<IoError>("[bpe-train] error reading '{}'", path);
    buf.append(block.data(), got);
    if (got == 0 || f.eof()) break;
    // Cut after a '\n' not followed by '\r' or '\n': no match of the Split regex spans it.
    size_t cut = std::string::npos;
    for (size_t i = buf.size() - 1; i > 0; --i)
      if (buf[i - 1] == '\n' && buf[i] != '\n' && buf[i] != '\r') {
        cut = i;
        break;
      }
    if (cut == std::string::npos) continue;
    add_text(std::string_view(buf).substr(0, cut));
    buf.erase(0, cut);
  }
  if (!buf.empty()) add_text(buf);
}

BpeModel BpeTrainer::train(const std::function<void(size_t, size_t)>& progress) {
  if (words_.empty())
    raise<InvalidArgument>(
        "[bpe-train] no text to train on (the data is empty or holds only special tokens)");
  BpeModel m;
  m.pattern = opts_.pattern;
  m.add_bos = opts_.add_bos;
  m.special_tokens = opts_.special_tokens;
  const auto& b2u = bytes_to_unicode();
  std::unordered_map<std::string, int32_t> ids;
  for (int b = 0; b < 256; ++b) {
    m.tokens.push_back(b2u[b]);
    ids.emplace(b2u[b], b);
  }
  const size_t want_tokens = opts_.vocab_size - opts_.special_tokens.size();

  // Words in a fixed order (by string), so training does not depend on hash iteration order.
  std::vector<std::pair<std::string, uint64_t>> sorted(words_.begin(), words_.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (auto& [s, c] : sorted) {
    Word w{{}, c};
    w.syms.reserve(s.size());
    for (unsigned char ch : s) w.syms.push_back(ch);
    words.push_back(std::move(w));
  }
  sorted.clear();

  std::unordered_map<uint64_t, uint64_t> counts;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where;
  for (uint32_t wi = 0; wi < words.size(); ++wi) {
    const Word& w = words[wi];
    for (size_t i = 0; i + 1 < w.syms.size(); ++i) {
      uint64_t k = pair_key(w.syms[i], w.syms[i + 1]);
      counts[k] += w.count;
      auto& list = where[k];
      if (list.empty() || list.back() != wi) list.push_back(wi);
    }
  }
  std::priority_queue<Entry, std::vector<Entry>, EntryLess> heap;
  for (auto [k, c] : counts) heap.push({c, k});

  const size_t merges_wanted = want_tokens - m.tokens.size();
  std::vector<uint64_t> grown;  // pairs with the new token, to push after a merge
  while (m.tokens.size() < want_tokens && !heap.empty()) {
    Entry e = heap.top();
    heap.pop();
    auto it = counts.find(e.key);
    const uint64_t cur = it == counts.end() ? 0 : it->second;
    if (cur != e.count) {  // stale: the count went down since (or the pair is gone)
      if (cur > 0) heap.push({cur, e.key});
      continue;
    }
    if (cur < opts_.min_frequency) break;
    const int32_t a = key_left(e.key), b = key_right(e.key);
    std::string merged = m.tokens[a] + m.tokens[b];
    int32_t new_id;
    if (auto f = ids.find(merged); f != ids.end()) {
      new_id = f->second;  // the same string from another pair: one token, two merges
    } else {
      new_id = static_cast<int32_t>(m.tokens.size());
      m.tokens.push_back(merged);
      ids.emplace(std::move(merged), new_id);
    }
    m.merges.emplace_back(a, b);
    m.merge_counts.push_back(cur);

    std::vector<uint32_t> list = std::move(where[e.key]);
    where.erase(e.key);
    grown.clear();
    for (uint32_t wi : list) {
      Word& w = words[wi];
      auto& s = w.syms;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;  // stale entry: an earlier merge consumed the pair in this word
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        auto c = counts.find(pair_key(s[i], s[i + 1]));
        c->second -= w.count;
        if (c->second == 0) counts.erase(c);
      }
      size_t out = 0;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[out++] = new_id;
          i += 2;
        } else {
          s[out++] = s[i++];
        }
      }
      s.resize(out);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        uint64_t k = pair_key(s[i], s[i + 1]);
        counts[k] += w.count;
        if (s[i] == new_id || s[i + 1] == new_id) {
          auto& l = where[k];
          if (l.empty() || l.back() != wi) l.push_back(wi);
          grown.push_back(k);
        }
      }
    }
    std::sort(grown.begin(), grown.end());
    grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
    for (uint64_t k : grown) heap.push({counts[k], k});
    if (progress && m.merges.size() % 1000 == 0) progress(m.tokens.size() - 256, merges_wanted);
  }
  if (progress) progress(m.tokens.size() - 256, merges_wanted);
  return m;
}

std::string BpeModel::tokenizer_json() const {
  using json = nlohmann::json;
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int64_t>(i);
  json merges_j = json::array();
  for (auto [a, b] : merges) merges_j.push_back(json::array({tokens[a], tokens[b]}));
  json added = json::array();
  for (size_t i = 0; i < special_tokens.size(); ++i)
    added.push_back({{"id", tokens.size() + i},
                     {"content", special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  json pre = {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Split"},
                 {"pattern", {{"Regex", pattern}}},
                 {"behavior", "Isolated"},
                 {"invert", false}},
                {{"type", "ByteLevel"},
                 {"add_prefix_space", false},
                 {"trim_offsets", true},
                 {"use_regex", false}}}}};
  json post;
  if (add_bos) {
    const std::string& bos = special_tokens.at(0);
    const int64_t bos_id = static_cast<int64_t>(tokens.size());
    auto special = [&] { return json{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}; };
    auto seq = [](const char* id, int t) {
      return json{{"Sequence", {{"id", id}, {"type_id", t}}}};
    };
    post = {
        {"type", "TemplateProcessing"},
        {"single", {special(), seq("A", 0)}},
        {"pair", {special(), seq("A", 0), special(), seq("B", 1)}},
        {"special_tokens",
         {{bos, {{"id", bos}, {"ids", json::array({bos_id})}, {"tokens", json::array({bos})}}}}}};
  } else {
    post = {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", false},
            {"use_regex", true}};
  }
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", pre},
            {"post_processor", post},
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
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", merges_j}}}};
  return j.dump(2) + "\n";
}

std::string BpeModel::tokenizer_config_json() const {
  using json = nlohmann::json;
  json decoder = json::object();
  for (size_t i = 0; i < special_tokens.size(); ++i)
    decoder[std::to_string(tokens.size() + i)] = {
        {"content", special_tokens[i]}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
        {"single_word", false},         {"special", true}};
  json j = {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"bos_token", special_tokens.at(0)},
            {"eos_token", special_tokens.at(1)},
            {"add_bos_token", add_bos},
            {"add_eos_token", false},
            {"clean_up_tokenization_spaces", false},
            {"added_tokens_decoder", decoder}};
  const bool chatml = std::count(special_tokens.begin(), special_tokens.end(), "<|im_start|>") &&
                      std::count(special_tokens.begin(), special_tokens.end(), "<|im_end|>");
  if (chatml)
    j["chat_template"] =
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  return j.dump(2) + "\n";
}

void BpeModel::save(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) raise<IoError>("[bpe-train] cannot create directory '{}': {}", dir, ec.message());
  auto write = [&](const char* name, const std::string& text) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    std::ofstream f(path, std::ios::binary);
    if (f) f.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!f) raise<IoError>("[bpe-train] cannot write '{}'", path);
  };
  write("tokenizer.json", tokenizer_json());
  write("tokenizer_config.json", tokenizer_config_json());
}

BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opts) {
  BpeTrainer t(opts);
  for (const auto& s : texts) t.add_text(s);
  return t.train();
}

}  // namespace ingot::tokenizer
