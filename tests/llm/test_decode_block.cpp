// The fused decoder block of a decode step (nn::Attention::decode_block -> fast::decode_block,
// one persistent kernel per block on a GPU) inside real models: bf16 Llama- and Qwen3-shaped
// models with random weights, decode steps over the fixed-size cache (eagerly and replayed as
// CUDA graphs) with the block on and off. The fused path must be taken, and each step's logits
// and cache columns must agree with the separate kernels' within bf16 rounding (the attention
// splits sum in another order, so a head's output can round one ulp apart). Also: the decode
// step's L2 prefetch hints change no logits.
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

// Decode-step L2 hints (models::set_decode_prefetch): recorded graphs with a branch of
// prefetches must give the logits of graphs without, bit for bit (the same kernels run), with
// the hints built where the budget says: one per layer and one for the head when each asks for
// new bytes, a single one when the first asks for everything.
TEST(DecodePrefetchModel, HintsChangeNoLogits) {
  if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: skipped";
  for (const std::string type : {"llama", "qwen3"}) {
    SCOPED_TRACE(type);
    auto m = make_model(type, 64);
    const std::vector<std::vector<int32_t>> prompt{{5, 17, 33, 2, 250, 91, 7}};
    PromptCache base(*m);
    eval({prefill(*m, prompt, base, 0, 1)});
    const std::vector<int32_t> feed{11, 12, 140, 13, 299, 1};
    std::vector<std::vector<float>> want;
    for (int64_t budget : {int64_t{0}, int64_t{64} << 10, int64_t{1} << 30}) {
      models::set_decode_prefetch(budget);
      PromptCache c = base.copy();
      const int64_t before = models::decode_prefetch_hints();
      StaticDecoder dec(*m, c, 16, /*use_graph=*/true);
      for (size_t s = 0; s < feed.size(); ++s) {
        Array logits = dec.step({feed[s]});
        const std::vector<float> got = logits.to_vector<float>();
        if (budget == 0)
          want.push_back(got);
        else
          EXPECT_EQ(got, want[s]) << "budget " << budget << " step " << s;
      }
      const int64_t built = models::decode_prefetch_hints() - before;
      EXPECT_EQ(built, budget == 0 ? 0 : budget < (int64_t{1} << 20) ? 3 : 1) << budget;
    }
  }
  models::set_decode_prefetch(std::nullopt);
}

}  // namespace
}  // namespace ingot::llm
