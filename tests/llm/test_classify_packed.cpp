// Packed classify / embed batches (set_classify_packed: the prompts of a batch back to back in
// one row over the shared prefix's keys, fast::packed_attention) against the padded batches of
// the same calls, on random Llama (llama3 rotary), Qwen3 (q/k norms, one KV head) and Gemma3
// (sliding-window layers, four norms, softcap) models: float32 within 1e-5, bfloat16 within the
// padded path's own bf16 error against float32; DecoderLM::hidden on packed ids against one pass
// per sequence; the path taken only where the model supports it; errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "core/ops/ops.h"
#include "llm/generate.h"
#include "llm/score.h"
#include "llm_test_util.h"
#include "models/trace.h"
#include "models/transformer.h"

namespace ingot::llm {
namespace {

constexpr PromptCacheOptions kUnbounded{.unbounded = true, .step = 16};

/// A model config of `arch` (head_dim 64: the GPU's fused kernel covers bf16 there), weights
/// ~ Normal(0, 0.08) so the labels' probabilities are far from uniform.
std::string config_json(const std::string& arch) {
  const std::string common = R"("hidden_size": 128, "intermediate_size": 256,
    "num_attention_heads": 4, "head_dim": 64, "vocab_size": 256, "rms_norm_eps": 1e-6,
    "max_position_embeddings": 512, "initializer_range": 0.08, )";
  if (arch == "llama")
    return R"({"model_type": "llama", "num_hidden_layers": 3, "num_key_value_heads": 2, )" +
           common + R"("tie_word_embeddings": false, "hidden_act": "silu",
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
        "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 16}})";
  if (arch == "qwen3")
    return R"({"model_type": "qwen3", "num_hidden_layers": 3, "num_key_value_heads": 1, )" +
           common + R"("tie_word_embeddings": true, "hidden_act": "silu",
      "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}})";
  return R"({"model_type": "gemma3_text", "num_hidden_layers": 4, "num_key_value_heads": 2, )" +
         common + R"("tie_word_embeddings": true, "hidden_activation": "gelu_pytorch_tanh",
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                    "sliding_attention"],
    "sliding_window": 4, "query_pre_attn_scalar": 64, "final_logit_softcapping": 6.0,
    "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}})";
}

/// A random model of `arch` in `dtype` whose weights are float32 draws rounded to `weights`
/// (float32: as drawn; bfloat16: rounded, also for a float32 model, so a bf16 model and its
/// float32 twin hold the same values). q/k/v stacked as load_weights stacks them on a GPU.
std::shared_ptr<models::Model> make_model(const std::string& arch, Dtype dtype,
                                          Dtype weights = float32, bool fuse = true) {
  const models::ModelConfig cfg = models::parse_model_config(config_json(arch), arch + " config");
  auto drawn = models::init_model(cfg, {.dtype = float32, .seed = 11});
  auto m = models::init_model(cfg, {.dtype = dtype, .seed = 11});
  ParamMap values;
  for (const auto& [name, p] : drawn->parameters())
    values.emplace(name, astype(astype(p, weights), dtype));
  m->update(values);
  std::vector<Array> all;
  for (const auto& [name, p] : m->parameters()) all.push_back(p);
  eval(all);
  if (fuse) models::fuse_projections(*m);
  return m;
}

/// n ids from a small linear congruential generator (ids 3..252).
Ids ids_of(uint32_t seed, size_t n) {
  Ids out;
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    out.push_back(static_cast<int32_t>(3 + (x >> 16) % 250));
  }
  return out;
}

Ids cat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// 24 prompts of 1..40 ids in groups of 8: the first group shares 24 ids (its prefix is
/// prefilled once), the second shares nothing, the third shares 3 ids (one prompt is 4 ids).
std::vector<Ids> plain_prompts() {
  std::vector<Ids> out;
  const Ids common = ids_of(1, 24);
  for (uint32_t i = 0; i < 8; ++i) out.push_back(cat(common, ids_of(100 + i, 1 + (i * 5) % 16)));
  for (uint32_t i = 0; i < 8; ++i) {
    const size_t lens[] = {1, 40, 7, 1, 23, 3, 31, 12};
    Ids p = ids_of(200 + i, lens[i]);
    p[0] = static_cast<int32_t>(10 + i);  // no id shared by the whole group
    out.push_back(p);
  }
  const Ids start = ids_of(3, 3);
  for (uint32_t i = 0; i < 8; ++i)
    out.push_back(cat(start, ids_of(300 + i, i == 4 ? 1 : 2 + (i * 11) % 30)));
  return out;
}

