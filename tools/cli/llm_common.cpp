// Helpers shared by the generation / scoring subcommands of `ingot` (see llm_common.h).
#include "llm_common.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "core/dist/group.h"
#include "core/io/gguf.h"
#include "models/gguf_checkpoint.h"
#include "train/adapter.h"
#include "util/error.h"

namespace ingot::cli {

void add_device_option(CLI::App& app, std::string& device) {
  app.add_option("--device", device,
                 "Where to compute: cpu, cuda or cuda:N, e.g. --device cuda:1 (default: "
                 "$INGOT_DEVICE, else cuda:0 when a GPU is present, else cpu)");
}

Device select_device(const std::string& device) {
  const Device d = device.empty() ? default_device() : Device::parse(device);
  if (d.type == Device::Type::cuda && d.index >= gpu::device_count())
    raise("[device] {} requested but {} CUDA device(s) are available", d.str(),
          gpu::device_count());
  set_default_device(d);  // arrays made outside the model (inputs, samplers) go there too
  return d;
}

void add_model_options(CLI::App& app, ModelArgs& a) {
  app.add_option("--model", a.dir, "Checkpoint directory (config.json, *.safetensors) or GGUF file")
      ->required();
  app.add_option("--dtype", a.dtype, "Compute dtype (default: the checkpoint's)")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
  add_device_option(app, a.device);
  app.add_option("--adapter", a.adapter,
                 "LoRA adapter directory to apply (PEFT adapter_model.safetensors or mlx-lm "
                 "adapters.safetensors, with adapter_config.json)");
}

void add_tp_option(CLI::App& app, ModelArgs& a) {
  app.add_option("--tp", a.tp,
                 "Tensor-parallel ranks: shard the model over N processes, one per GPU "
                 "(default 1; docs/multi-gpu.md)")
      ->check(CLI::PositiveNumber);
}

models::LoadModelOptions load_options(const ModelArgs& a) {
  if (!a.adapter.empty())
    raise("[cli] --adapter is not supported by this command yet (fuse it first: ingot lora fuse)");
  return base_load_options(a);
}

void apply_adapter(models::Model& model, const ModelArgs& a) {
  if (!a.adapter.empty()) train::load_and_apply_adapter(model, a.adapter);
}

models::LoadModelOptions base_load_options(const ModelArgs& a) {
  models::LoadModelOptions lo;
  if (a.dtype == "float32") lo.dtype = float32;
  if (a.dtype == "bfloat16") lo.dtype = bfloat16;
  if (a.dtype == "float16") lo.dtype = float16;
  lo.device = select_device(a.device);
  if (a.tp > 1) {
    auto world = dist::world();
    if (world->size() != a.tp)
      raise(
          "[cli] --tp {} needs {} ranks, but this process is one of {} (INGOT_WORLD_SIZE): run "
          "it as `ingot launch --nproc {} -- ...`, or without INGOT_WORLD_SIZE set",
          a.tp, a.tp, world->size(), a.tp);
    lo.tensor_parallel = world;
  }
  return lo;
}

std::shared_ptr<models::Model> load_model(const ModelArgs& a) {
  auto m = models::load_model(a.dir, base_load_options(a));
  apply_adapter(*m, a);
  return m;
}

void add_sampling_options(CLI::App& app, SamplingArgs& a) {
  app.add_option("--max-tokens", a.max_tokens, "Most new tokens per reply (default 256)")
      ->check(CLI::PositiveNumber);
  app.add_option("--temperature", a.temperature, "Sampling temperature (default 0 = greedy)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", a.top_k, "Keep the k most likely tokens (0 = off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", a.top_p, "Nucleus sampling mass (1 = off)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-p", a.min_p, "Drop tokens below min-p x the top probability (0 = off)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--repetition-penalty", a.repetition_penalty,
                 "Hugging Face repetition penalty on seen tokens (1 = off)")
      ->check(CLI::PositiveNumber);
  app.add_option("--presence-penalty", a.presence_penalty,
                 "Subtracted from the logit of every seen token (0 = off)");
  app.add_option("--frequency-penalty", a.frequency_penalty,
                 "Subtracted from a logit per occurrence of the token (0 = off)");
  app.add_option("--penalty-context", a.penalty_context,
                 "Penalties look at the last N tokens only (0 = all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--logit-bias", a.logit_bias, "ID:BIAS added to a token's logit (repeatable)");
  app.add_option("--seed", a.seed, "Random seed (same seed, same output)");
  app.add_option("--prefill-chunk", a.prefill_chunk,
                 "Prompt tokens per forward pass during prefill (0 = all at once; default 512)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--ignore-eos", a.ignore_eos, "Do not stop at the EOS ids; stop at --max-tokens");
}

llm::SamplerOptions sampler_options(const SamplingArgs& a) {
  llm::SamplerOptions s;
  s.temperature = a.temperature;
  s.top_k = a.top_k;
  s.top_p = a.top_p;
  s.min_p = a.min_p;
  s.repetition_penalty = a.repetition_penalty;
  s.presence_penalty = a.presence_penalty;
  s.frequency_penalty = a.frequency_penalty;
  s.penalty_context = a.penalty_context;
  s.seed = a.seed;
  for (const std::string& b : a.logit_bias) {
    const size_t colon = b.find(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < b.size();
    long long id = -1;
    float bias = 0;
    if (ok) {
      try {
        size_t used = 0;
        id = std::stoll(b.substr(0, colon), &used);
        ok = used == colon && id >= 0 && id <= INT32_MAX;
        const std::string rest = b.substr(colon + 1);
        bias = std::stof(rest, &used);
        ok = ok && used == rest.size();
      } catch (const std::exception&) {
        ok = false;
      }
    }
    if (!ok) raise("[cli] --logit-bias '{}': expected ID:BIAS, e.g. 42:-100", b);
    s.logit_bias.emplace_back(static_cast<int32_t>(id), bias);
  }
  return s;
}

llm::GenerateOptions generate_options(const SamplingArgs& a) {
  llm::GenerateOptions g;
  g.max_tokens = a.max_tokens;
  g.sampler = sampler_options(a);
  g.prefill_chunk = a.prefill_chunk;
  return g;
}

std::vector<int32_t> parse_id_list(const std::string& s, const std::string& what) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string tok = s.substr(i, j - i);
    while (!tok.empty() && std::isspace(static_cast<unsigned char>(tok.front())))
      tok.erase(tok.begin());
    while (!tok.empty() && std::isspace(static_cast<unsigned char>(tok.back()))) tok.pop_back();
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (tok.empty() || used != tok.size() || v < 0 || v > INT32_MAX)
      raise("[cli] {}: '{}' is not a non-negative token id (expected e.g. 1,2,3)", what, tok);
    ids.push_back(static_cast<int32_t>(v));
    i = j + 1;
  }
  return ids;
}

