// mlx-community quantized checkpoints (written by scripts/quantize_fixture_mlx.py from the bf16
// fixtures, with its own packing code): config parsing with per-module overrides, which
// modules load quantized, logits equal to the float model carrying the dequantized weights
// (unpacked here from the layout's definition), logits within the documented bound of the
// original bf16 model, and the dtype errors for integer tensors without a quantization config.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/ingot.h"
#include "models/checkpoint.h"
#include "models/model.h"
#include "models/parity_util.h"
#include "nn/quantized.h"
#include "util/error.h"

namespace ingot::models {
namespace {

namespace fs = std::filesystem;

nlohmann::json quant_report(const std::string& fx) {
  std::ifstream f(fixture_dir(fx) + "/quant_report.json");
  return nlohmann::json::parse(f);
}

const std::vector<int32_t> kIds = {1, 17, 42, 99, 128, 3, 250, 7, 64, 200, 11};

Array logits_of(const Model& m) {
  Array ids(kIds, {1, static_cast<int64_t>(kIds.size())}, int32);
  Array l = m.forward(ids);
  eval({l});
  return l;
}

/// The float weight of module `mod` of a quantized checkpoint: s * q + b with q unpacked by the
/// layout's definition (value j of a uint32 at bits [j * bits, (j + 1) * bits)).
Array dequantized(const Checkpoint& c, const std::string& mod, int gs, int bits) {
  Array wq = c.load(mod + ".weight");
  std::vector<uint32_t> words = wq.to_vector<uint32_t>();
  std::vector<double> s = c.load(mod + ".scales").to_vector<double>();
  std::vector<double> b = c.load(mod + ".biases").to_vector<double>();
  const int per = 32 / bits;
  const int64_t rows = wq.shape(0), cols = wq.shape(1) * per;
  std::vector<double> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) {
      const uint32_t q =
          (words[r * wq.shape(1) + k / per] >> ((k % per) * bits)) & ((1u << bits) - 1u);
      const size_t g = static_cast<size_t>(r * (cols / gs) + k / gs);
      w[r * cols + k] = s[g] * q + b[g];
    }
  return Array(w, {rows, cols}, float32);
}

TEST(QuantizedModel, ConfigOverridesParsed) {
  ModelConfig c = load_model_config(fixture_dir("qwen3_q4_mlx") + "/config.json");
  ASSERT_TRUE(c.quantization);
  EXPECT_EQ(c.quantization->defaults, (QuantizationSpec{.group_size = 32, .bits = 4}));
  auto down = c.quantization->for_module("model.layers.0.mlp.down_proj", true);
  ASSERT_TRUE(down);
  EXPECT_EQ(*down, (QuantizationSpec{.group_size = 64, .bits = 8}));
  EXPECT_FALSE(c.quantization->for_module("model.layers.1.self_attn.k_proj", true));
  EXPECT_FALSE(c.quantization->for_module("model.layers.1.self_attn.q_proj", false));
}

TEST(QuantizedModel, ConfigErrors) {
  auto parse = [](const std::string& q) {
    return parse_model_config(
        R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 32,
            "quantization": )" +
            q + "}",
        "config.json");
  };
  EXPECT_NO_THROW(parse(R"({"group_size": 128, "bits": 8})"));
  EXPECT_THROW(parse(R"({"group_size": 64, "bits": 3})"), Unsupported);
  EXPECT_THROW(parse(R"({"group_size": 16, "bits": 4})"), Unsupported);
  EXPECT_THROW(parse(R"({"group_size": "64", "bits": 4})"), FormatError);
  EXPECT_THROW(parse(R"([64, 4])"), FormatError);
  EXPECT_THROW(parse(R"({"group_size": 64, "bits": 4, "model.layers.0.mlp.up_proj": {"bits": 2}})"),
               Unsupported);
  EXPECT_THROW(parse(R"({"quant_method": "gptq", "bits": 4})"), Unsupported);
}

TEST(QuantizedModel, WhichModulesAreQuantized) {
  auto m = load_model(fixture_dir("qwen3_q4_mlx"), {.warn = false});
  const ParamMap p = m->parameters();
  EXPECT_EQ(p.at("model.embed_tokens.weight").dtype(), uint32);
  EXPECT_EQ(p.at("model.embed_tokens.scales").dtype(), bfloat16);
  EXPECT_EQ(p.at("lm_head.weight").shape(), (Shape{256, 64 * 4 / 32}));
  EXPECT_EQ(p.at("model.layers.0.mlp.down_proj.weight").shape(), (Shape{64, 192 * 8 / 32}));
  EXPECT_EQ(p.at("model.layers.0.mlp.down_proj.scales").shape(), (Shape{64, 192 / 64}));
  EXPECT_EQ(p.at("model.layers.1.self_attn.k_proj.weight").dtype(), bfloat16);  // override false
  EXPECT_FALSE(p.count("model.layers.1.self_attn.k_proj.scales"));
  EXPECT_EQ(p.at("model.norm.weight").dtype(), bfloat16);
  // llama_q8_mlx: mlp.down_proj (176 inputs) does not divide by 64 and stays bf16.
  auto l = load_model(fixture_dir("llama_q8_mlx"), {.warn = false});
  const ParamMap q = l->parameters();
  EXPECT_EQ(q.at("model.layers.0.mlp.down_proj.weight").dtype(), bfloat16);
  EXPECT_EQ(q.at("model.layers.0.mlp.up_proj.weight").dtype(), uint32);
  EXPECT_FALSE(q.count("lm_head.weight"));  // tied: the quantized embedding is the head
}

