// GGUF checkpoints (tests/data/gguf, written by scripts/gguf_write.py from the model fixtures):
// config from metadata, the logits of a GGUF-loaded model against the safetensors fixture (F32:
// equal; other types: equal to the fixture model carrying the GGUF weights decoded here in
// float64 from the block formats, with llama's Q/K permutation and Gemma's 1 + w undone here),
// round-trip error bounds of each block type, and the Checkpoint errors of corrupt files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include "backend/cpu/quantized_int8.h"
#include "core/half.h"
#include "core/io/gguf.h"
#include "models/checkpoint.h"
#include "models/gguf_checkpoint.h"
#include "models/model.h"
#include "models/transformer.h"
#include "parity_util.h"

namespace ingot::models {
namespace {

std::string gguf_path(const std::string& name) {
  return std::string(INGOT_SOURCE_DIR) + "/tests/data/gguf/" + name;
}

std::vector<int32_t> longest_sequence(const std::string& fixture) {
  auto ref = load_reference(fixture);
  std::vector<int32_t> ids;
  for (const auto& s : ref["sequences"])
    if (s["ids"].size() > ids.size()) ids = s["ids"].get<std::vector<int32_t>>();
  return ids;
}

/// max |a - b| / max |b|.
double rel_diff(const Array& a, const Array& b) {
  auto x = astype(a, float64).to_vector<double>();
  auto y = astype(b, float64).to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / den;
}

// ---- test-side decoding of GGUF tensors (float64, from the block layouts) ----

double half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return float16_t::to_float(h);
}

std::vector<double> decode(const GgufFile& f, const GgufTensorInfo& t) {
  const uint8_t* p = f.data(t);
  const auto n = static_cast<size_t>(t.numel());
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    switch (t.type) {
      case GgufTensorType::F32: {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = v;
        break;
      }
      case GgufTensorType::F16:
        out[i] = half_at(p + 2 * i);
        break;
      case GgufTensorType::BF16: {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = static_cast<float>(bfloat16_t::from_bits(h));
        break;
      }
      case GgufTensorType::Q8_0: {
        const uint8_t* b = p + 34 * (i / 32);
        out[i] = half_at(b) * static_cast<int8_t>(b[2 + i % 32]);
        break;
      }
      case GgufTensorType::Q4_0: {
        const uint8_t* b = p + 18 * (i / 32);
        const size_t k = i % 32;
        const int nib = k < 16 ? b[2 + k] % 16 : b[2 + k - 16] / 16;
        out[i] = half_at(b) * (nib - 8);
        break;
      }
      default:
        ADD_FAILURE() << "test cannot decode " << gguf_tensor_type_name(t.type);
    }
  }
  return out;
}

/// HF name of a GGUF tensor, written out here from llama.cpp's tensor naming.
std::string hf_name(const std::string& g, bool gemma) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  std::smatch m;
  static const std::regex re(R"(blk\.(\d+)\.(\w+)\.weight)");
  if (!std::regex_match(g, m, re)) return "";
  const std::map<std::string, std::string> t = {
      {"attn_norm", "input_layernorm"},
      {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"},
      {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
      {"ffn_norm", gemma ? "pre_feedforward_layernorm" : "post_attention_layernorm"},
      {"post_attention_norm", "post_attention_layernorm"},
      {"post_ffw_norm", "post_feedforward_layernorm"},
  };
  return "model.layers." + m[1].str() + "." + t.at(m[2].str()) + ".weight";
}

/// The weights of a GGUF file in HF layout, decoded in float64 and rounded to `dtype`.
ParamMap reference_weights(const std::string& path, const ModelConfig& c, Dtype dtype) {
  GgufFile f(path);
  const std::string arch = gguf_string(*f.find("general.architecture"), path, "arch");
  ParamMap out;
  for (const auto& t : f.header().tensors) {
    const std::string name = hf_name(t.name, arch == "gemma3");
    if (name.empty()) continue;
    std::vector<double> v = decode(f, t);
    const Shape shape = t.shape();
    const bool q = t.name.ends_with("attn_q.weight"), k = t.name.ends_with("attn_k.weight");
    if (arch == "llama" && (q || k)) {
      // Converter: HF row h*D + j*(D/2) + i is stored as row h*D + 2*i + j.
      const int64_t heads = q ? c.num_attention_heads : c.num_key_value_heads;
      const int64_t d = shape[0] / heads, e = shape[1];
      std::vector<double> u(v.size());
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < 2; ++j)
          for (int64_t i = 0; i < d / 2; ++i)
            for (int64_t col = 0; col < e; ++col)
              u[static_cast<size_t>((h * d + j * (d / 2) + i) * e + col)] =
                  v[static_cast<size_t>((h * d + 2 * i + j) * e + col)];
      v = u;
    }
    if (arch == "gemma3" && t.name.ends_with("norm.weight"))
      for (double& x : v) x -= 1.0;
    std::vector<float> fv(v.begin(), v.end());
    out[name] = astype(Array(fv, shape, float32), dtype);
  }
  return out;
}

