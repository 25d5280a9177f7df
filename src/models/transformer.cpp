// Shared decoder pieces (see transformer.h).
#include "models/transformer.h"

#include <cmath>
#include <limits>

#include "core/dist/ops.h"
#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "models/tensor_parallel.h"
#include "models/trace.h"
#include "nn/quantized.h"
#include "util/error.h"

namespace ingot::models {

Array rope_inv_freqs(const RopeParams& p, int dims) {
  // float32 throughout, in transformers' order of operations (rope_utils.py).
  const int half = dims / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i)
    inv[i] = 1.0f / std::pow(static_cast<float>(p.theta),
                             static_cast<float>(2 * i) / static_cast<float>(dims));
  const float factor = static_cast<float>(p.factor);
  if (p.type == "linear") {
    for (float& f : inv) f /= factor;
  } else if (p.type == "llama3") {
    const double old = static_cast<double>(p.original_max_position_embeddings);
    const float low = static_cast<float>(p.low_freq_factor);
    const float high = static_cast<float>(p.high_freq_factor);
    const float low_wavelen = static_cast<float>(old / p.low_freq_factor);
    const float high_wavelen = static_cast<float>(old / p.high_freq_factor);
    for (float& f : inv) {
      const float wavelen = static_cast<float>(2.0 * M_PI) / f;
      float g = wavelen > low_wavelen ? f / factor : f;
      const float smooth = (static_cast<float>(old) / wavelen - low) / (high - low);
      const float smoothed = (1.0f - smooth) * g / factor + smooth * g;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) g = smoothed;
      f = g;
    }
  } else {
    p.check_supported("rope");
  }
  return Array(inv, {static_cast<int64_t>(half)}, float32);
}

nn::AttentionConfig attention_config(const ModelConfig& c, int layer, Dtype dtype, Device device) {
  const LayerSpec& spec = c.layers.at(static_cast<size_t>(layer));
  spec.rope.check_supported(c.source);
  nn::AttentionConfig a;
  a.dims = c.hidden_size;
  a.n_heads = static_cast<int>(c.num_attention_heads);
  a.n_kv_heads = static_cast<int>(c.num_key_value_heads);
  a.head_dim = static_cast<int>(c.head_dim);
  a.qkv_bias = c.attention_bias;
  a.o_bias = c.attention_bias;
  a.rope_dims = static_cast<int>(std::lround(c.head_dim * spec.rope.partial_rotary_factor));
  a.rope_base = static_cast<float>(spec.rope.theta);
  Array freqs = to_device(rope_inv_freqs(spec.rope, a.rope_dims), device);
  if (device.type != Device::Type::cpu) eval({freqs});
  a.rope_freqs = freqs;
  a.window = spec.kind == AttentionKind::sliding ? static_cast<int>(spec.window) : 0;
  a.dtype = dtype;
  return a;
}

