// Paged keys/values (see paged_kv.h).
#include "llm/paged_kv.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "core/fast/paged_attention.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "util/error.h"

namespace ingot::llm {

// ---- BlockPool ----

BlockPool::BlockPool(int64_t limit, int64_t block_bytes)
    : limit_(limit), block_bytes_(block_bytes) {
  if (limit_ < 0) raise("[kv_cache] the block limit must be >= 0 (0 = none), got {}", limit_);
  if (limit_ > std::numeric_limits<int32_t>::max())
    raise("[kv_cache] the block limit must be below 2^31, got {}", limit_);
}

int64_t BlockPool::available() const {
  return limit_ == 0 ? std::numeric_limits<int64_t>::max() : limit_ - used_;
}

int32_t BlockPool::allocate() {
  if (available() <= 0) raise("[kv_cache] all {} KV blocks are in use", limit_);
  int32_t id;
  if (!free_.empty()) {
    std::pop_heap(free_.begin(), free_.end(), std::greater<>());
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<int32_t>(refs_.size());
    refs_.push_back(0);
  }
  refs_[static_cast<size_t>(id)] = 1;
  ++used_;
  return id;
}

void BlockPool::retain(int32_t id) {
  if (id < 0 || id >= high_water() || refs_[static_cast<size_t>(id)] <= 0)
    raise("[kv_cache] internal: retain of block {}, which is not in use", id);
  ++refs_[static_cast<size_t>(id)];
}

void BlockPool::release(int32_t id) {
  if (id < 0 || id >= high_water() || refs_[static_cast<size_t>(id)] <= 0)
    raise("[kv_cache] internal: release of block {}, which is not in use", id);
  if (--refs_[static_cast<size_t>(id)] == 0) {
    --used_;
    free_.push_back(id);
    std::push_heap(free_.begin(), free_.end(), std::greater<>());
  }
}

int32_t BlockPool::refs(int32_t id) const {
  if (id < 0 || id >= high_water()) return 0;
  return refs_[static_cast<size_t>(id)];
}

// ---- PrefixStore ----

PrefixStore::PrefixStore(PrefixStoreOptions opt, BlockPool& pool) : opt_(opt), pool_(pool) {
  if (opt_.block < 1) raise("[kv_cache] prefix store block must be >= 1 token, got {}", opt_.block);
  if (opt_.max_bytes < 0)
    raise("[kv_cache] prefix store budget must be >= 0 bytes, got {}", opt_.max_bytes);
}

PrefixStore::~PrefixStore() {
  clear();
}

std::vector<int32_t> PrefixStore::match(const std::vector<int32_t>& tokens, int64_t max_tokens) {
  std::vector<int32_t> out;
  const int64_t n = std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size()));
  const uint64_t now = ++tick_;
  int64_t parent = -1;
  std::pair<int64_t, std::vector<int32_t>> key;
  for (int64_t b = 0; (b + 1) * opt_.block <= n; ++b) {
    key.first = parent;
    key.second.assign(tokens.begin() + b * opt_.block, tokens.begin() + (b + 1) * opt_.block);
    auto it = edges_.find(key);
    if (it == edges_.end()) break;
    Node& node = nodes_.at(it->second);
    node.used = now;
    out.push_back(node.block);
    parent = it->second;
  }
  return out;
}

int64_t PrefixStore::insert(const std::vector<int32_t>& tokens, int64_t n,
                            const std::vector<int32_t>& blocks) {
  n = std::min<int64_t>(n, static_cast<int64_t>(tokens.size()));
  if (opt_.max_bytes == 0) return 0;
  const uint64_t now = ++tick_;
  int64_t parent = -1, added = 0;
  std::pair<int64_t, std::vector<int32_t>> key;
  for (int64_t b = 0; (b + 1) * opt_.block <= n && b < static_cast<int64_t>(blocks.size()); ++b) {
    const int64_t from = b * opt_.block, to = from + opt_.block;
    key.first = parent;
    key.second.assign(tokens.begin() + from, tokens.begin() + to);
    auto it = edges_.find(key);
    if (it != edges_.end()) {
      nodes_.at(it->second).used = now;
      parent = it->second;
      continue;
    }
    Node node;
    node.parent = parent;
    node.ids = key.second;
    node.used = now;
    node.block = blocks[static_cast<size_t>(b)];
    pool_.retain(node.block);  // shared in place: the row keeps using it
    const int64_t id = next_id_++;
    if (parent >= 0) ++nodes_.at(parent).children;
    nodes_.emplace(id, std::move(node));
    edges_.emplace(key, id);
    parent = id;
    ++added;
  }
  evict();
  return added;
}

void PrefixStore::remove(int64_t id) {
  Node& node = nodes_.at(id);
  if (node.parent >= 0) --nodes_.at(node.parent).children;
  edges_.erase({node.parent, node.ids});
  pool_.release(node.block);
  nodes_.erase(id);
}

bool PrefixStore::evict_one() {
  // The least recently used leaf no row uses (a scan: stores hold thousands of blocks at most).
  int64_t victim = -1;
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (const auto& [id, node] : nodes_)
    if (node.children == 0 && pool_.refs(node.block) == 1 && node.used < oldest) {
      oldest = node.used;
      victim = id;
    }
  if (victim < 0) return false;
  remove(victim);
  ++evicted_;
  return true;
}

