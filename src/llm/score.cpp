// Scoring, classification and embeddings (see score.h). Classification groups prompts, prefills
// the group's shared prefix once (or extends a precomputed one), then runs length-sorted batches
// whose padding sits between the prefix and each row's own tokens (masked, positions skip it),
// or packed batches: the rows' own tokens back to back over the prefix's keys, no padding.
#include "llm/score.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "core/allocator.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "llm/generate.h"
#include "util/env.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

/// INGOT_CLASSIFY_PIPELINE=0: finish each classify/embed batch before building the next (for
/// measuring what the overlap is worth).
bool pipelined() {
  static const bool on = env::get_int("INGOT_CLASSIFY_PIPELINE", 1) != 0;
  return on;
}

// set_classify_packed's override: -1 none (the environment), 0 off, 1 on.
std::atomic<int> packed_override{-1};
std::atomic<int64_t> packed_batches{0};

/// Whether classify / embed batches on `model` are packed: set_classify_packed, else
/// INGOT_CLASSIFY_PACKED, else on for a model on a GPU; and only where the model takes them.
bool packed_on(const models::Model& model) {
  static const long env = env::get_int("INGOT_CLASSIFY_PACKED", -1);
  const int o = packed_override.load();
  const bool want = o >= 0     ? o == 1
                    : env >= 0 ? env != 0
                               : model.device().type == Device::Type::cuda;
  return want && model.supports_packed();
}

/// Tokens of an automatically sized batch on a GPU (INGOT_CLASSIFY_TOKENS, default 32,768).
int64_t batch_tokens() {
  static const int64_t tokens = std::max<long>(1, env::get_int("INGOT_CLASSIFY_TOKENS", 32768));
  return tokens;
}

/// Bytes of one layer's activations per token of a batch: x, the residual, a norm's output and
/// the attention output; the stacked q|k|v product; the gate|up product and the gated values.
int64_t activation_bytes(const models::Model& model) {
  const models::ModelConfig& c = model.config();
  const int64_t es = static_cast<int64_t>(size_of(model.dtype()));
  const int64_t hd = c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads;
  return es * (4 * c.hidden_size + (c.num_attention_heads + 2 * c.num_key_value_heads) * hd +
               3 * c.intermediate_size);
}

/// Tokens of an automatically sized packed batch on a GPU: batch_tokens(), fewer when their
/// activations would take more than a quarter of the device memory still available (no cache:
/// the shared prefix's keys and values are read by every row, not copied).
int64_t packed_batch_tokens(const models::Model& model) {
  const auto budget = static_cast<int64_t>(memory::available(model.device()) / 4);
  return std::clamp<int64_t>(budget / std::max<int64_t>(1, activation_bytes(model)), 1,
                             batch_tokens());
}

void check_ids(const std::vector<int32_t>& ids, int64_t vocab, const char* what, size_t i) {
  check_token_ids(ids, vocab, "score", what, i);
}

/// Softmax of label log-likelihoods in float64.
LabelProbs normalise(const std::vector<double>& ll) {
  double m = *std::max_element(ll.begin(), ll.end());
  LabelProbs p(ll.size());
  double z = 0;
  for (size_t j = 0; j < ll.size(); ++j) z += (p[j] = std::exp(ll[j] - m));
  for (double& v : p) v /= z;
  return p;
}

/// Caches of scoring and classification: filled once by a prefill and extended by a few label
/// tokens at most, so they grow in steps of 16 positions rather than generation's 256 (a
/// 64-token batch's keys and values are not allocated and zeroed four times over).
constexpr PromptCacheOptions kScoreCache{.unbounded = true, .step = 16};

