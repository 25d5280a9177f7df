// config.json parsing: classic and transformers 5.x forms normalise to the same ModelConfig,
// family defaults (sparse Gemma3 text_config), and errors naming the file and the key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "models/config.h"
#include "models/registry.h"
#include "util/error.h"

namespace ingot::models {
namespace {

namespace fs = std::filesystem;

template <typename E, typename F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected an exception containing: " << needles.front();
  } catch (const E& e) {
    for (auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message: " << e.what() << "\nexpected to contain: " << n;
  }
}

const char* kLlamaClassic = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
  "rms_norm_eps": 1e-5, "max_position_embeddings": 128, "tie_word_embeddings": false,
  "bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": null, "torch_dtype": "bfloat16",
  "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
  "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
})";

const char* kLlamaV5 = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
  "rms_norm_eps": 1e-5, "max_position_embeddings": 128, "tie_word_embeddings": false,
  "bos_token_id": 1, "eos_token_id": [2, 3], "dtype": "bfloat16", "hidden_act": "silu",
  "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 32}
})";

TEST(Config, LlamaBothFormsAgree) {
  ModelConfig a = parse_model_config(kLlamaClassic, "classic.json");
  ModelConfig b = parse_model_config(kLlamaV5, "v5.json");
  EXPECT_EQ(a.model_type, "llama");
  EXPECT_EQ(a.head_dim, 16);  // derived
  EXPECT_EQ(a.num_key_value_heads, 2);
  EXPECT_EQ(a.eos_token_ids, (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(a.pad_token_id.has_value());
  EXPECT_EQ(a.dtype, bfloat16);
  EXPECT_EQ(a.rms_norm_eps, 1e-5);
  ASSERT_EQ(a.layers.size(), 3u);
  const RopeParams& r = a.layers[0].rope;
  EXPECT_EQ(r.type, "llama3");
  EXPECT_EQ(r.theta, 500000.0);
  EXPECT_EQ(r.factor, 8.0);
  EXPECT_EQ(r.original_max_position_embeddings, 32);
  EXPECT_TRUE(r.supported());
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.layer_types, b.layer_types);
  EXPECT_EQ(b.dtype, bfloat16);
  EXPECT_EQ(a.attention_summary(), "3 global");
}

TEST(Config, Qwen3ExplicitHeadDimAndDefaults) {
  auto c = parse_model_config(R"({"model_type": "qwen3", "hidden_size": 40,
      "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 5,
      "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 50, "tie_word_embeddings": true,
      "eos_token_id": 7, "rope_theta": 1000000, "sliding_window": null,
      "use_sliding_window": false})",
                              "qwen.json");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{7}));
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.layers[1].rope.theta, 1e6);
  EXPECT_EQ(c.layers[1].kind, AttentionKind::global);
}

const char* kGemmaClassic = R"({
  "model_type": "gemma3_text", "hidden_size": 48, "intermediate_size": 96,
  "num_hidden_layers": 6, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 16,
  "vocab_size": 256, "query_pre_attn_scalar": 16, "sliding_window": 5,
  "sliding_window_pattern": 3, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
  "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "final_logit_softcapping": 30.0,
  "attn_logit_softcapping": null, "torch_dtype": "float32"
})";

const char* kGemmaV5 = R"({
  "model_type": "gemma3_text", "hidden_size": 48, "intermediate_size": 96,
  "num_hidden_layers": 6, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 16,
  "vocab_size": 256, "query_pre_attn_scalar": 16, "sliding_window": 5,
  "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                  "sliding_attention", "sliding_attention", "full_attention"],
  "rope_parameters": {
    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
  "final_logit_softcapping": 30.0, "dtype": "float32"
})";

TEST(Config, Gemma3BothFormsAgree) {
  ModelConfig a = parse_model_config(kGemmaClassic, "classic.json");
  ModelConfig b = parse_model_config(kGemmaV5, "v5.json");
  ASSERT_EQ(a.layers.size(), 6u);
  EXPECT_EQ(a.layers[0].kind, AttentionKind::sliding);
  EXPECT_EQ(a.layers[0].window, 5);
  EXPECT_EQ(a.layers[0].rope.theta, 1e4);
  EXPECT_EQ(a.layers[0].rope.type, "default");
  EXPECT_EQ(a.layers[2].kind, AttentionKind::global);
  EXPECT_EQ(a.layers[2].rope.type, "linear");
  EXPECT_EQ(a.layers[2].rope.factor, 8.0);
  EXPECT_EQ(a.layers[2].rope.theta, 1e6);
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.query_pre_attn_scalar, 16.0);
  EXPECT_EQ(a.final_logit_softcapping, 30.0);
  EXPECT_FALSE(a.attn_logit_softcapping.has_value());
  EXPECT_EQ(a.hidden_act, "gelu_pytorch_tanh");
  EXPECT_TRUE(a.tie_word_embeddings);
  EXPECT_EQ(a.bos_token_id, 2);
  EXPECT_EQ(a.attention_summary(), "4 sliding (window 5) + 2 global, pattern SSGSSG");
}

