// KV caches (see kv_cache.h). Buffers are updated with slice_update, which reuses the buffer in
// place when the cache holds the only reference (donation), so a decode step copies only the
// new column.
#include "llm/kv_cache.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

int64_t round_up(int64_t n, int64_t step) {
  return (n + step - 1) / step * step;
}

Array i32(const std::vector<int64_t>& v, Shape shape) {
  std::vector<int32_t> w(v.begin(), v.end());
  return Array(w, std::move(shape), int32);
}

}  // namespace

LayerCache::LayerCache(LayerCacheOptions opt) : opt_(opt) {
  if (opt_.step <= 0) raise("[kv_cache] step must be positive, got {}", opt_.step);
  if (opt_.max_size < 0 || (opt_.max_size > 0 && opt_.max_size < opt_.window))
    raise("[kv_cache] max_size {} must be 0 (unbounded) or at least the window {}", opt_.max_size,
          opt_.window);
}

Device LayerCache::device() const {
  if (keys_.valid()) return keys_.device();
  return opt_.device.value_or(default_device());
}

void LayerCache::grow_to(int64_t slots, const Array& like) {
  grow_to(slots, like.shape(), like.dtype(), like.device());
}

void LayerCache::grow_to(int64_t slots, const Shape& kv_shape, Dtype dtype, Device device) {
  const int64_t b = kv_shape[0], h = kv_shape[1], d = kv_shape[3];
  if (!keys_.valid()) {
    keys_ = zeros({b, h, slots, d}, dtype, device);
    values_ = zeros({b, h, slots, d}, dtype, device);
    return;
  }
  const int64_t cap = keys_.shape(2);
  if (slots <= cap) return;
  Array extra = zeros({b, h, slots - cap, d}, keys_.dtype(), keys_.device());
  keys_ = concatenate({keys_, extra}, 2);
  values_ = concatenate({values_, extra}, 2);
}

bool LayerCache::prepare_append(const Shape& kv_shape, Dtype dtype, Device device, Array* keys,
                                Array* values, Array* column) {
  if (opt_.max_size != 0 || kv_shape.size() != 4) return false;
  // A cache that does not fit goes through update_and_fetch, which says why.
  if (keys_.valid() &&
      (kv_shape[0] != keys_.shape(0) || kv_shape[1] != keys_.shape(1) ||
       kv_shape[3] != keys_.shape(3) || dtype != keys_.dtype() || device != keys_.device()))
    return false;
  grow_to(round_up(filled_ + kv_shape[2], opt_.step), kv_shape, dtype, device);
  // finish_append replaces these handles before anything is evaluated, so the write can reuse
  // the buffers in place (donation).
  *keys = keys_;
  *values = values_;
  *column = Array(std::vector<int32_t>{static_cast<int32_t>(filled_)}, {1}, int32);
  return true;
}

std::pair<Array, Array> LayerCache::finish_append(Array keys, Array values, int64_t l) {
  keys_ = std::move(keys);
  values_ = std::move(values);
  return appended(l);
}

std::pair<Array, Array> LayerCache::appended(int64_t l) {
  const int64_t b = keys_.shape(0), h = keys_.shape(1), d = keys_.shape(3);
  const int64_t m = opt_.max_size;
  if (m > 0) {
    slot_pos_.resize(static_cast<size_t>(m), -1);
    for (int64_t j = 0; j < l; ++j) slot_pos_[static_cast<size_t>(filled_ + j)] = offset_ + j;
  }
  filled_ += l;
  offset_ += l;
  last_len_ = filled_;
  last_cols_.clear();
  last_temporal_ = true;
  if (m > 0) {  // holes left by a trim make the order non-temporal
    for (int64_t j = 0; j < filled_; ++j)
      if (slot_pos_[static_cast<size_t>(j)] != offset_ - filled_ + j) last_temporal_ = false;
    if (!last_temporal_) last_cols_.assign(slot_pos_.begin(), slot_pos_.begin() + filled_);
  }
  return {slice(keys_, {0, 0, 0, 0}, {b, h, filled_, d}),
          slice(values_, {0, 0, 0, 0}, {b, h, filled_, d})};
}