/// Ids held by a precomputed prefix cache (ClassifyOptions::prefix; 0 for none or an empty one),
/// after checking that it fits `model` and that each of the `n` prompts (prompt_of(i)) starts
/// with them.
template <class PromptOf>
size_t check_prefix(const models::Model& model, const PromptCache* prefix, const char* what,
                    size_t n, const PromptOf& prompt_of) {
  if (!prefix || prefix->tokens().empty()) return 0;
  const PromptCache& pc = *prefix;
  const std::vector<int32_t>& ids = pc.tokens();
  if (pc.offset() != static_cast<int64_t>(ids.size()) || pc.batch() != 1)
    raise(
        "[{}] the prefix cache holds {} ids for {} positions in {} rows (needs one row, one id "
        "per position)",
        what, ids.size(), pc.offset(), pc.batch());
  if (pc.device() != model.device())
    raise("[{}] the prefix cache is on another device than the model", what);
  if (pc.num_layers() != model.num_layers())
    raise("[{}] the prefix cache was made for another model ({} layers, not {})", what,
          pc.num_layers(), model.num_layers());
  for (int i = 0; i < pc.num_layers(); ++i) {
    const LayerCacheOptions& o = pc.layer(i).options();
    if (o.window != model.config().layers[static_cast<size_t>(i)].window)
      raise("[{}] the prefix cache was made for another model (layer {} has window {}, not {})",
            what, i, o.window, model.config().layers[static_cast<size_t>(i)].window);
    if (o.max_size != 0)
      raise(
          "[{}] the prefix cache is bounded on layer {} (window {}); make it with "
          "PromptCacheOptions::unbounded",
          what, i, o.window);
  }
  for (size_t i = 0; i < n; ++i) {
    const std::vector<int32_t>& pr = prompt_of(i);
    if (pr.size() < ids.size() || !std::equal(ids.begin(), ids.end(), pr.begin()))
      raise("[{}] prompt {} ({} ids) does not start with the prefix cache's {} ids", what, i,
            pr.size(), ids.size());
  }
  return ids.size();
}

/// A batch's cache: a copy of `base` (one row) rewound to its first `pb` columns and repeated
/// for `rows` rows; an empty cache when `pb` is 0. `base` is not changed.
PromptCache batch_cache(const models::Model& model, const PromptCache& base, size_t pb,
                        int64_t rows) {
  if (pb == 0) return PromptCache(model, kScoreCache);
  PromptCache cache = base.copy();
  if (static_cast<int64_t>(pb) < cache.offset()) cache.trim_to(static_cast<int64_t>(pb));
  cache.repeat_rows(rows);
  return cache;
}

/// A run over groups of prompts sharing a prefilled prefix (opt.prefix, checked by the caller,
/// extended by the further ids a group shares); calls `batch_fn` for each length-sorted batch
/// with its cache (prefix + padded rows prefilled) and hidden states, or for a packed batch
/// (`packed`: the rows' own ids back to back over the prefix's keys and values, no cache) its
/// rows' last hidden states.
/// `batch_fn` queues the batch's results (evaluated, reads started with PendingRead) and
/// returns what finishes it (reads and stores them); that runs after the next batch has been
/// queued, so the device works on one batch while the host builds the next and reads the last.
struct GroupRunner {
  const models::Model& model;
  const ClassifyOptions& opt;
  /// Columns of final hidden state to keep per batch (1 = last, 0 = all).
  int64_t keep_last = 1;
  /// Hidden states of the prefix (all columns) are wanted (mean pooling).
  bool want_prefix_hidden = false;
  /// Packed batches (keep_last 1, no prefix hidden states; batch_fn does not use the cache).
  bool packed = false;

  struct Batch {
    std::vector<size_t> items;           // prompt indices, one per row
    PromptCache* cache;                  // nullptr for a packed batch
    Array hidden;                        // [B, kept columns, E]
    int64_t prefix_len;                  // P: cached columns the batch's rows start with
    std::optional<Array> prefix_hidden;  // [1, P, E] (want_prefix_hidden)
    std::vector<int64_t> rest_len;       // tokens after the prefix per row
    int64_t width;                       // padded columns after the prefix
  };

  using Finish = std::function<void()>;

