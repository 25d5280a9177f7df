// Paged keys/values for continuous batching (DESIGN.md §6): a pool of fixed-size blocks per
// layer shared by every row of a BatchDecoder, reference-counted block ids (BlockPool), per-row
// block tables, and the prompt cache (PrefixStore) whose blocks are pool blocks shared in place
// by the rows whose prompts start with them. Attention reads the pool through the tables
// (fast::paged_attention).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/array.h"
#include "models/model.h"
#include "nn/attention.h"

namespace ingot::llm {

/// Reference counts of the blocks of a pool (accounting only; PagedKvCache holds the storage).
/// A block is in use while its count is positive; freed ids are reused lowest first.
class BlockPool {
 public:
  /// `limit`: most blocks in use at once (0 = no limit); `block_bytes`: bytes of one block over
  /// every layer (keys and values), for budgets.
  explicit BlockPool(int64_t limit = 0, int64_t block_bytes = 0);
  /// A free block with count 1; InvalidArgument when `limit` blocks are in use.
  int32_t allocate();
  /// count + 1 (the block must be in use).
  void retain(int32_t id);
  /// count - 1; the block is free at 0.
  void release(int32_t id);
  int32_t refs(int32_t id) const;
  /// Blocks in use.
  int64_t used() const { return used_; }
  int64_t limit() const { return limit_; }
  /// Blocks that can still be allocated (INT64_MAX without a limit).
  int64_t available() const;
  /// Ids handed out so far are below this (the storage a pool needs).
  int64_t high_water() const { return static_cast<int64_t>(refs_.size()); }
  int64_t block_bytes() const { return block_bytes_; }

 private:
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // min-heap of released ids
  int64_t used_ = 0;
  int64_t limit_ = 0;
  int64_t block_bytes_ = 0;
};

/// Options of PrefixStore.
struct PrefixStoreOptions {
  /// Token ids per block (the unit of sharing: only whole blocks are stored and reused).
  int64_t block = 16;
  /// Bytes of keys/values kept; beyond it the least recently used blocks go (0 = store none).
  int64_t max_bytes = int64_t{256} << 20;
};

/// Keys and values of token prefixes shared across requests (prompt caching). A trie whose
/// edges are blocks of `block` token ids: a node holds one pool block (a reference on it) whose
/// keys and values were computed after the whole prefix that leads to it, so a prompt starting
/// with a stored path points its block table at those blocks instead of recomputing them (no
/// copy). Blocks are looked up by exact ids (no hashing, no collisions). A block some row still
/// uses (pool count > 1) or that has children is never evicted; the others go least recently
/// used first once the store is over its byte budget, or when the pool needs room (evict_one).
class PrefixStore {
 public:
  PrefixStore(PrefixStoreOptions opt, BlockPool& pool);
  ~PrefixStore();
  PrefixStore(const PrefixStore&) = delete;
  PrefixStore& operator=(const PrefixStore&) = delete;

  /// The pool blocks of the longest stored prefix of `tokens` that has at most `max_tokens`
  /// ids, in order (their number times block() tokens); marks them recently used. The caller
  /// retains the blocks it keeps.
  std::vector<int32_t> match(const std::vector<int32_t>& tokens, int64_t max_tokens);
  /// Stores the whole blocks of the first `n` ids of `tokens` that are not stored yet:
  /// `blocks[i]` is the pool block holding positions [i * block(), (i + 1) * block()) of that
  /// sequence; the store retains the ones it adds. Returns the blocks added. Evicts afterwards.
  int64_t insert(const std::vector<int32_t>& tokens, int64_t n, const std::vector<int32_t>& blocks);
  /// Evicts the least recently used leaf that no row uses; false when there is none.
  bool evict_one();
  /// Blocks only the store holds (what evict_one can free, one leaf at a time).
  int64_t evictable() const;
  int64_t block() const { return opt_.block; }
  /// Bytes of the stored blocks (pool blocks, counted in the pool too).
  int64_t nbytes() const { return size() * pool_.block_bytes(); }
  /// Blocks stored.
  int64_t size() const { return static_cast<int64_t>(nodes_.size()); }
  /// Blocks evicted so far.
  int64_t evicted() const { return evicted_; }
  /// Releases every block.
  void clear();

 private:
  struct Node {
    int64_t parent = -1;  // -1: the root (no block)
    std::vector<int32_t> ids;
    int32_t block = -1;
    int64_t children = 0;
    uint64_t used = 0;  // tick of the last match / insert
  };
  void evict();
  void remove(int64_t id);
  PrefixStoreOptions opt_;
  BlockPool& pool_;
  std::unordered_map<int64_t, Node> nodes_;
  std::map<std::pair<int64_t, std::vector<int32_t>>, int64_t> edges_;  // (parent, ids) -> node
  int64_t next_id_ = 0;
  int64_t evicted_ = 0;
  uint64_t tick_ = 0;
};

/// Options of PagedKvCache.
struct PagedKvOptions {
  /// Positions per block.
  int64_t block = 16;
  /// Most blocks in use at once (0 = no limit); the storage grows on demand up to it.
  int64_t max_blocks = 0;
};

/// Every layer's keys and values [capacity, Hkv, block, D] in the model's dtype on its device,
/// the BlockPool that hands out their block ids, and the rows of the current forward pass
/// (their block tables and first positions), read by the per-layer nn::KVCache views, whose
/// attend() writes the pass's keys/values and runs fast::paged_attention. Storage grows (by
/// doubling, up to max_blocks) when blocks beyond it are handed out; it never shrinks.
class PagedKvCache {
 public:
  PagedKvCache(const models::Model& model, PagedKvOptions opt);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  BlockPool& pool() { return pool_; }
  const BlockPool& pool() const { return pool_; }
  int64_t block() const { return opt_.block; }
  /// Bytes of one block over every layer (keys and values).
  int64_t block_bytes() const { return pool_.block_bytes(); }
  /// Sets the rows of the next forward pass: row r reads and writes through tables[r], its
  /// query i is at position first[r] + i; its first pads[r] queries (none when pads is empty)
  /// are left padding, neither written nor attended. Every block the real queries reach must
  /// have been allocated. Grows the storage.
  void begin_pass(const std::vector<const std::vector<int32_t>*>& tables,
                  const std::vector<int64_t>& first, const std::vector<int64_t>& pads = {});
  /// first[] of the pass as an int32 array [B] (ForwardOptions::offsets: rotary positions).
  const Array& positions() const { return pos_; }
  /// One view per layer, for models::ForwardOptions::caches.
  std::vector<nn::KVCache*> layers();
  /// Every layer's pools (to evaluate with other arrays: cuts the graph).
  std::vector<Array> state() const;
  /// Blocks of storage and its bytes.
  int64_t capacity() const { return capacity_; }
  int64_t storage_bytes() const { return capacity_ * pool_.block_bytes(); }

 private:
  class Layer;
  void grow(int64_t blocks);
  PagedKvOptions opt_;
  BlockPool pool_;
  std::vector<std::unique_ptr<Layer>> layers_;
  int64_t capacity_ = 0;
  int64_t kv_heads_ = 0, head_dim_ = 0;
  Dtype dtype_ = float32;
  Device device_ = cpu_device;
  Array table_, pos_;
  std::optional<Array> pads_;
};

}  // namespace ingot::llm