/// The ids of the precomputed prefix below and 16 prompts that start with them (groups of 8):
/// prompt 2 is the prefix itself (its batch uses one column fewer), the second group also
/// shares 6 more ids (the prefix is extended for it), own ids 1..22.
const Ids kPrefix = ids_of(7, 12);
std::vector<Ids> prefix_prompts() {
  std::vector<Ids> out;
  const Ids more = ids_of(8, 6);
  for (uint32_t i = 0; i < 16; ++i) {
    if (i == 2) {
      out.push_back(kPrefix);
      continue;
    }
    const Ids start = i >= 8 ? cat(kPrefix, more) : kPrefix;
    out.push_back(cat(start, ids_of(400 + i, 1 + (i * 7) % 22)));
  }
  return out;
}

PromptCache prefilled(const models::Model& m, const Ids& ids) {
  PromptCache c(m, kUnbounded);
  Array h = prefill(m, {ids}, c, 512, 1);
  std::vector<Array> st = c.state();
  st.push_back(h);
  eval(st);
  c.tokens() = ids;
  return c;
}

/// Distinct first tokens: only the LM-head rows of those (the packed path).
const std::vector<Ids> kLabels{{60}, {61}, {200}, {7}};

/// Every probability and pooled feature of a run over one prompt set, flattened: classify's
/// label probabilities, then embed's last hidden states divided by each prompt's largest
/// magnitude (so one absolute bound fits both).
struct Outputs {
  std::vector<double> probs, feats;
};

Outputs run(const models::Model& m, const std::vector<Ids>& prompts, bool packed,
            const ClassifyOptions& opt) {
  set_classify_packed(packed);
  Outputs o;
  const auto p = classify(m, prompts, kLabels, opt);
  const auto e = embed(m, prompts, Pooling::last, opt);
  set_classify_packed(std::nullopt);
  EXPECT_EQ(p.size(), prompts.size());
  EXPECT_EQ(e.size(), prompts.size());
  for (const auto& row : p) o.probs.insert(o.probs.end(), row.begin(), row.end());
  for (const auto& row : e) {
    double scale = 0;
    for (float v : row) scale = std::max(scale, double(std::abs(v)));
    for (float v : row) o.feats.push_back(v / scale);
  }
  return o;
}

/// Largest and root-mean-square |a - b|.
struct Diff {
  double max = 0, rms = 0;
};
Diff diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  Diff d;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double e = std::abs(a[i] - b[i]);
    d.max = std::max(d.max, e);
    d.rms += e * e;
  }
  d.rms = std::sqrt(d.rms / std::max<size_t>(1, a.size()));
  return d;
}

/// The calls compared: the prompt sets with and without a precomputed prefix, batch sizes 0
/// (automatic) and 3 for the packed side; the padded side always in batches of 4.
struct Case {
  std::string name;
  std::vector<Ids> prompts;
  bool given_prefix;
  int64_t batch_size;
};
std::vector<Case> cases() {
  std::vector<Case> out;
  for (int64_t bs : {0, 3}) {
    out.push_back({"plain bs " + std::to_string(bs), plain_prompts(), false, bs});
    out.push_back({"given prefix bs " + std::to_string(bs), prefix_prompts(), true, bs});
  }
  return out;
}

/// The module at a dotted path ("model.layers.0.self_attn").
std::shared_ptr<nn::Module> submodule(const nn::Module& m, const std::string& path) {
  const size_t dot = path.find('.');
  const std::string head = path.substr(0, dot);
  for (const auto& [name, c] : m.children())
    if (name == head) return dot == std::string::npos ? c : submodule(*c, path.substr(dot + 1));
  return nullptr;
}

class PackedArch : public testing::TestWithParam<const char*> {};

