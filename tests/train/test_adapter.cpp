// LoRA adapters: target selection, PEFT/mlx-lm files (round trips and broken files), merging
// against float64 loops, fusing into a checkpoint that loads back with the same logits.
#include <gtest/gtest.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "train/adapter.h"
#include "train_test_util.h"

namespace ingot::train {
namespace {
using namespace test;
using json = nlohmann::json;

/// The init adapter with B (and A) replaced by seeded nonzero values.
LoraAdapter nonzero_adapter(const models::Model& m, LoraConfig c, uint64_t seed = 3) {
  LoraAdapter a = LoraAdapter::init(m, c, seed);
  ParamMap p;
  int i = 0;
  for (auto& [n, v] : a.params())
    p.emplace(n, random::normal(v.shape(), float32, 0.0, 0.1, random::key(seed * 100 + i++)));
  a.set_params(p);
  return a;
}

TEST(LoraTargets, SelectsModulesLayersAndRejectsUnknownNames) {
  auto m = load("llama_f32");
  auto t = lora_targets(*m, LoraConfig{});
  ASSERT_EQ(t.size(), 6u);  // 3 layers x {q_proj, v_proj}
  EXPECT_EQ(t[0].module, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(t[0].in, 48);
  EXPECT_EQ(t[0].out, 96);  // 6 heads x 16
  EXPECT_EQ(t[1].module, "model.layers.0.self_attn.v_proj");
  EXPECT_EQ(t[1].out, 32);  // 2 kv heads x 16
  EXPECT_EQ(lora_targets(*m, LoraConfig{.targets = {"all-linear"}}).size(), 21u);
  auto last = lora_targets(*m, LoraConfig{.targets = {"all-linear"}, .layers = {2}});
  ASSERT_EQ(last.size(), 7u);
  for (auto& x : last) EXPECT_EQ(x.layer, 2);
  EXPECT_EQ(lora_targets(*m, LoraConfig{.targets = {"self_attn.o_proj"}}).size(), 3u);
  try {
    lora_targets(*m, LoraConfig{.targets = {"q_proj", "qkv_proj"}});
    FAIL() << "expected an error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'qkv_proj'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gate_proj"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lora_targets(*m, LoraConfig{.layers = {3}}), InvalidArgument);
}

TEST(LoraConfig, ScaleAndPeftJson) {
  LoraConfig c{.rank = 16, .alpha = 32.0f};
  EXPECT_FLOAT_EQ(c.scale(), 2.0f);
  c.use_rslora = true;
  EXPECT_FLOAT_EQ(c.scale(), 8.0f);  // alpha / sqrt(r)
  c.layers = {1, 2};
  c.base_model = "some/model";
  json j = json::parse(adapter_config_json(c));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 16);
  EXPECT_EQ(j["lora_alpha"], 32.0);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["target_modules"], json({"q_proj", "v_proj"}));
  EXPECT_EQ(j["layers_to_transform"], json({1, 2}));
  EXPECT_EQ(j["base_model_name_or_path"], "some/model");
  LoraConfig back = parse_adapter_config(j.dump(), "x");
  EXPECT_EQ(back.rank, 16);
  EXPECT_TRUE(back.use_rslora);
  EXPECT_EQ(back.layers, (std::vector<int>{1, 2}));
  EXPECT_EQ(back.targets, c.targets);
  // PEFT also writes target_modules as a string and layers_to_transform as an int.
  LoraConfig s = parse_adapter_config(
      R"({"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":"all-linear",
          "layers_to_transform":2})",
      "x");
  EXPECT_EQ(s.targets, std::vector<std::string>{"all-linear"});
  EXPECT_EQ(s.layers, std::vector<int>{2});
}

TEST(LoraConfig, BadConfigsAreFormatErrors) {
  for (const char* bad : {
           "not json",
           "[]",
           R"({"peft_type":"IA3","r":4})",
           R"({"peft_type":"LORA","r":0,"target_modules":["q_proj"]})",
           R"({"peft_type":"LORA","r":"four","target_modules":["q_proj"]})",
           R"({"peft_type":"LORA","r":4,"target_modules":7})",
           R"({"peft_type":"LORA","r":4,"target_modules":[]})",
           R"({"peft_type":"LORA","r":4,"target_modules":["q_proj"],"bias":"all"})",
           R"({"peft_type":"LORA","r":4,"target_modules":["q_proj"],"use_dora":true})",
           R"({"peft_type":"LORA","r":4,"target_modules":["q_proj"],"lora_dropout":1.5})",
           R"({"peft_type":"LORA","r":4,"target_modules":["q_proj"],"layers_to_transform":[-1]})",
           R"({"lora_parameters":{"rank":4},"fine_tune_type":"dora"})",
       }) {
    EXPECT_THROW(parse_adapter_config(bad, "cfg.json"), FormatError) << bad;
  }
}

