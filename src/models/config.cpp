// config.json -> ModelConfig: typed key access with "[config] <file>: \"key\" ..." errors,
// per-family defaults (transformers' own), and normalisation of both rope/attention forms into
// one LayerSpec per layer.
#include "models/config.h"

#include <sys/stat.h>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/registry.h"
#include "util/error.h"

namespace ingot::models {

using json = nlohmann::json;

namespace {

constexpr int kMaxDepth = 64;
const char* const kFull = "full_attention";
const char* const kSliding = "sliding_attention";

std::string describe(const json& j) {
  if (j.is_string()) {
    std::string s = j.get<std::string>();
    if (s.size() > 40) s = s.substr(0, 40) + "...";
    return "a string (\"" + s + "\")";
  }
  if (j.is_boolean()) return "a boolean";
  if (j.is_null()) return "null";
  if (j.is_array()) return "an array";
  if (j.is_object()) return "an object";
  if (j.is_number_float()) return "the number " + j.dump();
  return "the integer " + j.dump();
}

/// A JSON object with its path ("" or "text_config.") for messages.
struct View {
  const json* obj;
  std::string path;
  const std::string* source;

  const json* find(const char* key) const {
    auto it = obj->find(key);
    return it == obj->end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const char* key, const json& v, const char* expected) const {
    raise<FormatError>("[config] {}: \"{}{}\" is {}, expected {}", *source, path, key, describe(v),
                       expected);
  }
  std::optional<int64_t> opt_int(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();  // unsigned beyond int64 fails below
    if (v->is_number_float()) {
      double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9e15)
        return static_cast<int64_t>(d);
    }
    fail(key, *v, "an integer");
  }
  std::optional<double> opt_num(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_number()) return v->get<double>();
    fail(key, *v, "a number");
  }
  std::optional<bool> opt_bool(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_boolean()) return v->get<bool>();
    fail(key, *v, "true or false");
  }
  std::optional<std::string> opt_str(const char* key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_string()) return v->get<std::string>();
    fail(key, *v, "a string");
  }
  /// A positive integer: required when `fallback` is nullopt.
  int64_t positive(const char* key, std::optional<int64_t> fallback) const {
    auto v = opt_int(key);
    if (!v) {
      if (fallback) return *fallback;
      raise<FormatError>("[config] {}: missing \"{}{}\"", *source, path, key);
    }
    if (*v <= 0)
      raise<FormatError>("[config] {}: \"{}{}\" is {}, expected a positive integer", *source, path,
                         key, *v);
    return *v;
  }
};

/// Per-family defaults, as transformers' config classes define them. Gemma3 checkpoints leave
/// out keys equal to the defaults, so they all have one; llama/qwen3 require the dimensions.
struct Defaults {
  std::optional<int64_t> vocab, hidden, inter, layers, heads, kv, head_dim, max_pos, window,
      pattern;
  double eps, theta, local_theta;
  std::optional<double> qpas;
  const char* act;
  bool tie;
  std::optional<int64_t> bos, eos, pad;
};

Defaults defaults_for(const std::string& arch) {
  if (arch == "gemma3")
    return {262208, 2304, 9216,   26,   8,
            4,      256,  131072, 4096, 6,
            1e-6,   1e6,  1e4,    256., "gelu_pytorch_tanh",
            true,   2,    1,      0};
  if (arch == "qwen3")
    return {{},   {},      {},      {}, {},     {},    {}, 32768, {}, {},
            1e-6, 10000.0, 10000.0, {}, "silu", false, {}, {},    {}};
  return {{},   {},      {},      {}, {},     {},    {}, 2048, {}, {},
          1e-6, 10000.0, 10000.0, {}, "silu", false, {}, {},   {}};
}

/// Known rope types; those ingot computes are "supported".
bool known_rope_type(const std::string& t) {
  return t == "default" || t == "linear" || t == "llama3" || t == "dynamic" || t == "yarn" ||
         t == "longrope";
}