TEST_P(PackedArch, Float32MatchesThePaddedBatches) {
  auto m = make_model(GetParam(), float32);
  ASSERT_TRUE(m->supports_packed());
  PromptCache pc = prefilled(*m, kPrefix);
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const PromptCache* prefix = c.given_prefix ? &pc : nullptr;
    const int64_t before = classify_packed_batches();
    const Outputs got =
        run(*m, c.prompts, true, {.batch_size = c.batch_size, .group_size = 8, .prefix = prefix});
    EXPECT_GT(classify_packed_batches(), before) << "the packed path was not taken";
    const int64_t mid = classify_packed_batches();
    const Outputs want =
        run(*m, c.prompts, false, {.batch_size = 4, .group_size = 8, .prefix = prefix});
    EXPECT_EQ(classify_packed_batches(), mid);
    for (size_t i = 0; i < want.probs.size(); ++i)
      EXPECT_NEAR(got.probs[i], want.probs[i], 1e-5)
          << "prompt " << i / kLabels.size() << " label " << i % kLabels.size();
    for (size_t i = 0; i < want.feats.size(); ++i)
      EXPECT_NEAR(got.feats[i], want.feats[i], 1e-5) << "embed prompt " << i / 128;
    // The label probabilities are far from uniform: the comparison above sees a wrong attention.
    double spread = 0;
    for (double p : want.probs) spread = std::max(spread, std::abs(p - 1.0 / kLabels.size()));
    EXPECT_GT(spread, 0.05);
  }
  // One group of all prompts (no shared prefix: every prompt runs whole).
  const auto prompts = plain_prompts();
  const Outputs got = run(*m, prompts, true, {.batch_size = 5});
  const Outputs want = run(*m, prompts, false, {.batch_size = 5});
  EXPECT_LT(diff(got.probs, want.probs).max, 1e-5);
  EXPECT_LT(diff(got.feats, want.feats).max, 1e-5);
}

TEST_P(PackedArch, Bfloat16WithinThePaddedBatchesRounding) {
  // Both paths round the same products, norms and MLPs to bf16 (up to kernels picked by row
  // count); the attention differs (the packed op's norms, rotary and softmax in float32 inside,
  // rounded once). Against the float32
  // model of the same (bf16-valued) weights, the packed path must be as close as the padded
  // one: the padded path's error measures the bf16 rounding of these models and prompts. A
  // max over few values is noisy, so the RMS carries the 1.25 factor and the max 1.5; the
  // paths then differ by at most about the sum of their errors (2x the padded's).
  auto m16 = make_model(GetParam(), bfloat16, bfloat16);
  auto m32 = make_model(GetParam(), float32, bfloat16);
  ASSERT_TRUE(m16->supports_packed());
  PromptCache pc16 = prefilled(*m16, kPrefix), pc32 = prefilled(*m32, kPrefix);
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const int64_t before = classify_packed_batches();
    const Outputs got = run(
        *m16, c.prompts, true,
        {.batch_size = c.batch_size, .group_size = 8, .prefix = c.given_prefix ? &pc16 : nullptr});
    EXPECT_GT(classify_packed_batches(), before) << "the packed path was not taken";
    const Outputs pad =
        run(*m16, c.prompts, false,
            {.batch_size = 4, .group_size = 8, .prefix = c.given_prefix ? &pc16 : nullptr});
    const Outputs ref =
        run(*m32, c.prompts, false,
            {.batch_size = 4, .group_size = 8, .prefix = c.given_prefix ? &pc32 : nullptr});
    for (const auto& [what, g, p, r] :
         {std::tuple{"probabilities", &got.probs, &pad.probs, &ref.probs},
          std::tuple{"features", &got.feats, &pad.feats, &ref.feats}}) {
      SCOPED_TRACE(what);
      const Diff pad_err = diff(*p, *r), got_err = diff(*g, *r), apart = diff(*g, *p);
      // bf16 does round here (the bound is not zero) and only a little (it is not loose).
      EXPECT_GT(pad_err.max, 1e-4);
      EXPECT_LT(pad_err.max, 0.05);
      EXPECT_LE(got_err.rms, 1.25 * pad_err.rms);
      EXPECT_LE(got_err.max, 1.5 * pad_err.max);
      EXPECT_LE(apart.max, 2.0 * pad_err.max);
    }
  }
}

