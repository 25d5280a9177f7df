// Caching allocators: size-class free lists in least-recently-freed order, active/peak/cache
// accounting and limits; the CPU's.
#include "core/allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/error.h"
#include "util/proc.h"

namespace ingot {
namespace {

// Size classes: 64-byte granularity up to 4 KiB, then powers of two split in quarters (so
// at most 25% slack), so freed blocks are reusable for similar sizes.
size_t size_class(size_t n) {
  if (n <= 4096) return std::max<size_t>(64, (n + 63) & ~size_t(63));
  size_t p = size_t(1) << (63 - __builtin_clzll(n));
  size_t q = p / 4;
  return (n + q - 1) / q * q;
}

// Blocks of at least this size are mapped from the system directly (whole pages), so a block
// the cache releases goes back to the system at once. Through malloc, a freed block raises
// glibc's dynamic mmap threshold and later blocks up to that size come from its heaps, where
// a freed block stays resident as a hole. Smaller blocks come from malloc (a page each would
// waste up to 63/64 of it).
constexpr size_t kMapMin = size_t(64) << 10;

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

class CpuAllocator final : public CachingAllocator {
 public:
  CpuAllocator() : CachingAllocator("cpu", size_t(4) << 30) {}
  ~CpuAllocator() override { clear_cache(); }

