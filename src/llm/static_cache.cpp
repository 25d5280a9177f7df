// Fixed-size decode caches and the step that runs over them (see static_cache.h).
#include "llm/static_cache.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "util/env.h"
#include "util/error.h"

namespace ingot::llm {

StaticLayerCache::StaticLayerCache(Array keys, Array values, int64_t window, const Array& column)
    : keys_(std::move(keys)), values_(std::move(values)), window_(window), column_(column) {}

std::pair<Array, Array> StaticLayerCache::update_and_fetch(const Array& k, const Array& v) {
  if (k.ndim() != 4 || v.shape() != k.shape() || k.shape(2) != 1 || k.shape(0) != keys_.shape(0) ||
      k.shape(1) != keys_.shape(1) || k.shape(3) != keys_.shape(3) || k.dtype() != keys_.dtype())
    raise(
        "[kv_cache] a fixed-size cache {} ({}) takes one column [B, Hkv, 1, D] per step, got {} "
        "({})",
        shape_str(keys_.shape()), dtype_name(keys_.dtype()), shape_str(k.shape()),
        dtype_name(k.dtype()));
  // The column comes from a device array, so the step's kernels stay the same from token to
  // token. The buffers are held only here: put_along_axis writes in place (donation).
  Array idx = broadcast_to(reshape(column_, {1, 1, 1, 1}), k.shape());
  keys_ = put_along_axis(keys_, idx, k, 2);
  values_ = put_along_axis(values_, idx, v, 2);
  return {keys_, values_};
}

bool StaticLayerCache::fixed(Array* keys, Array* values, Array* column) const {
  static const bool on = env::flag("INGOT_DECODE_FUSED_KV", true);
  if (!on) return false;
  *keys = keys_;
  *values = values_;
  *column = column_;
  return true;
}

void StaticLayerCache::set_fixed(Array keys, Array values) {
  if (keys.shape() != keys_.shape() || values.shape() != values_.shape())
    raise("[kv_cache] internal: a fused update changed the fixed buffers' shape {} to {}",
          shape_str(keys_.shape()), shape_str(keys.shape()));
  keys_ = std::move(keys);
  values_ = std::move(values);
}

bool StaticDecoder::supports(const PromptCache& cache) {
  if (cache.num_layers() == 0 || cache.batch() == 0 || cache.offset() == 0) return false;
  for (int i = 0; i < cache.num_layers(); ++i) {
    const LayerCache::Raw raw = cache.layer(i).raw();
    if (raw.filled != raw.offset || !raw.keys.valid()) return false;
    if (cache.layer(i).options().max_size > 0)
      for (int64_t j = 0; j < raw.filled; ++j)
        if (raw.slot_pos[static_cast<size_t>(j)] != j) return false;
  }
  return true;
}

StaticDecoder::StaticDecoder(const models::Model& model, const PromptCache& cache, int64_t capacity,
                             bool use_graph)
    : model_(model), device_(model.device()), use_graph_(use_graph) {
  if (!supports(cache))
    raise("[generate] internal: the prompt cache cannot move into fixed-size buffers");
  if (use_graph && device_.type != Device::Type::cuda)
    raise<Unsupported>("[generate] CUDA-graph decode needs a model on a GPU, not {}",
                       device_.str());
  batch_ = cache.batch();
  offset_ = cache.offset();
  capacity_ = std::max(capacity, offset_ + 1);
  for (const PadSpan& p : cache.layer(0).padding()) {
    pad_begin_.push_back(p.begin);
    pad_end_.push_back(p.end);
  }
  pad_begin_.resize(static_cast<size_t>(batch_), 0);
  pad_end_.resize(static_cast<size_t>(batch_), 0);
  column_ = zeros({1}, int32, device_);
  tokens_ = zeros({batch_, 1}, int32, device_);
  positions_ = zeros({batch_}, int32, device_);
  std::vector<Array> to_eval{column_, tokens_, positions_};
  for (int i = 0; i < cache.num_layers(); ++i) {
    const LayerCache::Raw raw = cache.layer(i).raw();
    const Shape& s = raw.keys.shape();
    const Shape stop{s[0], s[1], offset_, s[3]};
    auto fixed = [&](const Array& a) {
      Array buf = zeros({s[0], s[1], capacity_, s[3]}, a.dtype(), device_);
      return slice_update(buf, slice(a, {0, 0, 0, 0}, stop), {0, 0, 0, 0}, stop);
    };
    layers_.push_back(std::make_unique<StaticLayerCache>(fixed(raw.keys), fixed(raw.values),
                                                         cache.layer(i).options().window, column_));
    to_eval.push_back(layers_.back()->keys_);
    to_eval.push_back(layers_.back()->values_);
  }
  eval(to_eval);
  grow(capacity_);  // the constant masks
}

void StaticDecoder::grow(int64_t capacity) {
  std::vector<Array> to_eval;
  if (capacity > capacity_) {
    for (auto& l : layers_) {
      const Shape& s = l->keys_.shape();
      Array extra = zeros({s[0], s[1], capacity - capacity_, s[3]}, l->keys_.dtype(), device_);
      l->keys_ = concatenate({l->keys_, extra}, 2);
      l->values_ = concatenate({l->values_, extra}, 2);
      to_eval.push_back(l->keys_);
      to_eval.push_back(l->values_);
    }
    capacity_ = capacity;
  }
  // Key positions (a row's columns after its padding continue the positions before it) and the
  // columns that are not padding, [B, 1, 1, C].
  const size_t b = static_cast<size_t>(batch_), c = static_cast<size_t>(capacity_);
  std::vector<int32_t> kpos(b * c);
  std::vector<uint8_t> valid(b * c);
  for (size_t r = 0; r < b; ++r)
    for (size_t j = 0; j < c; ++j) {
      const auto col = static_cast<int64_t>(j);
      const int64_t width = pad_end_[r] - pad_begin_[r];
      kpos[r * c + j] = static_cast<int32_t>(col >= pad_end_[r] ? col - width : col);
      valid[r * c + j] = col >= pad_begin_[r] && col < pad_end_[r] ? 0 : 1;
    }
  key_pos_ = to_device(Array(kpos, {batch_, 1, 1, capacity_}, int32), device_);
  valid_ = to_device(Array(valid, {batch_, 1, 1, capacity_}, bool_), device_);
  col_index_ = reshape(arange(capacity_, int32, device_), {1, 1, 1, capacity_});
  to_eval.insert(to_eval.end(), {key_pos_, valid_, col_index_});
  eval(to_eval);
  graph_ = DeviceGraph();
}

std::vector<Array> StaticDecoder::build_step() {
  const int64_t b = batch_;
  Array keep = logical_and(valid_, col_index_ <= reshape(column_, {1, 1, 1, 1}));
  Array qpos = reshape(positions_, {b, 1, 1, 1});
  std::map<int64_t, Array> windowed;
  std::vector<nn::KVCache*> caches;
  for (auto& l : layers_) {
    if (l->window_ > 0) {
      auto it = windowed.find(l->window_);
      if (it == windowed.end())
        it = windowed
                 .emplace(
                     l->window_,
                     logical_and(keep, (qpos - key_pos_) < Array(static_cast<int32_t>(l->window_))))
                 .first;
      l->mask_ = it->second;
    } else {
      l->mask_ = keep;
    }
    l->offset_ = offset_;
    caches.push_back(l.get());
  }
  models::ForwardOptions fo;
  fo.caches = caches;
  fo.offsets = positions_;
  Array h = model_.hidden(tokens_, fo);  // [B, 1, E]
  std::vector<Array> outs{model_.lm_head(reshape(h, {b, h.shape(2)}))};
  for (auto& l : layers_) {
    outs.push_back(l->keys_);
    outs.push_back(l->values_);
    l->mask_ = Array();
  }
  return outs;
}

void StaticDecoder::write_inputs(const std::vector<int32_t>& tokens) {
  if (static_cast<int64_t>(tokens.size()) != batch_)
    raise("[generate] internal: {} token ids for a batch of {}", tokens.size(), batch_);
  std::vector<int32_t> pos(static_cast<size_t>(batch_));
  for (size_t r = 0; r < pos.size(); ++r) {
    const int64_t width = offset_ >= pad_end_[r] ? pad_end_[r] - pad_begin_[r] : 0;
    pos[r] = static_cast<int32_t>(offset_ - width);
  }
  const auto col = static_cast<int32_t>(offset_);
  write_from_host(tokens_, tokens.data(), tokens.size() * sizeof(int32_t));
  write_from_host(column_, &col, sizeof(col));
  write_from_host(positions_, pos.data(), pos.size() * sizeof(int32_t));
}

Array StaticDecoder::step(const std::vector<int32_t>& tokens) {
  if (offset_ >= capacity_) grow(capacity_ * 2);
  write_inputs(tokens);
  Array logits;
  if (use_graph_) {
    if (!graph_.valid()) {
      std::vector<void*> before;
      for (auto& l : layers_)
        before.insert(before.end(), {l->keys_.raw_ptr(), l->values_.raw_ptr()});
      graph_ = DeviceGraph::capture(device_, [&] { return build_step(); });
      ++captures_;
      for (size_t i = 0; i < layers_.size(); ++i)
        if (layers_[i]->keys_.raw_ptr() != before[2 * i] ||
            layers_[i]->values_.raw_ptr() != before[2 * i + 1]) {
          graph_ = DeviceGraph();
          raise<Error>(
              "[generate] internal: the KV cache of layer {} was not updated in place while "
              "recording the decode graph (set INGOT_CUDA_GRAPHS=0 to decode without graphs)",
              i);
        }
    }
    graph_.replay();
    logits = graph_.outputs()[0];
  } else {
    std::vector<Array> outs = build_step();
    eval(outs);
    logits = outs[0];
  }
  ++offset_;
  return logits;
}

void StaticDecoder::select_rows(const std::vector<int32_t>& rows) {
  if (rows.empty()) raise("[generate] internal: select_rows needs at least one row");
  std::vector<int64_t> pb, pe;
  for (int32_t r : rows) {
    if (r < 0 || r >= batch_) raise("[generate] internal: row {} of a batch of {}", r, batch_);
    pb.push_back(pad_begin_[static_cast<size_t>(r)]);
    pe.push_back(pad_end_[static_cast<size_t>(r)]);
  }
  const Array idx = to_device(Array(rows, {static_cast<int64_t>(rows.size())}, int32), device_);
  std::vector<Array> to_eval;
  for (auto& l : layers_) {
    l->keys_ = take(l->keys_, idx, 0);
    l->values_ = take(l->values_, idx, 0);
    to_eval.push_back(l->keys_);
    to_eval.push_back(l->values_);
  }
  graph_ = DeviceGraph();  // before the buffers it wrote are released
  eval(to_eval);
  batch_ = static_cast<int64_t>(rows.size());
  pad_begin_ = std::move(pb);
  pad_end_ = std::move(pe);
  tokens_ = zeros({batch_, 1}, int32, device_);
  positions_ = zeros({batch_}, int32, device_);
  eval({tokens_, positions_});
  grow(capacity_);
}

int64_t StaticDecoder::nbytes() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += static_cast<int64_t>(l->keys_.nbytes() + l->values_.nbytes());
  return n;
}