/// Quantized model == float model whose weights are the dequantized ones (float32 compute, so
/// only the summation order differs: the quantized kernels add s * sum(x q) + b * sum(x) per
/// group).
void expect_matches_dequantized(const std::string& qfx, const std::string& ffx) {
  SCOPED_TRACE(qfx);
  auto qm = load_model(fixture_dir(qfx), {.dtype = float32, .warn = false});
  auto fm = load_model(fixture_dir(ffx), {.dtype = float32, .warn = false});
  Checkpoint c = Checkpoint::open(fixture_dir(qfx), {.warn = false});
  const QuantizationConfig& qc = *c.config().quantization;
  ParamMap dense;
  int replaced = 0;
  for (const auto& [name, p] : fm->parameters()) {
    const std::string mod = name.substr(0, name.size() - std::string(".weight").size());
    auto spec = qc.for_module(mod, c.contains(mod + ".scales"));
    if (name.size() > 7 && name.ends_with(".weight") && spec) {
      dense.emplace(name, dequantized(c, mod, spec->group_size, spec->bits));
      ++replaced;
    }
  }
  ASSERT_GT(replaced, 5);
  fm->update(dense);
  Array a = logits_of(*qm), b = logits_of(*fm);
  const double scale = max(abs(b)).item<float>();
  const double diff = max(abs(a - b)).item<float>();
  // float32 sums of <= 192 terms in another order: a few ulps of the running sums, far below
  // 1e-5 of the largest logit.
  EXPECT_LT(diff, 1e-5 * scale) << "max |diff| " << diff << " of max |logit| " << scale;
}

TEST(QuantizedModel, EqualsFloatModelWithDequantizedWeights) {
  expect_matches_dequantized("qwen3_q4_mlx", "qwen3_bf16");
  expect_matches_dequantized("llama_q8_mlx", "llama_bf16_tied");
}

/// Logits of the quantized model against the original bf16 model (both computed in float32).
/// Bound: a weight perturbation of at most eps per element (quant_report.json's
/// max_abs_error, the largest |w - dequant(w)| over all quantized tensors) moves one output of a
/// linear map by at most eps * ||x||_1; normalised blocks keep ||x||_1 <= sqrt(E) * ||x||_2 =
/// E * rms(x) ~ E. We allow eps * E per matmul on the path (2 + 7 per layer: q, k, v, o, gate,
/// up, down, plus embedding and head), a first-order bound that ignores how norms and softmax
/// damp or amplify the perturbation. Measured: 3.3 against 98.5 (qwen3_q4_mlx, eps 0.096) and
/// 0.60 against 5.0 (llama_q8_mlx, eps 0.0049). The exact check of the quantized path is
/// EqualsFloatModelWithDequantizedWeights; this one ties the error to the quantization error.
void expect_near_original(const std::string& qfx, const std::string& ffx) {
  SCOPED_TRACE(qfx);
  auto qm = load_model(fixture_dir(qfx), {.dtype = float32, .warn = false});
  auto fm = load_model(fixture_dir(ffx), {.dtype = float32, .warn = false});
  const double eps = quant_report(qfx)["max_abs_error"].get<double>();
  const ModelConfig& c = fm->config();
  const double bound =
      eps * static_cast<double>(c.hidden_size) * static_cast<double>(2 + 7 * c.num_hidden_layers);
  Array a = logits_of(*qm), b = logits_of(*fm);
  const double diff = max(abs(a - b)).item<float>();
  EXPECT_LT(diff, bound) << "eps " << eps;
  EXPECT_GT(diff, 0.0);  // it is a different model
  std::cerr << "[quantized] " << qfx << ": max |logit diff| vs " << ffx << " = " << diff
            << " (bound " << bound << ", eps " << eps << ")\n";
}

TEST(QuantizedModel, NearOriginalModelWithinBound) {
  expect_near_original("qwen3_q4_mlx", "qwen3_bf16");
  expect_near_original("llama_q8_mlx", "llama_bf16_tied");
}

TEST(QuantizedModel, LmHeadRowsOfQuantizedHead) {
  auto m = load_model(fixture_dir("llama_q8_mlx"), {.dtype = float32, .warn = false});
  Array ids(kIds, {1, static_cast<int64_t>(kIds.size())}, int32);
  Array h = m->hidden(ids);
  Array rows = m->lm_head_rows(h, Array({5, 77, 300}, int32));
  Array full = m->lm_head(h);
  Array want = take(full, Array({5, 77, 300}, int32), -1);
  EXPECT_LT(max(abs(rows - want)).item<float>(), 1e-5 * max(abs(want)).item<float>());
}

TEST(QuantizedModel, IntegerWeightNeedsQuantizationConfig) {
  // The quantized fixture's tensors with its quantization config removed: the uint32 weights
  // are then errors naming the tensor and the dtype.
  fs::path dir = fs::temp_directory_path() / "ingot_quant_noconfig";
  fs::create_directories(dir);
  fs::copy_file(fixture_dir("qwen3_q4_mlx") + "/model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  nlohmann::json cfg;
  std::ifstream(fixture_dir("qwen3_q4_mlx") + "/config.json") >> cfg;
  cfg.erase("quantization");
  cfg.erase("quantization_config");
  std::ofstream(dir / "config.json") << cfg.dump();
  try {
    load_model(dir.string(), {.warn = false});
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("U32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no quantization config"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ingot::models
