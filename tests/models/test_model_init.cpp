// init_model: a new model from a config alone, initialised as transformers' _init_weights does
// (Linear / Embedding weights ~ Normal(0, initializer_range), the pad row and biases 0, RMSNorm
// weights 1, Gemma3's (1 + w) norms 0), checked per architecture against parameter lists
// written here from the config and against statistical bounds of the estimators;
// determinism, seeds, dtypes, tied heads, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/ingot.h"
#include "models/config.h"
#include "models/model.h"
#include "util/error.h"

namespace ingot::models {
namespace {

constexpr int64_t kE = 64, kH = 4, kKv = 2, kD = 16, kF = 128, kV = 96, kLayers = 2;

/// A small config of `model_type` (tied or not, Llama with biases), pad id 3.
ModelConfig small_config(const std::string& model_type, bool tied, double init_range,
                         bool bias = false) {
  std::string j = fmt::format(
      R"({{"model_type": "{}", "hidden_size": {}, "intermediate_size": {},
      "num_hidden_layers": {}, "num_attention_heads": {}, "num_key_value_heads": {},
      "head_dim": {}, "vocab_size": {}, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
      "tie_word_embeddings": {}, "attention_bias": {}, "pad_token_id": 3, "bos_token_id": 1,
      "eos_token_id": 2, "initializer_range": {})",
      model_type, kE, kF, kLayers, kH, kKv, kD, kV, tied ? "true" : "false",
      bias ? "true" : "false", init_range);
  if (model_type == "gemma3_text")
    j += R"(, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 16,
      "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"],
      "final_logit_softcapping": 30.0)";
  else
    j += R"(, "hidden_act": "silu")";
  return parse_model_config(j + "}", model_type + ".json");
}

enum class Kind { normal, embedding, zero, one };

/// The parameters an architecture must have, written from the config (HF names and shapes).
std::map<std::string, std::pair<Shape, Kind>> expected(const std::string& arch, bool tied,
                                                       bool bias) {
  std::map<std::string, std::pair<Shape, Kind>> m;
  const Kind norm = arch == "gemma3" ? Kind::zero : Kind::one;
  m["model.embed_tokens.weight"] = {{kV, kE}, Kind::embedding};
  m["model.norm.weight"] = {{kE}, norm};
  if (!tied) m["lm_head.weight"] = {{kV, kE}, Kind::normal};
  for (int64_t i = 0; i < kLayers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    m[p + "input_layernorm.weight"] = {{kE}, norm};
    m[p + "post_attention_layernorm.weight"] = {{kE}, norm};
    m[p + "self_attn.q_proj.weight"] = {{kH * kD, kE}, Kind::normal};
    m[p + "self_attn.k_proj.weight"] = {{kKv * kD, kE}, Kind::normal};
    m[p + "self_attn.v_proj.weight"] = {{kKv * kD, kE}, Kind::normal};
    m[p + "self_attn.o_proj.weight"] = {{kE, kH * kD}, Kind::normal};
    m[p + "mlp.gate_proj.weight"] = {{kF, kE}, Kind::normal};
    m[p + "mlp.up_proj.weight"] = {{kF, kE}, Kind::normal};
    m[p + "mlp.down_proj.weight"] = {{kE, kF}, Kind::normal};
    if (bias) {
      m[p + "self_attn.q_proj.bias"] = {{kH * kD}, Kind::zero};
      m[p + "self_attn.k_proj.bias"] = {{kKv * kD}, Kind::zero};
      m[p + "self_attn.v_proj.bias"] = {{kKv * kD}, Kind::zero};
      m[p + "self_attn.o_proj.bias"] = {{kE}, Kind::zero};
    }
    if (arch != "llama") {
      m[p + "self_attn.q_norm.weight"] = {{kD}, norm};
      m[p + "self_attn.k_norm.weight"] = {{kD}, norm};
    }
    if (arch == "gemma3") {
      m[p + "pre_feedforward_layernorm.weight"] = {{kE}, norm};
      m[p + "post_feedforward_layernorm.weight"] = {{kE}, norm};
    }
  }
  return m;
}

