// BPE model of tokenizer.json: vocab + ranked merges applied with a priority queue (O(n log n)
// per word), byte_fallback, unk fusing, ignore_merges, subword prefix/suffix, a word cache.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/pipeline.h"

namespace ingot::tokenizer {

/// Hash allowing string_view lookups in string-keyed maps.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

/// Allocates large arrays on transparent huge pages where the kernel offers them (madvise): a
/// 262k-token model's tables are ~30 MB, and a fresh process otherwise takes a page fault per
/// 4 KB of them, which on a virtual machine was most of a load from the cache.
/// `bytes` of memory (huge-page backed from 2 MB up); release with huge_page_free.
void* huge_page_alloc(size_t bytes);
void huge_page_free(void* p, size_t bytes);
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(huge_page_alloc(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { huge_page_free(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }
};
template <class T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

/// The vocab of a BPE model, string -> id, in flat arrays (open addressing, linear probing):
/// built and searched several times faster than a node-based map for a 262k-token vocab, whose
/// ~1.5M lookups while resolving the merges are most of a tokenizer's load.
class TokenIndex {
 public:
  /// Builds the index; a repeated key: its last entry counts.
  void build(std::vector<std::pair<std::string, int32_t>>&& entries);
  /// The same from views of the keys.
  void build_from_views(std::span<const std::pair<std::string_view, int32_t>> entries);
  /// The id of `token`, or -1.
  int32_t find(std::string_view token) const;
  size_t size() const { return keys_.size(); }
  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  std::vector<std::string> keys_;  // distinct keys, in order of their first entry
  std::vector<int32_t> ids_;       // ids_[i]: the id of keys_[i]
  HugeVector<uint64_t> slots_;     // 0: empty; else (hash's high 32 bits << 32) | (i + 1)
  uint64_t mask_ = 0;
};

/// (left id, right id) -> (rank, merged id) of a BPE model's merges, open addressing (a
/// node-based map of ~500k merges cost as much to build as the rest of the load).
class MergeIndex {
 public:
  struct Entry {
    uint64_t key;  // kEmpty: no entry
    int32_t rank, merged;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // no pair of ids >= 0 has this key
  void reserve(size_t n);
  /// Inserts unless `key` is present (a repeated pair keeps its first, lowest rank).
  void insert(uint64_t key, int32_t rank, int32_t merged);
  /// The slots, empty ones (key kEmpty) included, in no particular order.
  const HugeVector<Entry>& slots() const { return slots_; }
  /// The entry of `key`, or nullptr.
  const Entry* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  uint64_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_ & mask_; }
  HugeVector<Entry> slots_;
  uint64_t mask_ = 0;
  int shift_ = 0;
  size_t size_ = 0;
};

/// The vocab and merges of a BPE model read straight from tokenizer.json's text (without a
/// JSON tree for them): vocab entries in file order (a repeated key: the last one counts, as in
/// the tree), merges as (left, right) pairs in rank order.
struct BpeTables {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
};

/// A built BPE model's tables in flat form, as views (what the tokenizer cache stores,
/// tokenizer_cache.h): the vocab's distinct keys with their ids in the index's order, and the
/// distinct merges by increasing rank. Rebuilding from it skips the merges' ~1.5M vocab lookups.
struct BpeSnapshot {
  struct Merge {
    int32_t left, right, rank, merged;
  };
  std::vector<std::pair<std::string_view, int32_t>> vocab;
  std::span<const Merge> merges;
};

/// The BPE model ("model": {"type": "BPE", ...}).
class Bpe {
 public:
  explicit Bpe(const json& model);
  /// The same model with its "vocab" and "merges" given as tables (`model`'s own entries for
  /// them, if any, are ignored): the result equals Bpe(model with those entries).
  Bpe(const json& model, BpeTables tables);
  /// The model whose vocab keys/ids and merges_by_rank() `snapshot` holds, given the same
  /// `model` options (its "vocab" and "merges", if any, are ignored). A snapshot no model has
  /// (an id out of range or missing from the vocab, a repeated key, ranks out of order) is a
  /// FormatError.
  Bpe(const json& model, const BpeSnapshot& snapshot);
  /// The distinct merges by increasing rank (a repeated pair kept its lowest rank).
  std::vector<BpeSnapshot::Merge> merges_by_rank() const;

  /// Appends the ids of one pre-tokenized word to `out`.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  const TokenIndex& vocab() const { return vocab_; }
  /// Token string of `id`, or nullptr.
  const std::string* id_to_token(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < id_key_.size() && id_key_[id] >= 0
               ? &vocab_.keys()[static_cast<size_t>(id_key_[id])]
               : nullptr;
  }

 private:
  void load_options(const json& model);
  void build(BpeTables tables);
  void index_ids();  // id_key_ and byte_ids_ of a built vocab_
  void set_unk(const json& model);
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  TokenIndex vocab_;
  std::vector<int32_t> id_key_;  // id -> its key's index in vocab_.keys(), -1: none
  MergeIndex merges_;            // (a,b) -> (rank, new id)
  int32_t byte_ids_[256];
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  std::string prefix_, suffix_;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace ingot::tokenizer