struct Case {
  std::string file, fixture;
  bool exact_vs_fixture;  // weights identical to the fixture's in the compute dtype
};

class GgufModel : public testing::TestWithParam<Case> {};

TEST_P(GgufModel, LogitsEqualTheFixtureWithTheSameWeights) {
  const Case& p = GetParam();
  // Every array here lives on the default device (INGOT_DEVICE=cuda runs it on the GPU).
  // Block formats dequantized on load (the native affine load is GgufNative's).
  auto g = load_model(gguf_path(p.file), {.warn = false, .gguf_native = false});
  auto ids = ids_array(longest_sequence(p.fixture));
  Array lg = g->forward(ids);
  // The fixture model with the GGUF's weights as decoded here.
  auto ref = load_model(fixture_dir(p.fixture), {.dtype = g->dtype(), .warn = false});
  ref->update(reference_weights(gguf_path(p.file), ref->config(), g->dtype()));
  // New weights undo the stacked projections a GPU load makes; stack them again so both models
  // run the same kernels.
  if (ref->device().type == Device::Type::cuda) fuse_projections(*ref);
  const double same = rel_diff(lg, ref->forward(ids));
  EXPECT_LE(same, 1e-6) << p.file;
  record_error("gguf " + p.file + " vs fixture with decoded weights", same);
  // The fixture as stored, in the same compute dtype: equal for F32/BF16 copies, otherwise
  // the quantization error (reported).
  auto orig = load_model(fixture_dir(p.fixture), {.dtype = g->dtype(), .warn = false});
  const double d = rel_diff(lg, orig->forward(ids));
  if (p.exact_vs_fixture) {
    EXPECT_LE(d, 1e-6) << p.file;
  }
  record_error("gguf " + p.file + " vs fixture (" + std::string(dtype_name(g->dtype())) + ")", d);
}

// Test names from file names: "qwen3_bf16.q4_0.gguf" -> "qwen3_bf16_q4_0".
std::string case_name(const testing::TestParamInfo<Case>& info) {
  std::string s = info.param.file.substr(0, info.param.file.size() - 5);
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
}

// The block-quantized files: those GgufNative also runs natively.
std::vector<Case> quantized_cases() {
  return {{"llama_f32.q8_0.gguf", "llama_f32", false},
          {"qwen3_bf16.q8_0.gguf", "qwen3_bf16", false},
          {"qwen3_bf16.q4_0.gguf", "qwen3_bf16", false},
          {"llama_bf16_tied.q4_0.gguf", "llama_bf16_tied", false},
          {"gemma3_bf16.q8_0.gguf", "gemma3_bf16", false}};
}

