// `ingot generate`: continues a prompt (text, chat message or token ids) and streams the text to
// stdout, or prints the new token ids; metrics go to stderr (DESIGN.md §6b, issue 6).
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.h"
#include "llm/text/text.h"
#include "llm_common.h"
#include "text_common.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

struct GenerateArgs {
  ModelArgs model;
  SamplingArgs sampling;
  std::optional<std::string> prompt;
  std::optional<std::string> prompt_ids;
  std::vector<std::string> stop;
  std::string output = "text";
  bool chat = false;
  std::string system;
  std::string prompt_cache;
  bool quiet = false;
};

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

/// The PromptCache of --prompt-cache: loaded from the file when it exists.
std::optional<llm::PromptCache> open_prompt_cache(const models::Model& model,
                                                  const std::string& path) {
  std::optional<llm::PromptCache> cache;
  if (path.empty()) return cache;
  cache.emplace(model);
  if (std::filesystem::exists(path)) cache->load(path);
  return cache;
}

/// Token ids in, token ids out: needs no tokenizer (EOS ids from generation_config.json).
int run_ids_only(const GenerateArgs& a) {
  const std::vector<int32_t> prompt = parse_id_list(*a.prompt_ids, "--prompt-ids");
  auto model = load_model(a.model);
  llm::GenerateOptions g = generate_options(a.sampling);
  if (!a.sampling.ignore_eos) g.stop_ids = generation_config_eos(a.model.dir);
  auto cache = open_prompt_cache(*model, a.prompt_cache);
  llm::GenerationResult r = llm::generate(*model, {prompt}, g, cache ? &*cache : nullptr);
  write_stdout(join_ids(r.tokens.at(0)) + "\n", true);
  if (cache) cache->save(a.prompt_cache);
  if (!a.quiet) print_metrics(r.metrics, llm::finish_reason_name(r.finish.at(0)), *model);
  return 0;
}

std::vector<int32_t> prompt_tokens(const GenerateArgs& a, const llm::TextModel& tm) {
  if (a.prompt_ids) return parse_id_list(*a.prompt_ids, "--prompt-ids");
  if (!a.chat) return llm::encode_prompt(tm, *a.prompt);
  nlohmann::json messages = nlohmann::json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  messages.push_back({{"role", "user"}, {"content", *a.prompt}});
  return llm::encode_chat(tm, messages.dump());
}

int run_generate(const GenerateArgs& a) {
  // A cache file does not record which adapter computed its keys and values.
  if (!a.prompt_cache.empty() && !a.model.adapter.empty())
    raise(
        "[generate] --prompt-cache with --adapter is not supported yet (the cache file does "
        "not record the adapter its keys and values were computed with)");
  const bool text_out = a.output == "text";
  if (a.prompt_ids && !text_out && a.stop.empty()) return run_ids_only(a);
  if (a.prompt_ids && std::filesystem::is_directory(a.model.dir) &&
      !std::filesystem::exists(std::filesystem::path(a.model.dir) / "tokenizer.json"))
    raise<IoError>("[generate] {}: no tokenizer.json, which {} needs (use --output ids)",
                   a.model.dir, a.stop.empty() ? "text output" : "--stop");
  llm::TextModel tm = load_text_model(a.model.dir, base_load_options(a.model));
  apply_adapter(*tm.model, a.model);
  const std::vector<int32_t> prompt = prompt_tokens(a, tm);
  llm::TextGenerateOptions t;
  t.gen = generate_options(a.sampling);
  t.stop_at_eos = !a.sampling.ignore_eos;
  t.stop_strings = a.stop;
  if (text_out) t.on_text = [](const std::string& piece) { write_stdout(piece, true); };
  auto cache = open_prompt_cache(*tm.model, a.prompt_cache);
  llm::TextResult r = llm::generate_text(tm, prompt, t, cache ? &*cache : nullptr);
  if (text_out) {
    if (is_terminal(1)) write_stdout("\n", true);
  } else {
    write_stdout(join_ids(r.tokens) + "\n", true);
  }
  if (cache) cache->save(a.prompt_cache);
  if (!a.quiet) print_metrics(r.metrics, llm::finish_reason_name(r.finish), *tm.model);
  return 0;
}

const Registrar reg(
    {"generate", "Generate a continuation of a prompt and stream it to stdout", [](CLI::App& app) {
       auto a = std::make_shared<GenerateArgs>();
       add_model_options(app, a->model);
       add_tp_option(app, a->model);
       auto* prompt = app.add_option_group("prompt", "What to continue (one of)");
       prompt->add_option("--prompt", a->prompt, "Prompt text (BOS added as the tokenizer does)");
       CLI::Option* ids_opt =
           prompt->add_option("--prompt-ids", a->prompt_ids,
                              "Prompt token ids, comma-separated (no tokenizer needed with "
                              "--output ids)");
       prompt->require_option(1);
       add_sampling_options(app, a->sampling);
       app.add_option("--stop", a->stop, "Stop when the text contains this string (repeatable)");
       app.add_option("--output", a->output,
                      "text: stream the text (default); ids: print the new ids on one line")
           ->check(CLI::IsMember({"text", "ids"}));
       app.add_flag("--chat", a->chat,
                    "Send --prompt as one user message through the chat template")
           ->excludes(ids_opt);
       app.add_option("--system", a->system, "System message (with --chat)");
       app.add_option("--prompt-cache", a->prompt_cache,
                      "KV cache file: loaded when it exists (its common prefix with the prompt "
                      "is not recomputed), saved back after generating");
       app.add_flag("--quiet", a->quiet, "Do not print the metrics line on stderr");
       app.footer(
           "Examples:\n"
           "  ingot generate --model ./Llama-3.2-1B --prompt 'Once upon a time' --max-tokens 64 "
           "--device cuda\n"
           "  ingot generate --model ./Qwen3-0.6B --chat --prompt 'Why is the sky blue?' "
           "--temperature 0.7 --top-p 0.9 --seed 1\n"
           "  ingot generate --model DIR --prompt-ids 1,375,288 --max-tokens 12 --output ids\n"
           "stderr ends with: metrics: device=cpu|cuda:N load_s=X prompt_tokens=N reused_tokens=N "
           "generated_tokens=N "
           "prefill_tok/s=X decode_tok/s=X ttft_ms=X peak_memory_mib=X cache_mib=X "
           "finish=length|eos|stop");
       return std::function<int()>([a] { return run_generate(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
