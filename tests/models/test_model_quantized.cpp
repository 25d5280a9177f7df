// mlx-community quantized checkpoints (written by scripts/quantize_fixture_mlx.py from the bf16
// fixtures, with its own packing code): config parsing with per-module overrides, which
// modules load quantized, logits equal to the float model carrying the dequantized weights
// (unpacked here from the layout's definition) on the float32-activation path, the default
// int8-activation path within its bound of that (greedy tokens reported), logits of both within
// the documented bounds of the original bf16 model, and the dtype errors for integer tensors
// without a quantization config.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "backend/cpu/quantized_int8.h"
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

/// quantized_matmul pinned to float32 activations (MLX's numerics) for a scope.
struct FloatActivations : cpu::ScopedInt8Decode {
  FloatActivations() : cpu::ScopedInt8Decode(false) {}
};

/// Module `mod` of a quantized checkpoint unpacked by the layout's definition (value j of a
/// uint32 at bits [j * bits, (j + 1) * bits)): codes q [rows, cols], scales s and biases b
/// [rows, cols / gs], float64.
struct Unpacked {
  std::vector<double> q, s, b;
  int64_t rows = 0, cols = 0;
};

Unpacked unpack(const Checkpoint& c, const std::string& mod, int bits) {
  Array wq = c.load(mod + ".weight");
  std::vector<uint32_t> words = wq.to_vector<uint32_t>();
  Unpacked u;
  u.s = c.load(mod + ".scales").to_vector<double>();
  u.b = c.load(mod + ".biases").to_vector<double>();
  const int per = 32 / bits;
  u.rows = wq.shape(0);
  u.cols = wq.shape(1) * per;
  u.q.resize(static_cast<size_t>(u.rows * u.cols));
  for (int64_t r = 0; r < u.rows; ++r)
    for (int64_t k = 0; k < u.cols; ++k)
      u.q[r * u.cols + k] =
          (words[r * wq.shape(1) + k / per] >> ((k % per) * bits)) & ((1u << bits) - 1u);
  return u;
}