  void run(const std::vector<std::vector<int32_t>>& prompts,
           const std::function<Finish(Batch&)>& batch_fn,
           const std::function<void(size_t first, size_t last)>& group_done) {
    const size_t n = prompts.size();
    const size_t gsize = static_cast<size_t>(std::max<int64_t>(1, opt.group_size));
    size_t done = 0;
    Finish pending;  // the last queued batch's finish
    size_t pending_rows = 0;
    auto finish = [&] {
      if (!pending) return;
      Finish f = std::move(pending);
      pending = nullptr;
      f();
      done += pending_rows;
      if (opt.on_progress) opt.on_progress(static_cast<int64_t>(done), static_cast<int64_t>(n));
    };
    const size_t given = opt.prefix ? opt.prefix->tokens().size() : 0;
    for (size_t g0 = 0; g0 < n; g0 += gsize) {
      const size_t g1 = std::min(n, g0 + gsize);
      // Longest prefix shared by the group, leaving every prompt at least one own token.
      size_t p = prompts[g0].size() - 1;
      for (size_t i = g0 + 1; i < g1 && p > 0; ++i) {
        const auto& a = prompts[g0];
        const auto& b = prompts[i];
        size_t k = 0;
        while (k < p && k + 1 < b.size() && a[k] == b[k]) ++k;
        p = k;
      }
      // The group's prefix: the given one (`held` columns), extended by the ids the group
      // shares beyond it, or the shared ids prefilled now.
      PromptCache prefix_cache = given > 0 ? opt.prefix->copy() : PromptCache(model, kScoreCache);
      size_t held = given;
      std::optional<Array> prefix_hidden;
      if (p > held) {
        std::vector<std::vector<int32_t>> pre{
            std::vector<int32_t>(prompts[g0].begin() + static_cast<std::ptrdiff_t>(held),
                                 prompts[g0].begin() + static_cast<std::ptrdiff_t>(p))};
        if (held > 0) prefix_cache.set_padding({});
        Array h = prefill(model, pre, prefix_cache, 0, want_prefix_hidden ? 0 : 1);
        std::vector<Array> st = prefix_cache.state();
        st.push_back(h);
        eval(st);
        if (want_prefix_hidden) prefix_hidden = h;  // held is 0 here (no given prefix)
        held = p;
      }
      // Packed batches read the prefix's keys and values [1, Hkv, held, D] of every layer in
      // place (a view of the buffers, evaluated once for the group).
      std::vector<std::pair<Array, Array>> prefix_kv;
      if (packed && held > 0) {
        std::vector<Array> kv;
        for (int i = 0; i < prefix_cache.num_layers(); ++i) {
          const LayerCache::Raw r = prefix_cache.layer(i).raw();
          const auto h = static_cast<int64_t>(held);
          prefix_kv.emplace_back(slice_axis(r.keys, 2, 0, h), slice_axis(r.values, 2, 0, h));
          kv.push_back(prefix_kv.back().first);
          kv.push_back(prefix_kv.back().second);
        }
        eval(kv);
      }
      std::vector<size_t> order(g1 - g0);
      std::iota(order.begin(), order.end(), g0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return prompts[a].size() > prompts[b].size(); });
      for (size_t b0 = 0, b1 = 0; b0 < order.size(); b0 = b1) {
        b1 = batch_end(prompts, order, b0, held);
        Batch bt;
        bt.items.assign(order.begin() + b0, order.begin() + b1);
        // Columns of the prefix the batch uses: all, or one fewer than its shortest prompt when
        // a prompt is no longer than the given prefix (its last id must run).
        size_t pb = held;
        for (size_t i : bt.items) pb = std::min(pb, prompts[i].size() - 1);
        bt.prefix_len = static_cast<int64_t>(pb);
        bt.prefix_hidden = prefix_hidden;
        size_t width = 0;
        for (size_t i : bt.items) width = std::max(width, prompts[i].size() - pb);
        bt.width = static_cast<int64_t>(width);
        std::optional<PromptCache> cache;
        if (packed) {
          // The rows' own ids back to back in one row; each attends to the prefix and itself.
          std::vector<int32_t> ids;
          std::vector<int64_t> starts{0};
          for (size_t i : bt.items) {
            const auto& pr = prompts[i];
            ids.insert(ids.end(), pr.begin() + static_cast<std::ptrdiff_t>(pb), pr.end());
            starts.push_back(static_cast<int64_t>(ids.size()));
            bt.rest_len.push_back(static_cast<int64_t>(pr.size() - pb));
          }
          const auto t = static_cast<int64_t>(ids.size());
          models::ForwardOptions fo{.queries = 1, .starts = std::move(starts)};
          if (pb == held) {
            fo.prefix = prefix_kv;
          } else if (pb > 0) {  // a prompt no longer than the given prefix: fewer columns
            for (const auto& [k, v] : prefix_kv)
              fo.prefix.emplace_back(slice_axis(k, 2, 0, static_cast<int64_t>(pb)),
                                     slice_axis(v, 2, 0, static_cast<int64_t>(pb)));
          }
          const Array h = model.hidden(Array(ids, {1, t}, int32), fo);  // [1, N, E]
          bt.hidden = reshape(h, {static_cast<int64_t>(bt.items.size()), 1, h.shape(2)});
          bt.cache = nullptr;
          packed_batches.fetch_add(1);
        } else {
          std::vector<std::vector<int32_t>> rows;
          std::vector<PadSpan> pads;
          for (size_t i : bt.items) {
            const auto& pr = prompts[i];
            const size_t own = pr.size() - pb;
            std::vector<int32_t> row(width - own, pr[pb]);
            row.insert(row.end(), pr.begin() + static_cast<std::ptrdiff_t>(pb), pr.end());
            rows.push_back(std::move(row));
            bt.rest_len.push_back(static_cast<int64_t>(own));
            pads.push_back({bt.prefix_len, bt.prefix_len + static_cast<int64_t>(width - own)});
          }
          cache.emplace(batch_cache(model, prefix_cache, pb, static_cast<int64_t>(rows.size())));
          cache->set_padding(pads);
          bt.cache = &*cache;
          bt.hidden = prefill(model, rows, *cache, 0, keep_last);
        }
        Finish f = batch_fn(bt);
        finish();  // the previous batch, while this one runs
        pending = f ? std::move(f) : Finish([] {});
        pending_rows = bt.items.size();
        if (!pipelined()) finish();
      }
      finish();
      group_done(g0, g1);
    }
  }

  /// End of the batch starting at order[b0] (prompts sorted longest first, `held` prefix
  /// columns): opt.batch_size rows, else auto_batch_rows for its first (longest) prompt; on a
  /// GPU a packed batch takes prompts while their own tokens stay within packed_batch_tokens()
  /// (at least one).
  size_t batch_end(const std::vector<std::vector<int32_t>>& prompts,
                   const std::vector<size_t>& order, size_t b0, size_t held) const {
    const size_t n = order.size();
    if (opt.batch_size > 0) return std::min(n, b0 + static_cast<size_t>(opt.batch_size));
    const int64_t width =
        std::max<int64_t>(1, static_cast<int64_t>(prompts[order[b0]].size() - held));
    if (!packed || model.device().type == Device::Type::cpu)
      return std::min(
          n, b0 + static_cast<size_t>(auto_batch_rows(model, static_cast<int64_t>(held), width)));
    const int64_t budget = packed_batch_tokens(model);
    // Tokens of order[b0, b1): every prompt's ids after the batch's prefix columns pb (the
    // given prefix, or fewer for a prompt no longer than it).
    size_t b1 = b0, pb = held;
    int64_t ids = 0;
    while (b1 < n) {
      const size_t len = prompts[order[b1]].size(), p = std::min(pb, len - 1);
      const int64_t tokens = ids + static_cast<int64_t>(len) -
                             static_cast<int64_t>(b1 - b0 + 1) * static_cast<int64_t>(p);
      if (b1 > b0 && tokens > budget) break;
      ids += static_cast<int64_t>(len);
      pb = p;
      ++b1;
    }
    return b1;
  }
};

}  // namespace

