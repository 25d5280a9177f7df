// C ABI: the LLM level: tokenizer, streaming detokenizer, chat templates, model loading,
// generation (single and batched, with per-token callbacks and cancellation), score, classify
// and embed.
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "capi/capi_internal.h"
#include "capi/capi_llm_internal.h"
#include "llm/generate.h"
#include "llm/score.h"
#include "llm/text/text.h"
#include "models/model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter.h"

using namespace ingot;        // NOLINT
using namespace ingot::capi;  // NOLINT

struct ingot_stream_decoder_s {
  std::shared_ptr<tokenizer::Tokenizer> tok;  // keeps the borrowed tokenizer alive
  std::unique_ptr<tokenizer::StreamDecoder> dec;
};

namespace {

const tokenizer::Tokenizer& tok_of(ingot_tokenizer t, const char* what) {
  if (!t || !t->tok) raise("[capi] {}: null tokenizer handle", what);
  return *t->tok;
}
const models::Model& model_of(ingot_model m, const char* what) {
  if (!m || !m->tm.model) raise("[capi] {}: null model handle", what);
  return *m->tm.model;
}
void need_str(const char* s, const char* what) {
  if (!s) raise("[capi] {}: null string", what);
}

int finish_code(llm::FinishReason r, bool cancelled) {
  if (cancelled && r == llm::FinishReason::stop) return INGOT_FINISH_CANCELLED;
  switch (r) {
    case llm::FinishReason::length:
      return INGOT_FINISH_LENGTH;
    case llm::FinishReason::eos:
      return INGOT_FINISH_EOS;
    case llm::FinishReason::stop:
      return INGOT_FINISH_STOP;
    case llm::FinishReason::cancelled:
      return INGOT_FINISH_CANCELLED;
  }
  return INGOT_FINISH_STOP;
}

ingot_generation_metrics metrics_of(const llm::GenerationMetrics& m) {
  return {m.prompt_tokens,
          m.generated_tokens,
          m.prefill_seconds,
          m.decode_seconds,
          m.time_to_first_token,
          m.prefill_tokens_per_second(),
          m.decode_tokens_per_second(),
          m.peak_memory_bytes};
}

/// Token-level options from the C struct (defaults when NULL).
llm::GenerateOptions gen_options(const ingot_generate_options* o) {
  const ingot_generate_options d = ingot_generate_options_default();
  if (!o) o = &d;
  llm::GenerateOptions g;
  g.max_tokens = o->max_tokens;
  g.sampler.temperature = o->temperature;
  g.sampler.top_k = o->top_k;
  g.sampler.top_p = o->top_p;
  g.sampler.min_p = o->min_p;
  g.sampler.repetition_penalty = o->repetition_penalty;
  g.sampler.seed = o->seed;
  g.prefill_chunk = o->prefill_chunk;
  if (o->n_stop_ids > 0 && !o->stop_ids) raise("[capi] generate options: null stop_ids");
  if (o->n_stop_ids > 0) g.stop_ids.assign(o->stop_ids, o->stop_ids + o->n_stop_ids);
  if (g.max_tokens < 0) raise("[capi] generate options: negative max_tokens {}", g.max_tokens);
  return g;
}

}  // namespace

std::vector<std::vector<int32_t>> ingot::capi::id_lists(const int32_t* const* p, const size_t* len,
                                                        size_t n, const char* what) {
  if (n > 0 && (!p || !len)) raise("[capi] {}: null id lists", what);
  std::vector<std::vector<int32_t>> r(n);
  for (size_t i = 0; i < n; ++i) {
    if (len[i] > 0 && !p[i]) raise("[capi] {}: list {} is null", what, i);
    if (len[i] > 0) r[i].assign(p[i], p[i] + len[i]);
  }
  return r;
}

