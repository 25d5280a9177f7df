// Writer of synthetic Llama-shaped bf16 checkpoints (see synthetic_checkpoint.h): the filler is a
// counter-based hash per element, so every tensor differs and nothing repeats.
#include "common/synthetic_checkpoint.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ingot::bench {
namespace {

namespace fs = std::filesystem;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

std::vector<TensorSpec> tensor_specs(const LlamaShape& s) {
  const int64_t kv = s.kv_heads * s.head_dim();
  std::vector<TensorSpec> ts = {{"model.embed_tokens.weight", {s.vocab, s.hidden}},
                                {"model.norm.weight", {s.hidden}}};
  if (!s.tied) ts.push_back({"lm_head.weight", {s.vocab, s.hidden}});
  for (int64_t l = 0; l < s.layers; ++l) {
    std::string p = fmt::format("model.layers.{}.", l);
    ts.push_back({p + "input_layernorm.weight", {s.hidden}});
    ts.push_back({p + "post_attention_layernorm.weight", {s.hidden}});
    ts.push_back({p + "self_attn.q_proj.weight", {s.hidden, s.hidden}});
    ts.push_back({p + "self_attn.k_proj.weight", {kv, s.hidden}});
    ts.push_back({p + "self_attn.v_proj.weight", {kv, s.hidden}});
    ts.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.hidden}});
    ts.push_back({p + "mlp.gate_proj.weight", {s.inter, s.hidden}});
    ts.push_back({p + "mlp.up_proj.weight", {s.inter, s.hidden}});
    ts.push_back({p + "mlp.down_proj.weight", {s.hidden, s.inter}});
  }
  return ts;
}

std::string config_json(const LlamaShape& s) {
  // "ingot_synthetic_filler" versions the filler: a change rewrites existing checkpoints.
  return fmt::format(
      R"({{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": {},
  "intermediate_size": {}, "num_hidden_layers": {}, "num_attention_heads": {},
  "num_key_value_heads": {}, "vocab_size": {}, "tie_word_embeddings": {},
  "torch_dtype": "bfloat16", "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
  "max_position_embeddings": 131072, "hidden_act": "silu", "ingot_synthetic_filler": 2}})",
      s.hidden, s.inter, s.layers, s.heads, s.kv_heads, s.vocab, s.tied ? "true" : "false");
}

/// Round-to-nearest-even float -> bfloat16 bits (finite inputs).
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

/// Uniform in [-1, 1) from a counter (splitmix64 finaliser).
float hash_uniform(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Writes one tensor's filler: 1-D (norm weights) near 1, 2-D uniform in +-sqrt(3 / fan_in).
void write_tensor(std::FILE* f, const TensorSpec& t, uint64_t seed, std::vector<uint16_t>& buf) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  const bool norm = t.shape.size() == 1;
  const float scale = norm ? 0.1f : std::sqrt(3.0f / static_cast<float>(t.shape.back()));
  const uint64_t base = seed << 40;
  for (int64_t done = 0; done < n;) {
    const int64_t m = std::min<int64_t>(n - done, static_cast<int64_t>(buf.size()));
    for (int64_t i = 0; i < m; ++i) {
      const float u = hash_uniform(base + static_cast<uint64_t>(done + i)) * scale;
      buf[static_cast<size_t>(i)] = to_bf16(norm ? 1.0f + u : u);
    }
    if (std::fwrite(buf.data(), 2, static_cast<size_t>(m), f) != static_cast<size_t>(m))
      throw std::runtime_error("synthetic checkpoint: write failed (disk full?)");
    done += m;
  }
}

}  // namespace

int64_t LlamaShape::layer_matmul_params() const {
  const int64_t kv = kv_heads * head_dim();
  return layers * (2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * inter);
}

int64_t LlamaShape::total_params() const {
  return layer_matmul_params() + (tied ? 1 : 2) * vocab * hidden + (2 * layers + 1) * hidden;
}

std::string bench_dir(const char* env, const std::string& fallback) {
  const char* d = std::getenv(env);
  return d && *d ? d : fallback;
}

std::string write_llama_checkpoint(const std::string& dir, const LlamaShape& shape) {
  const std::string cfg_path = dir + "/config.json", st = dir + "/model.safetensors";
  const std::string cfg = config_json(shape);
  const std::vector<TensorSpec> ts = tensor_specs(shape);
  std::string h = "{";
  uint64_t pos = 0;
  for (const auto& t : ts) {
    uint64_t n = 2;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    h += fmt::format("{}\"{}\":{{\"dtype\":\"BF16\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                     h.size() > 1 ? "," : "", t.name, fmt::join(t.shape, ","), pos, pos + n);
    pos += n;
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  const uint64_t file_size = 8 + h.size() + pos;
  std::error_code ec;
  if (fs::exists(st) && fs::file_size(st, ec) == file_size && read_text(cfg_path) == cfg)
    return dir;
  fs::create_directories(dir);
  fs::remove(cfg_path, ec);  // stale config first: a half-written dir never looks complete
  const std::string tmp = st + ".partial";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("synthetic checkpoint: cannot create " + tmp);
  const uint64_t len = h.size();
  std::fwrite(&len, 8, 1, f);
  std::fwrite(h.data(), 1, h.size(), f);
  std::vector<uint16_t> buf(1 << 22);  // 8 MB
  try {
    for (size_t i = 0; i < ts.size(); ++i) write_tensor(f, ts[i], i + 1, buf);
  } catch (...) {
    std::fclose(f);
    fs::remove(tmp, ec);
    throw;
  }
  if (std::fclose(f) != 0) throw std::runtime_error("synthetic checkpoint: close failed");
  fs::rename(tmp, st);
  std::ofstream(cfg_path + ".partial") << cfg;
  fs::rename(cfg_path + ".partial", cfg_path);
  return dir;
}

}  // namespace ingot::bench