int64_t PrefixStore::evictable() const {
  int64_t n = 0;
  for (const auto& [id, node] : nodes_) n += pool_.refs(node.block) == 1 ? 1 : 0;
  return n;
}

void PrefixStore::evict() {
  while (nbytes() > opt_.max_bytes)
    if (!evict_one()) return;  // everything left is in use
}

void PrefixStore::clear() {
  for (auto& [id, node] : nodes_) pool_.release(node.block);
  nodes_.clear();
  edges_.clear();
}

// ---- PagedKvCache ----

/// One layer's pools and its view of the current pass.
class PagedKvCache::Layer : public nn::KVCache {
 public:
  explicit Layer(PagedKvCache& owner) : owner_(owner) {}
  std::pair<Array, Array> update_and_fetch(const Array&, const Array&) override {
    raise<Unsupported>(
        "[kv_cache] a paged cache computes its attention itself (fast attention only, not the "
        "eager reference path)");
  }
  int64_t offset() const override { return 0; }  // positions come per row (offsets)
  bool attends() const override { return true; }
  Array attend(const Array& q, const Array& k, const Array& v, float scale, int window,
               float softcap) override {
    std::vector<Array> out = fast::paged_attention(
        q, k, v, keys, values, owner_.table_, owner_.pos_,
        {.scale = scale, .window = window, .softcap = softcap, .padding = owner_.pads_});
    keys = out[1];  // the only holders of the old pools are now the graph's (donation)
    values = out[2];
    return out[0];
  }
  Array keys, values;  // [capacity, Hkv, block, D]

 private:
  PagedKvCache& owner_;
};

namespace {

int64_t per_block_bytes(const models::Model& model, int64_t block) {
  const auto& cfg = model.config();
  return 2 * static_cast<int64_t>(model.num_layers()) * cfg.num_key_value_heads * cfg.head_dim *
         block * static_cast<int64_t>(size_of(model.dtype()));
}

}  // namespace

PagedKvCache::PagedKvCache(const models::Model& model, PagedKvOptions opt)
    : opt_(opt), pool_(opt.max_blocks, per_block_bytes(model, std::max<int64_t>(1, opt.block))) {
  if (opt_.block < 1) raise("[kv_cache] the KV block must be >= 1 position, got {}", opt_.block);
  const auto& cfg = model.config();
  kv_heads_ = cfg.num_key_value_heads;
  head_dim_ = cfg.head_dim;
  dtype_ = model.dtype();
  device_ = model.device();
  for (int i = 0; i < model.num_layers(); ++i) layers_.push_back(std::make_unique<Layer>(*this));
}

PagedKvCache::~PagedKvCache() = default;

std::vector<nn::KVCache*> PagedKvCache::layers() {
  std::vector<nn::KVCache*> out;
  for (auto& l : layers_) out.push_back(l.get());
  return out;
}

std::vector<Array> PagedKvCache::state() const {
  std::vector<Array> all;
  for (const auto& l : layers_)
    if (l->keys.valid()) {
      all.push_back(l->keys);
      all.push_back(l->values);
    }
  return all;
}

void PagedKvCache::grow(int64_t blocks) {
  if (blocks <= capacity_) return;
  int64_t want = std::max<int64_t>({blocks, 2 * capacity_, 16});
  if (opt_.max_blocks > 0) want = std::max(blocks, std::min(want, opt_.max_blocks));
  const Shape extra{want - capacity_, kv_heads_, opt_.block, head_dim_};
  std::vector<Array> fresh;
  for (auto& l : layers_) {
    Array z = zeros(extra, dtype_, device_);
    l->keys = l->keys.valid() ? concatenate({l->keys, z}, 0) : z;
    l->values = l->values.valid() ? concatenate({l->values, zeros(extra, dtype_, device_)}, 0)
                                  : zeros(extra, dtype_, device_);
    fresh.push_back(l->keys);
    fresh.push_back(l->values);
  }
  eval(fresh);
  capacity_ = want;
}

void PagedKvCache::begin_pass(const std::vector<const std::vector<int32_t>*>& tables,
                              const std::vector<int64_t>& first, const std::vector<int64_t>& pads) {
  if (tables.size() != first.size() || tables.empty() ||
      (!pads.empty() && pads.size() != tables.size()))
    raise("[kv_cache] internal: a pass needs one table and one position per row ({} and {})",
          tables.size(), first.size());
  grow(std::max<int64_t>(1, pool_.high_water()));
  size_t m = 1;
  for (const auto* t : tables) m = std::max(m, t->size());
  std::vector<int32_t> flat(tables.size() * m, 0);
  for (size_t r = 0; r < tables.size(); ++r)
    std::copy(tables[r]->begin(), tables[r]->end(),
              flat.begin() + static_cast<std::ptrdiff_t>(r * m));
  const auto b = static_cast<int64_t>(tables.size());
  table_ = Array(flat, {b, static_cast<int64_t>(m)}, int32);
  std::vector<int32_t> pos(first.begin(), first.end());
  pos_ = Array(pos, {b}, int32);
  pads_.reset();
  if (std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p > 0; })) {
    std::vector<int32_t> pd(pads.begin(), pads.end());
    pads_ = Array(pd, {b}, int32);
  }
}

}  // namespace ingot::llm