/// The float weight of module `mod` of a quantized checkpoint: s * q + b.
Array dequantized(const Checkpoint& c, const std::string& mod, int gs, int bits) {
  const Unpacked u = unpack(c, mod, bits);
  std::vector<double> w(u.q.size());
  for (int64_t r = 0; r < u.rows; ++r)
    for (int64_t k = 0; k < u.cols; ++k) {
      const size_t g = static_cast<size_t>(r * (u.cols / gs) + k / gs);
      w[r * u.cols + k] = u.s[g] * u.q[r * u.cols + k] + u.b[g];
    }
  return Array(w, {u.rows, u.cols}, float32);
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
  FloatActivations pin;  // the exact path; the default one: Int8ActivationsNearFloatPath
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

/// First-order bound on how far the int8-activation path (the default on SIMD CPUs) moves the
/// logits of checkpoint `qfx` from the float32-activation path, in the manner of
/// expect_near_original. One quantized matmul y = x W^T with W_jt = s_jg q_jt + b_jg moves y_j
/// by at most (quantized_int8.h; S = max|s|, q <= 2^bits - 1, G = K / gs groups)
///   sum_g |s_jg| * max_{t in g} |x_t| / 254 * sum_{t in g} q_jt
///   <= (2^bits - 1) * S / 254 * gs * sum_g max_{t in g} |x_t|
///   <= (2^bits - 1) * S / 254 * gs * sqrt(G) * ||x||_2      (Cauchy-Schwarz over the groups)
///   =  (2^bits - 1) * S * sqrt(gs) / 254 * K * rms(x).
/// With rms(x) ~ 1 after the norms and K ~ E (the hidden size), as there, we allow c * E per
/// quantized matmul on the path, c the largest (2^bits - 1) * S * sqrt(gs) / 254 over the
/// checkpoint's quantized tensors, 7 per layer plus the head (the embedding is a lookup). It
/// ignores how norms and softmax damp or amplify the perturbation, like that bound.
double int8_activation_bound(const std::string& qfx) {
  Checkpoint c = Checkpoint::open(fixture_dir(qfx), {.warn = false});
  const QuantizationConfig& qc = *c.config().quantization;
  double per_elem = 0;
  int quantized = 0;
  for (const std::string& name : c.names()) {
    if (!name.ends_with(".scales")) continue;
    const std::string mod = name.substr(0, name.size() - std::string(".scales").size());
    auto spec = qc.for_module(mod, true);
    if (!spec) continue;
    const double smax = max(abs(c.load(name))).item<float>();
    per_elem =
        std::max(per_elem, ((1 << spec->bits) - 1) * smax * std::sqrt(spec->group_size) / 254);
    ++quantized;
  }
  EXPECT_GT(quantized, 5);
  const ModelConfig& cfg = c.config();
  return per_elem * static_cast<double>(cfg.hidden_size) *
         static_cast<double>(1 + 7 * cfg.num_hidden_layers);
}

/// Logits of the quantized model against the original bf16 model (both computed in float32).
/// Bound: a weight perturbation of at most eps per element (quant_report.json's
/// max_abs_error, the largest |w - dequant(w)| over all quantized tensors) moves one output of a
/// linear map by at most eps * ||x||_1; normalised blocks keep ||x||_1 <= sqrt(E) * ||x||_2 =
/// E * rms(x) ~ E. We allow eps * E per matmul on the path (2 + 7 per layer: q, k, v, o, gate,
/// up, down, plus embedding and head), a first-order bound that ignores how norms and softmax
/// damp or amplify the perturbation; on the default path the int8 rounding of the activations
/// adds int8_activation_bound. Measured on the float32-activation path: 3.3 against 98.5
/// (qwen3_q4_mlx, eps 0.096) and 0.60 against 5.0 (llama_q8_mlx, eps 0.0049); on the default
/// path (AMD EPYC, VNNI) 3.1 against 148 and 1.26 against 37. The exact check of the quantized
/// path is EqualsFloatModelWithDequantizedWeights; this one ties the error to the quantization
/// error.
void expect_near_original(const std::string& qfx, const std::string& ffx) {
  SCOPED_TRACE(qfx);
  auto qm = load_model(fixture_dir(qfx), {.dtype = float32, .warn = false});
  auto fm = load_model(fixture_dir(ffx), {.dtype = float32, .warn = false});
  const double eps = quant_report(qfx)["max_abs_error"].get<double>();
  const ModelConfig& c = fm->config();
  const double bound =
      eps * static_cast<double>(c.hidden_size) * static_cast<double>(2 + 7 * c.num_hidden_layers);
  const double bound_int8 = bound + int8_activation_bound(qfx);
  Array b = logits_of(*fm), a;
  {
    FloatActivations pin;
    a = logits_of(*qm);
  }
  Array ai = logits_of(*qm);  // default
  const double diff = max(abs(a - b)).item<float>(), diff_int8 = max(abs(ai - b)).item<float>();
  EXPECT_LT(diff, bound) << "eps " << eps;
  EXPECT_GT(diff, 0.0);  // it is a different model
  EXPECT_LT(diff_int8, bound_int8) << "eps " << eps << " default path";
  std::cerr << "[quantized] " << qfx << ": max |logit diff| vs " << ffx << " = " << diff
            << " (bound " << bound << ", eps " << eps << "), default path " << diff_int8
            << " (bound " << bound_int8 << ")\n";
}

TEST(QuantizedModel, NearOriginalModelWithinBound) {
  expect_near_original("qwen3_q4_mlx", "qwen3_bf16");
  expect_near_original("llama_q8_mlx", "llama_bf16_tied");
}

TEST(QuantizedModel, LmHeadRowsOfQuantizedHead) {
  // lm_head_rows dequantizes the rows and multiplies in float32; lm_head runs quantized_matmul.
  auto m = load_model(fixture_dir("llama_q8_mlx"), {.dtype = float32, .warn = false});
  Array ids(kIds, {1, static_cast<int64_t>(kIds.size())}, int32);
  Array h = m->hidden(ids);
  eval({h});
  const std::vector<int32_t> sel = {5, 77, 300};
  Array rows = m->lm_head_rows(h, Array(sel, {3}, int32));
  Array full_f;
  {
    FloatActivations pin;
    full_f = take(m->lm_head(h), Array(sel, {3}, int32), -1);
    eval({full_f});
  }
  EXPECT_LT(max(abs(rows - full_f)).item<float>(), 1e-5 * max(abs(full_f)).item<float>());
  // The default path: within the int8 scheme's bound (backend/cpu/quantized_int8.h) of the
  // rows. Per position i, head row j and group g of E: x = h_i is rounded with step
  // d_ig = max_{t in g} |h_it| / 127 (round to nearest, |error| <= d_ig / 2 per element) and
  // only the scale part s_jg * q_jt of the weight meets the rounded x (the bias part uses the
  // float32 sum of x), so |full_ij - rows_ij| <= sum_g |s_jg| * d_ig / 2 * sum_{t in g} q_jt,
  // plus the float path's 1e-5 relative slack above.
  Array full = take(m->lm_head(h), Array(sel, {3}, int32), -1);
  Checkpoint c = Checkpoint::open(fixture_dir("llama_q8_mlx"), {.warn = false});
  const QuantizationSpec spec = *c.config().quantization->for_module("model.embed_tokens", true);
  const Unpacked u = unpack(c, "model.embed_tokens", spec.bits);  // tied head
  const std::vector<double> hv = h.to_vector<double>(), rv = rows.to_vector<double>(),
                            fv = full.to_vector<double>();
  const int64_t e = u.cols, gs = spec.group_size, groups = e / gs, n = std::ssize(kIds);
  const double slack = 1e-5 * max(abs(full_f)).item<float>();
  for (int64_t i = 0; i < n; ++i)
    for (size_t jj = 0; jj < sel.size(); ++jj) {
      const int64_t j = sel[jj];
      double bound = 0;
      for (int64_t g = 0; g < groups; ++g) {
        double amax = 0, qsum = 0;
        for (int64_t t = g * gs; t < (g + 1) * gs; ++t) {
          amax = std::max(amax, std::abs(hv[i * e + t]));
          qsum += u.q[j * e + t];
        }
        bound += std::abs(u.s[j * groups + g]) * amax / 127 / 2 * qsum;
      }
      const size_t o = static_cast<size_t>(i * 3) + jj;
      EXPECT_NEAR(fv[o], rv[o], bound + slack) << "position " << i << " row " << j;
    }
}

/// Greedy continuation of kIds by full forwards (no cache).
std::vector<int32_t> greedy(const Model& m, int steps) {
  std::vector<int32_t> ids = kIds;
  for (int s = 0; s < steps; ++s) {
    Array l = m.forward(Array(ids, {1, std::ssize(ids)}, int32));
    ids.push_back(static_cast<int32_t>(argmax(l, -1).to_vector<int64_t>().back()));
  }
  return std::vector<int32_t>(ids.begin() + std::ssize(kIds), ids.end());
}

/// The default (int8-activation) path against the float32-activation path on a whole model,
/// within int8_activation_bound.
void expect_int8_near_float_path(const std::string& qfx) {
  SCOPED_TRACE(qfx);
  auto qm = load_model(fixture_dir(qfx), {.dtype = float32, .warn = false});
  const double bound = int8_activation_bound(qfx);
  Array lf, li = logits_of(*qm);  // default
  std::vector<int32_t> tf, ti = greedy(*qm, 8);
  {
    FloatActivations pin;
    lf = logits_of(*qm);
    tf = greedy(*qm, 8);
  }
  const double diff = max(abs(li - lf)).item<float>();
  EXPECT_LT(diff, bound);
  cpu::Int8Gemv kern;
  // (The int8 kernels are the CPU backend's: a model on a GPU runs the same path both ways.)
  if (qm->device().type == Device::Type::cpu && cpu::int8_gemv_active(kern)) {
    EXPECT_GT(diff, 0.0);  // the default did run the int8 kernels
  }
  // Greedy tokens (the argmax at every prompt position, an 8-token greedy continuation) are
  // reported, not asserted: they do not all agree on these random-weight fixtures, whose
  // top-1 / top-2 logit margins go down to 0.004 while the int8 rounding moves logits by up to
  // 0.58 (qwen3_q4_mlx) / 1.09 (llama_q8_mlx), about 6x what computing in bf16 instead of
  // float32 moves them (0.09 / 0.16; a step of max|x_g| / 127 against bf16's 2^-9 |x|). Measured
  // on the AMD EPYC build machine: llama_q8_mlx flips 3 of 11 prompt positions (margins 0.004,
  // 0.057, 0.086) and both continuations diverge after one or two tokens.
  const std::vector<int64_t> af = argmax(lf, -1).to_vector<int64_t>(),
                             ai = argmax(li, -1).to_vector<int64_t>();
  int flips = 0;
  for (size_t i = 0; i < af.size(); ++i) flips += af[i] != ai[i];
  size_t same = 0;
  while (same < ti.size() && ti[same] == tf[same]) ++same;
  std::cerr << "[quantized] " << qfx << ": int8 vs float activations max |logit diff| = " << diff
            << " (bound " << bound << ", max |logit| " << max(abs(lf)).item<float>()
            << "); argmax differs at " << flips << " of " << af.size()
            << " prompt positions; greedy continuations share their first " << same << " of "
            << ti.size() << " tokens\n";
}

TEST(QuantizedModel, Int8ActivationsNearFloatPath) {
  expect_int8_near_float_path("qwen3_q4_mlx");
  expect_int8_near_float_path("llama_q8_mlx");
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