TEST(LoraAdapter, InitLeavesTheModelUnchanged) {
  auto m = load("llama_f32");
  Array ids = fixed_ids(2, 9, m->vocab_size());
  Array before = m->forward(ids);
  LoraAdapter a = LoraAdapter::init(*m, LoraConfig{.rank = 4, .alpha = 8.0f}, 1);
  EXPECT_GT(max_abs(a.params().at("model.layers.0.self_attn.q_proj.lora_A.weight")), 0.0);
  EXPECT_EQ(max_abs(a.params().at("model.layers.0.self_attn.q_proj.lora_B.weight")), 0.0);
  apply_adapter(*m, a);
  EXPECT_EQ(max_abs_diff(before, m->forward(ids)), 0.0);
}

TEST(LoraAdapter, MergedWeightMatchesFloat64Loops) {
  auto m = load("llama_f32");
  LoraConfig c{.rank = 3, .alpha = 5.0f, .targets = {"down_proj"}};
  LoraAdapter a = nonzero_adapter(*m, c);
  ParamMap base = base_weights(*m, a);
  ParamMap merged = merged_weights(base, a);
  const std::string mod = "model.layers.1.mlp.down_proj";
  auto W = base.at(mod + ".weight").to_vector<float>();
  auto A = a.params().at(mod + ".lora_A.weight").to_vector<float>();
  auto B = a.params().at(mod + ".lora_B.weight").to_vector<float>();
  auto M = merged.at(mod + ".weight").to_vector<float>();
  const int64_t out = 48, in = 128, r = 3;
  double worst = 0;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double d = 0;
      for (int64_t k = 0; k < r; ++k) d += double(B[o * r + k]) * double(A[k * in + i]);
      const double want = double(W[o * in + i]) + 5.0 / 3.0 * d;
      worst = std::max(worst, std::abs(want - double(M[o * in + i])));
    }
  EXPECT_LT(worst, 2e-6);
}

TEST(LoraAdapter, SaveLoadRoundTripIsExact) {
  auto m = load("llama_f32");
  LoraConfig c{.rank = 4,
               .alpha = 8.0f,
               .targets = {"q_proj", "v_proj", "up_proj"},
               .layers = {0, 2},
               .base_model = "llama_f32"};
  LoraAdapter a = nonzero_adapter(*m, c);
  TempDir d;
  a.save(d.path);
  // PEFT's key names and layouts.
  SafetensorsFile st(d / "adapter_model.safetensors");
  ASSERT_TRUE(st.contains("base_model.model.model.layers.2.mlp.up_proj.lora_A.weight"));
  EXPECT_EQ(st.info("base_model.model.model.layers.2.mlp.up_proj.lora_A.weight").shape,
            (Shape{4, 48}));
  EXPECT_EQ(st.info("base_model.model.model.layers.2.mlp.up_proj.lora_B.weight").shape,
            (Shape{128, 4}));
  EXPECT_EQ(st.names().size(), 12u);
  LoraAdapter b = LoraAdapter::load(d.path, *m);
  EXPECT_EQ(b.config().rank, 4);
  EXPECT_EQ(b.config().layers, (std::vector<int>{0, 2}));
  ASSERT_EQ(b.targets().size(), a.targets().size());
  for (size_t i = 0; i < a.targets().size(); ++i)
    EXPECT_EQ(b.targets()[i].module, a.targets()[i].module);
  for (auto& [n, v] : a.params()) EXPECT_EQ(max_abs_diff(v, b.params().at(n)), 0.0) << n;
  // Applying either gives identical logits.
  Array ids = fixed_ids(1, 7, m->vocab_size());
  auto m2 = load("llama_f32");
  apply_adapter(*m, a);
  apply_adapter(*m2, b);
  EXPECT_EQ(max_abs_diff(m->forward(ids), m2->forward(ids)), 0.0);
}