void set_classify_packed(std::optional<bool> on) {
  packed_override.store(on ? (*on ? 1 : 0) : -1);
}

int64_t classify_packed_batches() {
  return packed_batches.load();
}

int64_t auto_batch_rows(const models::Model& model, int64_t prefix, int64_t width) {
  constexpr int64_t kCpuRows = 64, kMaxRows = 1024;
  if (model.device().type == Device::Type::cpu) return kCpuRows;
  const int64_t tokens = batch_tokens();
  const models::ModelConfig& c = model.config();
  const int64_t es = static_cast<int64_t>(size_of(model.dtype()));
  const int64_t hd = c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads;
  // Per token of the batch: one layer's activations. Per column of a row's cache (its copy of
  // the prefix included): every layer's keys and values.
  const int64_t act = activation_bytes(model);
  const int64_t kv = es * 2 * c.num_hidden_layers * c.num_key_value_heads * hd;
  const int64_t row_bytes = std::max<int64_t>(1, width * act + (prefix + width) * kv);
  const auto budget = static_cast<int64_t>(memory::available(model.device()) / 4);
  const int64_t by_memory = budget / row_bytes;
  const int64_t by_tokens = std::max<int64_t>(1, tokens / std::max<int64_t>(1, width));
  return std::clamp<int64_t>(std::min(by_tokens, by_memory), 1, kMaxRows);
}

