// `ingot chat`: an interactive conversation through the model's chat template; the history is
// kept as messages and in one KV cache, so each turn prefills only what is new.
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "llm/text/text.h"
#include "llm_common.h"
#include "text_common.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

struct ChatArgs {
  ModelArgs model;
  SamplingArgs sampling;
  std::string system;
  bool verbose = false;
};

nlohmann::json initial_messages(const ChatArgs& a) {
  nlohmann::json m = nlohmann::json::array();
  if (!a.system.empty()) m.push_back({{"role", "system"}, {"content", a.system}});
  return m;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t") == std::string::npos;
}

int run_chat(const ChatArgs& a) {
  llm::TextModel tm = load_text_model(a.model.dir, base_load_options(a.model));
  apply_adapter(*tm.model, a.model);
  if (tm.tokenizer->chat_template().empty())
    raise(
        "[chat] {} has no chat template (tokenizer_config.json \"chat_template\" or "
        "chat_template.jinja); use `ingot generate --prompt` instead",
        a.model.dir);
  llm::PromptCache cache(*tm.model);
  nlohmann::json messages = initial_messages(a);
  llm::TextGenerateOptions t;
  t.gen = generate_options(a.sampling);
  t.stop_at_eos = !a.sampling.ignore_eos;
  t.on_text = [](const std::string& piece) { write_stdout(piece, true); };
  const bool interactive = is_terminal(0);
  std::string line;
  for (;;) {
    if (interactive) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (blank(line)) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      messages = initial_messages(a);
      cache.clear();
      if (interactive) std::fputs("(conversation cleared)\n", stderr);
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::vector<int32_t> prompt = llm::encode_chat(tm, messages.dump());
    llm::TextResult r = llm::generate_text(tm, prompt, t, &cache);
    write_stdout("\n", true);
    messages.push_back({{"role", "assistant"}, {"content", r.text}});
    if (a.verbose) print_metrics(r.metrics, llm::finish_reason_name(r.finish), *tm.model);
  }
  if (interactive) std::fputc('\n', stderr);
  return 0;
}

const Registrar reg(
    {"chat", "Chat with a model: one user turn per stdin line, replies streamed to stdout",
     [](CLI::App& app) {
       auto a = std::make_shared<ChatArgs>();
       add_model_options(app, a->model);
       add_sampling_options(app, a->sampling);
       app.add_option("--system", a->system, "System message opening the conversation");
       app.add_flag("--verbose", a->verbose, "Print a metrics line on stderr after each reply");
       app.footer(
           "Each stdin line is a user turn; each reply is printed followed by a newline. Empty "
           "lines are ignored, /reset forgets the conversation, /quit or end of input ends it. "
           "The prompt \"> \" goes to stderr, and only when stdin is a terminal.\n"
           "Examples:\n"
           "  ingot chat --model ./Qwen3-0.6B --device cuda --system 'Be brief.'\n"
           "  printf 'Hi!\\nAnd in French?\\n' | ingot chat --model ./gemma-3-1b-it --verbose");
       return std::function<int()>([a] { return run_chat(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