/// Fills `r` from a rope parameter object (rope_scaling or one rope_parameters entry).
void read_rope_object(const View& v, RopeParams& r) {
  if (auto t = v.opt_str("rope_type"))
    r.type = *t;
  else if (auto t2 = v.opt_str("type"))
    r.type = *t2;
  if (!known_rope_type(r.type))
    raise<FormatError>(
        "[config] {}: \"{}rope_type\" '{}' is unknown (known: default, linear, "
        "llama3, dynamic, yarn, longrope)",
        *v.source, v.path, r.type);
  if (auto x = v.opt_num("rope_theta")) r.theta = *x;
  if (auto x = v.opt_num("factor")) r.factor = *x;
  if (auto x = v.opt_num("low_freq_factor")) r.low_freq_factor = *x;
  if (auto x = v.opt_num("high_freq_factor")) r.high_freq_factor = *x;
  if (auto x = v.opt_int("original_max_position_embeddings"))
    r.original_max_position_embeddings = *x;
  if (auto x = v.opt_num("partial_rotary_factor")) r.partial_rotary_factor = *x;
  r.attention_factor = v.opt_num("attention_factor");
  r.beta_fast = v.opt_num("beta_fast");
  r.beta_slow = v.opt_num("beta_slow");
  auto need = [&](const char* key) {
    if (!v.find(key))
      raise<FormatError>("[config] {}: rope_type '{}' needs \"{}{}\"", *v.source, r.type, v.path,
                         key);
  };
  if (r.type == "linear" || r.type == "llama3" || r.type == "dynamic" || r.type == "yarn")
    need("factor");
  if (r.type == "llama3") {
    need("low_freq_factor");
    need("high_freq_factor");
    need("original_max_position_embeddings");
    if (r.high_freq_factor == r.low_freq_factor)
      raise<FormatError>("[config] {}: llama3 rope needs high_freq_factor != low_freq_factor",
                         *v.source);
  }
  if (!(r.theta > 0))
    raise<FormatError>("[config] {}: \"{}rope_theta\" must be positive, got {}", *v.source, v.path,
                       r.theta);
  if ((r.type == "linear" || r.type == "llama3") && !(r.factor > 0))
    raise<FormatError>("[config] {}: \"{}factor\" must be positive, got {}", *v.source, v.path,
                       r.factor);
}

View sub(const View& v, const char* key, const json& obj) {
  return View{&obj, v.path + key + ".", v.source};
}

/// rope by layer type from either form.
std::map<std::string, RopeParams> parse_rope(const View& c, const std::string& arch,
                                             const Defaults& d) {
  const bool gemma = arch == "gemma3";
  std::map<std::string, double> theta{{kFull, d.theta},
                                      {kSliding, gemma ? d.local_theta : d.theta}};
  if (const json* t = c.find("rope_theta")) {
    if (t->is_object()) {  // legacy per-layer-type thetas
      View tv = sub(c, "rope_theta", *t);
      for (const char* k : {kFull, kSliding})
        if (auto x = tv.opt_num(k)) theta[k] = *x;
    } else {
      theta[kFull] = *c.opt_num("rope_theta");
      if (!gemma) theta[kSliding] = theta[kFull];
    }
  }
  if (gemma)
    if (auto x = c.opt_num("rope_local_base_freq")) theta[kSliding] = *x;
  std::map<std::string, RopeParams> rope;
  for (const char* k : {kFull, kSliding}) rope[k].theta = theta[k];
  if (auto prf = c.opt_num("partial_rotary_factor"))
    for (auto& [k, r] : rope) r.partial_rotary_factor = *prf;

  if (const json* rp = c.find("rope_parameters")) {  // transformers 5.x
    if (!rp->is_object()) c.fail("rope_parameters", *rp, "an object");
    bool per_type = !rp->empty();
    for (auto it = rp->begin(); it != rp->end(); ++it)
      per_type &= (it.key() == kFull || it.key() == kSliding) && it->is_object();
    if (per_type) {
      for (auto it = rp->begin(); it != rp->end(); ++it)
        read_rope_object(View{&*it, c.path + "rope_parameters." + it.key() + ".", c.source},
                         rope[it.key()]);
    } else {
      read_rope_object(sub(c, "rope_parameters", *rp), rope[kFull]);
      if (!gemma) rope[kSliding] = rope[kFull];
    }
  } else if (const json* rs = c.find("rope_scaling")) {  // classic: scales global layers
    if (!rs->is_object()) c.fail("rope_scaling", *rs, "an object or null");
    RopeParams r = rope[kFull];
    read_rope_object(sub(c, "rope_scaling", *rs), r);
    r.theta = rope[kFull].theta;  // rope_theta lives outside rope_scaling in this form
    if (auto t = sub(c, "rope_scaling", *rs).opt_num("rope_theta")) r.theta = *t;
    rope[kFull] = r;
    if (!gemma) rope[kSliding] = r;
  }
  return rope;
}