std::vector<ScoreResult> score(const models::Model& model, const std::vector<ScoreRequest>& reqs,
                               int64_t batch_size, const PromptCache* prefix) {
  const int64_t vocab = model.vocab_size();
  for (size_t i = 0; i < reqs.size(); ++i) {
    check_ids(reqs[i].prompt, vocab, "prompt", i);
    check_ids(reqs[i].continuation, vocab, "continuation", i);
  }
  const size_t p = check_prefix(
      model, prefix, "score", reqs.size(), [&](size_t i) -> const auto& { return reqs[i].prompt; });
  std::vector<ScoreResult> out(reqs.size());
  const size_t bs = static_cast<size_t>(std::max<int64_t>(1, batch_size));
  for (size_t b0 = 0; b0 < reqs.size(); b0 += bs) {
    const size_t b1 = std::min(reqs.size(), b0 + bs);
    // Columns of the prefix the batch reuses (see GroupRunner): 0 without one.
    size_t pb = p;
    for (size_t i = b0; i < b1; ++i) pb = std::min(pb, reqs[i].prompt.size() - 1);
    size_t width = 0, kmax = 0;
    for (size_t i = b0; i < b1; ++i) {
      width = std::max(width, reqs[i].prompt.size() - pb + reqs[i].continuation.size());
      kmax = std::max(kmax, reqs[i].continuation.size());
    }
    std::vector<std::vector<int32_t>> rows;
    std::vector<PadSpan> pads;
    std::vector<int32_t> targets;  // [B, kmax]: continuation right-aligned, 0 where unused
    for (size_t i = b0; i < b1; ++i) {
      const auto& r = reqs[i];
      const size_t len = r.prompt.size() - pb + r.continuation.size();
      std::vector<int32_t> row(width - len, r.prompt[pb]);
      row.insert(row.end(), r.prompt.begin() + static_cast<std::ptrdiff_t>(pb), r.prompt.end());
      row.insert(row.end(), r.continuation.begin(), r.continuation.end());
      rows.push_back(std::move(row));
      pads.push_back({static_cast<int64_t>(pb), static_cast<int64_t>(pb + width - len)});
      std::vector<int32_t> t(kmax - r.continuation.size(), 0);
      t.insert(t.end(), r.continuation.begin(), r.continuation.end());
      targets.insert(targets.end(), t.begin(), t.end());
    }
    PromptCache cache = pb > 0 ? batch_cache(model, *prefix, pb, static_cast<int64_t>(rows.size()))
                               : PromptCache(model, kScoreCache);
    cache.set_padding(pads);
    // Hidden states of the kmax + 1 last columns; column j predicts the token at column j + 1.
    Array h = prefill(model, rows, cache, 0, static_cast<int64_t>(kmax) + 1);
    const int64_t b = static_cast<int64_t>(rows.size()), k = static_cast<int64_t>(kmax);
    Array lp = log_softmax(model.lm_head(slice_axis(h, 1, 0, k)));  // [B, k, V]
    Array tg(targets, {b, k, 1}, int32);
    std::vector<float> got = squeeze(take_along_axis(lp, tg, 2), 2).to_vector<float>();
    for (size_t i = b0; i < b1; ++i) {
      const size_t row = i - b0, kc = reqs[i].continuation.size();
      ScoreResult& sr = out[i];
      for (size_t j = kmax - kc; j < kmax; ++j) {
        sr.token_logprobs.push_back(got[row * kmax + j]);
        sr.sum += got[row * kmax + j];
      }
    }
  }
  return out;
}

