// Generation against transformers' greedy `generate` (reference.json of every fixture): single
// prompts with and without chunked prefill, left-padded batches, prefix reuse after a cache
// trim, small rotating caches, prompt-cache files; plus a sustained run with flat memory.
#include <gtest/gtest.h>

#include "core/allocator.h"
#include "core/io/safetensors.h"
#include "llm/generate.h"
#include "llm_test_util.h"

namespace ingot::llm {
namespace {

using models::fixture_dir;
using models::load_reference;

const char* kFixtures[] = {"llama_f32",  "llama_bf16_tied", "qwen3_f32_tied", "qwen3_bf16",
                           "gemma3_f32", "gemma3_bf16",     "gemma3_mm_f32"};

struct Greedy {
  std::vector<Ids> prompts, single, batched;
  int64_t max_new = 0;
};

Greedy greedy_ref(const std::string& fx) {
  auto g = load_reference(fx)["greedy"];
  EXPECT_EQ(g["compute_dtype"], "float32");
  return {parse_ids(g["prompts"]), parse_ids(g["single"]),
          parse_ids(g["batched_left_padded"]["new_tokens"]), g["max_new_tokens"].get<int64_t>()};
}

GenerateOptions greedy_opts(int64_t n, int64_t chunk = 512) {
  GenerateOptions o;
  o.max_tokens = n;
  o.prefill_chunk = chunk;
  return o;
}

class GenerateFixture : public testing::TestWithParam<const char*> {};

TEST_P(GenerateFixture, GreedyEqualsTransformersWithAndWithoutChunkedPrefill) {
  const std::string fx = GetParam();
  Greedy ref = greedy_ref(fx);
  auto m = load_f32(fx);
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    for (int64_t chunk : {0, 512, 3, 1}) {
      auto r = generate(*m, {ref.prompts[i]}, greedy_opts(ref.max_new, chunk));
      EXPECT_EQ(r.tokens[0], ref.single[i]) << fx << " prompt " << i << " chunk " << chunk;
      EXPECT_EQ(r.finish[0], FinishReason::length);
      EXPECT_EQ(r.metrics.generated_tokens, ref.max_new);
      EXPECT_EQ(r.metrics.prompt_tokens, static_cast<int64_t>(ref.prompts[i].size()));
    }
  }
}

TEST_P(GenerateFixture, BatchOfMixedLengthsEqualsEachPromptAlone) {
  const std::string fx = GetParam();
  Greedy ref = greedy_ref(fx);
  auto m = load_f32(fx);
  for (int64_t chunk : {0, 4}) {
    auto r = generate(*m, ref.prompts, greedy_opts(ref.max_new, chunk));
    ASSERT_EQ(r.tokens.size(), ref.prompts.size());
    for (size_t i = 0; i < ref.prompts.size(); ++i) {
      EXPECT_EQ(r.tokens[i], ref.batched[i]) << fx << " row " << i << " chunk " << chunk;
      EXPECT_EQ(r.tokens[i], ref.single[i]) << fx << " row " << i;
    }
  }
}

TEST_P(GenerateFixture, PrefixReuseAfterCacheTrim) {
  const std::string fx = GetParam();
  Greedy ref = greedy_ref(fx);
  auto m = load_f32(fx);
  const Ids& p = ref.prompts.back();  // the longest prompt
  PromptCache cache(*m);
  // First call: a shorter prompt, so the cache holds p[:-3] + 5 generated tokens.
  Ids shorter(p.begin(), p.end() - 3);
  auto r0 = generate(*m, {shorter}, greedy_opts(5), &cache);
  EXPECT_EQ(cache.offset(), static_cast<int64_t>(shorter.size() + 4));
  EXPECT_EQ(cache.tokens().size(), shorter.size() + 4);
  // Second call: p shares p[:-3] (and maybe more) with the cache: it is trimmed and reused.
  auto r1 = generate(*m, {p}, greedy_opts(ref.max_new), &cache);
  EXPECT_EQ(r1.tokens[0], ref.single.back()) << fx;
  EXPECT_GE(r1.metrics.reused_tokens, static_cast<int64_t>(shorter.size()));
  EXPECT_EQ(r1.metrics.prompt_tokens + r1.metrics.reused_tokens, static_cast<int64_t>(p.size()));
  // Third call: the same prompt again reuses all but its last token.
  auto r2 = generate(*m, {p}, greedy_opts(ref.max_new), &cache);
  EXPECT_EQ(r2.tokens[0], ref.single.back()) << fx;
  EXPECT_EQ(r2.metrics.reused_tokens, static_cast<int64_t>(p.size() - 1));
  // Continuing the conversation: prompt + reply + more extends the cache without recompute.
  Ids longer = p;
  longer.insert(longer.end(), r2.tokens[0].begin(), r2.tokens[0].end());
  auto r3 = generate(*m, {longer}, greedy_opts(3), &cache);
  EXPECT_EQ(r3.metrics.reused_tokens, static_cast<int64_t>(longer.size() - 1));
  auto fresh = generate(*m, {longer}, greedy_opts(3));
  EXPECT_EQ(r3.tokens[0], fresh.tokens[0]);
}

TEST_P(GenerateFixture, SmallRotatingCachesGiveTheSameTokens) {
  // Sliding-window layers keep only window (+0 or +2) positions: rings wrap during prefill
  // chunks and decode; results must not change.
  const std::string fx = GetParam();
  Greedy ref = greedy_ref(fx);
  auto m = load_f32(fx);
  for (int64_t extra : {0, 2}) {
    for (int64_t chunk : {0, 3, 1}) {
      for (size_t i = 0; i < ref.prompts.size(); ++i) {
        PromptCache cache(*m, {.rotating_extra = extra});
        auto r = generate(*m, {ref.prompts[i]}, greedy_opts(ref.max_new, chunk), &cache);
        EXPECT_EQ(r.tokens[0], ref.single[i])
            << fx << " prompt " << i << " extra " << extra << " chunk " << chunk;
      }
      PromptCache cache(*m, {.rotating_extra = extra});
      auto rb = generate(*m, ref.prompts, greedy_opts(ref.max_new, chunk), &cache);
      for (size_t i = 0; i < ref.prompts.size(); ++i)
        EXPECT_EQ(rb.tokens[i], ref.single[i]) << fx << " batch row " << i << " extra " << extra;
    }
  }
}

TEST_P(GenerateFixture, CacheGrowthStepsGiveTheSameTokens) {
  // Unbounded caches with small growth steps: step 1 (every update fits its buffer exactly, so
  // the first one becomes the buffer without zeros, and each decode step grows it), the prompt's
  // own length (exact first fill, then growth), and 4 (zero-filled tails). Same greedy tokens as
  // the reference.
  const std::string fx = GetParam();
  Greedy ref = greedy_ref(fx);
  auto m = load_f32(fx);
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    const int64_t len = static_cast<int64_t>(ref.prompts[i].size());
    for (int64_t step : {int64_t{1}, len, int64_t{4}}) {
      PromptCache cache(*m, {.unbounded = true, .step = step});
      auto r = generate(*m, {ref.prompts[i]}, greedy_opts(ref.max_new, 0), &cache);
      EXPECT_EQ(r.tokens[0], ref.single[i]) << fx << " prompt " << i << " step " << step;
    }
  }
}