std::vector<int32_t> generation_config_eos(const std::string& dir) {
  if (models::is_gguf_file(dir)) {  // tokenizer.ggml.eos/eot/eom_token_id
    GgufFile f(dir);
    std::vector<int32_t> ids;
    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                            "tokenizer.ggml.eom_token_id"}) {
      const GgufValue* v = f.find(key);
      if (v == nullptr) continue;
      const int64_t id = gguf_int(*v, dir, key);
      if (id < 0 || id > INT32_MAX)
        raise<FormatError>("[gguf] {}: key '{}' holds {}, not a token id", dir, key, id);
      if (std::find(ids.begin(), ids.end(), static_cast<int32_t>(id)) == ids.end())
        ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  }
  const std::string path = dir + "/generation_config.json";
  std::ifstream f(path);
  if (!f) return {};
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    raise<FormatError>("[cli] {}: not valid JSON: {}", path, e.what());
  }
  std::vector<int32_t> ids;
  auto add = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      raise<FormatError>("[cli] {}: eos_token_id must be a token id or a list of them, got {}",
                         path, v.dump());
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  };
  if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) return {};
  const auto& e = j["eos_token_id"];
  if (e.is_array())
    for (const auto& v : e) add(v);
  else
    add(e);
  return ids;
}

void print_metrics(const llm::GenerationMetrics& m, const std::string& finish,
                   const models::Model& model) {
  std::string line = fmt::format(
      "metrics: device={} load_s={:.3f} prompt_tokens={} reused_tokens={} generated_tokens={} "
      "prefill_tok/s={:.1f} decode_tok/s={:.1f} ttft_ms={:.1f} peak_memory_mib={:.1f} "
      "cache_mib={:.2f}",
      model.device().str(), model.load_seconds(), m.prompt_tokens, m.reused_tokens,
      m.generated_tokens, m.prefill_tokens_per_second(), m.decode_tokens_per_second(),
      m.time_to_first_token * 1e3, static_cast<double>(m.peak_memory_bytes) / (1 << 20),
      static_cast<double>(m.cache_bytes) / (1 << 20));
  if (!finish.empty()) line += " finish=" + finish;
  line += '\n';
  std::fflush(stdout);  // keep the text before the metrics when both go to one terminal
  std::fwrite(line.data(), 1, line.size(), stderr);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) raise<IoError>("[cli] {}: cannot open", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) raise<IoError>("[cli] {}: read failed", path);
  return ss.str();
}