std::vector<std::string> parse_layer_types(const View& c, const std::string& arch, int64_t n,
                                           std::optional<int64_t> window, const Defaults& d) {
  std::vector<std::string> types;
  if (const json* lt = c.find("layer_types")) {
    if (!lt->is_array()) c.fail("layer_types", *lt, "an array of strings");
    if (static_cast<int64_t>(lt->size()) != n)
      raise<FormatError>(
          "[config] {}: \"{}layer_types\" has {} entries but num_hidden_layers is {}", *c.source,
          c.path, lt->size(), n);
    for (size_t i = 0; i < lt->size(); ++i) {
      const json& e = (*lt)[i];
      if (!e.is_string() || (e.get<std::string>() != kFull && e.get<std::string>() != kSliding))
        raise<FormatError>(
            "[config] {}: \"{}layer_types\"[{}] is {}, expected \"full_attention\" or "
            "\"sliding_attention\"",
            *c.source, c.path, i, describe(e));
      types.push_back(e.get<std::string>());
    }
    return types;
  }
  if (arch == "gemma3") {
    int64_t p = c.positive("sliding_window_pattern", d.pattern);
    for (int64_t i = 0; i < n; ++i) types.push_back((i + 1) % p ? kSliding : kFull);
    return types;
  }
  // qwen3: sliding layers only with use_sliding_window, from max_window_layers on.
  bool use_sw = arch == "qwen3" && c.opt_bool("use_sliding_window").value_or(false) && window;
  int64_t first = use_sw ? c.opt_int("max_window_layers").value_or(28) : n;
  for (int64_t i = 0; i < n; ++i) types.push_back(i >= first ? kSliding : kFull);
  return types;
}

void parse_ids(const View& c, const View& outer, ModelConfig& m, const Defaults& d) {
  auto pick = [&](const char* key) -> std::pair<const View*, const json*> {
    if (const json* v = c.find(key)) return {&c, v};
    if (c.obj != outer.obj)
      if (const json* v = outer.find(key)) return {&outer, v};
    return {nullptr, nullptr};
  };
  auto [bv, bj] = pick("bos_token_id");
  m.bos_token_id = bv ? bv->opt_int("bos_token_id") : d.bos;
  auto [pv, pj] = pick("pad_token_id");
  m.pad_token_id = pv ? pv->opt_int("pad_token_id") : d.pad;
  auto [ev, ej] = pick("eos_token_id");
  if (!ej) {
    if (d.eos) m.eos_token_ids = {*d.eos};
  } else if (ej->is_array()) {
    for (const json& e : *ej) {
      if (!e.is_number_integer()) ev->fail("eos_token_id", *ej, "an integer or a list of integers");
      m.eos_token_ids.push_back(e.get<int64_t>());
    }
  } else {
    m.eos_token_ids = {*ev->opt_int("eos_token_id")};
  }
  (void)bj;
  (void)pj;
}

void parse_dtype(const View& c, const View& outer, ModelConfig& m) {
  for (const View* v : {&c, &outer})
    for (const char* key : {"dtype", "torch_dtype"})
      if (auto s = v->opt_str(key)) {
        try {
          m.dtype = dtype_from_name(*s);
        } catch (const InvalidArgument&) {
          raise<FormatError>("[config] {}: \"{}{}\" '{}' is not a dtype ingot knows", *c.source,
                             v->path, key, *s);
        }
        return;
      }
}

void build_layers(const View& c, ModelConfig& m) {
  for (const auto& t : m.layer_types) {
    LayerSpec l;
    l.kind = t == kSliding ? AttentionKind::sliding : AttentionKind::global;
    if (l.kind == AttentionKind::sliding) {
      if (!m.sliding_window)
        raise<FormatError>("[config] {}: sliding_attention layers need \"{}sliding_window\"",
                           m.source, c.path);
      l.window = *m.sliding_window;
    }
    auto it = m.rope.find(t);
    l.rope = it != m.rope.end() ? it->second : m.rope.at(kFull);
    m.layers.push_back(l);
  }
}

