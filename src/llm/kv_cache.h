// KV caches for generation (DESIGN.md §6): per-layer key/value buffers grown in chunks, bounded
// (rotating) buffers for sliding-window layers, per-row padding spans for batches, trim/rewind,
// and a PromptCache over all layers that remembers its tokens for prefix reuse and saves to disk.
// The paged cache of continuous batching and the prompt cache across requests (PrefixStore)
// live in paged_kv.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/array.h"
#include "llm/paged_kv.h"
#include "models/model.h"
#include "nn/attention.h"

namespace ingot::llm {

/// Columns [begin, end) of one batch row that hold padding (never attended to).
struct PadSpan {
  int64_t begin = 0;
  int64_t end = 0;
};

/// Shape of one layer's cache.
struct LayerCacheOptions {
  /// Sliding window of the layer (0 = global attention).
  int64_t window = 0;
  /// Most positions kept (0 = unbounded). A bounded cache keeps the last `max_size` positions
  /// in a ring; it must be >= window, and what it keeps beyond the window is how far it can be
  /// rewound (trim).
  int64_t max_size = 0;
  /// Growth step of an unbounded buffer, in positions.
  int64_t step = 256;
  /// Where the buffers and masks are made before the first update (then: where the keys
  /// live); absent: the default device.
  std::optional<Device> device;
};

/// One layer's keys and values [B, Hkv, S, D]. Positions are batch columns: column c of row b
/// holds the token at column c of the (padded) batch; padding columns are masked out.
class LayerCache : public nn::KVCache {
 public:
  explicit LayerCache(LayerCacheOptions opt);

  std::pair<Array, Array> update_and_fetch(const Array& k, const Array& v) override;
  /// Unbounded caches: grows the buffers for the new columns (see nn::KVCache); bounded (ring)
  /// caches return false.
  bool prepare_append(const Shape& kv_shape, Dtype dtype, Device device, Array* keys, Array* values,
                      Array* column) override;
  std::pair<Array, Array> finish_append(Array keys, Array values, int64_t l) override;
  int64_t offset() const override { return offset_; }
  /// Explicit mask for the keys of the last update when the plain causal (+window) rule of
  /// sdpa would be wrong: padding columns, or a ring not in temporal order.
  std::optional<Array> mask(int64_t query_len) const override;

  /// Sets the padding spans of every row (size B); columns inside a row's span are masked.
  void set_padding(std::vector<PadSpan> pads) { pads_ = std::move(pads); }
  const std::vector<PadSpan>& padding() const { return pads_; }
  /// Rewinds to `length` positions (keeps columns [0, length)). A bounded cache can rewind
  /// only as far as the positions it still holds beyond its window; otherwise InvalidArgument.
  void trim_to(int64_t length);
  /// How many positions back trim_to can go from the current offset.
  int64_t max_trim() const;
  /// Keeps only the given batch rows, in that order.
  void select_rows(const std::vector<int32_t>& rows);
  /// Repeats a single-row cache `n` times along the batch (shared prompt prefixes).
  void repeat_rows(int64_t n);
  /// Batch rows (0 before the first update).
  int64_t batch() const { return keys_.valid() ? keys_.shape(0) : 0; }
  /// Bytes held by the buffers.
  int64_t nbytes() const;
  /// The arrays to evaluate after an update (buffers), so the graph can be cut.
  std::vector<Array> state() const;
  /// Deep copy (new buffers).
  std::unique_ptr<LayerCache> copy() const;
  const LayerCacheOptions& options() const { return opt_; }
  /// Where the buffers live (the device of the stored keys once there are any).
  Device device() const;

  /// Raw state for save/load: buffers and, per slot, the column it holds (-1 empty).
  struct Raw {
    Array keys, values;
    std::vector<int64_t> slot_pos;
    int64_t offset = 0;
    int64_t filled = 0;
  };
  Raw raw() const;
  void restore(Raw raw);

