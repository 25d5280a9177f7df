// `ingot score`: log-probabilities of continuations after prompts, JSONL in and out (DESIGN.md
// §6b): {"prompt", "continuation"} texts or {"prompt_ids", "continuation_ids"} per line.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.h"
#include "llm/score.h"
#include "llm/text/text.h"
#include "llm_common.h"
#include "text_common.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

struct ScoreArgs {
  ModelArgs model;
  int64_t batch_size = 16;
};

/// Requests read per llm::score call (then their results are written).
constexpr size_t kChunk = 256;

std::vector<int32_t> ids_field(const nlohmann::json& j, const char* key, size_t lineno,
                               int64_t vocab) {
  const auto& v = j[key];
  if (!v.is_array() || v.empty())
    raise("[score] stdin line {}: \"{}\" must be a non-empty array of token ids", lineno, key);
  std::vector<int32_t> ids;
  for (const auto& x : v) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= vocab)
      raise("[score] stdin line {}: \"{}\" holds {}, not a token id in [0, {})", lineno, key,
            x.dump(), vocab);
    ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
  }
  return ids;
}

/// Scoring state: the model, and the tokenizer once a text line needs it.
struct Scorer {
  const ScoreArgs& args;
  llm::TextModel tm;

  const llm::TextModel& text_model() {
    if (!tm.tokenizer) tm.tokenizer = load_tokenizer(args.model.dir);
    return tm;
  }

  llm::ScoreRequest parse(const std::string& line, size_t lineno) {
    const nlohmann::json j = parse_jsonl_line(line, lineno, "score");
    if (!j.is_object())
      raise("[score] stdin line {}: expected a JSON object, got {}", lineno, j.type_name());
    const int64_t vocab = tm.model->vocab_size();
    if (j.contains("prompt_ids") || j.contains("continuation_ids")) {
      if (!j.contains("prompt_ids") || !j.contains("continuation_ids"))
        raise("[score] stdin line {}: give both \"prompt_ids\" and \"continuation_ids\"", lineno);
      return {ids_field(j, "prompt_ids", lineno, vocab),
              ids_field(j, "continuation_ids", lineno, vocab)};
    }
    if (!j.contains("prompt") || !j.contains("continuation") || !j["prompt"].is_string() ||
        !j["continuation"].is_string())
      raise(
          "[score] stdin line {}: expected {{\"prompt\": TEXT, \"continuation\": TEXT}} or "
          "{{\"prompt_ids\": [...], \"continuation_ids\": [...]}}",
          lineno);
    const std::string prompt = j["prompt"].get<std::string>();
    const std::string cont = j["continuation"].get<std::string>();
    // The continuation's tokens are those of prompt + continuation after as many tokens as the
    // prompt alone has: the joined text's own tokenization (as lm-evaluation-harness does).
    const auto& t = text_model();
    const size_t n = llm::encode_prompt(t, prompt).size();
    std::vector<int32_t> full = llm::encode_prompt(t, prompt + cont);
    if (full.size() <= n)
      raise("[score] stdin line {}: the continuation adds no token after the prompt", lineno);
    llm::ScoreRequest r;
    r.prompt.assign(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    r.continuation.assign(full.begin() + static_cast<std::ptrdiff_t>(n), full.end());
    return r;
  }

  void flush(std::vector<llm::ScoreRequest>& reqs) {
    if (reqs.empty()) return;
    const std::vector<llm::ScoreResult> res = llm::score(*tm.model, reqs, args.batch_size);
    std::string out;
    for (size_t i = 0; i < res.size(); ++i) {
      out += "{\"logprob_sum\": ";
      append_json_number(out, res[i].sum);
      out += ", \"token_logprobs\": [";
      for (size_t k = 0; k < res[i].token_logprobs.size(); ++k) {
        if (k) out += ", ";
        append_json_number(out, res[i].token_logprobs[k]);
      }
      out += "], \"tokens\": [";
      for (size_t k = 0; k < reqs[i].continuation.size(); ++k) {
        if (k) out += ", ";
        out += std::to_string(reqs[i].continuation[k]);
      }
      out += "]}\n";
    }
    write_stdout(out, true);
    reqs.clear();
  }
};

int run_score(const ScoreArgs& a) {
  Scorer s{a, {load_model(a.model), nullptr}};
  std::vector<llm::ScoreRequest> reqs;
  std::string line;
  size_t lineno = 0;
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    reqs.push_back(s.parse(line, lineno));
    if (reqs.size() >= kChunk) s.flush(reqs);
  }
  s.flush(reqs);
  return 0;
}

const Registrar reg(
    {"score", "Log-probabilities of continuations after prompts (JSONL on stdin, JSONL on stdout)",
     [](CLI::App& app) {
       auto a = std::make_shared<ScoreArgs>();
       add_model_options(app, a->model);
       add_tp_option(app, a->model);
       app.add_option("--batch-size", a->batch_size, "Requests per forward pass (default 16)")
           ->check(CLI::PositiveNumber);
       app.footer(
           "Input, one JSON object per line (blank lines are skipped):\n"
           "  {\"prompt\": \"The capital of France is\", \"continuation\": \" Paris\"}\n"
           "  {\"prompt_ids\": [1, 375, 288], \"continuation_ids\": [83, 9]}\n"
           "With texts, the continuation's tokens are the tokens of prompt+continuation after as "
           "many tokens as the prompt alone has (BOS added as the tokenizer does).\n"
           "Output, one line per input line, in order:\n"
           "  {\"logprob_sum\": -3.2, \"token_logprobs\": [-1.2, -2.0], \"tokens\": [83, 9]}\n"
           "Example: ingot score --model ./Llama-3.2-1B --device cuda < pairs.jsonl > "
           "scores.jsonl");
       return std::function<int()>([a] { return run_score(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
