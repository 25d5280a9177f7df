// C ABI: prompt caches. A handle holds one llm::PromptCache (every layer unbounded, so it can be
// rewound anywhere) for one model: prefilled once with a shared prefix, then continued by
// generation or used, unchanged, as the prefix of classification batches.
#include <algorithm>
#include <cstring>

#include "capi/capi_internal.h"
#include "capi/capi_llm_internal.h"
#include "core/transforms/eval.h"
#include "llm/generate.h"
#include "llm/kv_cache.h"
#include "llm/score.h"
#include "llm/text/text.h"
#include "models/model.h"

using namespace ingot;        // NOLINT
using namespace ingot::capi;  // NOLINT

namespace {

/// Caches of the C API: unbounded on every layer (a prefix can be reused and rewound anywhere,
/// also on sliding-window layers) and grown in steps of 16 positions like the caches of
/// scoring and classification, whose batches repeat them row by row.
constexpr llm::PromptCacheOptions kCacheOptions{.unbounded = true, .step = 16};

const models::Model& model_of(ingot_model m, const char* what) {
  if (!m || !m->tm.model) raise("[capi] {}: null model handle", what);
  return *m->tm.model;
}

llm::PromptCache& cache_of(ingot_prompt_cache c, const char* what) {
  if (!c || !c->pc) raise("[capi] {}: null prompt cache handle", what);
  return *c->pc;
}

/// The model and cache of a call that uses both: the cache must be made for this model and,
/// when it holds anything, filled while the model's weights were what they are now.
llm::PromptCache& cache_for(ingot_model m, ingot_prompt_cache c, const char* what) {
  const models::Model& model = model_of(m, what);
  llm::PromptCache& pc = cache_of(c, what);
  if (c->model.expired())
    raise("[capi] {}: the model this prompt cache was made for has been freed", what);
  if (c->model.lock().get() != &model)
    raise("[capi] {}: the prompt cache was made for another model", what);
  if (pc.offset() > 0 && c->weights_version != m->weights_version)
    raise(
        "[capi] {}: the model's weights changed since the prompt cache was filled (an adapter "
        "was applied, removed or fused); clear the cache first",
        what);
  return pc;
}

/// Records the weights a (now non-empty) cache was filled with.
void mark_filled(ingot_model m, ingot_prompt_cache c) {
  c->weights_version = m->weights_version;
  c->with_adapter = m->applied != nullptr;
}

/// After a failed call that may have left keys and ids out of step: empties the cache.
void settle(llm::PromptCache& pc) noexcept {
  if (static_cast<int64_t>(pc.tokens().size()) != pc.offset() || pc.batch() > 1) pc.clear();
}

void check_ids(const std::vector<int32_t>& ids, int64_t vocab, const char* what, const char* kind,
               size_t i) {
  if (ids.empty()) raise("[capi] {}: {} {} is empty", what, kind, i);
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      raise("[capi] {}: {} {} has token id {} outside the vocabulary [0, {})", what, kind, i, id,
            vocab);
}

void check_starts_with(const std::vector<int32_t>& prompt, const std::vector<int32_t>& pre,
                       const char* what, const char* kind, size_t i) {
  if (prompt.size() < pre.size() || !std::equal(pre.begin(), pre.end(), prompt.begin()))
    raise("[capi] {}: {} {} ({} ids) does not start with the prompt cache's {} ids", what, kind, i,
          prompt.size(), pre.size());
}

/// Checks prompts and labels and classifies through the cache (see ingot_classify_cached).
std::vector<llm::LabelProbs> classify_cached(const models::Model& model, const llm::PromptCache& pc,
                                             const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<std::vector<int32_t>>& labels,
                                             int64_t batch_size, const char* what,
                                             const char* prompt_kind) {
  const int64_t vocab = model.vocab_size();
  if (labels.size() < 2) raise("[capi] {}: need at least two labels, got {}", what, labels.size());
  if (batch_size < 0) raise("[capi] {}: negative batch size {}", what, batch_size);
  for (size_t i = 0; i < labels.size(); ++i) check_ids(labels[i], vocab, what, "label", i);
  const auto& pre = pc.tokens();
  for (size_t i = 0; i < prompts.size(); ++i) {
    check_ids(prompts[i], vocab, what, prompt_kind, i);
    check_starts_with(prompts[i], pre, what, prompt_kind, i);
  }
  // Batches as ingot_classify's (0: sized automatically), over copies of the cached prefix.
  llm::ClassifyOptions o;
  o.batch_size = batch_size;
  o.prefix = &pc;
  return llm::classify(model, prompts, labels, o);
}

}  // namespace

