// GGUF -> Checkpoint: the metadata becomes the config.json llama.cpp's converter read (then goes
// through the same parser as a hub config), tensor names map to Hugging Face names, and the
// converter's changes are undone when a tensor is loaded:
//   llama  attn_q / attn_k rows are permuted per head (rotary pairs interleaved:
//          W.reshape(H, 2, D/2, E).swapaxes(1, 2)); qwen3 and gemma3 are stored as in HF.
//   gemma3 every *norm.weight is stored as 1 + w (llama.cpp multiplies by it directly).
#include "models/gguf_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <numbers>
#include <regex>
#include <set>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/io/gguf.h"
#include "core/ops/ops.h"
#include "models/registry.h"
#include "util/env.h"
#include "util/error.h"

namespace ingot::models {

namespace {

using json = nlohmann::json;

std::string model_type_of(const std::string& arch) {
  if (arch == "llama") return "llama";
  if (arch == "qwen3") return "qwen3";
  if (arch == "gemma3") return "gemma3_text";
  return "";
}

/// Typed metadata lookups for one file.
struct Meta {
  const GgufFile& f;
  const std::string& arch;
  const GgufValue* find(const std::string& key) const { return f.find(key); }
  std::string akey(const std::string& k) const { return arch + "." + k; }
  int64_t int_(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v)
      raise<FormatError>("[gguf] {}: missing metadata key '{}' needed by {}", f.path(), key, arch);
    return gguf_int(*v, f.path(), key);
  }
  std::optional<int64_t> opt_int(const std::string& key) const {
    const GgufValue* v = find(key);
    return v ? std::optional<int64_t>(gguf_int(*v, f.path(), key)) : std::nullopt;
  }
  std::optional<double> opt_float(const std::string& key) const {
    const GgufValue* v = find(key);
    return v ? std::optional<double>(gguf_float(*v, f.path(), key)) : std::nullopt;
  }
  std::optional<std::string> opt_str(const std::string& key) const {
    const GgufValue* v = find(key);
    return v ? std::optional<std::string>(gguf_string(*v, f.path(), key)) : std::nullopt;
  }
};

/// Llama 3 band factor of one rotary frequency (as transformers computes it), 1/scale.
double llama3_divisor(double inv_freq, double factor, double low, double high, double orig) {
  const double wavelen = 2 * std::numbers::pi / inv_freq;
  const double low_wavelen = orig / low, high_wavelen = orig / high;
  if (wavelen < high_wavelen) return 1.0;
  if (wavelen > low_wavelen) return factor;
  const double smooth = (orig / wavelen - low) / (high - low);
  return 1.0 / ((1 - smooth) / factor + smooth);
}

/// llama.cpp stores Llama 3 rope scaling as the tensor rope_freqs.weight [D/2] (the divisor of
/// each frequency), not as metadata. Recover the parameters: factor = the largest divisor,
/// low/high_freq_factor 1 and 4 (every Llama 3.x release), the original context from a
/// smoothed band entry; then check that they reproduce every entry.
json llama3_rope_from_freqs(const GgufFile& f, double theta, int64_t head_dim) {
  const GgufTensorInfo& t = f.info("rope_freqs.weight");
  if (t.type != GgufTensorType::F32 || t.numel() != head_dim / 2)
    raise<FormatError>("[gguf] {}: tensor 'rope_freqs.weight' is {} {}, expected F32 [{}]",
                       f.path(), gguf_tensor_type_name(t.type), shape_str(t.shape()), head_dim / 2);
  std::vector<float> div(static_cast<size_t>(head_dim / 2));
  std::memcpy(div.data(), f.data(t), div.size() * 4);
  auto inv_freq = [&](size_t i) {
    return 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  };
  double factor = 1.0;
  for (float d : div) factor = std::max(factor, static_cast<double>(d));
  const double low = 1.0, high = 4.0;
  double orig = 0;
  for (size_t i = 0; i < div.size() && factor > 1; ++i) {
    const double d = div[i];
    if (d > 1.0 + 1e-6 && d < factor - 1e-6) {
      const double smooth = (1.0 / d - 1.0 / factor) / (1.0 - 1.0 / factor);
      const double wavelen = 2 * std::numbers::pi / inv_freq(i);
      orig = std::round((smooth * (high - low) + low) * wavelen);
      break;
    }
  }
  bool ok = factor > 1 && orig > 0;
  for (size_t i = 0; ok && i < div.size(); ++i)
    ok = std::abs(llama3_divisor(inv_freq(i), factor, low, high, orig) - div[i]) <=
         1e-4 * std::max(1.0, static_cast<double>(div[i]));
  if (!ok)
    raise<Unsupported>(
        "[gguf] {}: tensor 'rope_freqs.weight' holds per-frequency rope factors that are not "
        "Llama 3 scaling with low_freq_factor 1 and high_freq_factor 4; ingot cannot run them",
        f.path());
  return {{"rope_type", "llama3"},
          {"factor", factor},
          {"low_freq_factor", low},
          {"high_freq_factor", high},
          {"original_max_position_embeddings", static_cast<int64_t>(orig)}};
}

}  // namespace