std::vector<Case> all_cases() {
  std::vector<Case> all = {{"llama_f32.f32.gguf", "llama_f32", true},
                           {"qwen3_f32_tied.f32.gguf", "qwen3_f32_tied", true},
                           {"gemma3_f32.f32.gguf", "gemma3_f32", true},
                           {"gemma3_bf16.bf16.gguf", "gemma3_bf16", true},
                           {"llama_bf16_tied.bf16.gguf", "llama_bf16_tied", true},
                           {"qwen3_bf16.bf16.gguf", "qwen3_bf16", true},
                           {"llama_f32.f16.gguf", "llama_f32", false}};
  for (auto& c : quantized_cases()) all.push_back(c);
  return all;
}

INSTANTIATE_TEST_SUITE_P(Files, GgufModel, testing::ValuesIn(all_cases()), case_name);

TEST(GgufModel, F32LogitsMatchTransformersReference) {
  // Independent of the fixture loader: the HF float64 goldens, at the parity test's bound.
  for (const std::string fx : {"llama_f32", "qwen3_f32_tied", "gemma3_f32"}) {
    auto g = load_model(gguf_path(fx + ".f32.gguf"), {.warn = false, .device = cpu_device});
    auto ref = load_reference(fx);
    for (const auto& s : ref["sequences"]) {
      Array lg = g->forward(ids_array(s["ids"].get<std::vector<int32_t>>()));
      const double e = rel_err(lg, s["logits_f64"]);
      EXPECT_LE(e, 1e-5) << fx;
      record_error("gguf " + fx + ".f32 vs transformers float64", e);
    }
  }
}