std::pair<Array, Array> LayerCache::update_and_fetch(const Array& k, const Array& v) {
  if (k.ndim() != 4 || v.shape() != k.shape())
    raise("[kv_cache] expected keys and values [B, Hkv, L, D] of one shape, got {} and {}",
          shape_str(k.shape()), shape_str(v.shape()));
  if (keys_.valid() && (k.shape(0) != keys_.shape(0) || k.shape(1) != keys_.shape(1) ||
                        k.shape(3) != keys_.shape(3) || k.dtype() != keys_.dtype()))
    raise("[kv_cache] update {} ({}) does not fit the cache {} ({})", shape_str(k.shape()),
          dtype_name(k.dtype()), shape_str(keys_.shape()), dtype_name(keys_.dtype()));
  const int64_t b = k.shape(0), h = k.shape(1), l = k.shape(2), d = k.shape(3);
  const int64_t m = opt_.max_size;
  if (m == 0 || filled_ + l <= m) {
    // Append at slot filled_ (unbounded, or a bounded ring that has not filled up yet).
    if (m == 0 && !keys_.valid() && round_up(l, opt_.step) == l) {
      // A first update that fills the whole new buffer: the buffer is a copy of it (no zeros
      // written first and then overwritten).
      keys_ = ingot::copy(k);
      values_ = ingot::copy(v);
    } else {
      grow_to(m == 0 ? round_up(filled_ + l, opt_.step) : m, k);
      Shape start{0, 0, filled_, 0}, stop{b, h, filled_ + l, d};
      keys_ = slice_update(keys_, k, start, stop);
      values_ = slice_update(values_, v, start, stop);
    }
    return appended(l);
  }
  if (l == 1) {
    // Full ring: overwrite the slot with the oldest (or no) column.
    size_t slot = static_cast<size_t>(std::min_element(slot_pos_.begin(), slot_pos_.end()) -
                                      slot_pos_.begin());
    Shape start{0, 0, static_cast<int64_t>(slot), 0}, stop{b, h, static_cast<int64_t>(slot) + 1, d};
    keys_ = slice_update(keys_, k, start, stop);
    values_ = slice_update(values_, v, start, stop);
    slot_pos_[slot] = offset_;
    offset_ += 1;
    last_len_ = m;
    last_cols_ = slot_pos_;
    last_temporal_ = false;
    return {keys_, values_};
  }
  // Several new columns into a full ring: attend over the retained columns in order plus the new
  // ones, then keep the last max_size of them, in order.
  std::vector<size_t> order;
  for (size_t s = 0; s < slot_pos_.size(); ++s)
    if (slot_pos_[s] >= 0) order.push_back(s);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t c) { return slot_pos_[a] < slot_pos_[c]; });
  Array kk = k, vv = v;
  if (!order.empty()) {
    std::vector<int32_t> idx(order.begin(), order.end());
    Array sel(idx, {static_cast<int64_t>(idx.size())}, int32);
    kk = concatenate({take(keys_, sel, 2), k}, 2);
    vv = concatenate({take(values_, sel, 2), v}, 2);
  }
  std::vector<int64_t> cols;
  for (size_t s : order) cols.push_back(slot_pos_[s]);
  for (int64_t j = 0; j < l; ++j) cols.push_back(offset_ + j);
  const int64_t total = static_cast<int64_t>(cols.size());
  offset_ += l;
  last_len_ = total;
  last_temporal_ = true;
  for (int64_t j = 0; j < total; ++j)
    if (cols[static_cast<size_t>(j)] != offset_ - total + j) last_temporal_ = false;
  last_cols_ = last_temporal_ ? std::vector<int64_t>{} : cols;
  const int64_t keep = std::min(total, m);
  keys_ = contiguous(slice(kk, {0, 0, total - keep, 0}, {b, h, total, d}));
  values_ = contiguous(slice(vv, {0, 0, total - keep, 0}, {b, h, total, d}));
  grow_to(m, k);
  slot_pos_.assign(static_cast<size_t>(m), -1);
  std::copy(cols.end() - keep, cols.end(), slot_pos_.begin());
  filled_ = keep;
  return {kk, vv};
}

