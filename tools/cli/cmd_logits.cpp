// `ingot logits`: runs a checkpoint on given token ids and prints the logits as JSON (or writes
// them to a .npy file), for debugging and parity checks against transformers.
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "command.h"
#include "core/ingot.h"
#include "llm_common.h"
#include "models/model.h"
#include "models/trace.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string ids;
  bool all_positions = false;
  std::string dtype;
  std::string attention = "fast";
  std::string npy;
  std::string trace_dir;
  std::string device;
  std::string adapter;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string tok = s.substr(i, j - i);
    while (!tok.empty() && tok.front() == ' ') tok.erase(tok.begin());
    while (!tok.empty() && tok.back() == ' ') tok.pop_back();
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (tok.empty() || used != tok.size() || v < 0 || v > INT32_MAX)
      raise("[logits] --ids: '{}' is not a non-negative token id (expected e.g. 1,2,3)", tok);
    ids.push_back(static_cast<int32_t>(v));
    i = j + 1;
  }
  return ids;
}

std::optional<Dtype> parse_dtype(const std::string& s) {
  if (s.empty()) return std::nullopt;
  if (s == "float32") return float32;
  if (s == "bfloat16") return bfloat16;
  if (s == "float16") return float16;
  raise("[logits] --dtype: unknown dtype '{}' (use float32, bfloat16 or float16)", s);
}

int run_logits(const LogitsArgs& a) {
  const std::vector<int32_t> ids = parse_ids(a.ids);
  models::LoadModelOptions lo{.dtype = parse_dtype(a.dtype)};
  lo.device = select_device(a.device);
  if (a.attention == "eager")
    lo.attention = models::AttentionImpl::eager;
  else if (a.attention != "fast")
    raise("[logits] --attention: unknown '{}' (use fast or eager)", a.attention);
  auto model = models::load_model(a.model, lo);
  if (!a.adapter.empty()) apply_adapter(*model, ModelArgs{.dir = a.model, .adapter = a.adapter});
  for (int32_t id : ids)
    if (id >= model->vocab_size())
      raise("[logits] token id {} is out of range for the vocabulary of {} tokens", id,
            model->vocab_size());
  Array x(ids, {1, static_cast<int64_t>(ids.size())}, int32);
  std::optional<models::TraceDump> dump;
  if (!a.trace_dir.empty()) dump.emplace(a.trace_dir);
  Array h = model->hidden(x);  // [1, L, E]
  const int64_t l = h.shape(1);
  if (!a.all_positions) h = slice(h, {0, l - 1, 0}, {1, l, h.shape(2)});  // last row only
  Array logits = model->lm_head(h);                                       // [1, L', V] float32
  logits = reshape(logits, {logits.shape(1), logits.shape(2)});
  logits.eval();
  if (!a.npy.empty()) {
    models::save_npy(a.npy, logits);
    return 0;
  }
  const float* p = logits.data<float>();
  const int64_t rows = logits.shape(0), v = logits.shape(1);
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "{{\"logits\": [");
  for (int64_t r = 0; r < rows; ++r) {
    if (r) fmt::format_to(std::back_inserter(out), ", ");
    out.push_back('[');
    for (int64_t c = 0; c < v; ++c) {
      if (c) fmt::format_to(std::back_inserter(out), ", ");
      fmt::format_to(std::back_inserter(out), "{}", p[r * v + c]);  // shortest round-trip
    }
    out.push_back(']');
  }
  fmt::format_to(std::back_inserter(out), "]}}\n");
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

const Registrar reg({"logits", "Print a model's logits for token ids as JSON", [](CLI::App& app) {
                       auto a = std::make_shared<LogitsArgs>();
                       app.add_option("--model", a->model, "Checkpoint directory")->required();
                       app.add_option("--ids", a->ids, "Comma-separated token ids")->required();
                       app.add_flag("--all-positions", a->all_positions,
                                    "Every position, not only the last");
                       app.add_option("--dtype", a->dtype,
                                      "Compute dtype: float32, bfloat16, float16 (default: the "
                                      "checkpoint's)");
                       app.add_option("--attention", a->attention,
                                      "fast (default) or eager (transformers' rounding order)");
                       app.add_option("--npy", a->npy,
                                      "Write the logits [positions, vocab] as float32 .npy to "
                                      "this file instead of printing JSON");
                       app.add_option("--trace", a->trace_dir,
                                      "Dump named intermediates (.npy) into this directory");
                       add_device_option(app, a->device);
                       app.add_option("--adapter", a->adapter,
                                      "LoRA adapter directory to apply, unfused (PEFT or mlx-lm)");
                       app.footer(
                           "Example: ingot logits --model ./Llama-3.2-1B --ids 128000,791,6864 "
                           "--all-positions --dtype float32 --device cuda\n"
                           "Output: {\"logits\": [[...], ...]} (one row per position)");
                       return std::function<int()>([a] { return run_logits(*a); });
                     }});

}  // namespace
}  // namespace ingot::cli