void capi::generate_impl(ingot_model m, llm::PromptCache* cache, const char* what,
                         const int32_t* prompt, size_t n_prompt, const ingot_generate_options* opts,
                         ingot_token_fn on_token, ingot_text_fn on_text, void* ctx,
                         ingot_generation* out) {
  const auto& model = model_of(m, what);
  need_out(out, what);
  std::memset(out, 0, sizeof *out);
  if (n_prompt == 0 || !prompt) raise("[capi] {}: empty prompt", what);
  const std::vector<int32_t> ids(prompt, prompt + n_prompt);
  const ingot_generate_options d = ingot_generate_options_default();
  const ingot_generate_options& o = opts ? *opts : d;
  bool cancelled = false;
  llm::GenerateOptions gen = gen_options(&o);
  if (on_token)
    gen.on_token = [&](int row, int32_t id) {
      if (on_token(ctx, row, id) != 0) cancelled = true;
      return !cancelled;
    };
  std::vector<int32_t> tokens;
  std::string text;
  int finish = 0;
  llm::GenerationMetrics metrics;
  if (m->tm.tokenizer) {
    llm::TextGenerateOptions t;
    t.gen = std::move(gen);
    t.stop_at_eos = o.stop_at_eos != 0;
    t.skip_special_tokens = o.skip_special_tokens != 0;
    if (o.n_stop_strings > 0 && !o.stop_strings)
      raise("[capi] generate options: null stop_strings");
    for (size_t i = 0; i < o.n_stop_strings; ++i) {
      need_str(o.stop_strings[i], "generate options: stop string");
      t.stop_strings.emplace_back(o.stop_strings[i]);
    }
    if (on_text) t.on_text = [&](const std::string& p) { on_text(ctx, p.data(), p.size()); };
    llm::TextResult r = llm::generate_text(m->tm, ids, t, cache);
    tokens = std::move(r.tokens);
    text = std::move(r.text);
    finish = finish_code(r.finish, cancelled);
    metrics = r.metrics;
  } else {
    if (o.n_stop_strings > 0) raise("[capi] {}: stop strings need a tokenizer", what);
    llm::GenerationResult r = llm::generate(model, {ids}, gen, cache);
    tokens = std::move(r.tokens[0]);
    finish = finish_code(r.finish[0], cancelled);
    metrics = r.metrics;
  }
  out->text = dup_string(text);
  out->tokens = dup_ids(tokens);
  out->n_tokens = tokens.size();
  out->finish_reason = finish;
  out->metrics = metrics_of(metrics);
}

extern "C" {

// ---- tokenizer

int ingot_tokenizer_load(const char* dir, ingot_tokenizer* out) {
  return guard([&] {
    need_str(dir, "ingot_tokenizer_load");
    need_out(out, "ingot_tokenizer_load");
    auto t = std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(dir));
    *out = new ingot_tokenizer_s{std::move(t)};
  });
}
int ingot_tokenizer_free(ingot_tokenizer t) {
  return guard([&] { delete t; });
}
int ingot_tokenizer_encode(ingot_tokenizer t, const char* text, int add_special_tokens,
                           int32_t** ids, size_t* n) {
  return guard([&] {
    const auto& tok = tok_of(t, "ingot_tokenizer_encode");
    need_str(text, "ingot_tokenizer_encode");
    need_out(ids, "ingot_tokenizer_encode");
    need_out(n, "ingot_tokenizer_encode");
    std::vector<int32_t> v = tok.encode(text, {.add_special_tokens = add_special_tokens != 0});
    *ids = dup_ids(v);
    *n = v.size();
  });
}
int ingot_tokenizer_decode(ingot_tokenizer t, const int32_t* ids, size_t n, int skip_special_tokens,
                           char** text) {
  return guard([&] {
    const auto& tok = tok_of(t, "ingot_tokenizer_decode");
    need_out(text, "ingot_tokenizer_decode");
    if (n > 0 && !ids) raise("[capi] ingot_tokenizer_decode: null ids");
    std::vector<int32_t> v(ids, ids + n);
    *text = dup_string(tok.decode(v, {.skip_special_tokens = skip_special_tokens != 0}));
  });
}
int ingot_tokenizer_vocab_size(ingot_tokenizer t, int32_t* out) {
  return guard([&] {
    need_out(out, "ingot_tokenizer_vocab_size");
    *out = tok_of(t, "ingot_tokenizer_vocab_size").vocab_size();
  });
}
int ingot_tokenizer_token_to_id(ingot_tokenizer t, const char* token, int32_t* out) {
  return guard([&] {
    const auto& tok = tok_of(t, "ingot_tokenizer_token_to_id");
    need_str(token, "ingot_tokenizer_token_to_id");
    need_out(out, "ingot_tokenizer_token_to_id");
    auto id = tok.token_to_id(token);
    if (!id) raise("[capi] ingot_tokenizer_token_to_id: unknown token '{}'", token);
    *out = *id;
  });
}
int ingot_tokenizer_eos_ids(ingot_tokenizer t, int32_t** ids, size_t* n) {
  return guard([&] {
    const auto& tok = tok_of(t, "ingot_tokenizer_eos_ids");
    need_out(ids, "ingot_tokenizer_eos_ids");
    need_out(n, "ingot_tokenizer_eos_ids");
    const auto& v = tok.special_tokens().eos_ids;
    *ids = dup_ids(v);
    *n = v.size();
  });
}
int ingot_tokenizer_apply_chat_template(ingot_tokenizer t, const char* conversation,
                                        int add_generation_prompt, char** text) {
  return guard([&] {
    const auto& tok = tok_of(t, "ingot_tokenizer_apply_chat_template");
    need_str(conversation, "ingot_tokenizer_apply_chat_template");
    need_out(text, "ingot_tokenizer_apply_chat_template");
    tokenizer::ChatOptions o;
    if (add_generation_prompt >= 0) o.add_generation_prompt = add_generation_prompt != 0;
    *text = dup_string(tokenizer::apply_chat_template(tok, conversation, o));
  });
}