void StaticDecoder::write_back(PromptCache& cache) const {
  if (cache.num_layers() != static_cast<int>(layers_.size()) || batch_ != 1)
    raise("[generate] internal: a fixed-size decode of {} rows cannot be written back", batch_);
  std::vector<Array> to_eval;
  for (int i = 0; i < cache.num_layers(); ++i) {
    const StaticLayerCache& l = *layers_[static_cast<size_t>(i)];
    LayerCache& dst = cache.layer(i);
    const int64_t m = dst.options().max_size;
    const Shape& s = l.keys_.shape();
    LayerCache::Raw raw;
    raw.offset = offset_;
    int64_t first = 0, slots = offset_;
    if (m > 0) {
      first = std::max<int64_t>(0, offset_ - m);  // a ring keeps the last m columns
      slots = m;
      raw.slot_pos.assign(static_cast<size_t>(m), -1);
      for (int64_t j = first; j < offset_; ++j) raw.slot_pos[static_cast<size_t>(j - first)] = j;
    }
    raw.filled = offset_ - first;
    auto part = [&](const Array& a) {
      Array cols = slice(a, {0, 0, first, 0}, {s[0], s[1], offset_, s[3]});
      if (slots == raw.filled) return contiguous(cols);
      Array buf = zeros({s[0], s[1], slots, s[3]}, a.dtype(), device_);
      return slice_update(buf, cols, {0, 0, 0, 0}, {s[0], s[1], raw.filled, s[3]});
    };
    raw.keys = part(l.keys_);
    raw.values = part(l.values_);
    to_eval.push_back(raw.keys);
    to_eval.push_back(raw.values);
    dst.restore(std::move(raw));
  }
  eval(to_eval);
}

}  // namespace ingot::llm