std::optional<Array> LayerCache::mask(int64_t query_len) const {
  bool padded = false;
  for (const auto& p : pads_) padded = padded || p.end > p.begin;
  if (!padded && last_temporal_) return std::nullopt;  // sdpa's causal (+window) rule is right
  const int64_t l = query_len;
  const Device dev = device();
  Array cols = last_temporal_ ? arange(static_cast<double>(offset_ - last_len_),
                                       static_cast<double>(offset_), 1.0, int32, dev)
                              : i32(last_cols_, {static_cast<int64_t>(last_cols_.size())});
  const int64_t s = cols.shape(0);
  Array c = reshape(cols, {1, 1, 1, s}, dev);  // cols may be host values: reshape them here
  Array q = reshape(
      arange(static_cast<double>(offset_ - l), static_cast<double>(offset_), 1.0, int32, dev),
      {1, 1, l, 1});
  Array keep = logical_and(c >= Array(0), c <= q);
  Array kpos = c, qpos = q;  // positions differ from columns after a row's padding span
  if (padded) {
    std::vector<int64_t> pb, pe, w;
    for (const auto& p : pads_) {
      pb.push_back(p.begin);
      pe.push_back(p.end);
      w.push_back(p.end - p.begin);
    }
    const int64_t b = static_cast<int64_t>(pads_.size());
    Array begin = i32(pb, {b, 1, 1, 1}), end = i32(pe, {b, 1, 1, 1}), width = i32(w, {b, 1, 1, 1});
    keep = logical_and(keep, logical_not(logical_and(c >= begin, c < end)));
    Array zero(0, int32);
    kpos = c - where(c >= end, width, zero);
    qpos = q - where(q >= end, width, zero);
  }
  if (opt_.window > 0)
    keep = logical_and(keep, (qpos - kpos) < Array(static_cast<int32_t>(opt_.window)));
  // A padding query sees no key: let it see itself so no softmax row is empty (its output is
  // never used, but NaNs would reach other rows through 0 * NaN in p v).
  return logical_or(keep, equal(c, q));
}

int64_t LayerCache::max_trim() const {
  if (opt_.max_size == 0) return offset_;
  int64_t lo = std::numeric_limits<int64_t>::max();
  for (int64_t p : slot_pos_)
    if (p >= 0) lo = std::min(lo, p);
  if (lo == std::numeric_limits<int64_t>::max() || lo == 0) return offset_;
  return std::max<int64_t>(0, offset_ - (lo + opt_.window - 1));
}

void LayerCache::trim_to(int64_t length) {
  if (length < 0 || length > offset_)
    raise("[kv_cache] cannot trim a cache of {} positions to {}", offset_, length);
  if (offset_ - length > max_trim())
    raise(
        "[kv_cache] a sliding-window cache (window {}, keeps {}) can rewind at most {} "
        "positions, asked for {}",
        opt_.window, opt_.max_size, max_trim(), offset_ - length);
  if (opt_.max_size == 0) {
    offset_ = filled_ = length;
  } else {
    bool in_order = true;
    for (int64_t j = 0; j < filled_; ++j)
      in_order = in_order && slot_pos_[static_cast<size_t>(j)] == j;
    for (auto& p : slot_pos_)
      if (p >= length) p = -1;
    offset_ = length;
    if (in_order) filled_ = length;
  }
  last_cols_.clear();
  last_temporal_ = true;
}