int ingot_stream_decoder_new(ingot_tokenizer t, int skip_special_tokens,
                             ingot_stream_decoder* out) {
  return guard([&] {
    tok_of(t, "ingot_stream_decoder_new");
    need_out(out, "ingot_stream_decoder_new");
    auto d = std::make_unique<ingot_stream_decoder_s>();
    d->tok = t->tok;
    d->dec = std::make_unique<tokenizer::StreamDecoder>(
        *d->tok, tokenizer::DecodeOptions{.skip_special_tokens = skip_special_tokens != 0});
    *out = d.release();
  });
}
int ingot_stream_decoder_free(ingot_stream_decoder d) {
  return guard([&] { delete d; });
}
int ingot_stream_decoder_step(ingot_stream_decoder d, int32_t id, char** piece) {
  return guard([&] {
    if (!d) raise("[capi] ingot_stream_decoder_step: null decoder handle");
    need_out(piece, "ingot_stream_decoder_step");
    *piece = dup_string(d->dec->step(id));
  });
}
int ingot_stream_decoder_finish(ingot_stream_decoder d, char** piece) {
  return guard([&] {
    if (!d) raise("[capi] ingot_stream_decoder_finish: null decoder handle");
    need_out(piece, "ingot_stream_decoder_finish");
    *piece = dup_string(d->dec->finish());
  });
}

// ---- models

int ingot_model_load(const char* dir, const ingot_model_options* opts, ingot_model* out) {
  return guard([&] {
    need_str(dir, "ingot_model_load");
    need_out(out, "ingot_model_load");
    models::LoadModelOptions o;
    o.warn = false;
    if (opts && opts->device) o.device = Device::parse(opts->device);
    if (opts && opts->dtype) o.dtype = dtype_from_name(opts->dtype);
    auto m = std::make_unique<ingot_model_s>();
    m->tm.model = models::load_model(dir, o);
    m->dir = dir;
    if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json"))
      m->tm.tokenizer = std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(dir));
    if (opts && opts->adapter)
      m->applied = std::make_shared<train::LoraAdapter>(
          train::load_and_apply_adapter(*m->tm.model, opts->adapter));
    *out = m.release();
  });
}
int ingot_model_free(ingot_model m) {
  return guard([&] { delete m; });
}
int ingot_model_tokenizer(ingot_model m, ingot_tokenizer* out) {
  return guard([&] {
    model_of(m, "ingot_model_tokenizer");
    need_out(out, "ingot_model_tokenizer");
    if (!m->tm.tokenizer) raise("[capi] ingot_model_tokenizer: the model has no tokenizer.json");
    *out = new ingot_tokenizer_s{m->tm.tokenizer};
  });
}
int ingot_model_vocab_size(ingot_model m, int64_t* out) {
  return guard([&] {
    need_out(out, "ingot_model_vocab_size");
    *out = model_of(m, "ingot_model_vocab_size").vocab_size();
  });
}
int ingot_model_hidden_size(ingot_model m, int64_t* out) {
  return guard([&] {
    need_out(out, "ingot_model_hidden_size");
    *out = model_of(m, "ingot_model_hidden_size").config().hidden_size;
  });
}
int ingot_model_num_layers(ingot_model m, int* out) {
  return guard([&] {
    need_out(out, "ingot_model_num_layers");
    *out = model_of(m, "ingot_model_num_layers").num_layers();
  });
}
int ingot_model_dtype(ingot_model m, int* out) {
  return guard([&] {
    need_out(out, "ingot_model_dtype");
    *out = static_cast<int>(model_of(m, "ingot_model_dtype").dtype());
  });
}
int ingot_model_device(ingot_model m, ingot_device* out) {
  return guard([&] {
    need_out(out, "ingot_model_device");
    *out = from_device(model_of(m, "ingot_model_device").device());
  });
}
int ingot_model_architecture(ingot_model m, const char** out) {
  return guard([&] {
    need_out(out, "ingot_model_architecture");
    *out = model_of(m, "ingot_model_architecture").architecture().c_str();
  });
}
int ingot_model_forward(ingot_model m, ingot_array ids, ingot_array* out) {
  return guard([&] {
    const auto& model = model_of(m, "ingot_model_forward");
    const Array& x = arr(ids, "ingot_model_forward");
    if (x.ndim() != 2 || !is_integral(x.dtype()))
      raise("[capi] ingot_model_forward: ids must be a 2-d integer array, got {} {}",
            shape_str(x.shape()), dtype_name(x.dtype()));
    put(out, model.forward(x));
  });
}

