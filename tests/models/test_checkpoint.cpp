// Checkpoint directories: single file and sharded, multimodal name mapping, cast on load,
// placement on the chosen device, validation against an expected tensor list, and a table of
// >= 30 broken checkpoints each rejected with a message that names the file and the tensor or
// key at fault.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include <nlohmann/json.hpp>

#include "core/ingot.h"
#include "models/checkpoint.h"
#include "models/registry.h"

namespace ingot::models {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
  "num_key_value_heads": 1, "vocab_size": 16, "tie_word_embeddings": false,
  "torch_dtype": "float32"})";

/// name -> shape of the tiny llama written by make_checkpoint.
std::vector<ExpectedTensor> llama_expected() {
  std::vector<ExpectedTensor> e = {{"model.embed_tokens.weight", {16, 8}},
                                   {"model.norm.weight", {8}},
                                   {"lm_head.weight", {16, 8}}};
  for (int l = 0; l < 2; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    e.push_back({p + "input_layernorm.weight", {8}});
    e.push_back({p + "post_attention_layernorm.weight", {8}});
    e.push_back({p + "self_attn.q_proj.weight", {8, 8}});
    e.push_back({p + "self_attn.k_proj.weight", {4, 8}});
    e.push_back({p + "self_attn.v_proj.weight", {4, 8}});
    e.push_back({p + "self_attn.o_proj.weight", {8, 8}});
    e.push_back({p + "mlp.gate_proj.weight", {16, 8}});
    e.push_back({p + "mlp.up_proj.weight", {16, 8}});
    e.push_back({p + "mlp.down_proj.weight", {8, 16}});
  }
  return e;
}

std::map<std::string, Array> llama_weights(const std::string& prefix = "") {
  std::map<std::string, Array> w;
  float v = 0;
  for (auto& e : llama_expected()) {
    std::vector<float> vals(static_cast<size_t>(shape_size(e.shape)));
    for (auto& x : vals) x = (v += 0.25f);
    w[prefix + e.name] = Array(vals, e.shape);
  }
  return w;
}

