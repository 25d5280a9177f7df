// Caching allocators, one per device, with active/peak/cache figures and limits. Exceeding a
// limit throws OutOfMemory; the process carries on.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/device.h"

namespace ingot {

/// A block of device memory. `size` is the size asked for.
struct Buffer {
  void* ptr = nullptr;
  size_t size = 0;
};

/// Interface every device allocator implements.
class Allocator {
 public:
  virtual ~Allocator() = default;
  /// Returns a block of at least `bytes` (64-byte aligned); throws OutOfMemory.
  virtual Buffer malloc(size_t bytes) = 0;
  /// Returns a block to the cache; past the cache limit the least recently freed cached blocks
  /// go back to the system.
  virtual void free(Buffer b) = 0;
  /// Bytes handed out and not yet freed.
  virtual size_t active_memory() const = 0;
  /// Highest active_memory since start or the last reset.
  virtual size_t peak_memory() const = 0;
  /// Bytes held in the cache for reuse.
  virtual size_t cache_memory() const = 0;
  /// Bytes new allocations could still get now: the device's (or host's) free memory plus this
  /// allocator's cache, within the memory limit. An estimate for sizing work (batches).
  virtual size_t available_memory() const = 0;
  virtual void reset_peak_memory() = 0;
  /// Caps active memory; returns the previous limit. 0 means no limit.
  virtual size_t set_memory_limit(size_t bytes) = 0;
  /// Caps the cache; returns the previous limit.
  virtual size_t set_cache_limit(size_t bytes) = 0;
  /// Frees every cached block.
  virtual void clear_cache() = 0;
  /// Frees the cached blocks that have waited `seconds` or longer since they were freed (no
  /// allocation took them since): the cache keeps what recent work reuses, and sizes no longer
  /// asked for stop holding memory. Returns the bytes released.
  virtual size_t release_idle_cache(double seconds) = 0;
};

/// Size-class caching on top of a raw source of memory (the CPU's mmap / aligned_alloc, CUDA's
/// cudaMalloc): freed blocks are kept for reuse up to the cache limit (an allocation takes the
/// most recently freed block of its size class; over the limit, the least recently freed go
/// first), active memory is capped by the memory limit, and a refused raw allocation releases
/// the cache and retries once.
class CachingAllocator : public Allocator {
 public:
  /// `name` ("cpu", "cuda:0") prefixes error messages.
  explicit CachingAllocator(std::string name, size_t cache_limit);
  Buffer malloc(size_t bytes) override;
  void free(Buffer b) override;
  size_t active_memory() const override;
  size_t peak_memory() const override;
  size_t cache_memory() const override;
  size_t available_memory() const override;
  void reset_peak_memory() override;
  size_t set_memory_limit(size_t bytes) override;
  size_t set_cache_limit(size_t bytes) override;
  void clear_cache() override;
  size_t release_idle_cache(double seconds) override;

  /// Private pools, for CUDA graphs: a replayed graph writes into every block its captured
  /// kernels used, so those blocks must never go to anyone else. While a pool is routed, malloc
  /// takes blocks from the pool's free list first (else the shared cache or the system) and the
  /// blocks belong to the pool: freeing one returns it to the pool, whether or not the pool is
  /// still routed, until release_pool(). A block of the shared cache freed while a pool is
  /// routed is adopted by the pool too (recorded kernels may have used it). New pool ids start
  /// at 1.
  int create_pool();
  /// Routes allocations to pool `id` (0: the shared cache). Returns the previous routing.
  int route_to_pool(int id);
  /// Gives the pool's free blocks to the shared cache; its blocks still in use go there when
  /// freed. The id is not reused.
  void release_pool(int id);
  /// Bytes owned by a pool (in use or free in it).
  size_t pool_memory(int id) const;

 protected:
  /// A fresh block of `bytes` (a size class), or nullptr when the system refuses.
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* p, size_t bytes) = 0;
  /// Free memory of the raw source (the host's available memory, the GPU's free memory).
  virtual size_t raw_available() const = 0;

 private:
  using Clock = std::chrono::steady_clock;
  /// A block in the shared cache.
  struct Cached {
    void* ptr;
    size_t cls;
    Clock::time_point freed;
  };
  /// Frees cached blocks, least recently freed first, until `bytes` are released.
  void release_cache_locked(size_t bytes);
  /// Adds a block to the shared cache (most recently freed).
  void cache_locked(void* p, size_t cls);
  /// Frees the least recently freed cached block.
  void release_oldest_locked();

  const std::string name_;
  mutable std::mutex mu_;
  std::list<Cached> lru_;  // the shared cache, least recently freed first
  std::map<size_t, std::deque<std::list<Cached>::iterator>> free_;  // by class, oldest first
  std::unordered_map<void*, size_t> sizes_;
  struct Pool {
    std::map<size_t, std::vector<void*>> free;
    size_t bytes = 0;
  };
  std::map<int, Pool> pools_;
  std::unordered_map<void*, int> owner_;  // block -> pool (blocks of live pools only)
  int routed_ = 0, next_pool_ = 1;
  size_t active_ = 0, peak_ = 0, cache_ = 0;
  size_t limit_ = 0;
  size_t cache_limit_;
};

/// The allocator of a device.
Allocator& allocator(Device d = cpu_device);

namespace gpu {
/// CUDA allocator of a device (defined by the GPU backend; no_cuda throws Unsupported).
Allocator& allocator(int index);
}  // namespace gpu

/// Convenience figures for a device (default: the default device, where new arrays go).
namespace memory {
inline size_t active(Device d = default_device()) {
  return allocator(d).active_memory();
}
inline size_t peak(Device d = default_device()) {
  return allocator(d).peak_memory();
}
inline size_t cache(Device d = default_device()) {
  return allocator(d).cache_memory();
}
inline size_t available(Device d = default_device()) {
  return allocator(d).available_memory();
}
inline void reset_peak(Device d = default_device()) {
  allocator(d).reset_peak_memory();
}
inline size_t set_limit(size_t b, Device d = default_device()) {
  return allocator(d).set_memory_limit(b);
}
inline size_t set_cache_limit(size_t b, Device d = default_device()) {
  return allocator(d).set_cache_limit(b);
}
inline void clear_cache(Device d = default_device()) {
  allocator(d).clear_cache();
}
inline size_t release_idle_cache(double seconds, Device d = default_device()) {
  return allocator(d).release_idle_cache(seconds);
}
}  // namespace memory

}  // namespace ingot