extern "C" {

int ingot_prompt_cache_new(ingot_model m, ingot_prompt_cache* out) {
  return guard([&] {
    model_of(m, "ingot_prompt_cache_new");
    need_out(out, "ingot_prompt_cache_new");
    auto c = std::make_unique<ingot_prompt_cache_s>();
    c->pc = std::make_unique<llm::PromptCache>(*m->tm.model, kCacheOptions);
    c->model = m->tm.model;
    mark_filled(m, c.get());
    *out = c.release();
  });
}

int ingot_prompt_cache_free(ingot_prompt_cache c) {
  return guard([&] { delete c; });
}

int ingot_prompt_cache_copy(ingot_prompt_cache c, ingot_prompt_cache* out) {
  return guard([&] {
    const llm::PromptCache& pc = cache_of(c, "ingot_prompt_cache_copy");
    need_out(out, "ingot_prompt_cache_copy");
    auto d = std::make_unique<ingot_prompt_cache_s>();
    d->pc = std::make_unique<llm::PromptCache>(pc.copy());
    d->model = c->model;
    d->weights_version = c->weights_version;
    d->with_adapter = c->with_adapter;
    *out = d.release();
  });
}

int ingot_prompt_cache_prefill(ingot_model m, ingot_prompt_cache c, const int32_t* ids, size_t n) {
  return guard([&] {
    const char* what = "ingot_prompt_cache_prefill";
    llm::PromptCache& pc = cache_for(m, c, what);
    const models::Model& model = *m->tm.model;
    if (n == 0) raise("[capi] {}: no ids", what);
    if (!ids) raise("[capi] {}: null ids", what);
    std::vector<int32_t> v(ids, ids + n);
    check_ids(v, model.vocab_size(), what, "ids", 0);
    // The buffers as they are, put back if anything fails (arrays are immutable values: the
    // copy shares them).
    llm::PromptCache before = pc.copy();
    try {
      pc.set_padding({});
      Array h = llm::prefill(model, {v}, pc, 512, 1);
      std::vector<Array> st = pc.state();
      st.push_back(h);
      eval(st);
      pc.tokens().insert(pc.tokens().end(), v.begin(), v.end());
    } catch (...) {
      pc = std::move(before);
      throw;
    }
    mark_filled(m, c);
  });
}

int ingot_prompt_cache_prefill_template(ingot_model m, ingot_prompt_cache c,
                                        const char* template_text) {
  return guard([&] {
    const char* what = "ingot_prompt_cache_prefill_template";
    llm::PromptCache& pc = cache_for(m, c, what);
    if (!template_text) raise("[capi] {}: null template", what);
    if (!m->tm.tokenizer) raise("[capi] {}: the model has no tokenizer", what);
    if (pc.offset() > 0)
      raise("[capi] {}: the prompt cache holds {} ids already (clear it first)", what, pc.offset());
    const std::string tmpl = template_text;
    const size_t at = tmpl.find("{text}");
    if (at == std::string::npos || tmpl.find("{text}", at + 1) != std::string::npos)
      raise("[capi] {}: the template must contain {{text}} exactly once", what);
    std::vector<int32_t> ids = llm::encode_prompt(m->tm, tmpl.substr(0, at));
    if (!ids.empty()) ids.pop_back();  // it could merge with the text
    if (ids.empty()) return;           // nothing every filling shares
    llm::PromptCache before = pc.copy();
    try {
      pc.set_padding({});
      Array h = llm::prefill(*m->tm.model, {ids}, pc, 512, 1);
      std::vector<Array> st = pc.state();
      st.push_back(h);
      eval(st);
      pc.tokens() = ids;
    } catch (...) {
      pc = std::move(before);
      throw;
    }
    mark_filled(m, c);
  });
}

int ingot_prompt_cache_length(ingot_prompt_cache c, int64_t* out) {
  return guard([&] {
    const llm::PromptCache& pc = cache_of(c, "ingot_prompt_cache_length");
    need_out(out, "ingot_prompt_cache_length");
    *out = static_cast<int64_t>(pc.tokens().size());
  });
}

int ingot_prompt_cache_tokens(ingot_prompt_cache c, int32_t** ids, size_t* n) {
  return guard([&] {
    const llm::PromptCache& pc = cache_of(c, "ingot_prompt_cache_tokens");
    need_out(ids, "ingot_prompt_cache_tokens");
    need_out(n, "ingot_prompt_cache_tokens");
    *ids = dup_ids(pc.tokens());
    *n = pc.tokens().size();
  });
}

int ingot_prompt_cache_nbytes(ingot_prompt_cache c, int64_t* out) {
  return guard([&] {
    const llm::PromptCache& pc = cache_of(c, "ingot_prompt_cache_nbytes");
    need_out(out, "ingot_prompt_cache_nbytes");
    *out = pc.nbytes();
  });
}

int ingot_prompt_cache_trim(ingot_prompt_cache c, int64_t length) {
  return guard([&] {
    llm::PromptCache& pc = cache_of(c, "ingot_prompt_cache_trim");
    const int64_t held = static_cast<int64_t>(pc.tokens().size());
    if (length < 0 || length > held)
      raise("[capi] ingot_prompt_cache_trim: length {} outside [0, {}] (the ids held)", length,
            held);
    pc.trim_to(length);
  });
}

int ingot_prompt_cache_clear(ingot_prompt_cache c) {
  return guard([&] { cache_of(c, "ingot_prompt_cache_clear").clear(); });
}

int ingot_prompt_cache_save(ingot_prompt_cache c, const char* path) {
  return guard([&] {
    const llm::PromptCache& pc = cache_of(c, "ingot_prompt_cache_save");
    if (!path) raise("[capi] ingot_prompt_cache_save: null path");
    if (pc.offset() > 0 && c->with_adapter)
      raise(
          "[capi] ingot_prompt_cache_save: the cache was filled with a LoRA adapter applied, "
          "which a cache file cannot record");
    pc.save(path);
  });
}

int ingot_prompt_cache_load(ingot_model m, const char* path, ingot_prompt_cache* out) {
  return guard([&] {
    const models::Model& model = model_of(m, "ingot_prompt_cache_load");
    if (!path) raise("[capi] ingot_prompt_cache_load: null path");
    need_out(out, "ingot_prompt_cache_load");
    if (m->applied)
      raise(
          "[capi] ingot_prompt_cache_load: the model has a LoRA adapter applied (a cache file "
          "holds keys and values of the base weights)");
    auto c = std::make_unique<ingot_prompt_cache_s>();
    c->pc = std::make_unique<llm::PromptCache>(model, kCacheOptions);
    c->pc->load(path);
    c->model = m->tm.model;
    mark_filled(m, c.get());
    *out = c.release();
  });
}

int ingot_generate_cached(ingot_model m, ingot_prompt_cache c, const int32_t* prompt,
                          size_t n_prompt, const ingot_generate_options* opts,
                          ingot_token_fn on_token, ingot_text_fn on_text, void* ctx,
                          ingot_generation* out) {
  return guard([&] {
    const char* what = "ingot_generate_cached";
    if (out) std::memset(out, 0, sizeof *out);
    llm::PromptCache& pc = cache_for(m, c, what);
    try {
      generate_impl(m, &pc, what, prompt, n_prompt, opts, on_token, on_text, ctx, out);
    } catch (...) {
      settle(pc);
      throw;
    }
    mark_filled(m, c);
  });
}

int ingot_score_cached(ingot_model m, ingot_prompt_cache c, const int32_t* const* prompts,
                       const size_t* prompt_lengths, const int32_t* const* continuations,
                       const size_t* cont_lengths, size_t n, int64_t batch_size, double* sums,
                       double* token_logprobs) {
  return guard([&] {
    const char* what = "ingot_score_cached";
    const llm::PromptCache& pc = cache_for(m, c, what);
    const models::Model& model = *m->tm.model;
    if (n > 0) need_out(sums, what);
    if (batch_size < 0) raise("[capi] {}: negative batch size {}", what, batch_size);
    auto p = id_lists(prompts, prompt_lengths, n, what);
    auto q = id_lists(continuations, cont_lengths, n, what);
    const int64_t vocab = model.vocab_size();
    std::vector<llm::ScoreRequest> reqs(n);
    for (size_t i = 0; i < n; ++i) {
      check_ids(p[i], vocab, what, "prompt", i);
      check_ids(q[i], vocab, what, "continuation", i);
      check_starts_with(p[i], pc.tokens(), what, "prompt", i);
      reqs[i] = {std::move(p[i]), std::move(q[i])};
    }
    auto r = llm::score(model, reqs, batch_size == 0 ? 16 : batch_size, &pc);
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
      sums[i] = r[i].sum;
      if (token_logprobs)
        for (double v : r[i].token_logprobs) token_logprobs[at++] = v;
    }
  });
}

