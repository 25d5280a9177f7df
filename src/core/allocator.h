// Caching allocators, one per device, with active/peak/cache figures and limits. Exceeding a
// limit throws OutOfMemory; the process carries on.
#pragma once

#include <cstddef>

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
  /// Returns a block to the cache (or the system when the cache is full).
  virtual void free(Buffer b) = 0;
  /// Bytes handed out and not yet freed.
  virtual size_t active_memory() const = 0;
  /// Highest active_memory since start or the last reset.
  virtual size_t peak_memory() const = 0;
  /// Bytes held in the cache for reuse.
  virtual size_t cache_memory() const = 0;
  virtual void reset_peak_memory() = 0;
  /// Caps active memory; returns the previous limit. 0 means no limit.
  virtual size_t set_memory_limit(size_t bytes) = 0;
  /// Caps the cache; returns the previous limit.
  virtual size_t set_cache_limit(size_t bytes) = 0;
  /// Frees every cached block.
  virtual void clear_cache() = 0;
};

/// The allocator of a device.
Allocator& allocator(Device d = cpu_device);

namespace gpu {
/// CUDA allocator of a device (defined by the GPU backend; no_cuda throws Unsupported).
Allocator& allocator(int index);
}  // namespace gpu

/// Convenience figures for a device (default: the CPU).
namespace memory {
inline size_t active(Device d = cpu_device) {
  return allocator(d).active_memory();
}
inline size_t peak(Device d = cpu_device) {
  return allocator(d).peak_memory();
}
inline size_t cache(Device d = cpu_device) {
  return allocator(d).cache_memory();
}
inline void reset_peak(Device d = cpu_device) {
  allocator(d).reset_peak_memory();
}
inline size_t set_limit(size_t b, Device d = cpu_device) {
  return allocator(d).set_memory_limit(b);
}
inline size_t set_cache_limit(size_t b, Device d = cpu_device) {
  return allocator(d).set_cache_limit(b);
}
inline void clear_cache(Device d = cpu_device) {
  allocator(d).clear_cache();
}
}  // namespace memory

}  // namespace ingot