void LayerCache::select_rows(const std::vector<int32_t>& rows) {
  std::vector<PadSpan> pads;
  for (int32_t r : rows) {
    if (r < 0 || (keys_.valid() && r >= keys_.shape(0)))
      raise("[kv_cache] row {} out of range for a batch of {}", r, batch());
    if (!pads_.empty()) pads.push_back(pads_[static_cast<size_t>(r)]);
  }
  pads_ = std::move(pads);
  if (!keys_.valid()) return;
  Array idx(rows, {static_cast<int64_t>(rows.size())}, int32);
  keys_ = take(keys_, idx, 0);
  values_ = take(values_, idx, 0);
}

void LayerCache::repeat_rows(int64_t n) {
  if (batch() != 1) raise("[kv_cache] repeat_rows needs a single-row cache, got {} rows", batch());
  keys_ = repeat(keys_, static_cast<int>(n), 0);
  values_ = repeat(values_, static_cast<int>(n), 0);
  if (!pads_.empty()) pads_.assign(static_cast<size_t>(n), pads_[0]);
}

int64_t LayerCache::nbytes() const {
  return keys_.valid() ? static_cast<int64_t>(keys_.nbytes() + values_.nbytes()) : 0;
}

std::vector<Array> LayerCache::state() const {
  if (!keys_.valid()) return {};
  return {keys_, values_};
}

std::unique_ptr<LayerCache> LayerCache::copy() const {
  // Arrays are immutable values; sharing them is a copy (slice_update never writes into a
  // buffer that another cache still references: donation needs the only reference).
  return std::make_unique<LayerCache>(*this);
}

LayerCache::Raw LayerCache::raw() const {
  return {keys_, values_, slot_pos_, offset_, filled_};
}

void LayerCache::restore(Raw raw) {
  keys_ = std::move(raw.keys);
  values_ = std::move(raw.values);
  slot_pos_ = std::move(raw.slot_pos);
  offset_ = raw.offset;
  filled_ = raw.filled;
  last_cols_.clear();
  last_temporal_ = true;
  pads_.clear();
}

// ---- PromptCache ----

PromptCache::PromptCache(const models::Model& model, const PromptCacheOptions& opt) {
  const auto& cfg = model.config();
  for (int i = 0; i < model.num_layers(); ++i) {
    const auto& spec = cfg.layers[static_cast<size_t>(i)];
    LayerCacheOptions lo{
        .window = spec.window, .max_size = 0, .step = opt.step, .device = model.device()};
    if (spec.window > 0 && !opt.unbounded) lo.max_size = spec.window + opt.rotating_extra;
    layers_.push_back(std::make_unique<LayerCache>(lo));
  }
  kv_heads_ = cfg.num_key_value_heads;
  head_dim_ = cfg.head_dim;
  dtype_ = model.dtype();
  device_ = model.device();
  signature_ = fmt::format("{} layers={} kv_heads={} head_dim={} dtype={}", model.architecture(),
                           model.num_layers(), cfg.num_key_value_heads, cfg.head_dim,
                           dtype_name(model.dtype()));
  for (const auto& l : layers_)
    signature_ += fmt::format(" {}/{}", l->options().window, l->options().max_size);
}

std::vector<nn::KVCache*> PromptCache::layers() {
  std::vector<nn::KVCache*> out;
  for (auto& l : layers_) out.push_back(l.get());
  return out;
}

void PromptCache::set_padding(const std::vector<PadSpan>& pads) {
  for (auto& l : layers_) l->set_padding(pads);
}

std::optional<Array> PromptCache::row_positions() const {
  if (layers_.empty()) return std::nullopt;
  const auto& pads = layers_[0]->padding();
  const int64_t off = offset();
  bool any = false;
  std::vector<int64_t> pos;
  for (const auto& p : pads) {
    // Positions are linear within a forward pass: from the pad's first column on, a row's
    // column c holds position c - (pad length), so its own tokens continue the positions
    // before the pad (padding columns get positions too; they are masked). A pass must not
    // start before a pad and end after it (generate and classify start passes at pads).
    const int64_t skip = off >= p.begin ? p.end - p.begin : 0;
    any = any || skip > 0;
    pos.push_back(off - skip);
  }
  if (!any) return std::nullopt;
  return i32(pos, {static_cast<int64_t>(pos.size())});
}

