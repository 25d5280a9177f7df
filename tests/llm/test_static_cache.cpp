// Fixed-size decode (llm/static_cache.h) against transformers' greedy references and against the
// growing-cache decode: single prompts, left-padded batches whose rows finish at different
// steps, sliding windows passed during decode, prefix reuse through write_back, and the logits
// of each step. On a GPU the same checks run with every step replayed as a CUDA graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/allocator.h"
#include "core/device.h"
#include "core/ops/ops.h"
#include "llm/generate.h"
#include "llm/static_cache.h"
#include "llm_test_util.h"

namespace ingot::llm {
namespace {

using models::load_reference;

const char* kFixtures[] = {"llama_f32", "qwen3_f32_tied", "gemma3_f32"};

std::vector<DecodeMode> fixed_modes() {
  std::vector<DecodeMode> m{DecodeMode::fixed};
  if (default_device().type == Device::Type::cuda) m.push_back(DecodeMode::graph);
  return m;
}

const char* mode_name(DecodeMode m) {
  return m == DecodeMode::graph ? "graph" : m == DecodeMode::fixed ? "fixed" : "dynamic";
}

/// max |got - want| <= atol + rtol * max |want| over all elements.
void expect_close(const Array& got, const Array& want, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = astype(got, float32).to_vector<float>();
  const auto w = astype(want, float32).to_vector<float>();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(g[i]) - w[i]));
    scale = std::max(scale, std::abs(static_cast<double>(w[i])));
  }
  EXPECT_LE(err, atol + rtol * scale) << what;
}

GenerateOptions opts(int64_t n, DecodeMode mode) {
  GenerateOptions o;
  o.max_tokens = n;
  o.decode_mode = mode;
  return o;
}

class StaticDecode : public testing::TestWithParam<const char*> {};

TEST_P(StaticDecode, GreedyEqualsTransformersSingleAndBatched) {
  const std::string fx = GetParam();
  auto g = load_reference(fx)["greedy"];
  const auto prompts = parse_ids(g["prompts"]), single = parse_ids(g["single"]);
  const int64_t n = g["max_new_tokens"].get<int64_t>();
  auto m = load_f32(fx);
  for (DecodeMode mode : fixed_modes()) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto r = generate(*m, {prompts[i]}, opts(n, mode));
      EXPECT_EQ(r.tokens[0], single[i]) << fx << " " << mode_name(mode) << " prompt " << i;
    }
    auto rb = generate(*m, prompts, opts(n, mode));
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(rb.tokens[i], single[i]) << fx << " " << mode_name(mode) << " batch row " << i;
  }
}

TEST_P(StaticDecode, RowsFinishingEarlyAndLongRunsMatchTheGrowingCache) {
  // Stop ids make rows leave the batch at different steps (select_rows), and 300 tokens pass
  // the first capacity bucket (grow) and every sliding window.
  const std::string fx = GetParam();
  auto m = load_f32(fx);
  const std::vector<Ids> prompts{{3, 9, 27, 81}, {5}, {11, 13, 17, 19, 23, 29, 31}};
  GenerateOptions base = opts(300, DecodeMode::dynamic);
  base.sampler.temperature = 0.8f;
  base.sampler.seed = 7;
  auto want = generate(*m, prompts, base);
  // Stop at an id that row 1 produces early, so the batch shrinks mid-run.
  base.stop_ids = {want.tokens[1][5]};
  auto want_stop = generate(*m, prompts, base);
  for (DecodeMode mode : fixed_modes()) {
    GenerateOptions o = base;
    o.decode_mode = mode;
    o.stop_ids.clear();
    auto got = generate(*m, prompts, o);
    o.stop_ids = base.stop_ids;
    auto got_stop = generate(*m, prompts, o);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(got.tokens[i], want.tokens[i]) << fx << " " << mode_name(mode) << " row " << i;
      EXPECT_EQ(got_stop.tokens[i], want_stop.tokens[i])
          << fx << " " << mode_name(mode) << " stop row " << i;
      EXPECT_EQ(got_stop.finish[i], want_stop.finish[i]);
    }
  }
}