struct TempDir {
  fs::path dir;
  TempDir() {
    static int n = 0;
    dir = fs::temp_directory_path() /
          ("ingot_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& f) const { return (dir / f).string(); }
};

void write_text(const std::string& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

/// A valid tiny llama checkpoint; `shards` > 1 writes an index and that many shards.
void make_checkpoint(const TempDir& d, int shards = 1) {
  write_text(d / "config.json", kConfig);
  auto w = llama_weights();
  if (shards == 1) {
    save_safetensors(d / "model.safetensors", w);
    return;
  }
  std::vector<std::map<std::string, Array>> parts(static_cast<size_t>(shards));
  ojson idx = {{"metadata", {{"total_size", 0}}}, {"weight_map", ojson::object()}};
  int i = 0;
  for (auto& [k, a] : w) {
    int s = i++ % shards;
    parts[static_cast<size_t>(s)][k] = a;
    idx["weight_map"][k] = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards);
  }
  for (int s = 0; s < shards; ++s)
    save_safetensors(d / fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards),
                     parts[static_cast<size_t>(s)]);
  write_text(d / "model.safetensors.index.json", idx.dump(2));
}

std::vector<uint8_t> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_bytes(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// Rewrites the header of a safetensors file through `edit` (raw JSON text in, text out).
void edit_header(const std::string& p, const std::function<std::string(std::string)>& edit) {
  auto b = read_bytes(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b[static_cast<size_t>(i)];
  std::string h(b.begin() + 8, b.begin() + 8 + static_cast<long>(n));
  std::string nh = edit(h);
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(nh.size() >> (8 * i));
  out.insert(out.end(), nh.begin(), nh.end());
  out.insert(out.end(), b.begin() + 8 + static_cast<long>(n), b.end());
  write_bytes(p, out);
}

/// Edits the header as JSON.
void edit_json(const std::string& p, const std::function<void(ojson&)>& edit) {
  edit_header(p, [&](std::string h) {
    ojson j = ojson::parse(h);
    edit(j);
    return j.dump();
  });
}

void edit_config(const TempDir& d, const std::function<void(ojson&)>& edit) {
  ojson j = ojson::parse(kConfig);
  edit(j);
  write_text(d / "config.json", j.dump());
}

TEST(Checkpoint, SingleFileLoadsAndValidates) {
  TempDir d;
  make_checkpoint(d);
  Checkpoint c = Checkpoint::open(d.dir.string());
  EXPECT_EQ(c.architecture(), "llama");
  EXPECT_EQ(c.files().size(), 1u);
  EXPECT_EQ(c.names().size(), llama_expected().size());
  auto rep = c.validate(llama_expected());
  EXPECT_TRUE(rep.extra.empty());
  auto w = llama_weights();
  for (auto& [k, a] : w) EXPECT_EQ(c.load(k).to_vector<float>(), a.to_vector<float>()) << k;
  int64_t n = 0;
  for (auto& e : llama_expected()) n += shape_size(e.shape);
  EXPECT_EQ(c.parameter_count(), n);
}

TEST(Checkpoint, ShardedAndCastOnLoad) {
  TempDir d;
  make_checkpoint(d, 3);
  Checkpoint c = Checkpoint::open(d.dir.string(), {.dtype = bfloat16});
  EXPECT_EQ(c.files().size(), 3u);
  EXPECT_FALSE(c.index_path().empty());
  c.validate(llama_expected());
  Array a = c.load("model.norm.weight");
  EXPECT_EQ(a.dtype(), bfloat16);
  auto want = llama_weights()["model.norm.weight"].to_vector<float>();
  auto got = a.to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], std::abs(want[i]) / 128);
}

TEST(Checkpoint, LoadsOntoTheChosenDevice) {
  TempDir d;
  make_checkpoint(d);
  EXPECT_EQ(Checkpoint::open(d.dir.string()).device(), default_device());
  Checkpoint c = Checkpoint::open(d.dir.string(), {.device = cpu_device});
  EXPECT_EQ(c.load("model.norm.weight").device(), cpu_device);
  const Device missing{Device::Type::cuda, gpu::device_count()};
  try {
    Checkpoint::open(d.dir.string(), {.device = missing});
    ADD_FAILURE() << "opened for " << missing.str();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(missing.str() + " requested but"), std::string::npos)
        << e.what();
  }
  if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU loading untested";
  // On a GPU: copied (then cast there) and evaluated at load.
  const Device cuda0{Device::Type::cuda, 0};
  Checkpoint g = Checkpoint::open(d.dir.string(), {.dtype = bfloat16, .device = cuda0});
  auto w = llama_weights();
  for (auto& [k, a] : w) {
    Array x = g.load(k);
    EXPECT_EQ(x.device(), cuda0) << k;
    EXPECT_EQ(x.dtype(), bfloat16) << k;
    EXPECT_TRUE(x.is_evaluated()) << k;
    EXPECT_EQ(x.to_vector<float>(), astype(a, bfloat16, cpu_device).to_vector<float>()) << k;
  }
}