bool is_gguf_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) return true;
  std::ifstream f(path, std::ios::binary);
  char m[4] = {};
  return f.read(m, 4) && std::string_view(m, 4) == "GGUF";
}

ModelConfig gguf_model_config(const GgufFile& f) {
  const GgufValue* av = f.find("general.architecture");
  if (!av) raise<FormatError>("[gguf] {}: missing metadata key 'general.architecture'", f.path());
  const std::string arch = gguf_string(*av, f.path(), "general.architecture");
  const std::string mt = model_type_of(arch);
  if (mt.empty())
    raise<Unsupported>(
        "[gguf] {}: architecture '{}' is not supported (supported: llama, qwen3, "
        "gemma3)",
        f.path(), arch);
  Meta m{f, arch};
  json j;
  j["model_type"] = mt;
  j["hidden_size"] = m.int_(m.akey("embedding_length"));
  j["intermediate_size"] = m.int_(m.akey("feed_forward_length"));
  const int64_t layers = m.int_(m.akey("block_count"));
  j["num_hidden_layers"] = layers;
  const int64_t heads = m.int_(m.akey("attention.head_count"));
  j["num_attention_heads"] = heads;
  j["num_key_value_heads"] = m.opt_int(m.akey("attention.head_count_kv")).value_or(heads);
  const int64_t hidden = j["hidden_size"].get<int64_t>();
  const int64_t head_dim =
      m.opt_int(m.akey("attention.key_length")).value_or(heads > 0 ? hidden / heads : 0);
  if (auto vl = m.opt_int(m.akey("attention.value_length")); vl && *vl != head_dim)
    raise<Unsupported>("[gguf] {}: attention.value_length {} differs from key_length {}", f.path(),
                       *vl, head_dim);
  j["head_dim"] = head_dim;
  if (auto c = m.opt_int(m.akey("context_length"))) j["max_position_embeddings"] = *c;
  j["rms_norm_eps"] = m.opt_float(m.akey("attention.layer_norm_rms_epsilon")).value_or(1e-6);
  // Vocabulary: the embedding's rows (the tokenizer list may be padded differently).
  if (!f.contains("token_embd.weight"))
    raise<FormatError>("[gguf] {}: missing tensor 'token_embd.weight'", f.path());
  const Shape emb = f.info("token_embd.weight").shape();
  j["vocab_size"] = emb.size() == 2 ? emb[0] : 0;
  j["tie_word_embeddings"] = !f.contains("output.weight");
  // Token ids.
  if (auto b = m.opt_int("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = *b;
  if (auto p = m.opt_int("tokenizer.ggml.padding_token_id")) j["pad_token_id"] = *p;
  std::vector<int64_t> eos;
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"})
    if (auto e = m.opt_int(k); e && std::find(eos.begin(), eos.end(), *e) == eos.end())
      eos.push_back(*e);
  if (!eos.empty()) j["eos_token_id"] = eos;
  // Compute dtype: float32 for an all-F32 file, else bfloat16.
  bool all_f32 = true;
  for (auto& t : f.header().tensors) all_f32 &= t.type == GgufTensorType::F32;
  j["torch_dtype"] = all_f32 ? "float32" : "bfloat16";
  // Rope: freq_base and scaling metadata; Llama 3 scaling from rope_freqs.weight.
  const double theta = m.opt_float(m.akey("rope.freq_base")).value_or(arch == "gemma3" ? 1e6 : 1e4);
  j["rope_theta"] = theta;
  const std::string scaling = m.opt_str(m.akey("rope.scaling.type")).value_or("none");
  if (scaling == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"},
                         {"factor", m.opt_float(m.akey("rope.scaling.factor")).value_or(1.0)}};
  } else if (scaling != "none") {
    raise<Unsupported>("[gguf] {}: rope scaling '{}' ({}.rope.scaling.type) is not supported",
                       f.path(), scaling, arch);
  }
  if (f.contains("rope_freqs.weight"))
    j["rope_scaling"] = llama3_rope_from_freqs(f, theta, head_dim);
  if (arch == "llama") j["hidden_act"] = "silu";
  if (arch == "qwen3") j["hidden_act"] = "silu";
  if (arch == "gemma3") {
    // llama.cpp's Gemma3 defaults where the converter writes nothing: every 6th layer global,
    // local rope base 10000, attention scale head_dim^-0.5 (hidden/heads for the 62-layer 27B),
    // no final softcap. Files that say otherwise use the optional keys read here.
    j["hidden_activation"] = "gelu_pytorch_tanh";
    if (auto w = m.opt_int(m.akey("attention.sliding_window"))) j["sliding_window"] = *w;
    j["rope_local_base_freq"] = m.opt_float(m.akey("rope.freq_base_swa")).value_or(10000.0);
    const GgufValue* pat = m.find(m.akey("attention.sliding_window_pattern"));
    if (pat && pat->is_array()) {  // one bool per layer: true = sliding
      if (pat->element_type != GgufValueType::BOOL || static_cast<int64_t>(pat->size()) != layers)
        raise<FormatError>("[gguf] {}: key '{}' must be {} BOOLs", f.path(),
                           m.akey("attention.sliding_window_pattern"), layers);
      json lt = json::array();
      for (int64_t b : pat->ints) lt.push_back(b ? "sliding_attention" : "full_attention");
      j["layer_types"] = lt;
    } else {
      j["sliding_window_pattern"] =
          pat ? gguf_int(*pat, f.path(), m.akey("attention.sliding_window_pattern")) : 6;
    }
    double qpas = static_cast<double>(layers == 62 && heads > 0 ? hidden / heads : head_dim);
    if (auto s = m.opt_float(m.akey("attention.scale")); s && *s > 0) qpas = 1.0 / (*s * *s);
    j["query_pre_attn_scalar"] = qpas;
    if (auto c = m.opt_float(m.akey("final_logit_softcapping"))) j["final_logit_softcapping"] = *c;
  }
  return parse_model_config(j.dump(), f.path());
}

std::string gguf_canonical_name(const std::string& g, const std::string& arch) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  static const std::regex re(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
  std::smatch mt;
  if (!std::regex_match(g, mt, re)) return "";
  const std::string pre = "model.layers." + mt[1].str() + ".", part = mt[2], kind = mt[3];
  const bool gemma = arch == "gemma3";
  static const std::map<std::string, std::string> common = {
      {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"}, {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},           {"ffn_down", "mlp.down_proj"},
  };
  static const std::map<std::string, std::string> sandwich = {
      {"post_attention_norm", "post_attention_layernorm"},
      {"ffn_norm", "pre_feedforward_layernorm"},
      {"post_ffw_norm", "post_feedforward_layernorm"},
  };
  if (auto it = common.find(part); it != common.end()) return pre + it->second + "." + kind;
  if (gemma) {
    if (auto it = sandwich.find(part); it != sandwich.end()) return pre + it->second + "." + kind;
  } else if (part == "ffn_norm") {
    return pre + "post_attention_layernorm." + kind;
  }
  return "";
}

namespace {

// Stored names of the scales and biases of a matrix loaded in the affine form.
constexpr std::string_view kScales = " (scales)", kBiases = " (biases)";

/// GGUF tensors with the converter's layout changes undone. The matrices named in `affine`
/// (Q8_0 / Q4_0 / Q4_K) load as packed words under their own name plus "<name> (scales)" and
/// "<name> (biases)" (GgufFile::load_affine); the others are dequantized.
class GgufSource : public TensorSource {
 public:
  GgufSource(std::shared_ptr<GgufFile> f, const ModelConfig& c, std::string arch, Dtype fdt,
             std::set<std::string> affine)
      : f_(std::move(f)), arch_(std::move(arch)), float_dtype_(fdt), affine_(std::move(affine)) {
    heads_ = c.num_attention_heads;
    kv_heads_ = c.num_key_value_heads;
    for (auto& t : f_->header().tensors) {
      TensorInfo ti;
      ti.name = t.name;
      ti.shape = t.shape();
      ti.stored_dtype = stored_dtype(t.type);
      ti.begin = t.offset;
      ti.end = t.offset + t.nbytes;
      if (affine_.count(t.name)) {
        const int bits = gguf_affine_bits(t.type);
        TensorInfo si = ti;
        si.shape.back() /= 32;
        si.stored_dtype = st_dtype_from_ingot(float_dtype_);  // float32, cast on load
        for (std::string_view part : {kScales, kBiases}) {
          si.name = t.name + std::string(part);
          infos_.emplace(si.name, si);
        }
        ti.shape.back() = ti.shape.back() * bits / 32;
        ti.stored_dtype = StDtype::U32;
      }
      infos_.emplace(t.name, std::move(ti));
    }
  }
  const TensorInfo& info(const std::string& stored) const override {
    auto it = infos_.find(stored);
    if (it == infos_.end()) raise<FormatError>("[gguf] {}: no tensor '{}'", f_->path(), stored);
    return it->second;
  }
  Array load(const std::string& stored) const override {
    std::string name = stored;
    int part = -1;  // -1: not affine; 0 words, 1 scales, 2 biases
    if (stored.ends_with(kScales) || stored.ends_with(kBiases)) {
      part = stored.ends_with(kScales) ? 1 : 2;
      name = stored.substr(0, stored.size() - kScales.size());
    } else if (affine_.count(stored)) {
      part = 0;
    }
    Array a = part < 0 ? f_->load(stored, float_dtype_) : affine_part(name, part);
    const bool is_weight = name.size() > 7 && name.ends_with(".weight");
    if (arch_ == "llama" && is_weight &&
        (name.ends_with(".attn_q.weight") || name.ends_with(".attn_k.weight")))
      a = unpermute(a, name.ends_with(".attn_q.weight") ? heads_ : kv_heads_, stored);
    if (arch_ == "gemma3" && name.ends_with("norm.weight") && is_floating(a.dtype()))
      a = subtract(a, Array(1.0f, a.dtype()), cpu_device);  // on the host, like the load
    return a;
  }

 private:
  std::shared_ptr<GgufFile> f_;
  std::string arch_;
  Dtype float_dtype_;
  std::set<std::string> affine_;
  int64_t heads_ = 0, kv_heads_ = 0;
  std::map<std::string, TensorInfo> infos_;
  // The last matrix rewritten (a module's biases, scales and weight are loaded one after
  // another), so that it is rewritten once.
  mutable std::mutex mu_;
  mutable std::string cached_;
  mutable GgufAffineTensor cache_;

  Array affine_part(const std::string& name, int part) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ != name) {
      cache_ = f_->load_affine(name);
      cached_ = name;
    }
    return part == 0 ? cache_.words : part == 1 ? cache_.scales : cache_.biases;
  }

  StDtype stored_dtype(GgufTensorType t) const {
    switch (t) {
      case GgufTensorType::F32:
        return StDtype::F32;
      case GgufTensorType::F16:
        return StDtype::F16;
      case GgufTensorType::BF16:
        return StDtype::BF16;
      case GgufTensorType::F64:
        return StDtype::F64;
      case GgufTensorType::I8:
        return StDtype::I8;
      case GgufTensorType::I16:
        return StDtype::I16;
      case GgufTensorType::I32:
        return StDtype::I32;
      case GgufTensorType::I64:
        return StDtype::I64;
      default:
        return st_dtype_from_ingot(float_dtype_);  // dequantized on load
    }
  }

  // Inverse of the converter's W.reshape(H, 2, D/2, E).swapaxes(1, 2).reshape(H*D, E).
  Array unpermute(const Array& w, int64_t h, const std::string& name) const {
    if (w.ndim() != 2 || h <= 0 || w.shape(0) % (2 * h) != 0)
      raise<FormatError>("[gguf] {}: tensor '{}' of shape {} cannot hold {} heads of even size",
                         f_->path(), name, shape_str(w.shape()), h);
    const int64_t d = w.shape(0) / h, e = w.shape(1);
    return reshape(swapaxes(reshape(w, {h, d / 2, 2, e}, cpu_device), 1, 2, cpu_device), {h * d, e},
                   cpu_device);
  }
};

/// The weight of a linear layer or of the embedding: the matrices a quantized module holds.
bool is_projection_weight(const std::string& canon) {
  if (canon == "model.embed_tokens.weight" || canon == "lm_head.weight") return true;
  static const std::regex re(
      R"(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight)");
  return std::regex_match(canon, re);
}

}  // namespace

