// Decode over fixed-size KV buffers (DESIGN.md §3, "CUDA graphs for decode"). After prefill the
// prompt's keys and values move into buffers of a fixed capacity; every decode step then has
// the same shapes and buffers: the new column is written at a position held in a device array,
// rotary positions and the attention mask come from device arrays too. Such a step can be
// recorded once as a CUDA graph and replayed per token with no host work but writing the new
// token ids and positions (DeviceGraph). Without a graph the same step runs as ordinary lazy
// ops, on any device.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/transforms/graph.h"
#include "llm/kv_cache.h"
#include "models/model.h"

namespace ingot::llm {

/// One layer's fixed-capacity cache: keys/values [B, Hkv, C, D] written in place at a column
/// held in a device array; its mask (set per step by StaticDecoder) keeps the columns written so
/// far, outside padding and inside the layer's window.
class StaticLayerCache : public nn::KVCache {
 public:
  StaticLayerCache(Array keys, Array values, int64_t window, const Array& column);
  std::pair<Array, Array> update_and_fetch(const Array& k, const Array& v) override;
  int64_t offset() const override { return offset_; }
  std::optional<Array> mask(int64_t /*query_len*/) const override { return mask_; }
  /// The buffers and column for a fused update (fast::rope_kv_update); false when
  /// INGOT_DECODE_FUSED_KV=0 (then update_and_fetch's two put_along_axis run).
  bool fixed(Array* keys, Array* values, Array* column) const override;
  void set_fixed(Array keys, Array values) override;

  int64_t window() const { return window_; }
  const Array& keys() const { return keys_; }
  const Array& values() const { return values_; }

 private:
  friend class StaticDecoder;
  Array keys_, values_;
  int64_t window_;
  Array column_;  // [1] int32 on the device: the column the next update writes
  Array mask_;
  int64_t offset_ = 0;
};

/// Runs decode steps of a model over StaticLayerCaches, optionally replayed as a CUDA graph.
class StaticDecoder {
 public:
  /// Whether `cache` can move into fixed buffers: every layer holds its columns in order
  /// (unbounded, or a sliding-window ring that has not wrapped).
  static bool supports(const PromptCache& cache);
  /// Takes the prefilled columns of `cache` (B rows, its padding spans) into buffers of at least
  /// `capacity` columns (more are added when the steps reach it). With `use_graph` the step is
  /// recorded as a device graph at its first run (a GPU model only).
  StaticDecoder(const models::Model& model, const PromptCache& cache, int64_t capacity,
                bool use_graph);

  /// Feeds one token per row at column offset() and returns the logits [B, V] (float32). In
  /// graph mode the same array comes back from every step and the next step overwrites it:
  /// read or sample from it before calling step() again.
  Array step(const std::vector<int32_t>& tokens);
  /// Keeps only the given rows, in that order (the graph is recorded again at the next step).
  void select_rows(const std::vector<int32_t>& rows);
  /// Writes the columns [0, offset()) back into `cache` (which must be the one this decoder was
  /// made from, with no rows selected since, or a cache of one row).
  void write_back(PromptCache& cache) const;

  int64_t offset() const { return offset_; }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  /// Bytes held by the key/value buffers.
  int64_t nbytes() const;
  bool graph_recorded() const { return graph_.valid(); }
  /// Graphs recorded so far (one per batch size and capacity).
  int graphs_recorded() const { return captures_; }

 private:
  std::vector<Array> build_step();
  void write_inputs(const std::vector<int32_t>& tokens);
  void grow(int64_t capacity);

  const models::Model& model_;
  Device device_;
  bool use_graph_;
  int64_t batch_ = 0, capacity_ = 0, offset_ = 0;
  std::vector<std::unique_ptr<StaticLayerCache>> layers_;
  std::vector<int64_t> pad_begin_, pad_end_;
  // Step inputs (device buffers, rewritten before every step).
  Array tokens_;     // [B, 1] int32
  Array column_;     // [1] int32
  Array positions_;  // [B] int32: rotary position of each row's new token
  // Constant per batch/capacity: key positions [B,1,1,C] and columns outside padding.
  Array key_pos_, valid_, col_index_;
  DeviceGraph graph_;
  int captures_ = 0;
};

}  // namespace ingot::llm
