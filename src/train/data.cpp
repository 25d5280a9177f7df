// JSONL fine-tuning data (see data.h).
#include "train/data.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace ingot::train {
using json = nlohmann::json;

namespace {

constexpr size_t kMaxListed = 20;

/// Checks one parsed line; returns "" when fine, else what is wrong.
std::string check_record(const json& j, Record& r) {
  if (!j.is_object()) return fmt::format("expected a JSON object, got {}", j.type_name());
  if (j.contains("messages")) {
    const json& m = j["messages"];
    if (!m.is_array() || m.empty()) return "\"messages\" must be a non-empty array";
    bool assistant = false;
    for (size_t i = 0; i < m.size(); ++i) {
      const json& msg = m[i];
      if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() ||
          !msg.contains("content") || !msg["content"].is_string())
        return fmt::format("messages[{}] must be an object with string \"role\" and \"content\"",
                           i);
      assistant = assistant || msg["role"].get<std::string>() == "assistant";
    }
    if (!assistant) return "\"messages\" has no assistant message to learn from";
    r.kind = Record::Kind::chat;
    r.messages = m.dump();
    return "";
  }
  if (j.contains("prompt") || j.contains("completion")) {
    if (!j.contains("prompt") || !j["prompt"].is_string() || !j.contains("completion") ||
        !j["completion"].is_string())
      return "\"prompt\" and \"completion\" must both be strings";
    r.kind = Record::Kind::prompt_completion;
    r.prompt = j["prompt"].get<std::string>();
    r.completion = j["completion"].get<std::string>();
    if (r.completion.empty()) return "\"completion\" is empty";
    return "";
  }
  if (j.contains("text")) {
    if (!j["text"].is_string()) return "\"text\" must be a string";
    r.kind = Record::Kind::text;
    r.text = j["text"].get<std::string>();
    if (r.text.empty()) return "\"text\" is empty";
    return "";
  }
  return "expected {\"text\"}, {\"prompt\", \"completion\"} or {\"messages\": [...]}";
}

}  // namespace

std::vector<Record> read_jsonl(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) raise<IoError>("[data] cannot open {}", path);
  std::vector<Record> out;
  std::vector<std::string> errors;
  size_t bad = 0;
  std::string line;
  for (size_t lineno = 1; std::getline(f, line); ++lineno) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Record r;
    r.line = lineno;
    std::string err;
    try {
      err = check_record(json::parse(line), r);
    } catch (const json::exception& e) {
      err = fmt::format("not valid JSON ({})", e.what());
    }
    if (err.empty()) {
      out.push_back(std::move(r));
    } else if (++bad <= kMaxListed) {
      errors.push_back(fmt::format("{}:{}: {}", path, lineno, err));
    }
  }
  if (f.bad()) raise<IoError>("[data] error reading {}", path);
  if (bad) {
    std::string msg = fmt::format("[data] {} malformed line(s) in {}:", bad, path);
    for (auto& e : errors) msg += "\n  " + e;
    if (bad > kMaxListed) msg += fmt::format("\n  ... and {} more", bad - kMaxListed);
    throw FormatError(msg);
  }
  if (out.empty()) raise<FormatError>("[data] {} holds no examples", path);
  return out;
}