TEST_P(PackedArch, HiddenOfAPackedBatchEqualsOnePassPerSequence) {
  auto m = make_model(GetParam(), float32);
  const Ids prefix = ids_of(9, 6);
  PromptCache pc = prefilled(*m, prefix);
  const std::vector<Ids> seqs{ids_of(10, 1), ids_of(11, 5), ids_of(12, 9)};
  for (bool with_prefix : {false, true}) {
    SCOPED_TRACE(with_prefix ? "after a prefix" : "no prefix");
    // The reference: each sequence alone after (a copy of) the prefix's cache, every position.
    std::vector<std::vector<float>> want;
    for (const Ids& s : seqs) {
      PromptCache c = with_prefix ? pc.copy() : PromptCache(*m, kUnbounded);
      want.push_back(astype(prefill(*m, {s}, c, 0, 0), float32).to_vector<float>());
    }
    Ids ids;
    models::ForwardOptions fo;
    fo.starts = {0};
    for (const Ids& s : seqs) {
      ids.insert(ids.end(), s.begin(), s.end());
      fo.starts.push_back(static_cast<int64_t>(ids.size()));
    }
    if (with_prefix)
      for (int i = 0; i < pc.num_layers(); ++i) {
        const LayerCache::Raw r = pc.layer(i).raw();
        fo.prefix.emplace_back(slice_axis(r.keys, 2, 0, 6), slice_axis(r.values, 2, 0, 6));
      }
    const int64_t t = static_cast<int64_t>(ids.size()), e = m->config().hidden_size;
    const Array all = m->hidden(Array(ids, {1, t}, int32), fo);
    ASSERT_EQ(all.shape(), (Shape{1, t, e}));
    fo.queries = 1;
    const Array last = m->hidden(Array(ids, {1, t}, int32), fo);
    ASSERT_EQ(last.shape(), (Shape{1, 3, e}));
    const auto a = astype(all, float32).to_vector<float>();
    const auto l = astype(last, float32).to_vector<float>();
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int64_t n = static_cast<int64_t>(seqs[s].size());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < e; ++j) {
          const float w = want[s][static_cast<size_t>(r * e + j)];
          EXPECT_NEAR(a[static_cast<size_t>((fo.starts[s] + r) * e + j)], w, 1e-5)
              << "sequence " << s << " row " << r << " feature " << j;
          if (r == n - 1) {
            EXPECT_NEAR(l[s * static_cast<size_t>(e) + static_cast<size_t>(j)], w, 1e-5);
          }
        }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, PackedArch, testing::Values("llama", "qwen3", "gemma3"),
                         [](const auto& info) { return std::string(info.param); });

TEST(ClassifyPacked, TakenOnlyWhereTheModelSupportsIt) {
  const auto prompts = plain_prompts();
  auto count = [&](const models::Model& m, const std::vector<Ids>& labels) {
    set_classify_packed(true);
    const int64_t before = classify_packed_batches();
    const auto got = classify(m, prompts, labels, {.batch_size = 6, .group_size = 8});
    set_classify_packed(false);
    const auto want = classify(m, prompts, labels, {.batch_size = 6, .group_size = 8});
    set_classify_packed(std::nullopt);
    for (size_t i = 0; i < prompts.size(); ++i)
      for (size_t j = 0; j < labels.size(); ++j) EXPECT_NEAR(got[i][j], want[i][j], 1e-5);
    return classify_packed_batches() - before;
  };
  auto m = make_model("qwen3", float32);
  // Groups of 8 in batches of 6: two batches per group.
  EXPECT_EQ(count(*m, kLabels), 6);
  // Whole label sequences (a shared first token) extend each batch's cache: padded batches.
  const std::vector<Ids> multi{{60, 70}, {60, 71, 72}, {90}};
  EXPECT_EQ(count(*m, multi), 0);
  // Eager attention, a trace hook: the model refuses packed batches, classify pads.
  m->set_attention_impl(models::AttentionImpl::eager);
  EXPECT_FALSE(m->supports_packed());
  EXPECT_EQ(count(*m, kLabels), 0);
  m->set_attention_impl(models::AttentionImpl::fast);
  models::set_trace_hook([](const Array&, const std::string&, int) {});
  EXPECT_FALSE(m->supports_packed());
  EXPECT_EQ(count(*m, kLabels), 0);
  models::set_trace_hook({});
  EXPECT_TRUE(m->supports_packed());
  // q/k/v not stacked (the CPU loader does not stack them), or a low-rank branch on one.
  auto unfused = make_model("qwen3", float32, float32, false);
  EXPECT_FALSE(unfused->supports_packed());
  EXPECT_EQ(count(*unfused, kLabels), 0);
  auto v = std::dynamic_pointer_cast<nn::Linear>(submodule(*m, "model.layers.1.self_attn.v_proj"));
  ASSERT_TRUE(v);
  v->set_branch(nn::LowRankBranch{.a = full({2, 128}, Array(0.05f), float32),
                                  .b = full({64, 2}, Array(0.05f), float32)});
  EXPECT_FALSE(m->supports_packed());
  EXPECT_EQ(count(*m, kLabels), 0);
  v->set_branch(std::nullopt);
  EXPECT_TRUE(m->supports_packed());
  EXPECT_EQ(count(*m, kLabels), 6);
}

