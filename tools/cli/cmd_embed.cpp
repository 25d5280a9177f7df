// `ingot embed`: pooled final hidden states (last token or mean) of texts, JSONL in and out,
// optionally through a prompt template.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"
#include "llm/score.h"
#include "llm/text/text.h"
#include "llm_common.h"
#include "progress.h"
#include "text_common.h"

namespace ingot::cli {
namespace {

struct EmbedArgs {
  ModelArgs model;
  std::string pooling = "last";
  std::string template_path;
  int64_t batch_size = 0;
  bool progress = false;
};

/// Texts per llm::embed call: results are written after each.
constexpr size_t kChunk = 4096;

int run_embed(const EmbedArgs& a) {
  const std::string tmpl = a.template_path.empty() ? "" : read_template(a.template_path, "embed");
  const std::vector<std::string> texts = read_text_lines("embed");
  llm::TextModel tm = load_text_model(a.model.dir, base_load_options(a.model));
  apply_adapter(*tm.model, a.model);
  const llm::Pooling pooling = a.pooling == "mean" ? llm::Pooling::mean : llm::Pooling::last;
  const auto total = static_cast<int64_t>(texts.size());
  ProgressBar bar(total, a.progress || is_terminal(2), "embed");
  for (size_t begin = 0; begin < texts.size(); begin += kChunk) {
    const size_t end = std::min(texts.size(), begin + kChunk);
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = begin; i < end; ++i)
      prompts.push_back(
          llm::encode_prompt(tm, tmpl.empty() ? texts[i] : fill_template(tmpl, texts[i])));
    llm::ClassifyOptions opt;
    opt.batch_size = a.batch_size;
    opt.group_size = static_cast<int64_t>(kChunk);
    opt.on_progress = [&bar, begin](int64_t done, int64_t) {
      bar.update(static_cast<int64_t>(begin) + done);
    };
    const std::vector<std::vector<float>> vecs = llm::embed(*tm.model, prompts, pooling, opt);
    std::string out;
    for (const auto& v : vecs) {
      out += "{\"embedding\": [";
      for (size_t k = 0; k < v.size(); ++k) {
        if (k) out += ", ";
        append_json_number(out, v[k]);
      }
      out += "]}\n";
    }
    write_stdout(out, true);
  }
  bar.finish();
  return 0;
}

const Registrar reg(
    {"embed", "Embed texts (JSONL on stdin) as pooled final hidden states (JSONL on stdout)",
     [](CLI::App& app) {
       auto a = std::make_shared<EmbedArgs>();
       add_model_options(app, a->model);
       app.add_option("--pooling", a->pooling,
                      "last: the last token's hidden state (default); mean: the mean over tokens")
           ->check(CLI::IsMember({"last", "mean"}));
       app.add_option("--template", a->template_path,
                      "File with a prompt where {text} (exactly once) is replaced by each text");
       app.add_option("--batch-size", a->batch_size,
                      "Texts per forward pass (default 0: sized from the text lengths and free "
                      "memory, 64 on the CPU)")
           ->check(CLI::PositiveNumber);
       app.add_flag("--progress", a->progress,
                    "Show the progress bar even when stderr is not a terminal");
       app.footer(
           "Input, one per line: {\"text\": \"...\"} or a JSON string (BOS added as the tokenizer "
           "does). Output, one line per input line, in order: {\"embedding\": [0.12, -0.5, ...]} "
           "(float32 values, hidden size of the model).\n"
           "Example: ingot embed --model ./Qwen3-0.6B --pooling mean --device cpu < texts.jsonl > "
           "vectors.jsonl");
       return std::function<int()>([a] { return run_embed(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