TEST(GgufModel, ConfigFromMetadata) {
  GgufFile f(gguf_path("gemma3_f32.f32.gguf"));
  ModelConfig g = gguf_model_config(f);
  ModelConfig h = load_model_config(fixture_dir("gemma3_f32") + "/config.json");
  EXPECT_EQ(g.model_type, "gemma3_text");
  EXPECT_EQ(g.hidden_size, h.hidden_size);
  EXPECT_EQ(g.head_dim, h.head_dim);
  EXPECT_EQ(g.layer_types, h.layer_types);
  EXPECT_EQ(g.layers, h.layers);  // windows and both rope bases
  EXPECT_NEAR(*g.query_pre_attn_scalar, *h.query_pre_attn_scalar, 1e-5);
  EXPECT_EQ(g.final_logit_softcapping, h.final_logit_softcapping);
  EXPECT_TRUE(g.tie_word_embeddings);
  // Llama 3 rope scaling recovered from rope_freqs.weight.
  ModelConfig l = gguf_model_config(GgufFile(gguf_path("llama_f32.f32.gguf")));
  ModelConfig lh = load_model_config(fixture_dir("llama_f32") + "/config.json");
  const RopeParams& r = l.layers[0].rope;
  const RopeParams& rh = lh.layers[0].rope;
  EXPECT_EQ(r.type, "llama3");
  EXPECT_EQ(r.factor, rh.factor);
  EXPECT_EQ(r.original_max_position_embeddings, rh.original_max_position_embeddings);
  EXPECT_EQ(l.eos_token_ids, (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(l.tie_word_embeddings);
}

TEST(GgufModel, CheckpointNamesAndStoredNames) {
  auto c = Checkpoint::open(gguf_path("llama_f32.q8_0.gguf"), {.warn = false});
  EXPECT_EQ(c.architecture(), "llama");
  EXPECT_TRUE(c.contains("model.layers.2.self_attn.k_proj.weight"));
  EXPECT_EQ(c.stored_name("model.layers.2.self_attn.k_proj.weight"), "blk.2.attn_k.weight");
  EXPECT_EQ(c.stored_name("model.layers.0.post_attention_layernorm.weight"),
            "blk.0.ffn_norm.weight");
  EXPECT_FALSE(c.contains("rope_freqs.weight"));
  EXPECT_EQ(c.info("lm_head.weight").shape, (Shape{256, 48}));  // F16: 48 is not whole blocks
  // Q8_0 matrices load in the affine form: packed words, scales and biases, 8 bits, groups of 32.
  const std::string down = "model.layers.2.mlp.down_proj";
  EXPECT_EQ(c.info(down + ".weight").shape, (Shape{48, 128 * 8 / 32}));
  EXPECT_EQ(c.info(down + ".weight").dtype(), uint32);
  EXPECT_EQ(c.info(down + ".scales").shape, (Shape{48, 128 / 32}));
  EXPECT_EQ(c.stored_name(down + ".biases"), "blk.2.ffn_down.weight (biases)");
  ASSERT_TRUE(c.config().quantization);
  EXPECT_EQ(c.config().quantization->for_module(down, true), (QuantizationSpec{32, 8}));
  EXPECT_FALSE(c.contains("lm_head.scales"));
  EXPECT_FALSE(c.dtype_problem(down + ".weight"));
  // Dequantized on request: no quantization config, the float matrix.
  auto d =
      Checkpoint::open(gguf_path("llama_f32.q8_0.gguf"), {.warn = false, .gguf_native = false});
  EXPECT_FALSE(d.config().quantization);
  EXPECT_FALSE(d.contains(down + ".scales"));
  EXPECT_EQ(d.info(down + ".weight").shape, (Shape{48, 128}));
}

// ---- native execution: Q8_0 / Q4_0 / Q4_K matrices as affine quantized modules ----

/// The matrices of a GGUF file that load as affine modules (2-D Q8_0 / Q4_0 / Q4_K weights of
/// the linear layers and the embedding), by HF module path, with their bits.
std::map<std::string, int> affine_modules(const std::string& path) {
  GgufFile f(path);
  const bool gemma = gguf_string(*f.find("general.architecture"), path, "arch") == "gemma3";
  std::map<std::string, int> out;
  for (const auto& t : f.header().tensors) {
    const std::string name = hf_name(t.name, gemma);
    const bool matrix = name.ends_with("_proj.weight") || name == "model.embed_tokens.weight" ||
                        name == "lm_head.weight";
    const int bits = t.type == GgufTensorType::Q8_0   ? 8
                     : t.type == GgufTensorType::Q4_0 ? 4
                     : t.type == GgufTensorType::Q4_K ? 4
                                                      : 0;
    if (matrix && bits && t.dims.size() == 2) out[name.substr(0, name.size() - 7)] = bits;
  }
  return out;
}

/// The int8-activation path's first-order bound (test_model_quantized.cpp's
/// int8_activation_bound): (2^bits - 1) * max|s| * sqrt(32) / 254 per element, times the hidden
/// size per quantized matmul, 7 per layer plus the head.
double int8_bound(const Model& m, const std::map<std::string, int>& mods) {
  const ParamMap p = m.parameters();
  double per = 0;
  for (const auto& [mod, bits] : mods) {
    const double smax = max(abs(astype(p.at(mod + ".scales"), float32))).item<float>();
    per = std::max(per, ((1 << bits) - 1) * smax * std::sqrt(32.0) / 254);
  }
  const ModelConfig& c = m.config();
  return per * static_cast<double>(c.hidden_size) *
         static_cast<double>(1 + 7 * c.num_hidden_layers);
}

class GgufNative : public testing::TestWithParam<Case> {};

TEST_P(GgufNative, MatricesRunQuantizedWithTheStoredValues) {
  const Case& p = GetParam();
  const std::string path = gguf_path(p.file);
  const auto mods = affine_modules(path);
  ASSERT_FALSE(mods.empty()) << p.file;
  auto g = load_model(path, {.dtype = float32, .warn = false, .gguf_native = true});
  const ParamMap params = g->parameters();
  for (const auto& [mod, bits] : mods) {
    SCOPED_TRACE(mod);
    const Array& w = params.at(mod + ".weight");
    const Array& sc = params.at(mod + ".scales");
    EXPECT_EQ(w.dtype(), uint32);
    EXPECT_EQ(sc.dtype(), float32);
    EXPECT_EQ(w.shape(-1) * (32 / bits), sc.shape(-1) * 32);
    EXPECT_EQ(params.at(mod + ".biases").shape(), sc.shape());
  }
  int float_matrices = 0;  // F16 fallbacks (rows that are not whole blocks) stay float
  for (const auto& [name, a] : params)
    if (name.ends_with("_proj.weight") && is_floating(a.dtype())) ++float_matrices;
  std::cerr << "[gguf] " << p.file << ": " << mods.size() << " affine modules, " << float_matrices
            << " float projections\n";
  // On the float32-activation path: the fixture model carrying the weights decoded here in
  // float64 (exact in float32), up to float32 sums in another order.
  auto ids = ids_array(longest_sequence(p.fixture));
  auto ref = load_model(fixture_dir(p.fixture), {.dtype = float32, .warn = false});
  ref->update(reference_weights(path, ref->config(), float32));
  if (ref->device().type == Device::Type::cuda) fuse_projections(*ref);
  const Array want = ref->forward(ids);
  Array lf;
  {
    cpu::ScopedInt8Decode float_activations(false);
    lf = g->forward(ids);
    eval({lf});
  }
  const double same = rel_diff(lf, want);
  EXPECT_LE(same, 1e-5) << p.file;
  record_error("gguf native " + p.file + " (float activations) vs decoded weights", same);
  // The default path (int8 activations on a CPU with the kernels): within their bound.
  const Array li = g->forward(ids);
  const double diff = max(abs(li - lf)).item<float>(), bound = int8_bound(*g, mods);
  EXPECT_LT(diff, bound) << p.file;
  std::cerr << "[gguf] " << p.file << ": default path max |logit diff| " << diff << " (bound "
            << bound << ")\n";
}

TEST_P(GgufNative, DefaultDtypeKeepsTheModelSmall) {
  // The compute dtype (bfloat16 here) holds the scales and biases; the matrices stay packed.
  const Case& p = GetParam();
  const std::string path = gguf_path(p.file);
  auto q = load_model(path, {.warn = false, .gguf_native = true});
  auto d = load_model(path, {.warn = false, .gguf_native = false});
  EXPECT_EQ(q->dtype(), d->dtype());
  auto bytes = [](const Model& m, bool affine_only, const std::map<std::string, int>& mods) {
    int64_t n = 0;
    for (const auto& [name, a] : m.parameters()) {
      const auto dot = name.rfind('.');
      if (affine_only && !mods.count(name.substr(0, dot))) continue;
      n += static_cast<int64_t>(a.nbytes());
    }
    return n;
  };
  const auto mods = affine_modules(path);
  // Per 32 values: 32 * bits / 8 bytes of codes plus a scale and a bias in the compute dtype.
  int64_t want = 0;
  const ParamMap dp = d->parameters();
  for (const auto& [mod, bits] : mods)
    want += dp.at(mod + ".weight").size() / 32 *
            (4 * bits + 2 * static_cast<int64_t>(size_of(d->dtype())));
  EXPECT_EQ(bytes(*q, true, mods), want);
  std::cerr << "[gguf] " << p.file << ": parameters " << bytes(*q, false, mods) << " bytes native, "
            << bytes(*d, false, mods) << " dequantized\n";
  // Same model up to the rounding of each scale and bias to the compute dtype (against each
  // weight's own rounding when dequantized) and the int8 activations: reported.
  auto ids = ids_array(longest_sequence(p.fixture));
  record_error("gguf native " + p.file + " default dtype vs dequantized",
               rel_diff(q->forward(ids), d->forward(ids)));
}

INSTANTIATE_TEST_SUITE_P(Files, GgufNative, testing::ValuesIn(quantized_cases()), case_name);

// ---- round-trip bounds of the writer's quantizers (tensors.gguf: x and x.<type>) ----

TEST(GgufModel, BlockTypesRoundTripWithinTheirFormatBounds) {
  GgufFile f(gguf_path("tensors.gguf"));
  auto x = f.load("x").to_vector<float>();
  for (const std::string t : {"f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"}) {
    const GgufTensorInfo& info = f.info("x." + t);
    auto y = astype(f.load("x." + t), float32).to_vector<float>();
    ASSERT_EQ(y.size(), x.size());
    const uint8_t* raw = f.data(info);
    const int64_t bs = gguf_block_size(info.type), bb = gguf_block_bytes(info.type);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const uint8_t* b = raw + static_cast<int64_t>(i) / bs * bb;
      const double err = std::abs(static_cast<double>(y[i]) - x[i]);
      double bound = 0;
      if (t == "f16") bound = std::ldexp(std::abs(x[i]), -11);  // half an ulp, 11-bit mantissa
      if (t == "bf16") bound = std::ldexp(std::abs(x[i]), -8);  // half an ulp, 8-bit mantissa
      if (t == "q8_0") bound = std::abs(half_at(b)) / 2;        // half a step
      if (t == "q4_0") bound = std::abs(half_at(b));  // a step: the far extreme clips to 15
      if (t == "q4_k") {
        // Half a step inside the sub-block's range; its top end may fall short of the maximum
        // by 15 * (d / 2) from rounding the 6-bit scale and by dmin / 2 from the 6-bit min.
        const double d = half_at(b), dmin = half_at(b + 2);
        const int j = static_cast<int>(i % 256) / 32;
        const uint8_t* s = b + 4;
        const int sc = j < 4 ? s[j] % 64 : (s[j + 4] % 16) + 16 * (s[j - 4] / 64);
        bound = d * sc / 2 + 7.5 * d + dmin / 2;
      }
      if (t == "q6_k") {
        // Half a step, or the clip at +-31 steps when the 8-bit scale rounded down (<= 31*d/2).
        const double d = half_at(b + 208);
        const double sc = static_cast<int8_t>(b[192 + (i % 256) / 16]);
        bound = std::abs(d * sc) / 2 + 15.5 * std::abs(d);
      }
      EXPECT_LE(err, bound + std::ldexp(std::abs(x[i]), -22)) << t << " element " << i;
      worst = std::max(worst, err);
    }
    record_error("tensors.gguf " + t + " max |dequantized - x|", worst);
  }
}

// ---- errors through the Checkpoint / load_model path ----

TEST(GgufModel, CorruptFilesGiveFormatErrorsNamingTheFile) {
  TempDir tmp;
  std::ifstream in(gguf_path("qwen3_bf16.q4_0.gguf"), std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(in)), {});
  auto write = [&](const std::string& name, const std::vector<char>& bytes) {
    std::string p = tmp.path + "/" + name;
    std::ofstream(p, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  };
  auto expect = [&](const std::string& p, const std::string& frag) {
    try {
      load_model(p, {.warn = false, .device = cpu_device});
      ADD_FAILURE() << "no error for " << p;
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << m;
      EXPECT_NE(m.find(frag), std::string::npos) << m << " lacks " << frag;
    }
  };
  expect(write("trunc.gguf", std::vector<char>(b.begin(), b.begin() + b.size() / 2)),
         "runs past the end");
  auto magic = b;
  magic[3] = 'X';
  expect(write("magic.gguf", magic), "not a GGUF file");
  auto ver = b;
  ver[4] = 9;
  expect(write("ver.gguf", ver), "unsupported GGUF version 9");
  // Drop a required key: rename embedding_length.
  auto key = b;
  const std::string k = "qwen3.embedding_length";
  auto it = std::search(key.begin(), key.end(), k.begin(), k.end());
  ASSERT_NE(it, key.end());
  *(it + 6) = 'X';
  expect(write("key.gguf", key), "missing metadata key 'qwen3.embedding_length'");
}

}  // namespace
}  // namespace ingot::models