namespace {

template <typename M>
const M& child(const nn::Module& m, const std::string& name) {
  for (const auto& [n, c] : m.children())
    if (n == name) return dynamic_cast<const M&>(*c);
  raise("[attention] no child module '{}'", name);
}

bool has_child(const nn::Module& m, const std::string& name) {
  for (const auto& [n, c] : m.children())
    if (n == name) return true;
  return false;
}

/// x * scale computed in float32 and rounded once to x's dtype: how torch applies a Python
/// float to a bf16/f16 tensor (the scalar is not rounded to the tensor's dtype first).
Array scale_rounded(const Array& x, float scale) {
  if (x.dtype() == float32) return x * Array(scale);
  return astype(astype(x, float32) * Array(scale), x.dtype());
}

/// cap * tanh(x / cap) with each of the three steps rounded to x's dtype, as transformers'
/// three tensor statements do.
Array softcap_rounded(const Array& x, float cap) {
  auto rounded = [&](const Array& y) { return astype(y, x.dtype()); };
  Array f = astype(x, float32);
  Array t = rounded(tanh(rounded(f / Array(cap))));
  return rounded(astype(t, float32) * Array(cap));
}

/// transformers' eager_attention_forward on nn::Attention's weights: scores and probabilities
/// rounded to the compute dtype where transformers rounds them.
Array eager_attention(const nn::Attention& attn, const Array& x, const nn::AttentionInputs& in) {
  if (in.starts) raise("[attention] packed batches need the fast attention, not eager");
  const nn::AttentionConfig& c = attn.config();
  const int64_t b = x.shape(0), l = x.shape(1), hd = c.head_dim;
  const int64_t g = c.n_heads / c.n_kv_heads;
  const Device dev = x.device();  // ops on a mask given as host values alone must run here
  // [B, L, h*D] -> (norm over D) -> [B, h, L, D]
  auto heads = [&](const char* proj, const char* norm, int h) {
    Array t = reshape(child<nn::Linear>(attn, proj)(x), {b, l, h, hd});
    if (norm && has_child(attn, norm)) t = child<nn::RMSNorm>(attn, norm)(t);
    return transpose(t, {0, 2, 1, 3});
  };
  Array q = heads("q_proj", "q_norm", c.n_heads);
  Array k = heads("k_proj", "k_norm", c.n_kv_heads);
  Array v = heads("v_proj", nullptr, c.n_kv_heads);
  fast::RopeOptions ro{.traditional = c.rope_traditional,
                       .base = c.rope_base,
                       .scale = c.rope_scale,
                       .offset = in.cache ? in.cache->offset() : in.offset,
                       .offsets = in.offsets,
                       .freqs = c.rope_freqs};
  q = fast::rope(q, c.rope_dims, ro);
  k = fast::rope(k, c.rope_dims, ro);
  std::optional<Array> mask = in.mask;
  if (in.cache) {
    std::tie(k, v) = in.cache->update_and_fetch(k, v);
    if (!mask) mask = in.cache->mask(l);
  }
  const int64_t s = k.shape(2);
  if (!mask) {  // causal (and window): query i is at position s - l + i
    Array qp = reshape(arange(static_cast<double>(s - l), static_cast<double>(s), 1.0, int32, dev),
                       {l, 1});
    Array kp = reshape(arange(s, int32, dev), {1, s});
    Array keep = kp <= qp;
    if (c.window > 0) keep = logical_and(keep, (qp - kp) < Array(c.window));
    mask = keep;
  }
  // Query heads sharing a KV head: [B, Hkv, G*L, D] against [B, Hkv, S, D].
  Array qg = reshape(q, {b, c.n_kv_heads, g * l, hd});
  Array scores = scale_rounded(matmul(qg, transpose(k, {0, 1, 3, 2})), c.scale);
  scores = reshape(scores, {b, c.n_kv_heads, g, l, s});  // [B, Hkv, G, L, S]
  if (c.softcap > 0.0f) scores = softcap_rounded(scores, c.softcap);
  Array m = *mask;
  if (m.ndim() == 4) m = expand_dims(m, 2, dev);  // [B, H, L, S] -> [B, H, 1, L, S] (H = 1)
  // The dtype's lowest finite value, as transformers masks: fully masked rows (left padding)
  // give a uniform softmax instead of NaNs that p v would spread.
  const float lowest = scores.dtype() == float16    ? -65504.0f
                       : scores.dtype() == bfloat16 ? -3.3895314e38f
                                                    : std::numeric_limits<float>::lowest();
  Array neg(lowest, scores.dtype());
  scores = m.dtype() == bool_ ? where(m, scores, neg) : scores + astype(m, scores.dtype(), dev);
  Array p = astype(softmax(astype(scores, float32), -1), x.dtype());
  Array o = matmul(reshape(p, {b, c.n_kv_heads, g * l, s}), v);  // [B, Hkv, G*L, D]
  o = reshape(transpose(reshape(o, {b, c.n_heads, l, hd}), {0, 2, 1, 3}), {b, l, c.n_heads * hd});
  return child<nn::Linear>(attn, "o_proj")(o);
}

}  // namespace

Array attend(const nn::Attention& attn, const Array& x, const nn::AttentionInputs& in,
             AttentionImpl impl) {
  return impl == AttentionImpl::eager ? eager_attention(attn, x, in) : attn(x, in);
}

PreNormBlock::PreNormBlock(int layer, const nn::AttentionConfig& attn, int64_t ffn,
                           nn::Activation act, bool mlp_bias, nn::RMSNormOptions norm)
    : Block(layer) {
  input_norm_ = register_module("input_layernorm",
                                std::make_shared<nn::RMSNorm>(attn.dims, norm, attn.dtype));
  attn_ = register_module("self_attn", std::make_shared<nn::Attention>(attn));
  post_attn_norm_ = register_module("post_attention_layernorm",
                                    std::make_shared<nn::RMSNorm>(attn.dims, norm, attn.dtype));
  mlp_ = register_module("mlp",
                         std::make_shared<nn::GatedMLP>(attn.dims, ffn, act, mlp_bias, attn.dtype));
}

