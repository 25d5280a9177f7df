// Helpers shared by the generation / scoring subcommands of `ingot` (generate, chat, score,
// classify, embed): device, model and sampling options, EOS ids, metrics lines, JSONL input.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/device.h"
#include "core/dtype.h"
#include "llm/generate.h"
#include "llm/sampler.h"
#include "models/model.h"

namespace ingot::cli {

/// Adds --device (cpu, cuda, cuda:N) to `app`, stored in `device` ("" = the default).
void add_device_option(CLI::App& app, std::string& device);
/// The device of a --device value ("" = INGOT_DEVICE, else cuda:0 when a GPU is present, else
/// the CPU), made the default device. InvalidArgument "[device] ..." for a malformed name or
/// a GPU that is not there ("cuda:0 requested but 0 CUDA device(s) are available").
Device select_device(const std::string& device);

/// --model DIR, --dtype, --device and --adapter, as every model command takes them.
struct ModelArgs {
  std::string dir;
  std::string dtype;    // "" = the checkpoint's storage dtype
  std::string device;   // "" = the default device
  std::string adapter;  // "" = none; else a LoRA adapter directory (PEFT or mlx-lm)
  int tp = 1;           // tensor-parallel ranks (--tp; docs/multi-gpu.md)
};
/// Adds --model (required), --dtype, --device and --adapter to `app`.
void add_model_options(CLI::App& app, ModelArgs& a);
/// Adds --tp N: shard the model over N ranks (the command relaunches itself under `ingot
/// launch --nproc N` when it is not already one of N ranks).
void add_tp_option(CLI::App& app, ModelArgs& a);
/// The load options of `a` (--dtype, and --device through select_device). InvalidArgument when
/// --adapter is given: callers that load the model themselves use base_load_options and then
/// apply_adapter, so that an adapter is never silently ignored.
models::LoadModelOptions load_options(const ModelArgs& a);
/// load_options without the --adapter check.
models::LoadModelOptions base_load_options(const ModelArgs& a);
/// Applies the --adapter of `a` (if any) to a loaded model (unfused: low-rank branches on the
/// target layers).
void apply_adapter(models::Model& model, const ModelArgs& a);
/// Loads the checkpoint with the --dtype of `a` (IoError naming the directory when absent) and
/// applies its --adapter.
std::shared_ptr<models::Model> load_model(const ModelArgs& a);

/// Sampling options as given on the command line.
struct SamplingArgs {
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_context = 0;
  std::vector<std::string> logit_bias;  // "ID:BIAS"
  uint64_t seed = 0;
  int64_t max_tokens = 256;
  int64_t prefill_chunk = 512;
  bool ignore_eos = false;
};
/// Adds --max-tokens, --temperature, --top-k, --top-p, --min-p, the penalties, --logit-bias,
/// --seed, --prefill-chunk and --ignore-eos to `app`.
void add_sampling_options(CLI::App& app, SamplingArgs& a);
/// The sampler options of `a` (InvalidArgument naming a malformed --logit-bias).
llm::SamplerOptions sampler_options(const SamplingArgs& a);
/// Generation options of `a` (stop_ids left empty).
llm::GenerateOptions generate_options(const SamplingArgs& a);

/// Parses "1,2,3" into token ids; `what` names the option in errors.
std::vector<int32_t> parse_id_list(const std::string& s, const std::string& what);

/// eos_token_id of DIR/generation_config.json (an int or a list); empty when the file or key is
/// absent. FormatError naming the file when it is not valid JSON. For a GGUF file: its
/// tokenizer.ggml.eos_token_id, eot_token_id and eom_token_id.
std::vector<int32_t> generation_config_eos(const std::string& dir);

/// Prints one "metrics: key=value ..." line to stderr (with the model's device and load time).
void print_metrics(const llm::GenerationMetrics& m, const std::string& finish,
                   const models::Model& model);

/// Reads a whole file (IoError naming it).
std::string read_file(const std::string& path);
/// Reads a prompt template file: must contain "{text}" exactly once (InvalidArgument naming the
/// file otherwise); one trailing newline of the file is dropped.
std::string read_template(const std::string& path, const std::string& cmd);
/// Substitutes `text` for the "{text}" of a template checked by read_template.
std::string fill_template(const std::string& tmpl, const std::string& text);

/// Reads the non-empty lines of stdin as texts: each a JSON object {"text": "..."} or a bare
/// JSON string. InvalidArgument "[cmd] stdin line N: ..." on a bad line.
std::vector<std::string> read_text_lines(const std::string& cmd);
/// Parses one JSONL line (InvalidArgument "[cmd] stdin line N: ..." when it is not JSON).
nlohmann::json parse_jsonl_line(const std::string& line, size_t lineno, const std::string& cmd);

/// Writes to stdout (and flushes when `flush`); IoError when stdout is gone (e.g. a closed
/// pipe: SIGPIPE is ignored so that this is an error message and exit code 1, not a signal).
void write_stdout(std::string_view s, bool flush = false);

/// True when the file descriptor is a terminal.
bool is_terminal(int fd);

/// Appends the shortest text that reads back as the same value (null for NaN/inf).
void append_json_number(std::string& out, double v);
void append_json_number(std::string& out, float v);

}  // namespace ingot::cli