// An adapter written by ingot, with the logits it gives, for `scripts/lora_goldens.py --check`
// (PEFT loads it and compares). With INGOT_LORA_EXPORT=DIR the files go to DIR (how
// tests/data/lora/ingot_llama_f32 was made); otherwise to a temporary directory.
TEST(LoraAdapter, ExportForPeftCheckReloadsExactly) {
  auto m = load("llama_f32");
  LoraAdapter a = nonzero_adapter(*m,
                                  LoraConfig{.rank = 4,
                                             .alpha = 8.0f,
                                             .targets = {"q_proj", "v_proj", "down_proj"},
                                             .base_model = "llama_f32"},
                                  21);
  TempDir tmp;
  const char* env = std::getenv("INGOT_LORA_EXPORT");
  const std::string dir = env && *env ? std::string(env) : tmp.path;
  a.save(dir);
  Array ids = fixed_ids(2, 12, m->vocab_size(), 5);
  apply_adapter(*m, a);
  Array logits = m->forward(ids);
  save_safetensors(dir + "/logits.safetensors", {{"ids", ids}, {"logits", logits}});
  auto m2 = load("llama_f32");
  load_and_apply_adapter(*m2, dir);
  auto back = load_safetensors(dir + "/logits.safetensors");
  EXPECT_EQ(max_abs_diff(m2->forward(back.at("ids")), back.at("logits")), 0.0);
  EXPECT_GT(max_abs_diff(load("llama_f32")->forward(ids), logits), 1e-3);
}

TEST(LoraAdapter, MlxLmAdapterLoadsAsTheSamePeftAdapter) {
  auto m = load("llama_f32");
  LoraAdapter a = nonzero_adapter(*m, LoraConfig{.rank = 4, .alpha = 8.0f});
  TempDir d;
  std::map<std::string, Array> mlx;
  for (auto& t : a.targets()) {
    mlx.emplace(t.module + ".lora_a", transpose(a.params().at(t.module + ".lora_A.weight")));
    mlx.emplace(t.module + ".lora_b", transpose(a.params().at(t.module + ".lora_B.weight")));
  }
  save_safetensors(d / "adapters.safetensors", mlx);
  write_file(d / "adapter_config.json",
             R"({"fine_tune_type": "lora", "num_layers": 3, "lora_parameters":
                 {"rank": 4, "scale": 2.0, "dropout": 0.0,
                  "keys": ["self_attn.q_proj", "self_attn.v_proj"]}})");
  LoraAdapter b = LoraAdapter::load(d.path, *m);
  EXPECT_FLOAT_EQ(b.config().scale(), 2.0f);
  EXPECT_EQ(b.config().layers, (std::vector<int>{0, 1, 2}));
  // Without "keys" (older mlx-lm) the targets come from the tensors.
  write_file(d / "adapter_config.json",
             R"({"num_layers": 3, "lora_parameters": {"rank": 4, "scale": 2.0}})");
  LoraAdapter nokeys = LoraAdapter::load(d.path, *m);
  EXPECT_EQ(nokeys.config().targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(nokeys.targets().size(), 6u);
  for (auto& [n, v] : a.params()) EXPECT_EQ(max_abs_diff(v, b.params().at(n)), 0.0) << n;
  // Saved again, it is a PEFT adapter with alpha = scale * r.
  TempDir e;
  b.save(e.path);
  LoraAdapter c = LoraAdapter::load(e.path, *m);
  EXPECT_FLOAT_EQ(c.config().scale(), 2.0f);
}