Array PreNormBlock::operator()(const Array& x, const nn::AttentionInputs& in) const {
  if (attention_impl() == AttentionImpl::fast && !trace_enabled()) {
    // The norms fused into the q/k/v and gate/up products, the residual adds into the output
    // and down projections (same results). With in.queries, the rows after attention are the
    // last ones only (of each sequence of a packed batch).
    // A decode step on the GPU: the whole block as one primitive where it qualifies.
    if (auto y = attn_->decode_block(x, *input_norm_, in, *mlp_, *post_attn_norm_)) return *y;
    const Array xr = nn::query_rows(x, in);
    const Array h = attn_->normed(x, *input_norm_, in, &xr);
    return mlp_->normed(h, *post_attn_norm_, &h);
  }
  Array a = trace(attend(*attn_, (*input_norm_)(x), in, attention_impl()), "attn_out",
                  layer());  // [B, L, E]
  Array h = x + a;
  Array m = trace((*mlp_)((*post_attn_norm_)(h)), "mlp_out", layer());
  return h + m;
}

/// "model": embed_tokens, layers, norm.
class DecoderLM::Backbone : public nn::Module {
 public:
  Backbone(const ModelConfig& c, const DecoderOptions& opt, const BlockFactory& make_block) {
    embed = register_module(
        "embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size, opt.dtype));
    layers = register_module("layers", std::make_shared<nn::ModuleList<Block>>());
    for (int i = 0; i < static_cast<int>(c.num_hidden_layers); ++i)
      layers->push_back(make_block(i));
    norm =
        register_module("norm", std::make_shared<nn::RMSNorm>(c.hidden_size, opt.norm, opt.dtype));
  }
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::ModuleList<Block>> layers;
  std::shared_ptr<nn::RMSNorm> norm;
};

DecoderLM::DecoderLM(ModelConfig config, std::string architecture, DecoderOptions opt,
                     const BlockFactory& make_block)
    : Model(std::move(config), std::move(architecture), opt.dtype), opt_(opt) {
  model_ = register_module("model", std::make_shared<Backbone>(this->config(), opt_, make_block));
  if (!opt_.tie_word_embeddings) {
    // Vocabulary-parallel under tensor parallelism: this rank's rows of the head.
    const ModelConfig& c = this->config();
    const int64_t rows = vocab_parallel(c) ? c.vocab_size / c.tp->size() : c.vocab_size;
    head_ = register_module("lm_head",
                            std::make_shared<nn::Linear>(c.hidden_size, rows, false, opt_.dtype));
  }
}

namespace {

/// mask AND (query position - key position < window), for an explicit mask [.., L, S] whose
/// queries are the last L of S positions; the band is made on `dev` (the model's device).
Array with_window(const Array& mask, int64_t l, int window, Device dev) {
  const int64_t s = mask.shape(-1);
  Array q =
      reshape(arange(static_cast<double>(s - l), static_cast<double>(s), 1.0, int32, dev), {l, 1});
  Array k = reshape(arange(s, int32, dev), {1, s});
  Array band = (q - k) < Array(window);  // [L, S]
  if (mask.dtype() == bool_) return logical_and(mask, band);
  return where(band, mask, Array(-std::numeric_limits<float>::infinity(), mask.dtype()));
}

}  // namespace

Array DecoderLM::hidden(const Array& ids, const ForwardOptions& opt) const {
  if (ids.ndim() != 2 || !is_integral(ids.dtype()) || ids.dtype() == bool_)
    raise("[model] ids must be integers of shape [B, L], got {} ({})", shape_str(ids.shape()),
          dtype_name(ids.dtype()));
  const int n = num_layers();
  if (!opt.caches.empty() && static_cast<int>(opt.caches.size()) != n)
    raise("[model] expected {} caches (one per layer), got {}", n, opt.caches.size());
  // Inputs computed on another device come to the model's (no-ops when they are there or are
  // host values, which every op places itself).
  const Device dev = device();
  auto here = [&](const Array& a) { return a.is_host_constant() ? a : to_device(a, dev); };
  const bool packed = !opt.starts.empty();
  if (packed) check_packed(ids, opt);
  std::optional<Array> offsets, mask;
  if (opt.offsets) offsets = here(*opt.offsets);
  if (opt.mask) mask = here(*opt.mask);
  Array x = (*model_->embed)(here(ids));  // [B, L, E]
  if (opt_.embed_scale) x = x * Array(*opt_.embed_scale, dtype());
  trace(x, "embed");
  // A block's output in pieces for the next block (Block::forward), two slots in turn.
  Block::NormAdd pieces[2];
  const Block::NormAdd* prev = nullptr;
  for (int i = 0; i < n; ++i) {
    const Block& block = (*model_->layers)[static_cast<size_t>(i)];
    nn::AttentionInputs in{.offset = opt.offset, .offsets = offsets, .mask = mask};
    if (!opt.caches.empty()) in.cache = opt.caches[static_cast<size_t>(i)];
    if (packed) {
      // Sliding-window layers: the window is the attention's own (packed_attention's option).
      in.starts = &opt.starts;
      if (!opt.prefix.empty()) {
        in.prefix_keys = here(opt.prefix[static_cast<size_t>(i)].first);
        in.prefix_values = here(opt.prefix[static_cast<size_t>(i)].second);
      }
    }
    const LayerSpec& spec = config().layers[static_cast<size_t>(i)];
    if (mask && spec.kind == AttentionKind::sliding)
      in.mask = with_window(*mask, ids.shape(1), static_cast<int>(spec.window), dev);
    if (i == n - 1) in.queries = opt.queries;
    Block::NormAdd* next = &pieces[i % 2];
    *next = {};
    x = trace(block.forward(x, prev, in, next), "layer_out", i);
    prev = next->norm ? next : nullptr;
  }
  // A block that computed every row (eager or traced attention) is cut to the wanted ones
  // (packed batches run neither: their blocks output the wanted rows).
  if (!packed) x = nn::last_rows(x, opt.queries);
  return trace((*model_->norm)(x), "final_norm");
}

void DecoderLM::check_packed(const Array& ids, const ForwardOptions& opt) const {
  const std::vector<int64_t>& st = opt.starts;
  if (ids.shape(0) != 1)
    raise("[model] a packed batch (starts) is one row of ids [1, T], got {}",
          shape_str(ids.shape()));
  if (!opt.caches.empty() || opt.mask || opt.offsets || opt.offset != 0)
    raise("[model] a packed batch (starts) takes no caches, mask, offsets or offset");
  if (opt.queries != 0 && opt.queries != 1)
    raise(
        "[model] a packed batch wants every token (queries 0) or each sequence's last (1), "
        "got queries {}",
        opt.queries);
  if (st.size() < 2 || st.front() != 0 || st.back() != ids.shape(1))
    raise("[model] packed batch starts must go from 0 to the {} ids, got {} entries from {} to {}",
          ids.shape(1), st.size(), st.front(), st.back());
  for (size_t s = 1; s < st.size(); ++s)
    if (st[s] <= st[s - 1])
      raise("[model] packed batch sequence {} is empty or reversed (starts {} then {})", s - 1,
            st[s - 1], st[s]);
  if (!opt.prefix.empty() && static_cast<int>(opt.prefix.size()) != num_layers())
    raise("[model] expected a packed batch prefix per layer ({}), got {}", num_layers(),
          opt.prefix.size());
  if (!supports_packed())
    raise(
        "[model] this model cannot run packed batches now (eager attention, a trace hook, "
        "unstacked or adapted q/k/v projections, partial rotary or tensor parallelism): see "
        "Model::supports_packed");
}

bool DecoderLM::supports_packed() const {
  if (trace_enabled() || (config().tp && config().tp->size() > 1)) return false;
  for (size_t i = 0; i < model_->layers->size(); ++i) {
    const Block& b = (*model_->layers)[i];
    const nn::Attention* a = b.attention();
    if (b.attention_impl() != AttentionImpl::fast || !a || !a->packs()) return false;
  }
  return true;
}

void DecoderLM::set_attention_impl(AttentionImpl impl) {
  for (size_t i = 0; i < model_->layers->size(); ++i) (*model_->layers)[i].set_attention_impl(impl);
}

Array DecoderLM::lm_head_weight() const {
  if (head_ && vocab_parallel(config()))
    return dist::all_gather(nn::dense_weight(*head_), 0, config().tp);
  return head_ ? nn::dense_weight(*head_) : nn::dense_weight(*model_->embed);
}

Array DecoderLM::lm_head(const Array& h) const {
  // The head runs in the compute dtype and its output is rounded there, as in transformers.
  Array logits = head_ ? (*head_)(h) : model_->embed->as_linear(h);
  if (head_ && vocab_parallel(config()))  // [..., V / tp] on each rank -> [..., V]
    logits = dist::all_gather(logits, -1, config().tp);
  if (opt_.final_softcap) {
    logits = softcap_rounded(logits, *opt_.final_softcap);
  }
  return trace(astype(logits, float32), "logits");
}

Array DecoderLM::lm_head_rows(const Array& h, const Array& ids) const {
  // A vocabulary-parallel head holds a slice of the rows: the full logits, then the wanted.
  if (head_ && vocab_parallel(config())) return take(lm_head(h), ids, -1);
  Array w = head_ ? nn::weight_rows(*head_, ids) : nn::weight_rows(*model_->embed, ids);  // [K, E]
  Array logits = matmul(h, transpose(w));
  if (opt_.final_softcap) logits = softcap_rounded(logits, *opt_.final_softcap);
  return astype(logits, float32);
}

Array Model::forward(const Array& ids, const ForwardOptions& opt) const {
  return lm_head(hidden(ids, opt));
}

Dtype checkpoint_dtype(const Checkpoint& ckpt) {
  if (ckpt.options().dtype) return *ckpt.options().dtype;
  const char* embed = "model.embed_tokens.weight";
  const char* scales = "model.embed_tokens.scales";  // a quantized table: the scales' dtype
  if (ckpt.config().quantization && ckpt.contains(scales)) {
    ckpt.check_floating(scales);
    return ckpt.info(scales).dtype();
  }
  if (ckpt.contains(embed)) {
    ckpt.check_floating(embed);  // before a model is built in an integer dtype
    return ckpt.info(embed).dtype();
  }
  return ckpt.config().dtype.value_or(float32);
}

void load_weights(Model& model, const Checkpoint& ckpt, const std::vector<std::string>& optional) {
  set_row_parallel(model, model.config());  // o_proj / down_proj sum over the ranks
  if (ckpt.config_only()) {                 // nothing to load: init_model fills the parameters
    model.device_ = ckpt.device();
    return;
  }
  if (const auto& qc = ckpt.config().quantization) {
    // mlx-community checkpoints: a Linear / Embedding is quantized when the config names it
    // or its scales are stored; its weight, scales and biases then replace the float weight.
    nn::quantize_modules(model, [&](const std::string& path, const nn::Module&) {
      std::optional<QuantizeOptions> r;
      if (auto spec = qc->for_module(path, ckpt.contains(path + ".scales")))
        r = QuantizeOptions{.group_size = spec->group_size, .bits = spec->bits};
      return r;
    });
  }
  const ParamMap params = model.parameters();
  std::vector<ExpectedTensor> expected;
  for (const auto& [name, p] : params) expected.push_back({name, p.shape(), false});
  for (const auto& name : optional)
    if (!params.count(name) && ckpt.contains(name))
      expected.push_back({name, ckpt.info(name).shape, true});
  ckpt.validate(expected);
  model.device_ = ckpt.device();
  ParamMap values;
  std::vector<Array> loaded;
  for (const auto& [name, p] : params) {
    Array w = ckpt.load(name);
    if (is_floating(w.dtype()) && w.dtype() != model.dtype()) w = astype(w, model.dtype());
    values.emplace(name, w);
    loaded.push_back(w);
  }
  model.update(values);
  eval(loaded);  // materialise casts once, not at every forward pass
  if (model.device_.type == Device::Type::cuda) fuse_projections(model);
}

namespace {
void fuse_in(nn::Module& m) {
  if (auto* a = dynamic_cast<nn::Attention*>(&m)) a->fuse_projections();
  if (auto* g = dynamic_cast<nn::GatedMLP*>(&m)) g->fuse_projections();
  for (const auto& [name, child] : m.children()) fuse_in(*child);
}
}  // namespace

void fuse_projections(Model& model) {
  fuse_in(model);
}

nn::Activation config_activation(const ModelConfig& c) {
  try {
    return nn::activation_from_name(c.hidden_act);
  } catch (const InvalidArgument& e) {
    raise<FormatError>("[config] {}: unsupported hidden activation '{}'", c.source, c.hidden_act);
  }
}

}  // namespace ingot::models