Batch make_batch(const std::vector<Example>& examples, const std::vector<size_t>& idx,
                 int32_t pad_id) {
  if (idx.empty()) raise("[data] empty batch");
  size_t len = 0;
  bool packed = false;
  for (size_t i : idx) {
    const Example& ex = examples.at(i);
    len = std::max(len, ex.ids.size());
    packed = packed || !ex.segments.empty();
    if (ex.loss_mask.size() != ex.ids.size() ||
        (!ex.segments.empty() && ex.segments.size() != ex.ids.size()))
      raise("[data] example {}: ids, loss mask and segments differ in length", i);
  }
  if (len < 2) raise("[data] examples need at least two tokens");
  const int64_t b = static_cast<int64_t>(idx.size()), l = static_cast<int64_t>(len) - 1;
  std::vector<int32_t> in(static_cast<size_t>(b * l), pad_id), tg(in.size(), pad_id);
  std::vector<float> mask(in.size(), 0.0f);
  // Segment of every input position: the example's (0 when not packed), -1 for padding.
  std::vector<int32_t> seg(packed ? in.size() : 0, -1);
  Batch out;
  for (int64_t r = 0; r < b; ++r) {
    const Example& ex = examples[idx[static_cast<size_t>(r)]];
    for (size_t t = 0; t + 1 < ex.ids.size(); ++t) {
      const size_t o = static_cast<size_t>(r * l) + t;
      in[o] = ex.ids[t];
      tg[o] = ex.ids[t + 1];
      mask[o] = ex.loss_mask[t + 1] ? 1.0f : 0.0f;
      out.tokens += ex.loss_mask[t + 1] ? 1 : 0;
      if (packed) seg[o] = ex.segments.empty() ? 0 : ex.segments[t];
    }
  }
  out.inputs = Array(in, {b, l}, int32);
  out.targets = Array(tg, {b, l}, int32);
  out.mask = Array(mask, {b, l}, float32);
  if (packed) {
    std::vector<uint8_t> keep(static_cast<size_t>(b * l * l), 0);
    for (int64_t r = 0; r < b; ++r)
      for (int64_t q = 0; q < l; ++q)
        for (int64_t k = 0; k <= q; ++k)
          keep[static_cast<size_t>((r * l + q) * l + k)] =
              seg[static_cast<size_t>(r * l + q)] == seg[static_cast<size_t>(r * l + k)];
    out.attention = Array(keep, {b, 1, l, l}, bool_);
  }
  return out;
}

std::vector<Example> pack_examples(const std::vector<Example>& examples, int64_t max_tokens) {
  if (max_tokens < 2) raise("[data] packed rows need at least 2 tokens, got {}", max_tokens);
  std::vector<Example> rows;
  Example row;
  int32_t members = 0;
  auto flush = [&] {
    if (!row.ids.empty()) rows.push_back(std::move(row));
    row = Example{};
    members = 0;
  };
  for (size_t i = 0; i < examples.size(); ++i) {
    const Example& ex = examples[i];
    if (static_cast<int64_t>(ex.ids.size()) > max_tokens)
      raise("[data] example {} has {} tokens, more than the packed row length {}", i, ex.ids.size(),
            max_tokens);
    if (ex.loss_mask.size() != ex.ids.size())
      raise("[data] example {}: ids and loss mask differ in length", i);
    if (static_cast<int64_t>(row.ids.size() + ex.ids.size()) > max_tokens) flush();
    const size_t at = row.ids.size();
    row.ids.insert(row.ids.end(), ex.ids.begin(), ex.ids.end());
    row.loss_mask.insert(row.loss_mask.end(), ex.loss_mask.begin(), ex.loss_mask.end());
    if (at > 0) row.loss_mask[at] = 0;  // predicted from the previous example: not learned
    row.segments.insert(row.segments.end(), ex.ids.size(), members++);
  }
  flush();
  return rows;
}

std::vector<std::vector<size_t>> epoch_batches(const std::vector<Example>& examples, int batch_size,
                                               uint64_t seed, int64_t epoch, bool shuffle) {
  if (batch_size <= 0) raise("[data] batch size must be positive, got {}", batch_size);
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return examples[a].ids.size() < examples[b].ids.size();
  });
  std::vector<std::vector<size_t>> out;
  for (size_t i = 0; i < order.size(); i += static_cast<size_t>(batch_size))
    out.emplace_back(
        order.begin() + static_cast<std::ptrdiff_t>(i),
        order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), i + batch_size)));
  if (shuffle) {
    // Own Fisher-Yates on a fixed engine: std::shuffle's algorithm differs between libraries.
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
    for (size_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[rng() % i]);
  }
  return out;
}

}  // namespace ingot::train
