// Host caching allocator: size-class free lists, active/peak/cache accounting and limits.
#include "core/allocator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/error.h"

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

class CpuAllocator final : public Allocator {
 public:
  ~CpuAllocator() override { clear_cache(); }

  Buffer malloc(size_t bytes) override {
    size_t cls = size_class(std::max<size_t>(bytes, 1));
    std::lock_guard<std::mutex> lk(mu_);
    if (limit_ && active_ + cls > limit_)
      raise<OutOfMemory>(
          "[allocator] cpu: allocating {} bytes would exceed the memory limit of {} bytes "
          "({} active)",
          bytes, limit_, active_);
    void* p = nullptr;
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cache_ -= cls;
    } else {
      p = std::aligned_alloc(64, cls);
      if (!p) {
        release_cache_locked(SIZE_MAX);
        p = std::aligned_alloc(64, cls);
      }
      if (!p)
        raise<OutOfMemory>("[allocator] cpu: the system refused {} bytes ({} active)", bytes,
                           active_);
      if (cls >= (size_t(2) << 20)) madvise(p, cls, MADV_HUGEPAGE);
    }
    active_ += cls;
    peak_ = std::max(peak_, active_);
    sizes_[p] = cls;
    return Buffer{p, bytes};
  }

  void free(Buffer b) override {
    if (!b.ptr) return;
    std::lock_guard<std::mutex> lk(mu_);
    auto it = sizes_.find(b.ptr);
    INGOT_ASSERT(it != sizes_.end(), "freeing a block this allocator does not own");
    size_t cls = it->second;
    sizes_.erase(it);
    active_ -= cls;
    if (cls > cache_limit_) {
      std::free(b.ptr);
      return;
    }
    if (cache_ + cls > cache_limit_) release_cache_locked(cache_ + cls - cache_limit_);
    free_[cls].push_back(b.ptr);
    cache_ += cls;
  }

  size_t active_memory() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return active_;
  }
  size_t peak_memory() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return peak_;
  }
  size_t cache_memory() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return cache_;
  }
  void reset_peak_memory() override {
    std::lock_guard<std::mutex> lk(mu_);
    peak_ = active_;
  }
  size_t set_memory_limit(size_t bytes) override {
    std::lock_guard<std::mutex> lk(mu_);
    return std::exchange(limit_, bytes);
  }
  size_t set_cache_limit(size_t bytes) override {
    std::lock_guard<std::mutex> lk(mu_);
    size_t old = std::exchange(cache_limit_, bytes);
    if (cache_ > cache_limit_) release_cache_locked(cache_ - cache_limit_);
    return old;
  }
  void clear_cache() override {
    std::lock_guard<std::mutex> lk(mu_);
    release_cache_locked(SIZE_MAX);
  }

 private:
  // Frees cached blocks, largest classes first, until `bytes` are released.
  void release_cache_locked(size_t bytes) {
    size_t released = 0;
    for (auto it = free_.rbegin(); it != free_.rend() && released < bytes; ++it) {
      auto& v = it->second;
      while (!v.empty() && released < bytes) {
        std::free(v.back());
        v.pop_back();
        released += it->first;
        cache_ -= it->first;
      }
    }
  }

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> sizes_;
  size_t active_ = 0, peak_ = 0, cache_ = 0;
  size_t limit_ = 0;
  size_t cache_limit_ = size_t(4) << 30;
};

}  // namespace

Allocator& allocator(Device d) {
  if (d.type == Device::Type::cuda) return gpu::allocator(d.index);
  static CpuAllocator* a = new CpuAllocator();  // never destroyed: arrays may outlive statics
  return *a;
}

}  // namespace ingot
