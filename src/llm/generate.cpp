// Generation loop (see generate.h): left-padded batch prefill in chunks, then one forward pass
// per step over the rows still running; the only host read per step is the sampled ids.
#include "llm/generate.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/allocator.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "llm/static_cache.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Array id_matrix(const std::vector<std::vector<int32_t>>& rows, int64_t c0, int64_t c1) {
  std::vector<int32_t> flat;
  flat.reserve(rows.size() * static_cast<size_t>(c1 - c0));
  for (const auto& r : rows) flat.insert(flat.end(), r.begin() + c0, r.begin() + c1);
  return Array(flat, {static_cast<int64_t>(rows.size()), c1 - c0}, int32);
}

// Applies GenerateOptions::token_mask to logits [B, V] of the running rows (`rows`: batch row
// -> prompt index); rows without a mask stay as they are. Only the [B, V] mask goes to the
// device; the logits never leave it.
Array apply_token_mask(const Array& logits, const GenerateOptions& opt,
                       const std::vector<int>& rows, const GenerationResult& res, int64_t vocab) {
  if (!opt.token_mask) return logits;
  const size_t v = static_cast<size_t>(vocab);
  std::vector<uint8_t> flat;
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto p = static_cast<size_t>(rows[r]);
    const std::vector<uint8_t>* m = opt.token_mask(rows[r], res.tokens[p]);
    if (!m) continue;
    if (m->size() != v)
      raise("[generate] token_mask of row {} has {} entries for a vocabulary of {}", rows[r],
            m->size(), vocab);
    if (flat.empty()) flat.assign(rows.size() * v, 1);
    std::copy(m->begin(), m->end(), flat.begin() + static_cast<std::ptrdiff_t>(r * v));
  }
  if (flat.empty()) return logits;
  const Array mask(flat, {static_cast<int64_t>(rows.size()), vocab}, bool_);
  return where(mask, logits, Array(-std::numeric_limits<float>::infinity()));
}

/// The decode mode `automatic` resolves to on `device`.
DecodeMode resolve_mode(DecodeMode m, Device device) {
  if (m != DecodeMode::automatic) return m;
  const char* env = std::getenv("INGOT_CUDA_GRAPHS");
  const bool off = env && (std::strcmp(env, "0") == 0 || std::strcmp(env, "off") == 0);
  return device.type == Device::Type::cuda && !off ? DecodeMode::graph : DecodeMode::dynamic;
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::length:
      return "length";
    case FinishReason::eos:
      return "eos";
    case FinishReason::stop:
      return "stop";
    case FinishReason::cancelled:
      return "cancelled";
  }
  return "?";
}

double GenerationMetrics::prefill_tokens_per_second() const {
  return prefill_seconds > 0 ? static_cast<double>(prompt_tokens) / prefill_seconds : 0.0;
}

double GenerationMetrics::decode_tokens_per_second() const {
  return decode_seconds > 0 ? static_cast<double>(generated_tokens) / decode_seconds : 0.0;
}

Array prefill(const models::Model& model, const std::vector<std::vector<int32_t>>& ids,
              PromptCache& cache, int64_t chunk, int64_t keep_last) {
  if (ids.empty() || ids[0].empty()) raise("[generate] prefill needs at least one column");
  const int64_t l = static_cast<int64_t>(ids[0].size());
  for (const auto& r : ids)
    if (static_cast<int64_t>(r.size()) != l)
      raise("[generate] prefill rows must have one length (pad them), got {} and {}", l, r.size());
  if (chunk <= 0) chunk = l;
  if (keep_last <= 0 || keep_last > l) keep_last = l;
  std::vector<Array> kept;
  for (int64_t c0 = 0; c0 < l; c0 += chunk) {
    const int64_t c1 = std::min(l, c0 + chunk);
    models::ForwardOptions fo;
    fo.caches = cache.layers();
    if (auto rp = cache.row_positions()) fo.offsets = *rp;
    const int64_t from = std::max(c0, l - keep_last);
    // Only the kept columns' last layer is computed (the caches still get every column).
    if (from > c0 && from < c1) fo.queries = c1 - from;
    Array h = model.hidden(id_matrix(ids, c0, c1), fo);  // [B, c1 - max(c0, from), E]
    if (from < c1) kept.push_back(h);
    if (c1 < l) {  // cut the graph: the next chunk starts from evaluated buffers
      std::vector<Array> all = cache.state();
      all.insert(all.end(), kept.begin(), kept.end());
      eval(all);
    }
  }
  return kept.size() == 1 ? kept[0] : concatenate(kept, 1);
}