void PromptCache::trim_to(int64_t length) {
  for (auto& l : layers_)
    if (l->offset() - length > l->max_trim())
      raise(
          "[kv_cache] cannot rewind from {} to {} positions: a sliding-window layer (window "
          "{}, keeps {}) can rewind at most {} positions",
          l->offset(), length, l->options().window, l->options().max_size, l->max_trim());
  for (auto& l : layers_) l->trim_to(length);
  if (static_cast<int64_t>(tokens_.size()) > length) tokens_.resize(static_cast<size_t>(length));
}

int64_t PromptCache::max_trim() const {
  int64_t m = std::numeric_limits<int64_t>::max();
  for (const auto& l : layers_) m = std::min(m, l->max_trim());
  return layers_.empty() ? 0 : m;
}

void PromptCache::select_rows(const std::vector<int32_t>& rows) {
  for (auto& l : layers_) l->select_rows(rows);
}

void PromptCache::repeat_rows(int64_t n) {
  for (auto& l : layers_) l->repeat_rows(n);
}

std::vector<Array> PromptCache::state() const {
  std::vector<Array> all;
  for (const auto& l : layers_)
    for (auto& a : l->state()) all.push_back(a);
  return all;
}

void PromptCache::eval_state() {
  eval(state());
}

int64_t PromptCache::nbytes() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l->nbytes();
  return n;
}

void PromptCache::clear() {
  for (auto& l : layers_) l = std::make_unique<LayerCache>(l->options());
  tokens_.clear();
}

PromptCache PromptCache::copy() const {
  PromptCache c;
  for (const auto& l : layers_) c.layers_.push_back(l->copy());
  c.tokens_ = tokens_;
  c.signature_ = signature_;
  c.kv_heads_ = kv_heads_;
  c.head_dim_ = head_dim_;
  c.dtype_ = dtype_;
  c.device_ = device_;
  return c;
}

void PromptCache::save(const std::string& path) const {
  if (batch() > 1) raise("[kv_cache] save needs a single-row cache, got {} rows", batch());
  std::map<std::string, Array> arrays;
  nlohmann::json meta_layers = nlohmann::json::array();
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerCache::Raw r = layers_[i]->raw();
    if (r.keys.valid()) {  // the writer reads host memory
      arrays.emplace(fmt::format("layers.{}.keys", i), to_device(r.keys, cpu_device));
      arrays.emplace(fmt::format("layers.{}.values", i), to_device(r.values, cpu_device));
    }
    meta_layers.push_back({{"offset", r.offset}, {"filled", r.filled}, {"slot_pos", r.slot_pos}});
  }
  nlohmann::json meta = {{"format", "ingot.prompt_cache.v1"},
                         {"signature", signature_},
                         {"tokens", tokens_},
                         {"layers", meta_layers}};
  save_safetensors(path, arrays, {{"ingot", meta.dump()}});
}