std::vector<LabelProbs> classify(const models::Model& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const std::vector<std::vector<int32_t>>& labels,
                                 const ClassifyOptions& opt,
                                 const std::function<void(int64_t, const LabelProbs&)>& on_result) {
  const int64_t vocab = model.vocab_size();
  if (labels.size() < 2) raise("[classify] need at least two labels, got {}", labels.size());
  for (size_t i = 0; i < labels.size(); ++i) check_ids(labels[i], vocab, "label", i);
  for (size_t i = 0; i < prompts.size(); ++i) check_ids(prompts[i], vocab, "prompt", i);
  check_prefix(
      model, opt.prefix, "classify",
      prompts.size(), [&](size_t i) -> const auto& { return prompts[i]; });
  std::vector<int32_t> first;
  for (const auto& l : labels) first.push_back(l[0]);
  std::vector<int32_t> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  const bool first_token_only = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
  const int64_t k = static_cast<int64_t>(labels.size());
  Array first_ids(first, {k}, int32);

  std::vector<LabelProbs> out(prompts.size());
  // Whole label sequences extend each batch's cache: padded batches then.
  GroupRunner runner{model, opt, 1, false, first_token_only && packed_on(model)};
  runner.run(
      prompts,
      [&](GroupRunner::Batch& bt) -> GroupRunner::Finish {
        const int64_t b = static_cast<int64_t>(bt.items.size());
        Array h = reshape(bt.hidden, {b, bt.hidden.shape(2)});  // [B, E]
        if (first_token_only) {
          auto read = std::make_shared<PendingRead>(log_softmax(model.lm_head_rows(h, first_ids)));
          return [read, items = bt.items, &out, nl = labels.size()] {
            std::vector<float> v = read->get<float>();  // [B, K]
            std::vector<double> ll(nl);
            for (size_t r = 0; r < items.size(); ++r) {
              for (size_t j = 0; j < nl; ++j) ll[j] = v[r * nl + j];
              out[items[r]] = normalise(ll);
            }
          };
        }
        std::vector<std::vector<double>> ll(bt.items.size(), std::vector<double>(labels.size()));
        {
          // Whole label sequences: log P(label | prompt) summed over its tokens.
          Array first_lp = log_softmax(model.lm_head(h));  // [B, V]
          for (size_t j = 0; j < labels.size(); ++j) {
            const auto& lab = labels[j];
            const int64_t n = static_cast<int64_t>(lab.size());
            std::vector<int32_t> flat;
            for (int64_t r = 0; r < b; ++r) flat.insert(flat.end(), lab.begin(), lab.end());
            Array lp0 = take(first_lp, Array(std::vector<int32_t>{lab[0]}, {1}, int32), 1);
            Array total = reshape(lp0, {b});
            if (n > 1) {
              PromptCache c = bt.cache->copy();
              std::vector<std::vector<int32_t>> rows(
                  bt.items.size(), std::vector<int32_t>(lab.begin(), lab.end() - 1));
              Array hh = prefill(model, rows, c, 0, 0);  // [B, n-1, E]
              Array lps = log_softmax(model.lm_head(hh));
              std::vector<int32_t> tg;
              for (int64_t r = 0; r < b; ++r) tg.insert(tg.end(), lab.begin() + 1, lab.end());
              Array got = take_along_axis(lps, Array(tg, {b, n - 1, 1}, int32), 2);
              total = total + sum(reshape(got, {b, n - 1}), 1);
            }
            std::vector<float> v = total.to_vector<float>();
            for (size_t r = 0; r < bt.items.size(); ++r) ll[r][j] = v[r];
          }
        }
        for (size_t r = 0; r < bt.items.size(); ++r) out[bt.items[r]] = normalise(ll[r]);
        return nullptr;
      },
      [&](size_t g0, size_t g1) {
        if (on_result)
          for (size_t i = g0; i < g1; ++i) on_result(static_cast<int64_t>(i), out[i]);
      });
  return out;
}