 protected:
  void* raw_alloc(size_t bytes) override {
    if (bytes < kMapMin) return std::aligned_alloc(64, bytes);
    const size_t len = (bytes + page_size() - 1) / page_size() * page_size();
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (len >= (size_t(2) << 20)) madvise(p, len, MADV_HUGEPAGE);
    return p;
  }
  void raw_free(void* p, size_t bytes) override {
    if (bytes < kMapMin) {
      std::free(p);
      return;
    }
    munmap(p, (bytes + page_size() - 1) / page_size() * page_size());
  }
  size_t raw_available() const override {
    const int64_t a = util::available_memory();
    return a > 0 ? static_cast<size_t>(a) : 0;
  }
};

}  // namespace

CachingAllocator::CachingAllocator(std::string name, size_t cache_limit)
    : name_(std::move(name)), cache_limit_(cache_limit) {}

Buffer CachingAllocator::malloc(size_t bytes) {
  size_t cls = size_class(std::max<size_t>(bytes, 1));
  std::lock_guard<std::mutex> lk(mu_);
  if (limit_ && active_ + cls > limit_)
    raise<OutOfMemory>(
        "[allocator] {}: allocating {} bytes would exceed the memory limit of {} bytes "
        "({} active)",
        name_, bytes, limit_, active_);
  void* p = nullptr;
  Pool* pool = routed_ ? &pools_.at(routed_) : nullptr;
  if (pool) {
    auto pit = pool->free.find(cls);
    if (pit != pool->free.end() && !pit->second.empty()) {
      p = pit->second.back();
      pit->second.pop_back();
      active_ += cls;
      peak_ = std::max(peak_, active_);
      sizes_[p] = cls;
      return Buffer{p, bytes};
    }
  }
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {  // the most recently freed of the class
    p = it->second.back()->ptr;
    lru_.erase(it->second.back());
    it->second.pop_back();
    if (it->second.empty()) free_.erase(it);
    cache_ -= cls;
  } else {
    p = raw_alloc(cls);
    if (!p) {
      release_cache_locked(SIZE_MAX);
      p = raw_alloc(cls);
    }
    if (!p)
      raise<OutOfMemory>("[allocator] {}: the system refused {} bytes ({} active, {} cached)",
                         name_, bytes, active_, cache_);
  }
  active_ += cls;
  peak_ = std::max(peak_, active_);
  sizes_[p] = cls;
  if (pool) {
    owner_[p] = routed_;
    pool->bytes += cls;
  }
  return Buffer{p, bytes};
}

int CachingAllocator::create_pool() {
  std::lock_guard<std::mutex> lk(mu_);
  const int id = next_pool_++;
  pools_.emplace(id, Pool{});
  return id;
}

int CachingAllocator::route_to_pool(int id) {
  std::lock_guard<std::mutex> lk(mu_);
  if (id != 0 && !pools_.count(id)) raise("[allocator] {}: no memory pool {}", name_, id);
  return std::exchange(routed_, id);
}

void CachingAllocator::release_pool(int id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pools_.find(id);
  if (it == pools_.end()) return;
  if (routed_ == id) routed_ = 0;
  for (auto& [cls, v] : it->second.free)
    for (void* p : v) {
      owner_.erase(p);
      cache_locked(p, cls);
    }
  for (auto o = owner_.begin(); o != owner_.end();) o = o->second == id ? owner_.erase(o) : ++o;
  pools_.erase(it);
  if (cache_ > cache_limit_) release_cache_locked(cache_ - cache_limit_);
}

size_t CachingAllocator::pool_memory(int id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pools_.find(id);
  return it == pools_.end() ? 0 : it->second.bytes;
}

void CachingAllocator::free(Buffer b) {
  if (!b.ptr) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = sizes_.find(b.ptr);
  INGOT_ASSERT(it != sizes_.end(), "freeing a block this allocator does not own");
  size_t cls = it->second;
  sizes_.erase(it);
  active_ -= cls;
  if (auto o = owner_.find(b.ptr); o != owner_.end()) {  // back to its pool, never shared
    pools_.at(o->second).free[cls].push_back(b.ptr);
    return;
  }
  if (routed_) {  // freed while a graph records: its kernels may use it, so the pool adopts it
    Pool& pool = pools_.at(routed_);
    owner_[b.ptr] = routed_;
    pool.bytes += cls;
    pool.free[cls].push_back(b.ptr);
    return;
  }
  if (cls > cache_limit_) {
    raw_free(b.ptr, cls);
    return;
  }
  if (cache_ + cls > cache_limit_) release_cache_locked(cache_ + cls - cache_limit_);
  cache_locked(b.ptr, cls);
}

void CachingAllocator::cache_locked(void* p, size_t cls) {
  lru_.push_back(Cached{p, cls, Clock::now()});
  free_[cls].push_back(std::prev(lru_.end()));
  cache_ += cls;
}

void CachingAllocator::release_oldest_locked() {
  const Cached c = lru_.front();
  auto it = free_.find(c.cls);
  // The oldest block of all is the oldest of its class: the front of the class's list.
  INGOT_ASSERT(it != free_.end() && it->second.front() == lru_.begin());
  it->second.pop_front();
  if (it->second.empty()) free_.erase(it);
  lru_.pop_front();
  cache_ -= c.cls;
  raw_free(c.ptr, c.cls);
}

size_t CachingAllocator::active_memory() const {
  std::lock_guard<std::mutex> lk(mu_);
  return active_;
}
size_t CachingAllocator::available_memory() const {
  const size_t raw = raw_available();
  std::lock_guard<std::mutex> lk(mu_);
  size_t a = raw + cache_;
  if (limit_ > 0) a = std::min(a, limit_ > active_ ? limit_ - active_ : size_t{0});
  return a;
}
size_t CachingAllocator::peak_memory() const {
  std::lock_guard<std::mutex> lk(mu_);
  return peak_;
}
size_t CachingAllocator::cache_memory() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cache_;
}
void CachingAllocator::reset_peak_memory() {
  std::lock_guard<std::mutex> lk(mu_);
  peak_ = active_;
}
size_t CachingAllocator::set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  return std::exchange(limit_, bytes);
}
size_t CachingAllocator::set_cache_limit(size_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  size_t old = std::exchange(cache_limit_, bytes);
  if (cache_ > cache_limit_) release_cache_locked(cache_ - cache_limit_);
  return old;
}
void CachingAllocator::clear_cache() {
  std::lock_guard<std::mutex> lk(mu_);
  release_cache_locked(SIZE_MAX);
}

size_t CachingAllocator::release_idle_cache(double seconds) {
  if (!(seconds >= 0))
    raise("[allocator] {}: release_idle_cache needs seconds >= 0, got {}", name_, seconds);
  const auto cutoff = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(std::min(seconds, 1e9)));
  std::lock_guard<std::mutex> lk(mu_);
  size_t released = 0;
  while (!lru_.empty() && lru_.front().freed <= cutoff) {
    released += lru_.front().cls;
    release_oldest_locked();
  }
  return released;
}

void CachingAllocator::release_cache_locked(size_t bytes) {
  size_t released = 0;
  while (!lru_.empty() && released < bytes) {
    released += lru_.front().cls;
    release_oldest_locked();
  }
}

Allocator& allocator(Device d) {
  if (d.type == Device::Type::cuda) return gpu::allocator(d.index);
  static CpuAllocator* a = new CpuAllocator();  // never destroyed: arrays may outlive statics
  return *a;
}

}  // namespace ingot