/// group_size / bits of a quantization object (`path` names it in messages), checked against
/// what ingot's kernels support.
QuantizationSpec parse_quant_spec(const View& q, QuantizationSpec fallback) {
  QuantizationSpec spec = fallback;
  if (auto g = q.opt_int("group_size"))
    spec.group_size = static_cast<int>(std::clamp<int64_t>(*g, -1, 1 << 20));
  if (auto b = q.opt_int("bits")) spec.bits = static_cast<int>(std::clamp<int64_t>(*b, -1, 64));
  if (spec.bits != 4 && spec.bits != 8)
    raise<Unsupported>("[config] {}: \"{}bits\" is {}; ingot runs 4- and 8-bit quantization",
                       *q.source, q.path, spec.bits);
  if (spec.group_size != 32 && spec.group_size != 64 && spec.group_size != 128)
    raise<Unsupported>("[config] {}: \"{}group_size\" is {}; ingot runs group sizes 32, 64 and 128",
                       *q.source, q.path, spec.group_size);
  return spec;
}

/// "quantization" / "quantization_config" (mlx-community affine quantization).
void parse_quantization(const View& outer, ModelConfig& m) {
  for (const char* key : {"quantization", "quantization_config"}) {
    const json* q = outer.find(key);
    if (!q) continue;
    if (!q->is_object()) outer.fail(key, *q, "an object");
    View v{q, std::string(key) + ".", outer.source};
    if (auto method = v.opt_str("quant_method"))
      raise<Unsupported>(
          "[config] {}: \"{}.quant_method\" is '{}'; ingot reads mlx-style affine quantization "
          "only (\"group_size\", \"bits\", weight/scales/biases tensors)",
          m.source, key, *method);
    if (auto mode = v.opt_str("mode"); mode && *mode != "affine")
      raise<Unsupported>("[config] {}: \"{}.mode\" is '{}'; ingot runs affine quantization only",
                         m.source, key, *mode);
    QuantizationConfig qc;
    qc.defaults = parse_quant_spec(v, QuantizationSpec{});
    for (auto it = q->begin(); it != q->end(); ++it) {
      if (it.value().is_object()) {
        View mv{&it.value(), v.path + it.key() + ".", outer.source};
        qc.modules[it.key()] = parse_quant_spec(mv, qc.defaults);
      } else if (it.value().is_boolean()) {
        if (it.value().get<bool>())
          qc.modules[it.key()] = qc.defaults;
        else
          qc.modules[it.key()] = std::nullopt;
      }
    }
    m.quantization = std::move(qc);
    return;
  }
}

json parse_json(const std::string& text, const std::string& source) {
  auto cb = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth)
      raise<FormatError>("[config] {}: JSON nests deeper than {} levels", source, kMaxDepth);
    return true;
  };
  try {
    return json::parse(text, cb, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    raise<FormatError>("[config] {}: not valid JSON: {}", source, e.what());
  }
}

}  // namespace