 private:
  void grow_to(int64_t slots, const Array& like);
  void grow_to(int64_t slots, const Shape& kv_shape, Dtype dtype, Device device);
  /// Bookkeeping of an append of l columns at slot filled_; the keys/values to attend over.
  std::pair<Array, Array> appended(int64_t l);
  LayerCacheOptions opt_;
  Array keys_, values_;   // [B, Hkv, capacity, D]
  int64_t offset_ = 0;    // columns seen
  int64_t filled_ = 0;    // slots in use (unbounded: == offset_)
  int64_t last_len_ = 0;  // keys returned by the last update
  // Bounded caches: the column each slot holds (-1 = empty); last update's returned slots.
  std::vector<int64_t> slot_pos_;
  std::vector<int64_t> last_cols_;  // columns of the keys returned by the last update
  bool last_temporal_ = true;       // returned keys are columns [offset-S, offset) in order
  std::vector<PadSpan> pads_;
};

/// Options of make_prompt_cache.
struct PromptCacheOptions {
  /// Sliding-window layers keep window + this many positions (the reach of trim()).
  int64_t rotating_extra = 64;
  /// Use unbounded caches even on sliding-window layers (trim anywhere; more memory).
  bool unbounded = false;
  int64_t step = 256;
};

/// The caches of every layer of one model, plus the token ids they hold (row 0) for prefix
/// reuse across calls.
class PromptCache {
 public:
  /// One LayerCache per layer of `model` (bounded on sliding-window layers), on its device.
  explicit PromptCache(const models::Model& model, const PromptCacheOptions& opt = {});

  /// One pointer per layer, for models::ForwardOptions::caches.
  std::vector<nn::KVCache*> layers();
  LayerCache& layer(int i) { return *layers_[static_cast<size_t>(i)]; }
  const LayerCache& layer(int i) const { return *layers_[static_cast<size_t>(i)]; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  /// Columns held (same for every layer).
  int64_t offset() const { return layers_.empty() ? 0 : layers_[0]->offset(); }
  int64_t batch() const { return layers_.empty() ? 0 : layers_[0]->batch(); }
  /// Token ids of row 0 held by the cache (maintained by the generation functions).
  std::vector<int32_t>& tokens() { return tokens_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }

  void set_padding(const std::vector<PadSpan>& pads);
  /// Rotary position of each row's next column [B] (int32): the offset minus the length of the
  /// row's padding span once the offset reaches the span (so the row's tokens after the span
  /// continue the positions before it); nullopt when that changes no row.
  std::optional<Array> row_positions() const;
  /// Rewinds every layer to `length` columns (and the token list).
  void trim_to(int64_t length);
  /// Smallest reach of trim over the layers.
  int64_t max_trim() const;
  void select_rows(const std::vector<int32_t>& rows);
  void repeat_rows(int64_t n);
  /// Every layer's buffers (to evaluate together with other arrays).
  std::vector<Array> state() const;
  /// Evaluates every buffer (cuts the lazy graph after a prefill chunk).
  void eval_state();
  int64_t nbytes() const;
  /// Empties the cache (keeps its layer options).
  void clear();
  /// Deep copy.
  PromptCache copy() const;

  /// Writes the cache to a safetensors file (buffers + JSON metadata: tokens, offsets, the
  /// model's architecture and shapes). Only single-row caches. Files do not depend on the
  /// device: a cache saved from a GPU model loads into a CPU one and back.
  void save(const std::string& path) const;
  /// Reads a file written by save() into this cache, buffers placed on the model's device;
  /// FormatError if it does not fit the model the cache was made for (layer count, shapes,
  /// dtype, window sizes).
  void load(const std::string& path);
  /// The device of the model the cache was made for.
  Device device() const { return device_; }

 private:
  PromptCache() = default;
  std::vector<std::unique_ptr<LayerCache>> layers_;
  std::vector<int32_t> tokens_;
  std::string signature_;  // architecture + shapes, checked on load
  int64_t kv_heads_ = 0, head_dim_ = 0;
  Dtype dtype_ = float32;
  Device device_ = cpu_device;
};

}  // namespace ingot::llm