void check_token_ids(const std::vector<int32_t>& ids, int64_t vocab, const char* component,
                     const char* what, size_t index) {
  if (ids.empty()) raise("[{}] {} {} is empty", component, what, index);
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      raise("[{}] {} {} has token id {} outside the vocabulary [0, {})", component, what, index, id,
            vocab);
}

GenerationResult generate(const models::Model& model,
                          const std::vector<std::vector<int32_t>>& prompts,
                          const GenerateOptions& opt, PromptCache* cache) {
  const auto t0 = Clock::now();
  if (prompts.empty()) raise("[generate] no prompts given");
  const int64_t vocab = model.vocab_size();
  for (size_t i = 0; i < prompts.size(); ++i)
    check_token_ids(prompts[i], vocab, "generate", "prompt", i);
  if (opt.max_tokens < 0) raise("[generate] max_tokens must be >= 0, got {}", opt.max_tokens);
  if (opt.logprobs < -1 || opt.logprobs > vocab)
    raise("[generate] logprobs must be in [-1, {}] (-1 = none), got {}", vocab, opt.logprobs);
  const size_t n = prompts.size();
  GenerationResult res;
  res.tokens.resize(n);
  res.finish.assign(n, FinishReason::length);
  if (opt.logprobs >= 0) res.logprobs.resize(n);
  res.metrics.device = model.device().str();
  if (opt.max_tokens == 0) return res;
  memory::reset_peak(model.device());

  std::optional<PromptCache> local;
  if (!cache) {
    local.emplace(model);
    cache = &*local;
  }
  PromptCache& c = *cache;
  Sampler sampler(opt.sampler, vocab);

  // Columns to prefill: the prompt after a reused prefix (one row), or the left-padded batch.
  std::vector<std::vector<int32_t>> cols;
  int64_t reused = 0;
  if (n == 1) {
    const auto& p = prompts[0];
    if (c.batch() <= 1 && static_cast<int64_t>(c.tokens().size()) == c.offset()) {
      const auto& t = c.tokens();
      size_t common = 0;
      while (common < t.size() && common < p.size() && t[common] == p[common]) ++common;
      if (common == p.size()) --common;  // at least one column must run to get logits
      if (c.offset() - static_cast<int64_t>(common) <= c.max_trim()) {
        c.trim_to(static_cast<int64_t>(common));
        reused = static_cast<int64_t>(common);
      } else {
        c.clear();
      }
    } else {
      c.clear();
    }
    c.set_padding({});
    cols.emplace_back(p.begin() + reused, p.end());
  } else {
    c.clear();
    size_t longest = 0;
    for (const auto& p : prompts) longest = std::max(longest, p.size());
    std::vector<PadSpan> pads;
    for (const auto& p : prompts) {
      std::vector<int32_t> row(longest - p.size(), p[0]);  // padding ids are never attended
      row.insert(row.end(), p.begin(), p.end());
      cols.push_back(std::move(row));
      pads.push_back({0, static_cast<int64_t>(longest - p.size())});
    }
    c.set_padding(pads);
  }
  for (size_t i = 0; i < n; ++i) sampler.add_prompt(static_cast<int>(i), prompts[i]);

  std::vector<int> rows(n);  // batch row -> prompt index
  for (size_t i = 0; i < n; ++i) rows[i] = static_cast<int>(i);
  // Samples the running rows' next ids from logits [B, V]; with logprobs, the chosen values and
  // the top k of their log_softmax are evaluated with the ids and read back (one sync).
  auto sample_ids = [&](const Array& logits) {
    const Array x = apply_token_mask(logits, opt, rows, res, vocab);
    const Array next = sampler.sample(x);
    if (opt.logprobs < 0) return next.to_vector<int32_t>();
    std::vector<Array> reads = token_logprob_reads(token_logprobs(x), next, opt.logprobs);
    reads.push_back(next);
    eval(reads);
    reads.pop_back();
    std::vector<int32_t> ids = next.to_vector<int32_t>();
    std::vector<TokenLogprobs> got =
        read_token_logprobs(reads, ids, std::vector<int>(ids.size(), opt.logprobs));
    for (size_t r = 0; r < rows.size(); ++r) {
      if (opt.on_logprobs) opt.on_logprobs(rows[r], got[r]);
      res.logprobs[static_cast<size_t>(rows[r])].push_back(std::move(got[r]));
    }
    return ids;
  };
  Array h = prefill(model, cols, c, opt.prefill_chunk, 1);  // [B, 1, E]
  const int64_t e = h.shape(2);
  std::vector<int32_t> toks = sample_ids(model.lm_head(reshape(h, {h.shape(0), e})));
  for (const auto& p : prompts) res.metrics.prompt_tokens += static_cast<int64_t>(p.size());
  res.metrics.prompt_tokens -= reused;
  res.metrics.reused_tokens = reused;
  res.metrics.prefill_seconds = res.metrics.time_to_first_token = seconds_since(t0);
  const auto t1 = Clock::now();

  // Fixed-size decode: the prefilled columns move into buffers sized for the whole answer
  // (rounded up, so graphs recorded for one length serve nearby ones); the growing cache is
  // emptied to free its memory and refilled at the end when the caller keeps it.
  const DecodeMode mode = resolve_mode(opt.decode_mode, model.device());
  std::optional<StaticDecoder> fixed;
  if ((mode == DecodeMode::fixed || mode == DecodeMode::graph) && opt.max_tokens > 1) {
    if (StaticDecoder::supports(c)) {
      const int64_t want = c.offset() + std::min<int64_t>(opt.max_tokens, 4096);
      fixed.emplace(model, c, (want + 127) / 128 * 128, mode == DecodeMode::graph);
      c.clear();
    } else if (opt.decode_mode != DecodeMode::automatic) {
      raise(
          "[generate] decode_mode {} needs a prompt cache whose sliding-window layers have not "
          "wrapped around; use dynamic",
          mode == DecodeMode::fixed ? "fixed" : "graph");
    }
  }

  while (true) {
    sampler.accept(toks);
    std::vector<int32_t> keep;
    std::vector<int> dropped;
    for (size_t r = 0; r < rows.size(); ++r) {
      const int p = rows[r];
      const int32_t id = toks[r];
      auto& out = res.tokens[static_cast<size_t>(p)];
      out.push_back(id);
      ++res.metrics.generated_tokens;
      bool done = false;
      if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end()) {
        res.finish[static_cast<size_t>(p)] = FinishReason::eos;
        done = true;
      } else if (opt.on_token && !opt.on_token(p, id)) {
        res.finish[static_cast<size_t>(p)] = FinishReason::stop;
        done = true;
      } else if (static_cast<int64_t>(out.size()) >= opt.max_tokens) {
        done = true;
      }
      if (done) {
        dropped.push_back(static_cast<int>(r));
      } else {
        keep.push_back(static_cast<int32_t>(r));
      }
    }
    if (keep.empty()) break;
    if (!dropped.empty()) {
      if (fixed)
        fixed->select_rows(keep);
      else
        c.select_rows(keep);
      sampler.remove_rows(dropped);
      std::vector<int> kept_rows;
      std::vector<int32_t> kept_toks;
      for (int32_t r : keep) {
        kept_rows.push_back(rows[static_cast<size_t>(r)]);
        kept_toks.push_back(toks[static_cast<size_t>(r)]);
      }
      rows = std::move(kept_rows);
      toks = std::move(kept_toks);
    }
    Array logits;
    if (fixed) {
      logits = fixed->step(toks);
    } else {
      models::ForwardOptions fo;
      fo.caches = c.layers();
      if (auto rp = c.row_positions()) fo.offsets = *rp;
      const int64_t b = static_cast<int64_t>(toks.size());
      logits = model.lm_head(reshape(model.hidden(Array(toks, {b, 1}, int32), fo), {b, e}));
    }
    toks = sample_ids(logits);
  }
  res.metrics.decode_seconds = seconds_since(t1);
  res.metrics.peak_memory_bytes = static_cast<int64_t>(memory::peak(model.device()));

  // The cache holds every column but the last sampled token's (it was never fed back).
  c.tokens().clear();
  if (fixed) {
    if (local || n != 1) {
      res.metrics.cache_bytes = fixed->nbytes();
      return res;
    }
    fixed->write_back(c);
  }
  if (n == 1) {
    c.tokens() = prompts[0];
    c.tokens().insert(c.tokens().end(), res.tokens[0].begin(), res.tokens[0].end() - 1);
    if (static_cast<int64_t>(c.tokens().size()) != c.offset())
      raise<Error>("[generate] internal: cache holds {} columns for {} tokens", c.offset(),
                   c.tokens().size());
  }
  res.metrics.cache_bytes = c.nbytes();
  return res;
}

}  // namespace ingot::llm