std::vector<std::vector<float>> embed(const models::Model& model,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      Pooling pooling, const ClassifyOptions& opt) {
  const int64_t vocab = model.vocab_size();
  for (size_t i = 0; i < prompts.size(); ++i) check_ids(prompts[i], vocab, "prompt", i);
  const bool mean_pool = pooling == Pooling::mean;
  const size_t given = check_prefix(
      model, opt.prefix, "embed",
      prompts.size(), [&](size_t i) -> const auto& { return prompts[i]; });
  if (mean_pool && given > 0)
    raise("[embed] mean pooling cannot use a prefix cache (it holds no hidden states)");
  std::vector<std::vector<float>> out(prompts.size());
  GroupRunner runner{model, opt, mean_pool ? 0 : 1, mean_pool, !mean_pool && packed_on(model)};
  runner.run(
      prompts,
      [&](GroupRunner::Batch& bt) -> GroupRunner::Finish {
        const int64_t b = static_cast<int64_t>(bt.items.size());
        const int64_t e = bt.hidden.shape(2);
        Array pooled;
        if (!mean_pool) {
          pooled = astype(reshape(bt.hidden, {b, e}), float32);
        } else {
          // Sum of each row's own columns (padding excluded) plus the shared prefix's.
          std::vector<float> w;
          for (int64_t r = 0; r < b; ++r)
            for (int64_t j = 0; j < bt.width; ++j)
              w.push_back(j >= bt.width - bt.rest_len[static_cast<size_t>(r)] ? 1.0f : 0.0f);
          Array wm(w, {b, bt.width, 1}, float32);
          Array s = sum(astype(bt.hidden, float32) * wm, 1);  // [B, E]
          if (bt.prefix_hidden) s = s + sum(astype(*bt.prefix_hidden, float32), 1);
          std::vector<float> cnt;
          for (int64_t r = 0; r < b; ++r)
            cnt.push_back(static_cast<float>(bt.prefix_len + bt.rest_len[static_cast<size_t>(r)]));
          pooled = s / Array(cnt, {b, 1}, float32);
        }
        auto read = std::make_shared<PendingRead>(pooled);
        return [read, items = bt.items, &out, e] {
          std::vector<float> v = read->get<float>();
          for (size_t r = 0; r < items.size(); ++r)
            out[items[r]].assign(v.begin() + static_cast<int64_t>(r) * e,
                                 v.begin() + static_cast<int64_t>(r + 1) * e);
        };
      },
      [](size_t, size_t) {});
  return out;
}

}  // namespace ingot::llm