void PromptCache::load(const std::string& path) {
  if (!std::filesystem::exists(path)) raise<IoError>("[kv_cache] {}: no such file", path);
  std::map<std::string, std::string> md;
  std::map<std::string, Array> arrays = load_safetensors(path, {}, &md);
  auto it = md.find("ingot");
  nlohmann::json meta;
  try {
    if (it == md.end()) throw std::runtime_error("no 'ingot' metadata");
    meta = nlohmann::json::parse(it->second);
    if (meta.value("format", "") != "ingot.prompt_cache.v1")
      throw std::runtime_error("not an ingot prompt cache");
  } catch (const std::exception& e) {
    raise<FormatError>("[kv_cache] {}: {}", path, e.what());
  }
  if (meta.value("signature", "") != signature_)
    raise<FormatError>("[kv_cache] {}: saved for '{}', this model is '{}'", path,
                       meta.value("signature", ""), signature_);
  const auto& ml = meta["layers"];
  if (!ml.is_array() || ml.size() != layers_.size())
    raise<FormatError>("[kv_cache] {}: layer list does not match the model", path);
  std::vector<LayerCache::Raw> raws;
  try {
    for (size_t i = 0; i < layers_.size(); ++i) {
      LayerCache::Raw r;
      r.offset = ml[i].at("offset").get<int64_t>();
      r.filled = ml[i].at("filled").get<int64_t>();
      r.slot_pos = ml[i].at("slot_pos").get<std::vector<int64_t>>();
      auto k = arrays.find(fmt::format("layers.{}.keys", i));
      auto v = arrays.find(fmt::format("layers.{}.values", i));
      if ((k == arrays.end() && r.offset > 0) || (v == arrays.end()) != (k == arrays.end()))
        throw std::runtime_error(
            fmt::format("layer {}: buffers do not match offset {}", i, r.offset));
      const int64_t m = layers_[i]->options().max_size;
      int64_t cap = 0;
      if (k != arrays.end()) {
        const Array& ka = k->second;
        if (ka.ndim() != 4 || ka.shape(0) != 1 || ka.shape(1) != kv_heads_ ||
            ka.shape(3) != head_dim_ || ka.dtype() != dtype_ || v->second.shape() != ka.shape() ||
            v->second.dtype() != dtype_)
          throw std::runtime_error(fmt::format(
              "layer {}: buffers {} ({}) / {} ({}), expected [1, {}, S, {}] ({})", i,
              shape_str(ka.shape()), dtype_name(ka.dtype()), shape_str(v->second.shape()),
              dtype_name(v->second.dtype()), kv_heads_, head_dim_, dtype_name(dtype_)));
        cap = ka.shape(2);
        r.keys = ka;
        r.values = v->second;
      }
      bool ok = r.offset >= 0 && r.filled >= 0 && r.filled <= cap && r.filled <= r.offset;
      if (m == 0) {
        ok = ok && r.slot_pos.empty() && r.filled == r.offset;
      } else {
        ok = ok && (r.offset == 0 || cap == m) && static_cast<int64_t>(r.slot_pos.size()) == m;
        for (int64_t pos : r.slot_pos) ok = ok && pos >= -1 && pos < r.offset;
        std::vector<int64_t> used;
        for (int64_t pos : r.slot_pos)
          if (pos >= 0) used.push_back(pos);
        std::sort(used.begin(), used.end());
        ok = ok && std::adjacent_find(used.begin(), used.end()) == used.end();
        // The ring must hold the window before the offset (what the next query attends to).
        const int64_t need = std::min<int64_t>(r.offset, layers_[i]->options().window - 1);
        ok = ok && static_cast<int64_t>(used.size()) >= need &&
             (need == 0 || used[used.size() - static_cast<size_t>(need)] == r.offset - need);
      }
      if (!ok)
        throw std::runtime_error(fmt::format("layer {}: offsets/slots do not fit its buffers", i));
      raws.push_back(std::move(r));
    }
    auto tokens = meta.at("tokens").get<std::vector<int32_t>>();
    if (!raws.empty() && static_cast<int64_t>(tokens.size()) != raws[0].offset)
      throw std::runtime_error(
          fmt::format("{} tokens for {} cached positions", tokens.size(), raws[0].offset));
    tokens_ = std::move(tokens);
  } catch (const std::exception& e) {
    raise<FormatError>("[kv_cache] {}: {}", path, e.what());
  }
  // Onto the model's device, copied now: lazy copies would keep the file mapped.
  std::vector<Array> placed;
  for (auto& r : raws) {
    if (!r.keys.valid()) continue;
    r.keys = to_device(r.keys, device_);
    r.values = to_device(r.values, device_);
    placed.push_back(r.keys);
    placed.push_back(r.values);
  }
  if (device_.type != Device::Type::cpu) eval(placed);
  for (size_t i = 0; i < layers_.size(); ++i) layers_[i]->restore(std::move(raws[i]));
}

}  // namespace ingot::llm