TEST_P(GenerateFixture, PromptCacheFileRoundTrip) {
  const std::string fx = GetParam();
  Greedy ref = greedy_ref(fx);
  auto m = load_f32(fx);
  const Ids& p = ref.prompts.back();
  PromptCache cache(*m);
  generate(*m, {Ids(p.begin(), p.end() - 2)}, greedy_opts(1), &cache);
  models::TempDir tmp;
  const std::string path = tmp.path + "/cache.safetensors";
  cache.save(path);
  PromptCache loaded(*m);
  loaded.load(path);
  EXPECT_EQ(loaded.tokens(), cache.tokens());
  EXPECT_EQ(loaded.offset(), cache.offset());
  auto r = generate(*m, {p}, greedy_opts(ref.max_new), &loaded);
  EXPECT_EQ(r.tokens[0], ref.single.back());
  EXPECT_EQ(r.metrics.reused_tokens, static_cast<int64_t>(p.size() - 2));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateFixture, testing::ValuesIn(kFixtures),
                         [](const auto& info) { return std::string(info.param); });

TEST(Generate, StopIdsEndRowsAndFinishedRowsLeaveTheBatch) {
  Greedy ref = greedy_ref("llama_f32");
  auto m = load_f32("llama_f32");
  // Stop on the 4th token of row 1's continuation: row 1 ends there (token included), the
  // others run to max_tokens and still match.
  GenerateOptions o = greedy_opts(ref.max_new);
  const int32_t stop = ref.single[1][3];
  o.stop_ids = {stop};
  auto r = generate(*m, ref.prompts, o);
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    auto it = std::find(ref.single[i].begin(), ref.single[i].end(), stop);
    Ids expect(ref.single[i].begin(), it == ref.single[i].end() ? it : it + 1);
    EXPECT_EQ(r.tokens[i], expect) << "row " << i;
    EXPECT_EQ(r.finish[i], it == ref.single[i].end() ? FinishReason::length : FinishReason::eos);
  }
  // on_token returning false stops a row.
  GenerateOptions o2 = greedy_opts(ref.max_new);
  o2.on_token = [](int row, int32_t) { return row != 0; };
  auto r2 = generate(*m, ref.prompts, o2);
  EXPECT_EQ(r2.tokens[0].size(), 1u);
  EXPECT_EQ(r2.finish[0], FinishReason::stop);
  EXPECT_EQ(r2.tokens[2], ref.single[2]);
}

