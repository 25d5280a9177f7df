// Pretraining data and files (see train/pretrain.h).
#include "train/pretrain.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ingot::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

bool blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string::npos;
}

std::vector<Record> read_text_documents(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) raise<IoError>("[data] cannot open {}", path);
  std::vector<Record> out;
  Record doc;
  bool open = false;
  size_t n = 0;
  auto close = [&] {
    if (open) out.push_back(std::move(doc));
    doc = Record{};
    open = false;
  };
  for (std::string line; std::getline(f, line);) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (blank(line)) {
      close();
      continue;
    }
    if (!open) {
      doc.kind = Record::Kind::text;
      doc.line = n;
      open = true;
    } else {
      doc.text += "\n";
    }
    doc.text += line;
  }
  if (f.bad()) raise<IoError>("[data] cannot read {}", path);
  close();
  return out;
}

}  // namespace

std::vector<Record> read_corpus(const std::string& path) {
  std::vector<Record> r;
  if (fs::path(path).extension() == ".txt") {
    r = read_text_documents(path);
  } else {
    r = read_jsonl(path);
    for (const auto& rec : r)
      if (rec.kind != Record::Kind::text)
        raise<FormatError>(
            "[data] {}:{}: pretraining takes {{\"text\": ...}} lines, this one is {}", path,
            rec.line, rec.kind == Record::Kind::chat ? "a chat" : "a prompt/completion");
  }
  if (r.empty()) raise<FormatError>("[data] {}: no documents", path);
  return r;
}

std::vector<Example> split_long_examples(const std::vector<Example>& examples, int64_t max_tokens) {
  if (max_tokens < 2)
    raise("[data] pieces of {} tokens: the length must be at least 2", max_tokens);
  const size_t l = static_cast<size_t>(max_tokens);
  std::vector<Example> out;
  for (const auto& e : examples) {
    if (e.ids.size() <= l) {
      out.push_back(e);
      continue;
    }
    // Piece k covers [k (l-1), k (l-1) + l): consecutive pieces share one token.
    for (size_t start = 0; start + 1 < e.ids.size(); start += l - 1) {
      const size_t end = std::min(e.ids.size(), start + l);
      Example p;
      p.ids.assign(e.ids.begin() + static_cast<std::ptrdiff_t>(start),
                   e.ids.begin() + static_cast<std::ptrdiff_t>(end));
      p.loss_mask.assign(e.loss_mask.begin() + static_cast<std::ptrdiff_t>(start),
                         e.loss_mask.begin() + static_cast<std::ptrdiff_t>(end));
      if (start > 0) p.loss_mask[0] = 0;  // predicted in the previous piece
      out.push_back(std::move(p));
      if (end == e.ids.size()) break;
    }
  }
  return out;
}

void check_tokenizer(const models::ModelConfig& c, const tokenizer::Tokenizer& tok,
                     const std::string& tokenizer_dir) {
  const std::string tj = (fs::path(tokenizer_dir) / "tokenizer.json").string();
  if (tok.vocab_size() > c.vocab_size)
    raise(
        "[train] the tokenizer {} has {} tokens, more than the vocab_size {} of {}: raise "
        "vocab_size in the config, or train a smaller tokenizer",
        tj, tok.vocab_size(), c.vocab_size, c.source);
  const auto& st = tok.special_tokens();
  if (c.bos_token_id && !st.bos_token.empty()) {
    auto id = tok.token_to_id(st.bos_token);
    if (id && *id != *c.bos_token_id)
      raise("[train] bos_token_id {} of {} is not the tokenizer's BOS '{}' (id {}) of {}",
            *c.bos_token_id, c.source, st.bos_token, *id, tokenizer_dir);
  }
  if (!c.eos_token_ids.empty() && !st.eos_token.empty()) {
    auto id = tok.token_to_id(st.eos_token);
    if (id &&
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end())
      raise("[train] eos_token_id of {} does not include the tokenizer's EOS '{}' (id {}) of {}",
            c.source, st.eos_token, *id, tokenizer_dir);
  }
}

std::string pretrained_config_json(const std::string& config_path, Dtype dtype) {
  std::string path = config_path;
  if (fs::is_directory(path)) path = (fs::path(path) / "config.json").string();
  std::ifstream f(path);
  if (!f) raise<IoError>("[config] cannot open {}", path);
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    raise<FormatError>("[config] {}: {}", path, e.what());
  }
  if (!j.is_object()) raise<FormatError>("[config] {}: not a JSON object", path);
  j["torch_dtype"] = dtype_name(dtype);
  j["dtype"] = dtype_name(dtype);
  if (!j.contains("architectures") && j.contains("model_type") && j["model_type"].is_string()) {
    const std::string t = j["model_type"].get<std::string>();
    if (t == "llama") j["architectures"] = {"LlamaForCausalLM"};
    if (t == "qwen3") j["architectures"] = {"Qwen3ForCausalLM"};
    if (t == "gemma3_text") j["architectures"] = {"Gemma3ForCausalLM"};
  }
  return j.dump(2) + "\n";
}

void write_pretrain_base(const std::string& config_path, const std::string& tokenizer_dir,
                         Dtype dtype, const std::string& dir) {
  const fs::path tj = fs::path(tokenizer_dir) / "tokenizer.json";
  if (!fs::is_regular_file(tj)) raise<IoError>("[train] {}: no tokenizer.json", tokenizer_dir);
  const std::string config = pretrained_config_json(config_path, dtype);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) raise<IoError>("[train] cannot create {}: {}", dir, ec.message());
  const std::string out = (fs::path(dir) / "config.json").string();
  std::ofstream f(out, std::ios::binary);
  f << config;
  f.close();
  if (!f) raise<IoError>("[train] cannot write {}", out);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "chat_template.jinja"}) {
    const fs::path from = fs::path(tokenizer_dir) / name;
    if (!fs::exists(from)) continue;
    fs::copy_file(from, fs::path(dir) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) raise<IoError>("[train] cannot copy {} to {}: {}", from.string(), dir, ec.message());
  }
}

}  // namespace ingot::train