std::string read_template(const std::string& path, const std::string& cmd) {
  std::string t = read_file(path);
  if (!t.empty() && t.back() == '\n') t.pop_back();
  if (!t.empty() && t.back() == '\r') t.pop_back();
  const size_t first = t.find("{text}");
  if (first == std::string::npos)
    raise("[{}] template {} must contain {{text}} (where each input text goes); it has none", cmd,
          path);
  if (t.find("{text}", first + 1) != std::string::npos)
    raise("[{}] template {} must contain {{text}} exactly once; it has several", cmd, path);
  return t;
}

std::string fill_template(const std::string& tmpl, const std::string& text) {
  const size_t at = tmpl.find("{text}");
  if (at == std::string::npos) return text;
  return tmpl.substr(0, at) + text + tmpl.substr(at + 6);
}

nlohmann::json parse_jsonl_line(const std::string& line, size_t lineno, const std::string& cmd) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    raise("[{}] stdin line {}: not valid JSON: {}", cmd, lineno, e.what());
  }
}

namespace {
/// The text of one JSONL input line (a JSON string or {"text": ...}).
std::string text_of_line(const std::string& line, size_t lineno, const std::string& cmd) {
  nlohmann::json j = parse_jsonl_line(line, lineno, cmd);
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("text") && j["text"].is_string())
    return j["text"].get<std::string>();
  raise("[{}] stdin line {}: expected {{\"text\": \"...\"}} or a JSON string, got {}", cmd, lineno,
        j.is_object() ? "an object without a string \"text\"" : j.type_name());
}
}  // namespace

std::vector<std::string> read_text_lines(const std::string& cmd) {
  // All of stdin first (one buffer, not a getline per line), then the lines parsed on up to 8
  // threads in contiguous shares; the first bad line (lowest number) is the error reported.
  std::string in;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, stdin)) > 0;) in.append(buf, n);
  if (std::ferror(stdin)) raise<IoError>("[{}] stdin: read failed ({})", cmd, std::strerror(errno));
  struct Line {
    size_t begin, end, lineno;
  };
  std::vector<Line> lines;
  size_t lineno = 0;
  for (size_t pos = 0; pos < in.size();) {
    size_t end = in.find('\n', pos);
    if (end == std::string::npos) end = in.size();
    ++lineno;
    size_t e = end;
    if (e > pos && in[e - 1] == '\r') --e;
    if (in.find_first_not_of(" \t", pos) < e) lines.push_back({pos, e, lineno});
    pos = end + 1;
  }
  std::vector<std::string> texts(lines.size());
  const auto parse = [&](size_t b, size_t e) {
    std::string line;
    for (size_t i = b; i < e; ++i) {
      line.assign(in, lines[i].begin, lines[i].end - lines[i].begin);
      texts[i] = text_of_line(line, lines[i].lineno, cmd);
    }
  };
  const size_t threads =
      lines.size() < 4096 ? 1 : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  std::vector<std::exception_ptr> errors(threads);
  std::vector<std::thread> pool;
  for (size_t w = 0; w < threads; ++w) {
    const size_t b = lines.size() * w / threads, e = lines.size() * (w + 1) / threads;
    auto job = [&, b, e, w] {
      try {
        parse(b, e);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    };
    if (w + 1 < threads)
      pool.emplace_back(job);
    else
      job();
  }
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return texts;
}

void write_stdout(std::string_view s, bool flush) {
  static const bool sigpipe_ignored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)sigpipe_ignored;
  std::fwrite(s.data(), 1, s.size(), stdout);
  if (flush) std::fflush(stdout);
  if (std::ferror(stdout)) raise<IoError>("[cli] stdout: write failed ({})", std::strerror(errno));
}

bool is_terminal(int fd) {
  return ::isatty(fd) == 1;
}

void append_json_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  fmt::format_to(std::back_inserter(out), "{}", v);
}

void append_json_number(std::string& out, float v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  fmt::format_to(std::back_inserter(out), "{}", v);
}

}  // namespace ingot::cli