TEST(LoraAdapter, BrokenAdapterFilesAreClearErrors) {
  auto m = load("llama_f32");
  LoraAdapter a = nonzero_adapter(*m, LoraConfig{.rank = 4, .alpha = 8.0f});
  const std::string cfg = adapter_config_json(a.config());
  auto expect_error = [&](const std::map<std::string, Array>& tensors, const std::string& config,
                          const std::string& needle) {
    TempDir d;
    save_safetensors(d / "adapter_model.safetensors", tensors);
    write_file(d / "adapter_config.json", config);
    try {
      LoraAdapter::load(d.path, *m);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  std::map<std::string, Array> good;
  for (auto& [n, v] : a.params()) good.emplace("base_model.model." + n, v);
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj";
  auto wrong_shape = good;
  wrong_shape.at(q + ".lora_B.weight") = zeros({95, 4});
  expect_error(wrong_shape, cfg, "model.layers.0.self_attn.q_proj");
  auto unknown = good;
  unknown.emplace("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", zeros({4, 48}));
  unknown.emplace("base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight", zeros({96, 4}));
  expect_error(unknown, cfg, "model.layers.7.self_attn.q_proj");
  auto missing = good;
  missing.erase(q + ".lora_B.weight");
  expect_error(missing, cfg, "not lora_B");
  auto extra = good;
  extra.emplace(q + ".lora_magnitude_vector", zeros({96}));
  expect_error(extra, cfg, "lora_magnitude_vector");
  auto ints = good;
  ints.at(q + ".lora_A.weight") = zeros({4, 48}, int32);
  expect_error(ints, cfg, "dtype");
  // Rank 8 in the config, rank-4 tensors: another adapter's config.
  json j = json::parse(cfg);
  j["r"] = 8;
  expect_error(good, j.dump(), "rank 8");
  expect_error(good, "{", "not valid JSON");
  // The config targets o_proj too, the file has no o_proj tensors.
  json more = json::parse(cfg);
  more["target_modules"] = {"q_proj", "v_proj", "o_proj"};
  expect_error(good, more.dump(), "model.layers.0.self_attn.o_proj' is targeted");
  // ...and the other way round: v_proj tensors that the config does not target.
  json fewer = json::parse(cfg);
  fewer["target_modules"] = {"q_proj"};
  expect_error(good, fewer.dump(), "model.layers.0.self_attn.v_proj' has tensors but");
  TempDir empty;
  EXPECT_THROW(LoraAdapter::load(empty.path, *m), IoError);
  EXPECT_THROW(LoraAdapter::load(empty / "nope", *m), IoError);
}

TEST(LoraAdapter, BrokenMlxLmAdapterFilesAreClearErrors) {
  auto m = load("llama_f32");
  LoraAdapter a = nonzero_adapter(*m, LoraConfig{.rank = 4, .alpha = 8.0f});
  std::map<std::string, Array> good;
  for (auto& t : a.targets()) {
    good.emplace(t.module + ".lora_a", transpose(a.params().at(t.module + ".lora_A.weight")));
    good.emplace(t.module + ".lora_b", transpose(a.params().at(t.module + ".lora_B.weight")));
  }
  const std::string cfg =
      R"({"fine_tune_type": "lora", "num_layers": 3, "lora_parameters": {"rank": 4, "scale": 2.0}})";
  auto expect_error = [&](const std::map<std::string, Array>& tensors, const std::string& config,
                          const std::vector<std::string>& needles) {
    TempDir d;
    save_safetensors(d / "adapters.safetensors", tensors);
    write_file(d / "adapter_config.json", config);
    try {
      LoraAdapter::load(d.path, *m);
      ADD_FAILURE() << "expected an error mentioning " << needles[0];
    } catch (const FormatError& e) {
      for (const auto& n : needles)
        EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << n << " in " << e.what();
    }
  };
  {  // the good files load (so each case below fails for its own reason)
    TempDir d;
    save_safetensors(d / "adapters.safetensors", good);
    write_file(d / "adapter_config.json", cfg);
    EXPECT_EQ(LoraAdapter::load(d.path, *m).targets().size(), 6u);
  }
  const std::string q = "model.layers.1.self_attn.q_proj";
  // Stored in PEFT's orientation ([r, in]) instead of mlx-lm's ([in, r]): shapes named as stored.
  auto peft_layout = good;
  peft_layout.at(q + ".lora_a") = a.params().at(q + ".lora_A.weight");
  expect_error(peft_layout, cfg, {q, "lora_a [4, 48]", "expected [48, 4]"});
  auto missing = good;
  missing.erase(q + ".lora_b");
  expect_error(missing, cfg, {q, "has lora_a but not lora_b"});
  auto dora = good;
  dora.emplace(q + ".m", zeros({96}));
  expect_error(dora, cfg, {q + ".m", "mlx-lm"});
  // An mlx-lm tensor file with a PEFT-style config, and DoRA configs.
  expect_error(good,
               R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})",
               {"lora_parameters"});
  expect_error(good, R"({"fine_tune_type": "dora", "lora_parameters": {"rank": 4, "scale": 2.0}})",
               {"dora"});
  expect_error(good, R"({"use_dora": true, "lora_parameters": {"rank": 4, "scale": 2.0}})",
               {"use_dora"});
  expect_error(good, R"({"lora_parameters": {"rank": 8, "scale": 2.0}})", {"rank 8"});
  expect_error(good, R"({"lora_parameters": {"rank": 4, "scale": "big"}})", {"scale"});
  // num_layers 1 adapts only the last layer: the tensors of layers 0 and 1 are extra.
  const std::string last_only = R"({"num_layers": 1, "lora_parameters": {"rank": 4}})";
  expect_error(good, last_only, {"model.layers.0.self_attn.q_proj", "does not target it"});
  std::map<std::string, Array> layer2;
  for (auto& [n, v] : good)
    if (n.rfind("model.layers.2.", 0) == 0) layer2.emplace(n, v);
  TempDir d;
  save_safetensors(d / "adapters.safetensors", layer2);
  write_file(d / "adapter_config.json", last_only);
  LoraAdapter last = LoraAdapter::load(d.path, *m);
  EXPECT_EQ(last.config().layers, (std::vector<int>{2}));
  EXPECT_FLOAT_EQ(last.config().scale(), 20.0f);  // mlx-lm's default scale
}