TEST(Generate, ErrorsAreClear) {
  auto m = load_f32("llama_f32");
  auto msg = [&](auto fn) {
    try {
      fn();
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([&] { generate(*m, {Ids{}}); }).find("prompt 0 is empty"), std::string::npos);
  EXPECT_NE(msg([&] { generate(*m, {Ids{1, 100000}}); }).find("100000"), std::string::npos);
  EXPECT_NE(msg([&] { generate(*m, {}); }).find("no prompts"), std::string::npos);
  auto g = models::load_model(fixture_dir("gemma3_f32"), {.dtype = float32, .warn = false});
  PromptCache c(*g, {.rotating_extra = 0});
  generate(*g, {Ids{5, 6, 7, 8, 9, 10, 11, 12}}, greedy_opts(4), &c);
  EXPECT_NE(msg([&] { c.trim_to(2); }).find("can rewind at most"), std::string::npos);
  // generate falls back to a fresh prefill when the cache cannot rewind far enough.
  auto r = generate(*g, {Ids{5, 6, 99}}, greedy_opts(2), &c);
  EXPECT_EQ(r.metrics.reused_tokens, 0);
  auto fresh = generate(*g, {Ids{5, 6, 99}}, greedy_opts(2));
  EXPECT_EQ(r.tokens[0], fresh.tokens[0]);
}

TEST(Generate, PromptCacheFilesForAnotherModelOrBrokenAreFormatErrors) {
  auto m = load_f32("llama_f32");
  auto q = load_f32("qwen3_f32_tied");
  PromptCache c(*m);
  generate(*m, {Ids{1, 2, 3}}, greedy_opts(2), &c);
  models::TempDir tmp;
  const std::string path = tmp.path + "/c.safetensors";
  c.save(path);
  PromptCache other(*q);
  try {
    other.load(path);
    ADD_FAILURE() << "loaded a cache saved for another model";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("saved for"), std::string::npos) << e.what();
  }
  EXPECT_EQ(other.offset(), 0) << "a failed load must leave the cache as it was";
  EXPECT_THROW(other.load(tmp.path + "/missing.safetensors"), IoError);
  // Buffers that do not match the metadata.
  std::map<std::string, std::string> md;
  auto arrays = load_safetensors(path, {}, &md);
  arrays["layers.0.keys"] = zeros({1, 1, 2, 2}, float32, cpu_device);  // written from the host
  save_safetensors(path, arrays, md);
  PromptCache again(*m);
  EXPECT_THROW(again.load(path), FormatError);
}

TEST(Generate, SustainedRunWithCacheReuseKeepsMemoryFlat) {
  // 10,000 generated tokens: 20 calls of 500 reusing one prompt cache (each call rewinds it to
  // the prompt). Active memory after every call must equal the level after the first.
  auto m = load_f32("llama_f32");
  PromptCache cache(*m);
  Ids prompt{5, 17, 42, 7};
  GenerateOptions o = greedy_opts(500);
  o.sampler.temperature = 1.0f;
  int64_t total = 0;
  size_t first_active = 0, max_active = 0;
  for (int call = 0; call < 20; ++call) {
    o.sampler.seed = static_cast<uint64_t>(call);
    auto r = generate(*m, {prompt}, o, &cache);
    total += static_cast<int64_t>(r.tokens[0].size());
    const size_t active = memory::active(m->device());
    if (call == 0) first_active = active;
    max_active = std::max(max_active, active);
    EXPECT_EQ(cache.offset(), static_cast<int64_t>(prompt.size() + r.tokens[0].size() - 1));
  }
  EXPECT_EQ(total, 10000);
  EXPECT_EQ(max_active, first_active) << "active memory grew across calls";
}

}  // namespace
}  // namespace ingot::llm