Checkpoint open_gguf_checkpoint(const std::string& path, const CheckpointOptions& opts) {
  auto f = std::make_shared<GgufFile>(path);
  Checkpoint c;
  c.dir_ = path;
  c.opts_ = opts;
  c.device_ = opts.device.value_or(default_device());
  if (c.device_.type == Device::Type::cuda && c.device_.index >= gpu::device_count())
    raise("[device] {} requested but {} CUDA device(s) are available", c.device_.str(),
          gpu::device_count());
  c.config_ = gguf_model_config(*f);
  c.architecture_ = resolve_architecture(c.config_.model_type, path);
  const std::string arch = gguf_string(*f->find("general.architecture"), path, "");
  Dtype fdt = opts.dtype.value_or(c.config_.dtype.value_or(float32));
  if (!is_floating(fdt) || fdt == float64) fdt = float32;
  // The compute dtype is decided here (not from the embedding's stored type, which may be a
  // block format or an F16 fallback): every floating tensor is cast to it on load.
  c.opts_.dtype = fdt;
  c.files_.push_back({path, f->file_size(), f->header().tensors.size()});
  // Q8_0 / Q4_0 / Q4_K matrices of the linear layers and the embedding run as affine quantized
  // modules (group size 32: 8 bits for Q8_0, 4 for the others), exactly the stored values;
  // Q6_K and the rest are dequantized. A tensor-parallel load dequantizes everything.
  const bool native = !opts.tensor_parallel && opts.gguf_native.value_or(env::gguf_native());
  QuantizationConfig qc;
  qc.defaults = {.group_size = 32, .bits = 4};
  std::set<std::string> affine;
  auto add = [&](const std::string& canon, const std::string& stored) {
    auto [it, inserted] = c.tensors_.emplace(canon, Checkpoint::Entry{stored, 0});
    if (!inserted)
      raise<FormatError>("[gguf] {}: tensors '{}' and '{}' both map to '{}'", path,
                         it->second.stored, stored, canon);
  };
  for (auto& t : f->header().tensors) {
    if (t.name == "rope_freqs.weight") continue;  // folded into the config
    std::string canon = gguf_canonical_name(t.name, arch);
    if (canon.empty()) canon = t.name;  // reported as unexpected by validate()
    add(canon, t.name);
    const int bits = gguf_affine_bits(t.type);
    if (!native || bits == 0 || t.dims.size() != 2 || !is_projection_weight(canon)) continue;
    const std::string module = canon.substr(0, canon.size() - std::string_view(".weight").size());
    add(module + ".scales", t.name + std::string(kScales));
    add(module + ".biases", t.name + std::string(kBiases));
    if (bits != qc.defaults.bits) qc.modules[module] = QuantizationSpec{32, bits};
    affine.insert(t.name);
  }
  if (!affine.empty()) c.config_.quantization = std::move(qc);
  c.source_ = std::make_shared<GgufSource>(f, c.config_, arch, fdt, std::move(affine));
  return c;
}

}  // namespace ingot::models