// ---- generation

ingot_generate_options ingot_generate_options_default(void) {
  ingot_generate_options o;
  std::memset(&o, 0, sizeof o);
  o.max_tokens = 256;
  o.top_p = 1.0f;
  o.repetition_penalty = 1.0f;
  o.stop_at_eos = 1;
  o.skip_special_tokens = 1;
  o.prefill_chunk = 512;
  return o;
}

int ingot_generate(ingot_model m, const int32_t* prompt, size_t n_prompt,
                   const ingot_generate_options* opts, ingot_token_fn on_token,
                   ingot_text_fn on_text, void* ctx, ingot_generation* out) {
  return guard([&] {
    capi::generate_impl(m, nullptr, "ingot_generate", prompt, n_prompt, opts, on_token, on_text,
                        ctx, out);
  });
}

void ingot_generation_free(ingot_generation* g) {
  if (!g) return;
  std::free(g->tokens);
  std::free(g->text);
  g->tokens = nullptr;
  g->text = nullptr;
  g->n_tokens = 0;
}

int ingot_generate_batch(ingot_model m, const int32_t* const* prompts, const size_t* lengths,
                         size_t n, const ingot_generate_options* opts, ingot_token_fn on_token,
                         void* ctx, ingot_batch_generation* out) {
  return guard([&] {
    const auto& model = model_of(m, "ingot_generate_batch");
    need_out(out, "ingot_generate_batch");
    std::memset(out, 0, sizeof *out);
    auto ids = id_lists(prompts, lengths, n, "ingot_generate_batch");
    if (ids.empty()) raise("[capi] ingot_generate_batch: no prompts");
    llm::GenerateOptions gen = gen_options(opts);
    const bool stop_at_eos = opts ? opts->stop_at_eos != 0 : true;
    if (stop_at_eos && m->tm.tokenizer)
      for (int32_t id : m->tm.tokenizer->special_tokens().eos_ids) gen.stop_ids.push_back(id);
    std::vector<bool> cancelled(n, false);
    if (on_token)
      gen.on_token = [&](int row, int32_t id) {
        if (on_token(ctx, row, id) != 0) cancelled[static_cast<size_t>(row)] = true;
        return !cancelled[static_cast<size_t>(row)];
      };
    llm::GenerationResult r = llm::generate(model, ids, gen);
    size_t total = 0;
    for (const auto& t : r.tokens) total += t.size();
    auto* toks = static_cast<int32_t*>(std::malloc(std::max<size_t>(total, 1) * sizeof(int32_t)));
    auto* offs = static_cast<size_t*>(std::malloc((n + 1) * sizeof(size_t)));
    auto* fin = static_cast<int*>(std::malloc(n * sizeof(int)));
    if (!toks || !offs || !fin) {
      std::free(toks);
      std::free(offs);
      std::free(fin);
      throw std::bad_alloc();
    }
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
      offs[i] = at;
      if (!r.tokens[i].empty())
        std::memcpy(toks + at, r.tokens[i].data(), r.tokens[i].size() * sizeof(int32_t));
      at += r.tokens[i].size();
      fin[i] = finish_code(r.finish[i], cancelled[i]);
    }
    offs[n] = at;
    out->tokens = toks;
    out->offsets = offs;
    out->finish_reasons = fin;
    out->n_rows = n;
    out->metrics = metrics_of(r.metrics);
  });
}
void ingot_batch_generation_free(ingot_batch_generation* g) {
  if (!g) return;
  std::free(g->tokens);
  std::free(g->offsets);
  std::free(g->finish_reasons);
  g->tokens = nullptr;
  g->offsets = nullptr;
  g->finish_reasons = nullptr;
  g->n_rows = 0;
}

// ---- score, classify, embed