// Merging into packed quantized weights would read the uint32 words as numbers: fuse refuses,
// naming the layer, and leaves the model as it was.
TEST(LoraFuse, QuantizedBaseIsRefused) {
  auto m = load("llama_q8_mlx", std::nullopt);
  ASSERT_TRUE(m->config().quantization.has_value());
  LoraAdapter a = nonzero_adapter(*m, LoraConfig{.rank = 4, .alpha = 8.0f});
  const Array before = m->parameters().at("model.layers.0.self_attn.q_proj.weight");
  ASSERT_FALSE(is_floating(before.dtype()));
  Array ids = fixed_ids(1, 6, m->vocab_size());
  apply_adapter(*m, a);  // unfused branches on a quantized base are fine
  const Array adapted = m->forward(ids);
  try {
    fuse_adapter(*m, a);
    ADD_FAILURE() << "fuse_adapter on a quantized model did not throw";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj' is quantized (8-bit"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(max_abs_diff(m->parameters().at("model.layers.0.self_attn.q_proj.weight"), before),
            0.0);
  EXPECT_EQ(max_abs_diff(m->forward(ids), adapted), 0.0);  // branches still on, weights intact
  EXPECT_THROW(merged_weights(base_weights(*m, a), a), Unsupported);
  // save_checkpoint needs the config.json of a checkpoint directory (a GGUF file has none).
  TempDir d;
  EXPECT_THROW(
      save_checkpoint(*m, source_path("tests/data/gguf/llama_f32.f32.gguf"), d.path, float32),
      IoError);
}

TEST(LoraFuse, FusedCheckpointGivesTheAdaptedLogits) {
  for (const char* fx : {"llama_f32", "qwen3_f32_tied"}) {
    auto m = load(fx, std::nullopt);
    LoraAdapter a =
        nonzero_adapter(*m, LoraConfig{.rank = 4, .alpha = 8.0f, .targets = {"all-linear"}});
    Array ids = fixed_ids(2, 8, m->vocab_size());
    Array base = m->forward(ids);
    apply_adapter(*m, a);  // unfused: low-rank branches on the base layers
    Array adapted = m->forward(ids);
    EXPECT_GT(max_abs_diff(base, adapted), 1e-3) << fx;  // the adapter does something
    fuse_adapter(*m, a);                                 // W + s B A, the branches removed
    Array merged = m->forward(ids);
    // (W + s B A) x and W x + s B (A x) differ only by float32 rounding.
    EXPECT_LT(max_abs_diff(merged, adapted), 1e-5 * std::max(1.0, max_abs(adapted))) << fx;
    TempDir d;
    save_checkpoint(*m, fixture(fx), d.path, float32);
    auto fused = models::load_model(d.path, {.warn = false});
    EXPECT_EQ(max_abs_diff(fused->forward(ids), merged), 0.0) << fx;
    EXPECT_TRUE(std::filesystem::exists(d / "config.json"));
  }
}

TEST(LoraFuse, Bf16FuseMatchesFloat32MergeWithinRounding) {
  auto m = load("llama_bf16_tied", std::nullopt);
  ASSERT_EQ(m->dtype(), bfloat16);
  auto m32 = load("llama_bf16_tied", float32);
  LoraAdapter a = nonzero_adapter(*m32, LoraConfig{.rank = 4, .alpha = 8.0f});
  Array ids = fixed_ids(1, 8, m->vocab_size());
  apply_adapter(*m32, a);
  apply_adapter(*m, a);
  Array ref = m32->forward(ids), got = m->forward(ids);  // bf16 base, float32 branches
  EXPECT_LT(max_abs_diff(got, ref), 0.05 * std::max(1.0, max_abs(ref)));
  fuse_adapter(*m, a);  // merged in float32, rounded once to bf16
  Array merged = m->forward(ids);
  EXPECT_LT(max_abs_diff(merged, ref), 0.05 * std::max(1.0, max_abs(ref)));
  TempDir d;
  save_checkpoint(*m, fixture("llama_bf16_tied"), d.path, bfloat16);
  auto fused = models::load_model(d.path, {.warn = false});
  EXPECT_EQ(fused->dtype(), bfloat16);
  EXPECT_EQ(max_abs_diff(fused->forward(ids), merged), 0.0);
  EXPECT_TRUE(std::filesystem::exists(d / "tokenizer.json"));
}

}  // namespace
}  // namespace ingot::train