TEST(Config, Gemma3MultimodalSparseTextConfig) {
  auto c = parse_model_config(R"({
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
    "eos_token_id": [1, 106], "torch_dtype": "bfloat16",
    "text_config": {"model_type": "gemma3_text", "hidden_size": 48, "intermediate_size": 96,
      "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
      "head_dim": 16, "vocab_size": 256, "query_pre_attn_scalar": 16, "sliding_window": 4,
      "sliding_window_pattern": 2, "rope_scaling": {"factor": 8.0, "rope_type": "linear"}},
    "vision_config": {"model_type": "siglip_vision_model"}})",
                              "mm.json");
  EXPECT_EQ(c.model_type, "gemma3_text");
  EXPECT_EQ(c.outer_model_type, "gemma3");
  EXPECT_EQ(c.weight_prefix, "language_model.");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_EQ(c.dtype, bfloat16);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.layers[0].rope.theta, 1e4);
  EXPECT_EQ(c.layers[1].rope.theta, 1e6);
  EXPECT_EQ(c.layers[1].rope.type, "linear");
  EXPECT_EQ(c.layers[0].kind, AttentionKind::sliding);
  EXPECT_EQ(c.layers[1].kind, AttentionKind::global);
}

TEST(Config, UnsupportedRopeIsRecordedAndRejectedOnUse) {
  auto c = parse_model_config(R"({"model_type": "llama", "hidden_size": 8,
      "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
      "vocab_size": 4, "rope_scaling": {"type": "yarn", "factor": 4.0, "beta_fast": 32,
      "original_max_position_embeddings": 4096}})",
                              "yarn.json");
  EXPECT_EQ(c.layers[0].rope.type, "yarn");
  EXPECT_EQ(c.layers[0].rope.beta_fast, 32.0);
  EXPECT_FALSE(c.layers[0].rope.supported());
  expect_error<Unsupported>([&] { c.layers[0].rope.check_supported(c.source); },
                            {"yarn.json", "rope_type 'yarn'"});
}

struct BadConfig {
  const char* what;
  std::string json;
  std::vector<std::string> needles;
};

