// `ingot detokenize`: token ids on stdin -> raw UTF-8 text (or JSON string lines) on stdout.
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

std::vector<int32_t> parse_ids(const std::string& text, int32_t vocab, size_t lineno) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != w.size() || v < 0)
      raise<InvalidArgument>("[detokenize] stdin{}: '{}' is not a token id",
                             lineno ? fmt::format(" line {}", lineno) : "", w);
    if (v >= vocab)
      raise<InvalidArgument>("[detokenize] stdin{}: id {} is outside the vocabulary (size {})",
                             lineno ? fmt::format(" line {}", lineno) : "", v, vocab);
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

Registrar reg{Command{
    "detokenize",
    "Decode space-separated token ids on stdin to raw UTF-8 text.\n"
    "Example: echo '9707 1879' | ingot detokenize --tokenizer ./Qwen3-0.6B",
    [](CLI::App& app) -> std::function<int()> {
      struct Opts {
        std::string dir;
        bool jsonl = false, skip_special = false;
      };
      auto o = std::make_shared<Opts>();
      app.add_option("--tokenizer", o->dir,
                     "directory with tokenizer.json (a model directory works), or a GGUF file")
          ->required();
      app.add_flag("--jsonl", o->jsonl, "one line of ids in -> one JSON string literal out");
      app.add_flag("--skip-special", o->skip_special, "drop special tokens from the text");
      return [o]() {
        const auto tok_ptr = load_tokenizer(o->dir);
        const tokenizer::Tokenizer& tok = *tok_ptr;
        tokenizer::DecodeOptions d{.skip_special_tokens = o->skip_special};
        std::string out;
        if (!o->jsonl) {
          std::string text((std::istreambuf_iterator<char>(std::cin)),
                           std::istreambuf_iterator<char>());
          out = tok.decode(parse_ids(text, tok.vocab_size(), 0), d);
        } else {
          std::string line;
          size_t lineno = 0;
          while (std::getline(std::cin, line)) {
            ++lineno;
            out += nlohmann::json(tok.decode(parse_ids(line, tok.vocab_size(), lineno), d))
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            out += '\n';
          }
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
        return 0;
      };
    }}};

}  // namespace
}  // namespace ingot::cli
