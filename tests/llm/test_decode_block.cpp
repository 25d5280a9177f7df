// The fused decoder block of a decode step (nn::Attention::decode_block -> fast::decode_block,
// one persistent kernel per block on a GPU) inside real models: bf16 Llama- and Qwen3-shaped
// models with random weights, decode steps over the fixed-size cache (eagerly and replayed as
// CUDA graphs) with the block on and off. The fused path must be taken, and each step's logits
// and cache columns must agree with the separate kernels' within bf16 rounding (the attention
// splits sum in another order, so a head's output can round one ulp apart).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/ops/ops.h"
#include "llm/generate.h"
#include "llm/static_cache.h"
#include "models/config.h"
#include "models/model.h"
#include "models/transformer.h"
#include "nn/attention.h"

namespace ingot::llm {
namespace {

const Device kCuda{Device::Type::cuda, 0};

std::shared_ptr<models::Model> make_model(const std::string& type, int64_t head_dim) {
  const bool qwen = type == "qwen3";
  const std::string json = R"({"model_type": ")" + type + R"(", "hidden_size": 256,
    "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": )" +
                           std::to_string(head_dim) +
                           R"(, "vocab_size": 300, "rms_norm_eps": 1e-6,
    "max_position_embeddings": 512, "rope_theta": 10000.0, "initializer_range": 0.08,
    "tie_word_embeddings": )" +
                           (qwen ? "true" : "false") + R"(, "torch_dtype": "bfloat16"})";
  const models::ModelConfig cfg = models::parse_model_config(json, type + " test config");
  auto m = models::init_model(cfg, {.dtype = bfloat16, .device = kCuda, .seed = 7});
  models::fuse_projections(*m);  // as load_weights does on a GPU
  return m;
}

/// max |got - want| <= atol + rtol * max |want|.
double worst(const Array& got, const Array& want, double atol, double rtol) {
  const auto g = astype(got, float32).to_vector<float>();
  const auto w = astype(want, float32).to_vector<float>();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    err = std::max(err, std::abs(double(g[i]) - w[i]));
    scale = std::max(scale, std::abs(double(w[i])));
  }
  return err / (atol + rtol * scale);
}

void check_model(const std::string& type, int64_t head_dim) {
  SCOPED_TRACE(type + " D " + std::to_string(head_dim));
  auto m = make_model(type, head_dim);
  const std::vector<std::vector<int32_t>> prompt{{5, 17, 33, 2, 250, 91, 7}};
  PromptCache base(*m);
  eval({prefill(*m, prompt, base, 0, 1)});
  const std::vector<int32_t> feed{11, 12, 140, 13, 299, 1, 64, 3, 77, 150};
  for (bool graph : {false, true}) {
    PromptCache a = base.copy(), b = base.copy();
    nn::set_decode_block(false);
    StaticDecoder plain(*m, a, 16, graph);
    nn::set_decode_block(true);
    StaticDecoder fused(*m, b, 16, graph);
    for (size_t s = 0; s < feed.size(); ++s) {
      const std::vector<int32_t> tok{feed[s]};
      nn::set_decode_block(false);
      const int64_t before = nn::decode_blocks_built();
      Array want = plain.step(tok);
      eval({want});
      EXPECT_EQ(nn::decode_blocks_built(), before);
      nn::set_decode_block(true);
      Array got = fused.step(tok);
      eval({got});
      if (!graph || s == 0) {
        EXPECT_EQ(nn::decode_blocks_built(), before + 2) << "the fused block was not taken";
      }
      const double r = worst(got, want, 2e-2, 2e-2);
      EXPECT_LE(r, 1.0) << (graph ? "graph" : "eager") << " step " << s << " (ratio " << r << ")";
      // The greedy choice agrees wherever the runner-up is not within the rounding noise.
      const auto g = got.to_vector<float>(), w = want.to_vector<float>();
      std::vector<float> sorted = w;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      if (sorted[0] - sorted[1] > 0.05f) {
        EXPECT_EQ(std::max_element(g.begin(), g.end()) - g.begin(),
                  std::max_element(w.begin(), w.end()) - w.begin())
            << "step " << s;
      }
    }
  }
  nn::set_decode_block(std::nullopt);
}

TEST(DecodeBlockModel, FusedStepsMatchTheSeparateKernels) {
  if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: skipped";
  check_model("llama", 64);
  check_model("qwen3", 128);
}

}  // namespace
}  // namespace ingot::llm