int ingot_score(ingot_model m, const int32_t* const* prompts, const size_t* prompt_lengths,
                const int32_t* const* continuations, const size_t* cont_lengths, size_t n,
                int64_t batch_size, double* sums, double* token_logprobs) {
  return guard([&] {
    const auto& model = model_of(m, "ingot_score");
    if (n > 0) need_out(sums, "ingot_score");
    auto p = id_lists(prompts, prompt_lengths, n, "ingot_score prompts");
    auto c = id_lists(continuations, cont_lengths, n, "ingot_score continuations");
    std::vector<llm::ScoreRequest> reqs(n);
    for (size_t i = 0; i < n; ++i) reqs[i] = {std::move(p[i]), std::move(c[i])};
    if (batch_size < 0) raise("[capi] ingot_score: negative batch size {}", batch_size);
    auto r = llm::score(model, reqs, batch_size == 0 ? 16 : batch_size);
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
      sums[i] = r[i].sum;
      if (token_logprobs)
        for (double v : r[i].token_logprobs) token_logprobs[at++] = v;
    }
  });
}

int ingot_classify(ingot_model m, const int32_t* const* prompts, const size_t* lengths, size_t n,
                   const int32_t* const* labels, const size_t* label_lengths, size_t n_labels,
                   int64_t batch_size, double* probs) {
  return guard([&] {
    const auto& model = model_of(m, "ingot_classify");
    if (n > 0) need_out(probs, "ingot_classify");
    auto p = id_lists(prompts, lengths, n, "ingot_classify prompts");
    auto l = id_lists(labels, label_lengths, n_labels, "ingot_classify labels");
    if (batch_size < 0) raise("[capi] ingot_classify: negative batch size {}", batch_size);
    llm::ClassifyOptions o;
    if (batch_size > 0) o.batch_size = batch_size;
    auto r = llm::classify(model, p, l, o);
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < n_labels; ++k) probs[i * n_labels + k] = r[i][k];
  });
}

int ingot_classify_texts(ingot_model m, const char* template_text, const char* const* labels,
                         size_t n_labels, const char* const* texts, size_t n_texts,
                         int64_t batch_size, double* probs) {
  return guard([&] {
    model_of(m, "ingot_classify_texts");
    if (!m->tm.tokenizer) raise("[capi] ingot_classify_texts: the model has no tokenizer");
    need_str(template_text, "ingot_classify_texts template");
    if (n_texts > 0) need_out(probs, "ingot_classify_texts");
    if ((n_labels > 0 && !labels) || (n_texts > 0 && !texts))
      raise("[capi] ingot_classify_texts: null labels or texts");
    llm::TextClassifier c{template_text, {}};
    for (size_t k = 0; k < n_labels; ++k) {
      need_str(labels[k], "ingot_classify_texts label");
      c.labels.emplace_back(labels[k]);
    }
    std::vector<std::string> t;
    t.reserve(n_texts);
    for (size_t i = 0; i < n_texts; ++i) {
      need_str(texts[i], "ingot_classify_texts text");
      t.emplace_back(texts[i]);
    }
    if (batch_size < 0) raise("[capi] ingot_classify_texts: negative batch size {}", batch_size);
    llm::ClassifyOptions o;
    if (batch_size > 0) o.batch_size = batch_size;
    auto r = llm::classify_texts(m->tm, c, t, o);
    for (size_t i = 0; i < n_texts; ++i)
      for (size_t k = 0; k < n_labels; ++k) probs[i * n_labels + k] = r[i][k];
  });
}

int ingot_embed(ingot_model m, const int32_t* const* prompts, const size_t* lengths, size_t n,
                int pooling, int64_t batch_size, float* out) {
  return guard([&] {
    const auto& model = model_of(m, "ingot_embed");
    if (n > 0) need_out(out, "ingot_embed");
    if (pooling != INGOT_POOL_LAST && pooling != INGOT_POOL_MEAN)
      raise("[capi] ingot_embed: invalid pooling {}", pooling);
    auto p = id_lists(prompts, lengths, n, "ingot_embed");
    if (batch_size < 0) raise("[capi] ingot_embed: negative batch size {}", batch_size);
    llm::ClassifyOptions o;
    if (batch_size > 0) o.batch_size = batch_size;
    auto r = llm::embed(model, p,
                        pooling == INGOT_POOL_MEAN ? llm::Pooling::mean : llm::Pooling::last, o);
    size_t at = 0;
    for (const auto& row : r)
      for (float v : row) out[at++] = v;
  });
}

}  // extern "C"