std::vector<double> values(const Array& a) {
  return astype(a, float64).to_vector<double>();
}

/// x[0..n) drawn from Normal(0, sigma): the sample mean (std sigma / sqrt(n)), the mean square
/// over sigma^2 (std sqrt(2 / n)) and the fraction within one sigma (p = 0.682689, std
/// sqrt(p (1 - p) / n)) each within 5 standard deviations of their estimator.
void expect_normal(const std::vector<double>& x, double sigma, const std::string& what) {
  const double n = static_cast<double>(x.size());
  double sum = 0, sq = 0, inside = 0;
  for (double v : x) {
    sum += v;
    sq += v * v;
    inside += std::abs(v) < sigma ? 1 : 0;
  }
  EXPECT_LT(std::abs(sum / n), 5 * sigma / std::sqrt(n)) << what;
  EXPECT_LT(std::abs(sq / n / (sigma * sigma) - 1), 5 * std::sqrt(2 / n)) << what;
  const double p = 0.682689492137;
  EXPECT_LT(std::abs(inside / n - p), 5 * std::sqrt(p * (1 - p) / n)) << what;
}

struct Case {
  std::string model_type, arch;
  bool tied, bias;
  double range;
};

class InitModel : public ::testing::TestWithParam<Case> {};

TEST_P(InitModel, EveryParameterAsTransformersInitialisesIt) {
  const Case c = GetParam();
  const ModelConfig cfg = small_config(c.model_type, c.tied, c.range, c.bias);
  auto model = init_model(cfg, {.dtype = float32, .device = cpu_device, .seed = 5});
  EXPECT_EQ(model->architecture(), c.arch);
  EXPECT_EQ(model->dtype(), float32);
  const ParamMap params = model->parameters();
  const auto want = expected(c.arch, c.tied, c.bias);
  ASSERT_EQ(params.size(), want.size());
  for (const auto& [name, spec] : want) {
    auto it = params.find(name);
    ASSERT_NE(it, params.end()) << name;
    EXPECT_EQ(it->second.shape(), spec.first) << name;
    const auto x = values(it->second);
    switch (spec.second) {
      case Kind::zero:
      case Kind::one:
        for (double v : x) ASSERT_EQ(v, spec.second == Kind::one ? 1.0 : 0.0) << name;
        break;
      case Kind::normal:
        expect_normal(x, c.range, name);
        break;
      case Kind::embedding: {  // row pad_token_id (3) is zero, the others Normal
        std::vector<double> rest;
        for (int64_t r = 0; r < kV; ++r)
          for (int64_t k = 0; k < kE; ++k) {
            const double v = x[static_cast<size_t>(r * kE + k)];
            if (r == 3)
              ASSERT_EQ(v, 0.0) << "pad row";
            else
              rest.push_back(v);
          }
        expect_normal(rest, c.range, name);
        break;
      }
    }
  }
  // Parameters are independent draws: layer 0 and 1 of the same projection differ.
  EXPECT_GT(max(abs(params.at("model.layers.0.self_attn.q_proj.weight") -
                    params.at("model.layers.1.self_attn.q_proj.weight")))
                .item<float>(),
            0.0f);
  // The head: the embedding itself when tied, its own matrix otherwise.
  const Array head = model->lm_head_weight();
  const Array embed = params.at("model.embed_tokens.weight");
  if (c.tied)
    EXPECT_EQ(max(abs(head - embed)).item<float>(), 0.0f);
  else
    EXPECT_GT(max(abs(head - embed)).item<float>(), 0.0f);

  // Near-zero logits: with h the final-norm output (RMS 1) and head rows ~ Normal(0, s^2), each
  // logit is ~ Normal(0, s^2 E) = Normal(0, t^2), so the loss of a position is about ln V + t^2/2
  // - z (z ~ Normal(0, t^2) the target's logit); the mean over P positions is within 5 t /
  // sqrt(P) of ln V + t^2 / 2 (Gemma3's softcap of 30 only shrinks logits this small).
  const int64_t p = 64;
  std::vector<int32_t> ids(static_cast<size_t>(p + 1));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % kV);
  Array logits = model->forward(Array(std::vector<int32_t>(ids.begin(), ids.end() - 1), {1, p}));
  const auto l = values(logits);
  double ce = 0;
  for (int64_t i = 0; i < p; ++i) {
    double mx = -1e300, s = 0;
    for (int64_t v = 0; v < kV; ++v) mx = std::max(mx, l[static_cast<size_t>(i * kV + v)]);
    for (int64_t v = 0; v < kV; ++v) s += std::exp(l[static_cast<size_t>(i * kV + v)] - mx);
    ce += mx + std::log(s) - l[static_cast<size_t>(i * kV + ids[static_cast<size_t>(i + 1)])];
  }
  ce /= static_cast<double>(p);
  const double t = c.range * std::sqrt(static_cast<double>(kE));
  EXPECT_LT(std::abs(ce - (std::log(static_cast<double>(kV)) + t * t / 2)),
            5 * t / std::sqrt(static_cast<double>(p)))
      << ce;
}

