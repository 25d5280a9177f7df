// `ingot classify`: label probabilities for many texts through a prompt template (prefill only,
// batched by length, the template's prefix computed once), JSONL in and out, with a progress bar.
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "core/dist/group.h"
#include "llm/text/text.h"
#include "llm_common.h"
#include "progress.h"
#include "text_common.h"
#include "util/error.h"
#include "util/net.h"

namespace ingot::cli {
namespace {

struct ClassifyArgs {
  ModelArgs model;
  std::string labels;
  std::string template_path;
  int64_t batch_size = 0;
  bool progress = false;
  bool metrics = false;
  bool with_text = false;
  int dp = 1;  // data-parallel ranks (--dp)
};

/// Splits --labels on commas, keeping spaces (" yes, no" gives " yes" and " no").
std::vector<std::string> split_labels(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  for (;;) {
    const size_t j = s.find(',', i);
    out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  std::set<std::string> seen;
  for (const std::string& l : out) {
    if (l.empty()) raise("[classify] --labels '{}': empty label (expected e.g. a,b,c)", s);
    if (!seen.insert(l).second) raise("[classify] --labels: label '{}' is given twice", l);
  }
  if (out.size() < 2) raise("[classify] --labels '{}': give at least two labels", s);
  return out;
}

/// Writes result lines as they come, flushing at most ~10 times a second.
class ResultWriter {
 public:
  explicit ResultWriter(const std::vector<std::string>& labels) {
    for (const std::string& l : labels) keys_.push_back(nlohmann::json(l).dump());
  }
  /// `text`: also written, as the line's first field (--with-text), when not null.
  void write(const llm::LabelProbs& p, const std::string* text = nullptr) {
    size_t best = 0;
    for (size_t k = 1; k < p.size(); ++k)
      if (p[k] > p[best]) best = k;
    buf_ += '{';
    if (text) buf_ += "\"text\": " + nlohmann::json(*text).dump() + ", ";
    buf_ += "\"label\": " + keys_.at(best) + ", \"probs\": {";
    for (size_t k = 0; k < p.size(); ++k) {
      if (k) buf_ += ", ";
      buf_ += keys_.at(k) + ": ";
      append_json_number(buf_, p[k]);
    }
    buf_ += "}}\n";
    const auto now = std::chrono::steady_clock::now();
    if (buf_.size() > (1 << 16) || now - last_ > std::chrono::milliseconds(100)) {
      flush();
      last_ = now;
    }
  }
  void flush() {
    write_stdout(buf_, true);
    buf_.clear();
  }

 private:
  std::vector<std::string> keys_;  // labels as JSON strings
  std::string buf_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

/// Data parallelism (--dp N): every rank reads all the texts and classifies its contiguous
/// share; rank 0 receives the others' probabilities over the group's rendezvous and writes
/// every line in input order (the other ranks write nothing).
struct DataParallel {
  std::shared_ptr<dist::Group> group;
  size_t begin = 0, end = 0;  // this rank's texts
  size_t share(size_t n, int r) const {
    return n * static_cast<size_t>(r) / static_cast<size_t>(group->size());
  }
};

DataParallel data_parallel(const ClassifyArgs& a, size_t n) {
  DataParallel d;
  d.end = n;
  if (a.dp <= 1) return d;
  if (a.model.tp > 1) raise("[classify] --dp with --tp is not supported yet");
  d.group = dist::world();
  if (d.group->size() != a.dp)
    raise("[classify] --dp {} needs {} ranks, but this process is one of {} (INGOT_WORLD_SIZE)",
          a.dp, a.dp, d.group->size());
  d.begin = d.share(n, d.group->rank());
  d.end = d.share(n, d.group->rank() + 1);
  return d;
}

/// Rank 0: the probabilities of every rank's share in input order (`mine` first); the other
/// ranks send theirs and get an empty vector.
std::vector<llm::LabelProbs> gather_probs(const DataParallel& d, std::vector<llm::LabelProbs> mine,
                                          size_t n, size_t labels) {
  util::StarNetwork& net = d.group->network();
  if (net.rank() != 0) {
    std::vector<double> flat;
    for (const auto& p : mine) flat.insert(flat.end(), p.begin(), p.end());
    net.send(0, flat.data(), flat.size() * sizeof(double));
    return {};
  }
  for (int r = 1; r < net.size(); ++r) {
    const size_t count = d.share(n, r + 1) - d.share(n, r);
    std::vector<double> flat(count * labels);
    net.recv(r, flat.data(), flat.size() * sizeof(double));
    for (size_t i = 0; i < count; ++i)
      mine.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(i * labels),
                        flat.begin() + static_cast<std::ptrdiff_t>((i + 1) * labels));
  }
  return mine;
}

int run_classify(const ClassifyArgs& a) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  llm::TextClassifier c{read_template(a.template_path, "classify"), split_labels(a.labels)};
  std::vector<std::string> texts = read_text_lines("classify");
  const DataParallel dp = data_parallel(a, texts.size());
  const std::vector<std::string> all_texts = dp.group ? texts : std::vector<std::string>{};
  if (dp.group)
    texts = std::vector<std::string>(texts.begin() + static_cast<std::ptrdiff_t>(dp.begin),
                                     texts.begin() + static_cast<std::ptrdiff_t>(dp.end));
  const auto t_read = Clock::now();
  llm::TextModel tm = load_text_model(a.model.dir, base_load_options(a.model));
  apply_adapter(*tm.model, a.model);
  ProgressBar bar(static_cast<int64_t>(texts.size()), a.progress || is_terminal(2), "classify");
  ResultWriter out(c.labels);
  llm::ClassifyOptions opt;
  opt.batch_size = a.batch_size;
  opt.on_progress = [&bar](int64_t done, int64_t) { bar.update(done); };
  int64_t next = 0;
  const auto t_run = Clock::now();
  std::vector<llm::LabelProbs> kept;  // --dp: this rank's results, sent to rank 0 at the end
  llm::classify_texts(tm, c, texts, opt, [&](int64_t i, const llm::LabelProbs& p) {
    INGOT_ASSERT(i == next, "classify results must come in input order");
    ++next;
    if (dp.group)
      kept.push_back(p);
    else
      out.write(p, a.with_text ? &texts[static_cast<size_t>(i)] : nullptr);
  });
  if (dp.group) {
    const auto all = gather_probs(dp, std::move(kept), all_texts.size(), c.labels.size());
    for (size_t i = 0; i < all.size(); ++i)
      out.write(all[i], a.with_text ? &all_texts[i] : nullptr);
  }
  out.flush();
  bar.finish();
  if (a.metrics && (!dp.group || dp.group->rank() == 0)) {  // --dp: rank 0 reports
    const auto secs = [](Clock::time_point x, Clock::time_point y) {
      return std::chrono::duration<double>(y - x).count();
    };
    const double run_s = secs(t_run, Clock::now());
    const size_t total = dp.group ? all_texts.size() : texts.size();  // --dp: every rank's
    const std::string line = fmt::format(
        "metrics: device={} texts={} read_s={:.3f} load_s={:.3f} classify_s={:.3f} "
        "texts/s={:.1f} total_s={:.3f}\n",
        tm.model->device().str(), total, secs(t0, t_read), secs(t_read, t_run), run_s,
        run_s > 0 ? static_cast<double>(total) / run_s : 0.0, secs(t0, Clock::now()));
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  return 0;
}

const Registrar reg(
    {"classify", "Classify texts (JSONL on stdin) with a prompt template and a set of labels",
     [](CLI::App& app) {
       auto a = std::make_shared<ClassifyArgs>();
       add_model_options(app, a->model);
       add_tp_option(app, a->model);
       app.add_option("--dp", a->dp,
                      "Data-parallel ranks: N model replicas (one per GPU) each classify a share "
                      "of the texts; output in input order (relaunches under ingot launch)")
           ->check(CLI::PositiveNumber);
       app.add_option("--labels", a->labels,
                      "Comma-separated labels, spaces kept (e.g. ' positive, negative')")
           ->required();
       app.add_option("--template", a->template_path,
                      "File with the prompt; {text} (exactly once) is replaced by each text; one "
                      "trailing newline of the file is dropped")
           ->required();
       app.add_option("--batch-size", a->batch_size,
                      "Texts per forward pass (default 0: sized from the text lengths and free "
                      "memory, 64 on the CPU)")
           ->check(CLI::PositiveNumber);
       app.add_flag("--progress", a->progress,
                    "Show the progress bar even when stderr is not a terminal");
       app.add_flag("--metrics", a->metrics,
                    "Print a metrics line on stderr at the end: texts, seconds reading the "
                    "input, loading the model and classifying (tokenization included), texts/s");
       app.add_flag("--with-text", a->with_text,
                    "Start each output line with the input text: {\"text\": ..., \"label\": ...}");
       app.footer(
           "Each label is scored as the continuation of the filled template (its first token "
           "when the labels' first tokens differ, otherwise all its tokens); probs are a softmax "
           "over the labels.\n"
           "Input, one per line: {\"text\": \"...\"} or a JSON string. Output, one line per "
           "input line, in order:\n"
           "  {\"label\": \" positive\", \"probs\": {\" positive\": 0.91, \" negative\": 0.09}}\n"
           "Example:\n"
           "  printf 'Review: {text}\\nSentiment:\\n' > tmpl.txt\n"
           "  ingot classify --model ./Llama-3.2-1B --device cuda:0 --labels ' positive, negative' "
           "--template tmpl.txt < texts.jsonl > results.jsonl");
       return std::function<int()>([a] { return run_classify(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
