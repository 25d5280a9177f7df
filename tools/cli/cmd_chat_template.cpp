// `ingot chat-template`: renders a conversation (JSON on stdin) with the tokenizer's template.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>

#include "command.h"
#include "text_common.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ingot::cli {
namespace {

Registrar reg{Command{
    "chat-template",
    "Render a conversation with the chat template of tokenizer_config.json, byte for byte as\n"
    "transformers' apply_chat_template(tokenize=False). stdin: a JSON array of messages or\n"
    "{\"messages\": [...], \"tools\": [...], \"add_generation_prompt\": true, ...extra "
    "variables}.\n"
    "Example: echo '[{\"role\":\"user\",\"content\":\"Hi\"}]' | ingot chat-template --tokenizer "
    "./Qwen3-0.6B --add-generation-prompt=true",
    [](CLI::App& app) -> std::function<int()> {
      struct Opts {
        std::string dir;
        std::optional<bool> agp;
      };
      auto o = std::make_shared<Opts>();
      app.add_option("--tokenizer", o->dir,
                     "directory with tokenizer.json and tokenizer_config.json, or a GGUF file")
          ->required();
      app.add_option("--add-generation-prompt", o->agp,
                     "override the conversation's add_generation_prompt (true|false)");
      return [o]() {
        const auto tok_ptr = load_tokenizer(o->dir);
        const tokenizer::Tokenizer& tok = *tok_ptr;
        std::string conv((std::istreambuf_iterator<char>(std::cin)),
                         std::istreambuf_iterator<char>());
        std::string out =
            tokenizer::apply_chat_template(tok, conv, {.add_generation_prompt = o->agp});
        std::fwrite(out.data(), 1, out.size(), stdout);
        return 0;
      };
    }}};

}  // namespace
}  // namespace ingot::cli