int ingot_classify_cached(ingot_model m, ingot_prompt_cache c, const int32_t* const* prompts,
                          const size_t* lengths, size_t n, const int32_t* const* labels,
                          const size_t* label_lengths, size_t n_labels, int64_t batch_size,
                          double* probs) {
  return guard([&] {
    const char* what = "ingot_classify_cached";
    const llm::PromptCache& pc = cache_for(m, c, what);
    if (n > 0) need_out(probs, what);
    auto p = id_lists(prompts, lengths, n, what);
    auto l = id_lists(labels, label_lengths, n_labels, what);
    auto r = classify_cached(*m->tm.model, pc, p, l, batch_size, what, "prompt");
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < n_labels; ++k) probs[i * n_labels + k] = r[i][k];
  });
}

int ingot_classify_texts_cached(ingot_model m, ingot_prompt_cache c, const char* template_text,
                                const char* const* labels, size_t n_labels,
                                const char* const* texts, size_t n_texts, int64_t batch_size,
                                double* probs) {
  return guard([&] {
    const char* what = "ingot_classify_texts_cached";
    const llm::PromptCache& pc = cache_for(m, c, what);
    if (!m->tm.tokenizer) raise("[capi] {}: the model has no tokenizer", what);
    if (!template_text) raise("[capi] {}: null template", what);
    if (n_texts > 0) need_out(probs, what);
    if ((n_labels > 0 && !labels) || (n_texts > 0 && !texts))
      raise("[capi] {}: null labels or texts", what);
    const std::string tmpl = template_text;
    const size_t at = tmpl.find("{text}");
    if (at == std::string::npos || tmpl.find("{text}", at + 1) != std::string::npos)
      raise("[capi] {}: the template must contain {{text}} exactly once", what);
    auto fill = [&](const char* t) { return tmpl.substr(0, at) + t + tmpl.substr(at + 6); };
    for (size_t i = 0; i < n_texts; ++i)
      if (!texts[i]) raise("[capi] {}: text {} is null", what, i);
    // Label ids as llm::classify_texts makes them: the tokens the label adds to a filled
    // prompt, or its standalone tokens when it merges across the boundary.
    const std::string probe = fill(n_texts > 0 ? texts[0] : "");
    const std::vector<int32_t> base = llm::encode_prompt(m->tm, probe);
    std::vector<std::vector<int32_t>> label_ids;
    for (size_t k = 0; k < n_labels; ++k) {
      if (!labels[k] || !*labels[k]) raise("[capi] {}: label {} is null or empty", what, k);
      std::vector<int32_t> full = llm::encode_prompt(m->tm, probe + labels[k]);
      if (full.size() > base.size() && std::equal(base.begin(), base.end(), full.begin()))
        label_ids.emplace_back(full.begin() + static_cast<std::ptrdiff_t>(base.size()), full.end());
      else
        label_ids.push_back(m->tm.tokenizer->encode(labels[k], {.add_special_tokens = false}));
    }
    std::vector<std::vector<int32_t>> prompts;
    prompts.reserve(n_texts);
    for (size_t i = 0; i < n_texts; ++i)
      prompts.push_back(llm::encode_prompt(m->tm, fill(texts[i])));
    auto r = classify_cached(*m->tm.model, pc, prompts, label_ids, batch_size, what, "text");
    for (size_t i = 0; i < n_texts; ++i)
      for (size_t k = 0; k < n_labels; ++k) probs[i * n_labels + k] = r[i][k];
  });
}

}  // extern "C"
