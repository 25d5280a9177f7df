// `ingot tokenize`: UTF-8 text on stdin -> token ids on stdout (DESIGN.md §6b, issue 5 contract).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "text_common.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

Registrar reg{Command{
    "tokenize",
    "Encode stdin (raw UTF-8) to token ids, as Hugging Face tokenizers does.\n"
    "Example: printf 'Hello world' | ingot tokenize --tokenizer ./Qwen3-0.6B",
    [](CLI::App& app) -> std::function<int()> {
      struct Opts {
        std::string dir;
        bool add_special = true;
        bool jsonl = false;
      };
      auto o = std::make_shared<Opts>();
      app.add_option("--tokenizer", o->dir,
                     "directory with tokenizer.json (a model directory works), or a GGUF file")
          ->required();
      app.add_option("--add-special", o->add_special,
                     "add special tokens (BOS...) as the post-processor says (default true)")
          ->default_val(true);
      app.add_flag("--jsonl", o->jsonl,
                   "each stdin line is a JSON string literal; one line of ids out per line in");
      return [o]() {
        const auto tok_ptr = load_tokenizer(o->dir);
        const tokenizer::Tokenizer& tok = *tok_ptr;
        std::ios::sync_with_stdio(false);
        std::string out;
        if (!o->jsonl) {
          std::string text((std::istreambuf_iterator<char>(std::cin)),
                           std::istreambuf_iterator<char>());
          out = join_ids(tok.encode(text, {.add_special_tokens = o->add_special})) + "\n";
        } else {
          std::string line;
          size_t lineno = 0;
          while (std::getline(std::cin, line)) {
            ++lineno;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            nlohmann::json j;
            try {
              j = nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception& e) {
              raise<InvalidArgument>("[tokenize] stdin line {}: not a JSON string literal: {}",
                                     lineno, e.what());
            }
            if (!j.is_string())
              raise<InvalidArgument>("[tokenize] stdin line {}: expected a JSON string, got {}",
                                     lineno, j.type_name());
            out +=
                join_ids(tok.encode(j.get<std::string>(), {.add_special_tokens = o->add_special}));
            out += '\n';
          }
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
        return 0;
      };
    }}};

}  // namespace
}  // namespace ingot::cli