TEST_P(StaticDecode, PrefixReuseThroughWriteBack) {
  const std::string fx = GetParam();
  auto m = load_f32(fx);
  const Ids p{7, 1, 8, 2, 8, 1, 8, 2, 8};
  for (DecodeMode mode : fixed_modes()) {
    PromptCache dyn(*m), fix(*m);
    auto d0 = generate(*m, {p}, opts(6, DecodeMode::dynamic), &dyn);
    auto f0 = generate(*m, {p}, opts(6, mode), &fix);
    EXPECT_EQ(f0.tokens[0], d0.tokens[0]) << fx << " " << mode_name(mode);
    EXPECT_EQ(fix.offset(), dyn.offset());
    EXPECT_EQ(fix.tokens(), dyn.tokens());
    // Continue the conversation: everything but the new tokens comes from the cache.
    Ids longer = p;
    longer.insert(longer.end(), f0.tokens[0].begin(), f0.tokens[0].end());
    longer.push_back(4);
    auto d1 = generate(*m, {longer}, opts(5, DecodeMode::dynamic), &dyn);
    auto f1 = generate(*m, {longer}, opts(5, mode), &fix);
    EXPECT_EQ(f1.metrics.reused_tokens, d1.metrics.reused_tokens);
    EXPECT_EQ(f1.metrics.reused_tokens, static_cast<int64_t>(longer.size() - 2));
    EXPECT_EQ(f1.tokens[0], d1.tokens[0]) << fx << " " << mode_name(mode);
  }
}

TEST_P(StaticDecode, StepLogitsEqualTheGrowingCacheForward) {
  // A left-padded batch of two rows: the fixed-size step's logits against the growing cache's
  // forward pass, step by step (float32; the keys beyond the written columns are masked).
  const std::string fx = GetParam();
  auto m = load_f32(fx);
  const std::vector<Ids> cols{{2, 2, 2, 5, 6, 7}, {9, 8, 7, 6, 5, 4}};
  PromptCache dyn(*m);
  dyn.set_padding({{0, 3}, {0, 0}});
  Array h = prefill(*m, cols, dyn, 0, 1);
  eval({h});
  for (bool graph : {false, true}) {
    if (graph && default_device().type != Device::Type::cuda) continue;
    PromptCache d = dyn.copy();
    d.set_padding({{0, 3}, {0, 0}});
    StaticDecoder sd(*m, d, 8, graph);  // capacity 8: the steps below grow it once
    for (int s = 0; s < 6; ++s) {
      const std::vector<int32_t> toks{static_cast<int32_t>(10 + s), static_cast<int32_t>(20 - s)};
      models::ForwardOptions fo;
      fo.caches = d.layers();
      if (auto rp = d.row_positions()) fo.offsets = *rp;
      Array hid = m->hidden(Array(toks, {2, 1}, int32), fo);
      Array want = m->lm_head(reshape(hid, {2, hid.shape(2)}));
      Array got = sd.step(toks);
      expect_close(got, want, 1e-5, 1e-5,
                   fx + (graph ? " graph" : " fixed") + " step " + std::to_string(s));
    }
    EXPECT_EQ(sd.offset(), d.offset());
    EXPECT_EQ(sd.capacity(), 16);
    if (graph) {
      EXPECT_EQ(sd.graphs_recorded(), 2);  // one per capacity
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StaticDecode, testing::ValuesIn(kFixtures));

TEST(StaticDecodeModes, GraphModeNeedsAGpuAndFixedModeAnUnwrappedCache) {
  auto m = load_f32("gemma3_f32");
  if (m->device().type == Device::Type::cpu) {
    EXPECT_THROW(generate(*m, {{1, 2, 3}}, opts(4, DecodeMode::graph)), Unsupported);
  }
  // A ring of window 4 + 0 that the prompt already wrapped: fixed refuses, automatic decodes.
  PromptCache ring(*m, {.rotating_extra = 0});
  const Ids p{1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_THROW(generate(*m, {p}, opts(4, DecodeMode::fixed), &ring), InvalidArgument);
  PromptCache ring2(*m, {.rotating_extra = 0});
  auto a = generate(*m, {p}, opts(4, DecodeMode::automatic), &ring2);
  auto d = generate(*m, {p}, opts(4, DecodeMode::dynamic));
  EXPECT_EQ(a.tokens[0], d.tokens[0]);
}

}  // namespace
}  // namespace ingot::llm