TEST(Config, ErrorsNameTheKey) {
  const std::string base = R"("model_type": "llama", "hidden_size": 8, "intermediate_size": 8,
      "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 4)";
  std::vector<BadConfig> cases = {
      {"not json", "{", {"not valid JSON"}},
      {"array", "[]", {"expected a JSON object"}},
      {"no model_type", R"({"hidden_size": 8})", {"missing \"model_type\""}},
      {"unsupported",
       R"({"model_type": "gpt2"})",
       {"unsupported model_type 'gpt2'", "gemma3, gemma3_text, llama, qwen3"}},
      {"string size",
       R"({"model_type": "llama", "hidden_size": "big", "intermediate_size": 8,
           "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 4})",
       {"\"hidden_size\" is a string (\"big\"), expected an integer"}},
      {"missing", R"({"model_type": "llama", "hidden_size": 8})", {"missing \"vocab_size\""}},
      {"negative",
       "{" + base + R"(, "num_key_value_heads": -1})",
       {"\"num_key_value_heads\" is -1"}},
      {"gqa", "{" + base + R"(, "num_key_value_heads": 3})", {"not a multiple"}},
      {"eps type", "{" + base + R"(, "rms_norm_eps": "small"})", {"\"rms_norm_eps\" is a string"}},
      {"bool type",
       "{" + base + R"(, "tie_word_embeddings": 1})",
       {"\"tie_word_embeddings\" is the integer 1, expected true or false"}},
      {"eos list", "{" + base + R"(, "eos_token_id": [1, "x"]})", {"\"eos_token_id\""}},
      {"dtype", "{" + base + R"(, "torch_dtype": "float8"})", {"\"torch_dtype\" 'float8'"}},
      {"layer_types length",
       "{" + base + R"(, "layer_types": ["full_attention"]})",
       {"\"layer_types\" has 1 entries but num_hidden_layers is 2"}},
      {"layer_types entry",
       "{" + base + R"(, "layer_types": ["full_attention", "chunked"]})",
       {"\"layer_types\"[1] is a string (\"chunked\")"}},
      {"sliding without window",
       "{" + base + R"(, "layer_types": ["full_attention", "sliding_attention"]})",
       {"need \"sliding_window\""}},
      {"llama3 incomplete",
       "{" + base + R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8}})",
       {"rope_type 'llama3' needs \"rope_scaling.low_freq_factor\""}},
      {"unknown rope",
       "{" + base + R"(, "rope_parameters": {"rope_type": "spiral"}})",
       {"\"rope_parameters.rope_type\" 'spiral' is unknown"}},
      {"rope not object",
       "{" + base + R"(, "rope_scaling": 3})",
       {"\"rope_scaling\" is the integer 3"}},
      {"theta type", "{" + base + R"(, "rope_theta": "1e4"})", {"\"rope_theta\" is a string"}},
      {"per-type rope",
       R"({"model_type": "gemma3_text", "rope_parameters": {"full_attention": {"rope_theta": "x"}}})",
       {"\"rope_parameters.full_attention.rope_theta\" is a string"}},
      {"text_config key",
       R"({"model_type": "gemma3", "text_config": {"hidden_size": "big"}})",
       {"\"text_config.hidden_size\" is a string"}},
      {"text_config type",
       R"({"model_type": "gemma3", "text_config": []})",
       {"\"text_config\" is an array"}},
      {"deep", std::string(100, '[') + std::string(100, ']'), {"nests deeper"}},
      {"huge layer count",
       R"({"model_type": "gemma3_text", "num_hidden_layers": 1000000000000})",
       {"\"num_hidden_layers\" (1000000000000) is implausibly large"}},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto needles = c.needles;
    needles.push_back("[config] bad.json: ");
    expect_error<FormatError>([&] { parse_model_config(c.json, "bad.json"); }, needles);
  }
}

TEST(Config, LoadFromFileOrDirectory) {
  fs::path d = fs::temp_directory_path() / ("ingot_cfg_" + std::to_string(::getpid()));
  fs::create_directories(d);
  std::ofstream(d / "config.json") << kLlamaV5;
  EXPECT_EQ(load_model_config(d.string()).hidden_size, 64);
  EXPECT_EQ(load_model_config((d / "config.json").string()).source, (d / "config.json").string());
  expect_error<IoError>([&] { load_model_config((d / "nope.json").string()); },
                        {"[config] ", "nope.json"});
  fs::remove_all(d);
}

TEST(Config, Registry) {
  EXPECT_EQ(architecture_of("gemma3_text"), "gemma3");
  EXPECT_EQ(architecture_of("gemma3"), "gemma3");
  EXPECT_FALSE(architecture_of("bert").has_value());
  expect_error<Unsupported>([] { model_factory("nonexistent"); }, {"[models] ", "nonexistent"});
  register_architecture("test_arch", [](const Checkpoint&) { return std::shared_ptr<Model>(); });
  EXPECT_TRUE(has_model_factory("test_arch"));
}

// Fixtures written by scripts/gen_model_fixtures.py: both config forms must agree.
TEST(Config, FixturesBothFormsAgree) {
  fs::path root = fs::path(INGOT_SOURCE_DIR) / "tests/data/models";
  if (!fs::exists(root)) GTEST_SKIP() << "no fixtures under " << root;
  int checked = 0;
  for (auto& e : fs::directory_iterator(root)) {
    fs::path v5 = e.path() / "config.json", classic = e.path() / "config_classic.json";
    if (fs::exists(e.path() / "config_transformers5.json")) {
      classic = v5;
      v5 = e.path() / "config_transformers5.json";
    }
    if (!fs::exists(v5) || !fs::exists(classic)) continue;
    SCOPED_TRACE(e.path().string());
    ModelConfig a = load_model_config(v5.string()), b = load_model_config(classic.string());
    EXPECT_EQ(a.layers, b.layers);
    EXPECT_EQ(a.model_type, b.model_type);
    EXPECT_EQ(a.hidden_size, b.hidden_size);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
    EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
    EXPECT_EQ(a.dtype, b.dtype);
    EXPECT_EQ(a.query_pre_attn_scalar, b.query_pre_attn_scalar);
    ++checked;
  }
  if (!checked) GTEST_SKIP() << "no fixture has both config forms";
}

}  // namespace
}  // namespace ingot::models