TEST(Checkpoint, MultimodalNamesMapToTextModel) {
  for (const char* layout : {"language_model.model.", "model.language_model."}) {
    TempDir d;
    write_text(d / "config.json", R"({"model_type": "gemma3", "text_config": {
        "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 4, "vocab_size": 16, "sliding_window": 4}})");
    std::map<std::string, Array> w;
    w[std::string(layout) + "embed_tokens.weight"] = Array(std::vector<float>(128, 1.f), {16, 8});
    w["vision_tower.vision_model.post_layernorm.weight"] = Array(std::vector<float>(4, 1.f), {4});
    w[std::string(layout[0] == 'l' ? "language_model." : "") + "lm_head.weight"] =
        Array(std::vector<float>(128, 2.f), {16, 8});
    save_safetensors(d / "model.safetensors", w);
    Checkpoint c = Checkpoint::open(d.dir.string());
    EXPECT_EQ(c.config().weight_prefix, "language_model.");
    EXPECT_EQ(c.names(), (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight"}))
        << layout;
    EXPECT_EQ(c.ignored(),
              (std::vector<std::string>{"vision_tower.vision_model.post_layernorm.weight"}));
    EXPECT_EQ(c.stored_name("model.embed_tokens.weight"),
              std::string(layout) + "embed_tokens.weight");
  }
}

TEST(Checkpoint, ExtraTensorsWarnAndAreReported) {
  TempDir d;
  make_checkpoint(d);
  auto w = llama_weights();
  w["model.layers.0.self_attn.rotary_emb.inv_freq"] = Array(std::vector<float>(2, 1.f), {2});
  save_safetensors(d / "model.safetensors", w);
  Checkpoint c = Checkpoint::open(d.dir.string());
  testing::internal::CaptureStderr();
  auto rep = c.validate(llama_expected());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rep.extra, (std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq"}));
  EXPECT_NE(err.find("1 unexpected tensors ignored: model.layers.0.self_attn.rotary_emb.inv_freq"),
            std::string::npos)
      << err;
  auto exp = llama_expected();
  exp.push_back({"model.layers.0.self_attn.q_proj.bias", {8}, /*optional=*/true});
  rep = Checkpoint::open(d.dir.string(), {.warn = false}).validate(exp);
  EXPECT_EQ(rep.missing_optional,
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj.bias"}));
}

// ---- the broken-checkpoint matrix ----

enum class Expect { io, format, unsupported };

struct Broken {
  const char* what;
  int shards;  // layout of the valid checkpoint to start from
  std::function<void(const TempDir&)> mutate;
  Expect kind;
  std::vector<std::string> needles;  // file name and tensor/key, at least
  bool at_validate = false;          // the error comes from validate(), not open()
};

const std::string ST = "model.safetensors";
const std::string Q = "model.layers.0.self_attn.q_proj.weight";
const std::string SHARD1 = "model-00001-of-00002.safetensors";
const std::string SHARD2 = "model-00002-of-00002.safetensors";
const std::string IDX = "model.safetensors.index.json";

std::vector<Broken> broken_cases() {
  auto st = [](const TempDir& d) { return d / ST; };
  auto set_q = [&](const char* key, ojson v) {
    return [=](const TempDir& d) { edit_json(d / ST, [&](ojson& j) { j[Q][key] = v; }); };
  };
  return {
      {"missing directory",
       1,
       [](const TempDir& d) { fs::remove_all(d.dir); },
       Expect::io,
       {"no such directory"}},
      {"missing config",
       1,
       [](const TempDir& d) { fs::remove(d / "config.json"); },
       Expect::io,
       {"missing config.json"}},
      {"config not json",
       1,
       [](const TempDir& d) { write_text(d / "config.json", "{oops"); },
       Expect::format,
       {"config.json", "not valid JSON"}},
      {"config not object",
       1,
       [](const TempDir& d) { write_text(d / "config.json", "[1]"); },
       Expect::format,
       {"config.json", "expected a JSON object"}},
      {"config type error",
       1,
       [](const TempDir& d) { edit_config(d, [](ojson& j) { j["hidden_size"] = "big"; }); },
       Expect::format,
       {"config.json", "\"hidden_size\" is a string"}},
      {"config missing key",
       1,
       [](const TempDir& d) { edit_config(d, [](ojson& j) { j.erase("num_hidden_layers"); }); },
       Expect::format,
       {"config.json", "missing \"num_hidden_layers\""}},
      {"unsupported model_type",
       1,
       [](const TempDir& d) { edit_config(d, [](ojson& j) { j["model_type"] = "gpt_neox"; }); },
       Expect::format,
       {"config.json", "unsupported model_type 'gpt_neox'", "llama"}},
      {"bad rope params",
       1,
       [](const TempDir& d) {
         edit_config(d, [](ojson& j) { j["rope_scaling"] = {{"rope_type", "llama3"}}; });
       },
       Expect::format,
       {"config.json", "\"rope_scaling.factor\""}},
      {"missing weights",
       1,
       [&](const TempDir& d) { fs::remove(st(d)); },
       Expect::io,
       {"missing weights", "model.safetensors"}},
      {"weights is a directory",
       1,
       [&](const TempDir& d) {
         fs::remove(st(d));
         fs::create_directory(st(d));
       },
       Expect::io,
       {"missing weights"}},
      {"file shorter than 8 bytes",
       1,
       [&](const TempDir& d) { write_text(st(d), "\x10\x00"); },
       Expect::format,
       {ST, "too short"}},
      {"header length past the file",
       1,
       [&](const TempDir& d) {
         auto b = read_bytes(st(d));
         uint64_t n = b.size();  // the header alone would be as long as the whole file
         for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
         write_bytes(st(d), b);
       },
       Expect::format,
       {ST, "is larger than the file"}},
      {"header over 100 MB",
       1,
       [&](const TempDir& d) {
         std::vector<uint8_t> b(8, 0);
         b[3] = 0x7f;
         write_bytes(st(d), b);
       },
       Expect::format,
       {ST, "exceeds the 100 MB limit"}},
      {"header not json",
       1,
       [&](const TempDir& d) {
         edit_header(st(d), [](std::string h) { return h.substr(0, h.size() / 2); });
       },
       Expect::format,
       {ST, "header is not valid JSON"}},
      {"header is an array",
       1,
       [&](const TempDir& d) { edit_header(st(d), [](std::string) { return std::string("[]"); }); },
       Expect::format,
       {ST, "must start with '{'"}},
      {"unknown dtype", 1, set_q("dtype", "Q4_K"), Expect::format, {ST, Q, "unknown dtype 'Q4_K'"}},
      {"dtype not a string",
       1,
       set_q("dtype", 32),
       Expect::format,
       {ST, Q, "\"dtype\" is the number 32"}},
      {"missing dtype",
       1,
       [&](const TempDir& d) { edit_json(st(d), [&](ojson& j) { j[Q].erase("dtype"); }); },
       Expect::format,
       {ST, Q, "missing \"dtype\""}},
      {"missing data_offsets",
       1,
       [&](const TempDir& d) { edit_json(st(d), [&](ojson& j) { j[Q].erase("data_offsets"); }); },
       Expect::format,
       {ST, Q, "missing \"data_offsets\""}},
      {"shape x dtype != byte range",
       1,
       set_q("shape", ojson::array({8, 9})),
       Expect::format,
       {ST, Q, "needs 288 bytes"}},
      {"negative shape",
       1,
       set_q("shape", ojson::array({-8, -8})),
       Expect::format,
       {ST, Q, "has the number -8"}},
      {"non-integer shape",
       1,
       set_q("shape", ojson::array({8.5, 8})),
       Expect::format,
       {ST, Q, "non-integer number 8.5"}},
      {"shape not an array",
       1,
       set_q("shape", "8x8"),
       Expect::format,
       {ST, Q, "\"shape\" is a string"}},
      {"reversed offsets",
       1,
       [&](const TempDir& d) {
         edit_json(st(d), [&](ojson& j) {
           auto o = j[Q]["data_offsets"];
           j[Q]["data_offsets"] = {o[1], o[0]};
         });
       },
       Expect::format,
       {ST, Q, "end before they begin"}},
      {"overlapping ranges",
       1,
       [&](const TempDir& d) {
         edit_json(st(d), [&](ojson& j) {
           auto& o = j["model.norm.weight"]["data_offsets"];  // 32 bytes: move 16 back
           o = {o[0].get<int>() - 16, o[1].get<int>() - 16};
         });
       },
       Expect::format,
       {ST, "model.norm.weight", "overlap"}},
      {"gap between tensors",
       1,
       [&](const TempDir& d) {
         edit_json(st(d), [&](ojson& j) {
           j["model.norm.weight"]["shape"] = {4};
           auto& o = j["model.norm.weight"]["data_offsets"];
           o = {o[0].get<int>() + 16, o[1].get<int>()};
         });
       },
       Expect::format,
       {ST, "model.norm.weight", "gap of 16 bytes"}},
      {"truncated file",
       1,
       [&](const TempDir& d) {
         auto b = read_bytes(st(d));
         b.resize(b.size() - 10);
         write_bytes(st(d), b);
       },
       Expect::format,
       {ST, "run past the end of the data section", "file truncated?"}},
      {"trailing bytes",
       1,
       [&](const TempDir& d) {
         auto b = read_bytes(st(d));
         b.resize(b.size() + 4);
         write_bytes(st(d), b);
       },
       Expect::format,
       {ST, "4 unused bytes after the last tensor"}},
      {"duplicate tensor names",
       1,
       [&](const TempDir& d) {
         edit_header(st(d), [](std::string h) {
           // rename k_proj of layer 0 to q_proj: same name twice in the JSON text
           auto p = h.find("model.layers.0.self_attn.k_proj.weight");
           return h.replace(p, 38, Q);
         });
       },
       Expect::format,
       {ST, "duplicate tensor name '" + Q + "'"}},
      {"metadata not strings",
       1,
       [&](const TempDir& d) {
         edit_json(st(d), [](ojson& j) { j["__metadata__"] = {{"format", 1}}; });
       },
       Expect::format,
       {ST, "\"__metadata__\" key 'format'"}},
      {"missing shard",
       2,
       [](const TempDir& d) { fs::remove(d / SHARD2); },
       Expect::io,
       {IDX, "shard '" + SHARD2 + "'", "is missing"}},
      {"index lists a tensor not in its shard",
       2,
       [](const TempDir& d) {
         ojson j = ojson::parse(read_bytes(d / IDX));
         j["weight_map"]["model.extra.weight"] = SHARD1;
         write_text(d / IDX, j.dump());
       },
       Expect::format,
       {IDX, "'model.extra.weight' is listed in shard '" + SHARD1 + "'"}},
      {"index not json",
       2,
       [](const TempDir& d) { write_text(d / IDX, "{\"weight_map\": "); },
       Expect::format,
       {IDX, "not valid JSON"}},
      {"index without weight_map",
       2,
       [](const TempDir& d) { write_text(d / IDX, "{}"); },
       Expect::format,
       {IDX, "missing \"weight_map\""}},
      {"index escapes the directory",
       2,
       [](const TempDir& d) {
         ojson j = ojson::parse(read_bytes(d / IDX));
         j["weight_map"][Q] = "../elsewhere.safetensors";
         write_text(d / IDX, j.dump());
       },
       Expect::format,
       {IDX, Q, "invalid shard name"}},
      {"tensor in two shards",
       2,
       [](const TempDir& d) {
         // shard 2 gets a copy of a tensor the index places in shard 1
         SafetensorsFile s1(d / SHARD1), s2(d / SHARD2);
         auto w = s2.load_all({.copy = true});
         std::string dup = s1.names().front();
         w[dup] = s1.load(dup, {.copy = true});
         save_safetensors(d / SHARD2, w);
       },
       Expect::format,
       {IDX, "is in both", SHARD1, SHARD2}},
      {"missing tensor the architecture needs",
       1,
       [](const TempDir& d) {
         auto w = llama_weights();
         w.erase("model.layers.1.mlp.up_proj.weight");
         save_safetensors(d / ST, w);
       },
       Expect::format,
       {ST, "missing tensor 'model.layers.1.mlp.up_proj.weight' needed by llama"},
       true},
      {"wrong shape for a tensor",
       1,
       [](const TempDir& d) {
         auto w = llama_weights();
         w["model.norm.weight"] = Array(std::vector<float>(9, 1.f), {9});
         save_safetensors(d / ST, w);
       },
       Expect::format,
       {ST, "tensor 'model.norm.weight' has shape [9], expected [8]"},
       true},
      {"integer lm_head (no quantization config)",
       1,
       [](const TempDir& d) {
         auto w = llama_weights();
         w["lm_head.weight"] = astype(w.at("lm_head.weight"), int32);
         save_safetensors(d / ST, w);
       },
       Expect::format,
       {ST, "tensor 'lm_head.weight' is stored as I32, but llama needs a floating-point weight"},
       true},
      {"integer norm weight",
       1,
       [](const TempDir& d) {
         auto w = llama_weights();
         w["model.norm.weight"] = astype(w.at("model.norm.weight"), uint8);
         save_safetensors(d / ST, w);
       },
       Expect::format,
       {ST, "tensor 'model.norm.weight' is stored as U8", "quantization config"},
       true},
      {"missing tensor in a sharded checkpoint",
       2,
       [](const TempDir& d) {
         ojson j = ojson::parse(read_bytes(d / IDX));
         std::string victim = j["weight_map"].begin().key();
         std::string shard = j["weight_map"].begin().value();
         SafetensorsFile s(d / shard);
         auto w = s.load_all({.copy = true});
         w.erase(victim);
         save_safetensors(d / shard, w);
         j["weight_map"].erase(victim);
         write_text(d / IDX, j.dump());
       },
       Expect::format,
       {IDX, "missing tensor 'lm_head.weight'"},
       true},
  };
}

TEST(Checkpoint, BrokenCheckpointMatrix) {
  auto cases = broken_cases();
  EXPECT_GE(cases.size(), 30u);
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir d;
    make_checkpoint(d, c.shards);
    c.mutate(d);
    std::string msg;
    bool threw_right = false;
    try {
      Checkpoint ck = Checkpoint::open(d.dir.string(), {.warn = false});
      if (!c.at_validate) ADD_FAILURE() << "open() succeeded";
      ck.validate(llama_expected());
      ADD_FAILURE() << "no error";
    } catch (const IoError& e) {
      msg = e.what();
      threw_right = c.kind == Expect::io;
    } catch (const FormatError& e) {
      msg = e.what();
      threw_right = c.kind == Expect::format;
    } catch (const std::exception& e) {
      msg = e.what();
    }
    EXPECT_TRUE(threw_right) << "wrong exception type: " << msg;
    EXPECT_TRUE(msg.rfind("[checkpoint] ", 0) == 0 || msg.rfind("[safetensors] ", 0) == 0 ||
                msg.rfind("[config] ", 0) == 0)
        << msg;
    EXPECT_NE(msg.find(d.dir.string()), std::string::npos) << "does not name the path: " << msg;
    for (auto& n : c.needles) EXPECT_NE(msg.find(n), std::string::npos) << msg << "\nwant: " << n;
  }
}

// The committed fixtures (scripts/gen_model_fixtures.py) open and map their names.
TEST(Checkpoint, FixturesOpen) {
  fs::path root = fs::path(INGOT_SOURCE_DIR) / "tests/data/models";
  if (!fs::exists(root)) GTEST_SKIP() << "no fixtures";
  int n = 0;
  for (auto& e : fs::directory_iterator(root)) {
    if (!fs::exists(e.path() / "model.safetensors")) continue;
    SCOPED_TRACE(e.path().string());
    Checkpoint c = Checkpoint::open(e.path().string(), {.warn = false});
    EXPECT_TRUE(c.contains("model.embed_tokens.weight"));
    EXPECT_TRUE(c.contains("model.norm.weight"));
    EXPECT_EQ(c.contains("lm_head.weight"), !c.config().tie_word_embeddings);
    EXPECT_TRUE(c.contains("model.layers." + std::to_string(c.config().num_hidden_layers - 1) +
                           ".self_attn.q_proj.weight"));
    if (!c.config().weight_prefix.empty()) {
      EXPECT_FALSE(c.ignored().empty());
    }
    for (auto& name : c.names()) c.load(name).eval();
    ++n;
  }
  if (!n) GTEST_SKIP() << "no fixture checkpoints";
}

}  // namespace
}  // namespace ingot::models
