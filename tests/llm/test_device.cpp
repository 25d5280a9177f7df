// The llm layer on the model's device: generation, samplers, caches and scoring make their
// arrays where the model lives (an explicit CPU model works whatever the default device is),
// prompt-cache files move between CPU and CUDA models, and CUDA results equal the CPU's.
// GPU cases skip without a CUDA device.
#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "llm/generate.h"
#include "llm/score.h"
#include "llm_test_util.h"

namespace ingot::llm {
namespace {

using models::fixture_dir;
using models::load_reference;

const Device kCuda0{Device::Type::cuda, 0};

#define REQUIRE_CUDA()                                                                      \
  do {                                                                                      \
    if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU placement untested"; \
  } while (0)

std::shared_ptr<models::Model> load_on(const std::string& fx, Device d) {
  return models::load_model(fixture_dir(fx), {.dtype = float32, .warn = false, .device = d});
}

struct Greedy {
  std::vector<Ids> prompts, single;
  int64_t max_new = 0;
};

Greedy greedy_ref(const std::string& fx) {
  auto g = load_reference(fx)["greedy"];
  return {parse_ids(g["prompts"]), parse_ids(g["single"]), g["max_new_tokens"].get<int64_t>()};
}

GenerateOptions opts(int64_t n, int64_t chunk = 512) {
  GenerateOptions o;
  o.max_tokens = n;
  o.prefill_chunk = chunk;
  return o;
}

void expect_cache_on(const PromptCache& c, Device d) {
  EXPECT_EQ(c.device(), d);
  for (int i = 0; i < c.num_layers(); ++i)
    for (const Array& a : c.layer(i).state()) EXPECT_EQ(a.device(), d) << "layer " << i;
}

TEST(Device, ExplicitCpuModelGeneratesWhateverTheDefault) {
  // Under INGOT_DEVICE=cuda this is a CPU model beside a GPU default: every cache buffer,
  // mask, position and sampler array must still be made on the CPU.
  const std::string fx = "gemma3_f32";  // sliding-window layers: rotating caches and masks
  Greedy ref = greedy_ref(fx);
  auto m = load_on(fx, cpu_device);
  auto r = generate(*m, ref.prompts, opts(ref.max_new, 3));  // padded batch, chunked prefill
  for (size_t i = 0; i < ref.prompts.size(); ++i) EXPECT_EQ(r.tokens[i], ref.single[i]);
  EXPECT_EQ(r.metrics.device, "cpu");
  PromptCache cache(*m, {.rotating_extra = 0});
  GenerateOptions s = opts(12);
  s.sampler = {
      .temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .repetition_penalty = 1.2f, .seed = 7};
  auto a = generate(*m, {ref.prompts[0]}, s, &cache);
  expect_cache_on(cache, cpu_device);
  auto b = generate(*m, {ref.prompts[0]}, s);
  EXPECT_EQ(a.tokens[0], b.tokens[0]) << "same seed, same tokens";
  auto sc = score(*m, {{{1, 5, 9}, {17, 3}}});
  EXPECT_EQ(sc[0].token_logprobs.size(), 2u);
}

TEST(Device, MetricsNameTheModelsDevice) {
  auto m = load_f32("llama_f32");
  auto r = generate(*m, {{1, 2, 3}}, opts(2));
  EXPECT_EQ(r.metrics.device, m->device().str());
  EXPECT_GT(r.metrics.peak_memory_bytes, 0);
}

TEST(Device, CudaGreedyGenerationEqualsTransformers) {
  REQUIRE_CUDA();
  for (const char* fx : {"llama_f32", "qwen3_f32_tied", "gemma3_f32"}) {
    Greedy ref = greedy_ref(fx);
    auto m = load_on(fx, kCuda0);
    for (int64_t chunk : {0, 3}) {
      auto r = generate(*m, ref.prompts, opts(ref.max_new, chunk));
      for (size_t i = 0; i < ref.prompts.size(); ++i)
        EXPECT_EQ(r.tokens[i], ref.single[i]) << fx << " row " << i << " chunk " << chunk;
      EXPECT_EQ(r.metrics.device, "cuda:0");
    }
  }
}

TEST(Device, CudaSamplingEqualsCpuSampling) {
  // Threefry keys give the same draws on both devices; the sampler's key follows the logits.
  REQUIRE_CUDA();
  const std::vector<float> logits = {0.3f, 2.0f, -1.0f, 1.2f, 0.0f, 1.5f, -2.0f, 0.9f};
  SamplerOptions o{.temperature = 1.0f, .top_p = 0.95f, .seed = 11};
  Sampler on_cpu(o, 8), on_gpu(o, 8);
  const Array host(logits, {1, 8});
  const Array lc = broadcast_to(copy(host, cpu_device), {4, 8});
  const Array lg = broadcast_to(to_device(copy(host, cpu_device), kCuda0), {4, 8});
  for (int step = 0; step < 50; ++step) {
    Array a = on_cpu.sample(lc), b = on_gpu.sample(lg);
    EXPECT_EQ(a.device(), cpu_device);
    EXPECT_EQ(b.device(), kCuda0);
    EXPECT_EQ(a.to_vector<int32_t>(), b.to_vector<int32_t>()) << "step " << step;
  }
}

TEST(Device, PromptCacheFilesMoveCpuToCudaToCpu) {
  REQUIRE_CUDA();
  const std::string fx = "gemma3_f32";
  Greedy ref = greedy_ref(fx);
  auto cpu = load_on(fx, cpu_device);
  auto gpu = load_on(fx, kCuda0);
  const Ids& p = ref.prompts.back();
  models::TempDir tmp;
  // CPU: prefill all but the last two prompt tokens, save.
  PromptCache c0(*cpu);
  generate(*cpu, {Ids(p.begin(), p.end() - 2)}, opts(1), &c0);
  c0.save(tmp.path + "/cpu.safetensors");
  // CUDA: load, check the buffers are the CPU's, continue (reusing them), save.
  PromptCache c1(*gpu);
  c1.load(tmp.path + "/cpu.safetensors");
  expect_cache_on(c1, kCuda0);
  for (int i = 0; i < c0.num_layers(); ++i) {
    auto s0 = c0.layer(i).state(), s1 = c1.layer(i).state();
    ASSERT_EQ(s0.size(), s1.size());
    for (size_t k = 0; k < s0.size(); ++k)
      EXPECT_EQ(s0[k].to_vector<float>(), s1[k].to_vector<float>()) << "layer " << i;
  }
  auto r1 = generate(*gpu, {p}, opts(ref.max_new), &c1);
  EXPECT_EQ(r1.tokens[0], ref.single.back());
  EXPECT_EQ(r1.metrics.reused_tokens, static_cast<int64_t>(p.size() - 2));
  c1.save(tmp.path + "/gpu.safetensors");
  // CPU again: the GPU's cache continues the conversation.
  PromptCache c2(*cpu);
  c2.load(tmp.path + "/gpu.safetensors");
  expect_cache_on(c2, cpu_device);
  EXPECT_EQ(c2.tokens(), c1.tokens());
  Ids longer = p;
  longer.insert(longer.end(), r1.tokens[0].begin(), r1.tokens[0].end());
  auto r2 = generate(*cpu, {longer}, opts(3), &c2);
  EXPECT_EQ(r2.metrics.reused_tokens, static_cast<int64_t>(longer.size() - 1));
  EXPECT_EQ(r2.tokens[0], generate(*cpu, {longer}, opts(3)).tokens[0]);
}

TEST(Device, CudaScoreClassifyEmbedEqualCpu) {
  REQUIRE_CUDA();
  auto cpu = load_on("qwen3_f32_tied", cpu_device);
  auto gpu = load_on("qwen3_f32_tied", kCuda0);
  std::vector<ScoreRequest> reqs{{{1, 5, 9}, {17, 3, 99}}, {{7}, {8}}, {{20, 21}, {22, 23, 24}}};
  auto sc = score(*cpu, reqs, 2), sg = score(*gpu, reqs, 2);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_NEAR(sg[i].sum, sc[i].sum, 1e-3) << i;
  std::vector<Ids> prompts{{1, 40, 41, 60}, {1, 40, 41, 42, 43, 70}, {1, 40, 90}};
  std::vector<Ids> labels{{60}, {61}, {200}};
  auto kc = classify(*cpu, prompts, labels, {.batch_size = 2});
  auto kg = classify(*gpu, prompts, labels, {.batch_size = 2});
  auto ec = embed(*cpu, prompts, Pooling::mean, {.batch_size = 2});
  auto eg = embed(*gpu, prompts, Pooling::mean, {.batch_size = 2});
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (size_t j = 0; j < labels.size(); ++j) EXPECT_NEAR(kg[i][j], kc[i][j], 1e-5);
    ASSERT_EQ(eg[i].size(), ec[i].size());
    for (size_t j = 0; j < ec[i].size(); ++j) EXPECT_NEAR(eg[i][j], ec[i][j], 1e-4);
  }
}

}  // namespace
}  // namespace ingot::llm