TEST_P(InitModel, SeedsAndDtypesAreDeterministic) {
  const Case c = GetParam();
  const ModelConfig cfg = small_config(c.model_type, c.tied, c.range, c.bias);
  auto a = init_model(cfg, {.dtype = float32, .seed = 11});
  auto b = init_model(cfg, {.dtype = float32, .seed = 11});
  auto other = init_model(cfg, {.dtype = float32, .seed = 12});
  auto half = init_model(cfg, {.dtype = bfloat16, .seed = 11});
  EXPECT_EQ(half->dtype(), bfloat16);
  const ParamMap pa = a->parameters(), pb = b->parameters(), po = other->parameters(),
                 ph = half->parameters();
  for (const auto& [name, v] : pa) {
    EXPECT_EQ(values(v), values(pb.at(name))) << name;  // same seed: the same bits
    EXPECT_EQ(ph.at(name).dtype(), bfloat16) << name;
    // bf16: the float32 values rounded.
    EXPECT_EQ(values(ph.at(name)), values(astype(v, bfloat16))) << name;
    const bool random = name.find("_proj.weight") != std::string::npos ||
                        name.find("embed_tokens") != std::string::npos || name == "lm_head.weight";
    if (random) {  // another seed: other draws
      EXPECT_NE(values(v), values(po.at(name))) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, InitModel,
                         ::testing::Values(Case{"llama", "llama", false, true, 0.05},
                                           Case{"qwen3", "qwen3", true, false, 0.02},
                                           Case{"gemma3_text", "gemma3", true, false, 0.02}),
                         [](const auto& info) { return info.param.arch; });

TEST(InitModelErrors, MissingConfigUnknownTypeAndDefaults) {
  const std::string missing =
      (std::filesystem::temp_directory_path() / "ingot_no_such_dir" / "config.json").string();
  try {
    init_model(missing);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  // From a file: the same model as from the parsed config.
  const std::string path =
      (std::filesystem::temp_directory_path() / "ingot_init_model_config.json").string();
  {
    std::ofstream f(path);
    f << R"({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
      "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
      "vocab_size": 40, "hidden_act": "silu"})";
  }
  auto m = init_model(path, {.seed = 1});
  ModelConfig cfg = load_model_config(path);
  std::filesystem::remove(path);
  EXPECT_EQ(cfg.initializer_range, 0.02);  // transformers' default when the file has none
  auto m2 = init_model(cfg, {.seed = 1});
  EXPECT_EQ(values(m->lm_head_weight()), values(m2->lm_head_weight()));
  cfg.model_type = "gpt2";
  EXPECT_THROW(init_model(cfg), FormatError);
  EXPECT_THROW(init_model(small_config("llama", true, 0.02), {.dtype = int32}), InvalidArgument);
}

}  // namespace
}  // namespace ingot::models
