// Text-level generation and classification (see text.h).
#include "llm/text/text.h"

#include <algorithm>
#include <filesystem>

#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

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
  TextModel tm;
  tm.model = models::load_model(dir, opt);
  if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json"))
    raise<IoError>("[text] {}: no tokenizer.json (pass token ids instead of text)", dir);
  tm.tokenizer = std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(dir));
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
  std::vector<std::vector<int32_t>> prompts;
  prompts.reserve(texts.size());
  for (const auto& t : texts) prompts.push_back(encode_prompt(tm, fill(t)));
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
  return classify(*tm.model, prompts, labels, opt, on_result);
}

}  // namespace ingot::llm