TEST(ClassifyPacked, QuantizedStacksPack) {
  // A quantized model packs when its q/k/v stack (quantized_matmul on the stacked words); a
  // model with a float k_proj beside quantized q/v does not stack that layer and pads.
  auto q8 = load_f32("llama_q8_mlx");
  models::fuse_projections(*q8);
  EXPECT_TRUE(q8->supports_packed());
  auto mixed = load_f32("qwen3_q4_mlx");
  models::fuse_projections(*mixed);
  EXPECT_FALSE(mixed->supports_packed());
  // On the CPU, quantized matmuls round activations to int8 or bf16 depending on the rows of
  // the product (INGOT_CPU_INT8), and packed batches have other row counts than padded ones:
  // float32 activations (MLX's numerics) for this comparison.
  const char* int8 = std::getenv("INGOT_CPU_INT8");
  const std::optional<std::string> saved = int8 ? std::optional<std::string>(int8) : std::nullopt;
  setenv("INGOT_CPU_INT8", "0", 1);
  const auto prompts = plain_prompts();
  const int64_t before = classify_packed_batches();
  const Outputs got = run(*q8, prompts, true, {.batch_size = 5, .group_size = 8});
  EXPECT_GT(classify_packed_batches(), before);
  const Outputs want = run(*q8, prompts, false, {.batch_size = 4, .group_size = 8});
  if (saved)
    setenv("INGOT_CPU_INT8", saved->c_str(), 1);
  else
    unsetenv("INGOT_CPU_INT8");
  EXPECT_LT(diff(got.probs, want.probs).max, 1e-5);
  EXPECT_LT(diff(got.feats, want.feats).max, 1e-5);
}

TEST(ClassifyPacked, HiddenNamesBadPackedCalls) {
  auto m = make_model("llama", float32);
  const Array ids(Ids{5, 6, 7, 8}, {1, 4}, int32);
  auto call = [&](models::ForwardOptions fo) { return error_of([&] { m->hidden(ids, fo); }); };
  EXPECT_NE(call({.starts = {0, 3}}).find("starts must go from 0 to the 4 ids"), std::string::npos);
  EXPECT_NE(call({.starts = {0, 2, 2, 4}}).find("sequence 1 is empty"), std::string::npos);
  EXPECT_NE(call({.queries = 2, .starts = {0, 4}}).find("got queries 2"), std::string::npos);
  EXPECT_NE(call({.offset = 3, .starts = {0, 4}}).find("no caches, mask, offsets or offset"),
            std::string::npos);
  PromptCache c(*m, kUnbounded);
  EXPECT_NE(call({.caches = c.layers(), .starts = {0, 4}}).find("no caches"), std::string::npos);
  EXPECT_NE(call({.starts = {0, 4}, .prefix = {{ids, ids}}}).find("prefix per layer (3), got 1"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              m->hidden(Array(Ids{5, 6, 7, 8}, {2, 2}, int32), {.starts = {0, 2}});
            }).find("one row of ids [1, T]"),
            std::string::npos);
  auto unfused = make_model("llama", float32, float32, false);
  EXPECT_NE(error_of([&] {
              unfused->hidden(ids, {.starts = {0, 4}});
            }).find("cannot run packed batches"),
            std::string::npos);
}

}  // namespace
}  // namespace ingot::llm
