// Text-level generation and classification (see text.h).
#include "llm/text/text.h"

#include <algorithm>
#include <filesystem>
#include <future>
#include <thread>

#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

/// Host threads that tokenize classification texts (the tokenizer is safe to share).
constexpr unsigned kTokenizerThreads = 8;

/// Length of the longest suffix of `s` that is a proper prefix of some stop string (text that
/// must be held back because the next piece may complete a stop string).
size_t held_back(const std::string& s, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& st : stops)
    for (size_t k = std::min(s.size(), st.size() - 1); k > best; --k)
      if (s.compare(s.size() - k, k, st, 0, k) == 0) {
        best = k;
        break;
      }
  return best;
}

}  // namespace

TextModel load_text_model(const std::string& dir, const models::LoadModelOptions& opt) {
  // The tokenizer is parsed on a second thread while the weights load (a 262k-token
  // tokenizer.json takes about as long as reading a 1B model's weights onto a GPU). The model's
  // errors still come first: the future is waited for (its exception dropped) when load_model
  // throws, and read after it returns.
  std::future<std::shared_ptr<tokenizer::Tokenizer>> tok = std::async(std::launch::async, [dir] {
    if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json"))
      raise<IoError>("[text] {}: no tokenizer.json (pass token ids instead of text)", dir);
    return std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(dir));
  });
  TextModel tm;
  tm.model = models::load_model(dir, opt);
  tm.tokenizer = tok.get();
  return tm;
}

std::vector<int32_t> encode_prompt(const TextModel& tm, const std::string& text) {
  return tm.tokenizer->encode(text);
}

std::vector<int32_t> encode_chat(const TextModel& tm, const std::string& messages_json) {
  tokenizer::ChatOptions co;
  co.add_generation_prompt = true;
  std::string rendered = tokenizer::apply_chat_template(*tm.tokenizer, messages_json, co);
  return tm.tokenizer->encode(rendered, {.add_special_tokens = false});
}

TextResult generate_text(const TextModel& tm, const std::vector<int32_t>& prompt_ids,
                         const TextGenerateOptions& opt, PromptCache* cache) {
  for (const auto& s : opt.stop_strings)
    if (s.empty()) raise("[generate] stop strings must not be empty");
  GenerateOptions gen = opt.gen;
  if (opt.stop_at_eos)
    for (int32_t id : tm.tokenizer->special_tokens().eos_ids) gen.stop_ids.push_back(id);
  tokenizer::StreamDecoder dec(*tm.tokenizer, {.skip_special_tokens = opt.skip_special_tokens});
  TextResult res;
  std::string pending;  // decoded but not yet emitted (may start a stop string)
  bool stopped = false;
  auto emit = [&](size_t n) {
    if (n == 0) return;
    std::string piece = pending.substr(0, n);
    pending.erase(0, n);
    res.text += piece;
    if (opt.on_text) opt.on_text(piece);
  };
  auto user_cb = gen.on_token;
  gen.on_token = [&](int row, int32_t id) {
    if (user_cb && !user_cb(row, id)) return false;
    pending += dec.step(id);
    for (const auto& s : opt.stop_strings) {
      size_t at = pending.find(s);
      if (at != std::string::npos) {
        pending.resize(at);
        emit(pending.size());
        stopped = true;
        return false;
      }
    }
    emit(pending.size() - held_back(pending, opt.stop_strings));
    return true;
  };
  GenerationResult g = generate(*tm.model, {prompt_ids}, gen, cache);
  if (!stopped) {
    // The last id (EOS or the length limit) also went through on_token, except for an EOS
    // that stopped generation before the callback: decode it too (skipped if special).
    if (g.finish[0] == FinishReason::eos) pending += dec.step(g.tokens[0].back());
    pending += dec.finish();
    emit(pending.size());
  }
  res.tokens = std::move(g.tokens[0]);
  res.finish = g.finish[0];
  res.metrics = g.metrics;
  return res;
}

std::vector<LabelProbs> classify_texts(
    const TextModel& tm, const TextClassifier& c, const std::vector<std::string>& texts,
    const ClassifyOptions& opt, const std::function<void(int64_t, const LabelProbs&)>& on_result) {
  const size_t at = c.tmpl.find("{text}");
  if (at == std::string::npos || c.tmpl.find("{text}", at + 1) != std::string::npos)
    raise("[classify] the template must contain {{text}} exactly once");
  auto fill = [&](const std::string& t) {
    return c.tmpl.substr(0, at) + t + c.tmpl.substr(at + 6);
  };
  // Label ids as they continue a filled prompt (after the template's tail, they do not depend
  // on the text); if the merge crosses the boundary, the label's standalone tokens.
  const std::string probe = fill(texts.empty() ? std::string() : texts[0]);
  const std::vector<int32_t> base = encode_prompt(tm, probe);
  std::vector<std::vector<int32_t>> labels;
  for (const auto& l : c.labels) {
    if (l.empty()) raise("[classify] labels must not be empty");
    std::vector<int32_t> full = encode_prompt(tm, probe + l);
    if (full.size() > base.size() && std::equal(base.begin(), base.end(), full.begin()))
      labels.emplace_back(full.begin() + static_cast<std::ptrdiff_t>(base.size()), full.end());
    else
      labels.push_back(tm.tokenizer->encode(l, {.add_special_tokens = false}));
  }
  // Texts go to classify() one group (opt.group_size texts, the unit whose shared prefix is
  // computed once) at a time, so the groups and results are those of one call over all texts;
  // the next group is tokenized on host threads while the model runs the current one.
  const int64_t n = static_cast<int64_t>(texts.size());
  const int64_t group = std::max<int64_t>(1, opt.group_size);
  const int workers = static_cast<int>(
      std::clamp<unsigned>(std::thread::hardware_concurrency(), 1u, kTokenizerThreads));
  auto tokenize = [&](int64_t b, int64_t e) {
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(e - b));
    std::vector<std::future<void>> parts;
    for (int w = 0; w < workers; ++w)
      parts.push_back(std::async(std::launch::async, [&, w] {
        for (int64_t i = b + w; i < e; i += workers)
          prompts[static_cast<size_t>(i - b)] = encode_prompt(tm, fill(texts[i]));
      }));
    for (auto& f : parts) f.get();  // rethrows the first failure
    return prompts;
  };
  std::vector<LabelProbs> out;
  out.reserve(texts.size());
  if (n == 0) return classify(*tm.model, {}, labels, opt, on_result);
  std::future<std::vector<std::vector<int32_t>>> next =
      std::async(std::launch::async, tokenize, int64_t{0}, std::min(n, group));
  for (int64_t b = 0; b < n; b += group) {
    const std::vector<std::vector<int32_t>> prompts = next.get();
    const int64_t e = std::min(n, b + group);
    if (e < n) next = std::async(std::launch::async, tokenize, e, std::min(n, e + group));
    ClassifyOptions o = opt;
    if (opt.on_progress)
      o.on_progress = [&](int64_t done, int64_t) { opt.on_progress(b + done, n); };
    std::vector<LabelProbs> r =
        classify(*tm.model, prompts, labels, o, [&](int64_t i, const LabelProbs& p) {
          if (on_result) on_result(b + i, p);
        });
    for (auto& p : r) out.push_back(std::move(p));
  }
  return out;
}

}  // namespace ingot::llm