std::optional<QuantizationSpec> QuantizationConfig::for_module(const std::string& path,
                                                               bool has_scales) const {
  auto it = modules.find(path);
  if (it != modules.end()) return it->second;
  if (has_scales) return defaults;
  return std::nullopt;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  json root = parse_json(json_text, source);
  if (!root.is_object())
    raise<FormatError>("[config] {}: expected a JSON object, got {}", source, describe(root));
  ModelConfig m;
  m.source = source;
  View outer{&root, "", &m.source};
  auto mt = outer.opt_str("model_type");
  if (!mt) raise<FormatError>("[config] {}: missing \"model_type\"", source);
  m.outer_model_type = *mt;
  if (const json* a = outer.find("architectures")) {
    if (!a->is_array()) outer.fail("architectures", *a, "an array of strings");
    for (const json& e : *a)
      if (e.is_string()) m.architectures.push_back(e.get<std::string>());
  }
  View c = outer;
  m.model_type = *mt;
  if (const json* tc = outer.find("text_config")) {  // multimodal: the text model is nested
    if (!tc->is_object()) outer.fail("text_config", *tc, "an object");
    c = sub(outer, "text_config", *tc);
    m.weight_prefix = "language_model.";
    m.model_type = c.opt_str("model_type").value_or(*mt == "gemma3" ? "gemma3_text" : *mt);
  }
  const std::string arch = resolve_architecture(m.model_type, source);
  const Defaults d = defaults_for(arch);
  m.vocab_size = c.positive("vocab_size", d.vocab);
  m.hidden_size = c.positive("hidden_size", d.hidden);
  m.intermediate_size = c.positive("intermediate_size", d.inter);
  m.num_hidden_layers = c.positive("num_hidden_layers", d.layers);
  if (m.num_hidden_layers > 100000)  // per-layer tables are built from it
    raise<FormatError>("[config] {}: \"{}num_hidden_layers\" ({}) is implausibly large", source,
                       c.path, m.num_hidden_layers);
  m.num_attention_heads = c.positive("num_attention_heads", d.heads);
  m.num_key_value_heads = c.positive("num_key_value_heads", d.kv.value_or(m.num_attention_heads));
  if (m.num_attention_heads % m.num_key_value_heads != 0)
    raise<FormatError>(
        "[config] {}: \"{}num_attention_heads\" ({}) is not a multiple of num_key_value_heads ({})",
        source, c.path, m.num_attention_heads, m.num_key_value_heads);
  std::optional<int64_t> hd = d.head_dim;
  if (!hd && m.hidden_size >= m.num_attention_heads) hd = m.hidden_size / m.num_attention_heads;
  m.head_dim = c.positive("head_dim", hd);
  m.max_position_embeddings = c.positive("max_position_embeddings", d.max_pos);
  m.rms_norm_eps = c.opt_num("rms_norm_eps").value_or(d.eps);
  if (!(m.rms_norm_eps >= 0))
    raise<FormatError>("[config] {}: \"{}rms_norm_eps\" must be >= 0", source, c.path);
  m.initializer_range = c.opt_num("initializer_range").value_or(0.02);
  if (!(m.initializer_range >= 0))
    raise<FormatError>("[config] {}: \"{}initializer_range\" must be >= 0", source, c.path);
  m.tie_word_embeddings = c.opt_bool("tie_word_embeddings")
                              .value_or(outer.opt_bool("tie_word_embeddings").value_or(d.tie));
  m.hidden_act =
      arch == "gemma3"
          ? c.opt_str("hidden_activation").value_or(c.opt_str("hidden_act").value_or(d.act))
          : c.opt_str("hidden_act").value_or(d.act);
  m.attention_bias = c.opt_bool("attention_bias").value_or(false);
  m.mlp_bias = c.opt_bool("mlp_bias").value_or(false);
  parse_ids(c, outer, m, d);
  parse_dtype(c, outer, m);
  parse_quantization(outer, m);
  if (arch == "gemma3") {
    m.query_pre_attn_scalar = c.opt_num("query_pre_attn_scalar").value_or(*d.qpas);
    m.final_logit_softcapping = c.opt_num("final_logit_softcapping");
    m.attn_logit_softcapping = c.opt_num("attn_logit_softcapping");
    m.sliding_window = c.find("sliding_window") ? c.opt_int("sliding_window") : d.window;
  } else {
    m.sliding_window = c.opt_int("sliding_window");
  }
  if (m.sliding_window && *m.sliding_window <= 0)
    raise<FormatError>("[config] {}: \"{}sliding_window\" must be positive, got {}", source, c.path,
                       *m.sliding_window);
  m.rope = parse_rope(c, arch, d);
  m.layer_types = parse_layer_types(c, arch, m.num_hidden_layers, m.sliding_window, d);
  build_layers(c, m);
  return m;
}

ModelConfig load_model_config(const std::string& path) {
  std::string p = path;
  struct stat st {};
  if (::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) p += "/config.json";
  std::ifstream f(p, std::ios::binary);
  if (!f) raise<IoError>("[config] {}: cannot open (missing config.json?)", p);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) raise<IoError>("[config] {}: read error", p);
  return parse_model_config(ss.str(), p);
}

bool RopeParams::supported() const {
  return type == "default" || type == "linear" || type == "llama3";
}

void RopeParams::check_supported(const std::string& source) const {
  if (!supported())
    raise<Unsupported>(
        "[config] {}: rope_type '{}' is parsed but not supported (supported: default, linear, "
        "llama3)",
        source, type);
}

std::string ModelConfig::attention_summary() const {
  int64_t g = 0, s = 0;
  std::string pattern;
  for (const auto& l : layers) {
    (l.kind == AttentionKind::global ? g : s)++;
    if (layers.size() <= 64) pattern += l.kind == AttentionKind::global ? "G" : "S";
  }
  std::string r;
  if (s) r = fmt::format("{} sliding (window {})", s, sliding_window.value_or(0));
  if (g) r += fmt::format("{}{} global", s ? " + " : "", g);
  if (s && !pattern.empty()) r += ", pattern " + pattern;
  return r;
}

}  // namespace ingot::models
