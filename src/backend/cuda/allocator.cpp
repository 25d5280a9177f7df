// The CUDA caching allocator: size classes over cudaMalloc, one per device, never destroyed
// (arrays may outlive static destruction). Blocks are reused in stream order: every kernel of a
// device runs on that device's one stream, so a block freed after its last use is queued is safe
// to hand to the next kernel on the same stream without waiting.
#include <mutex>
#include <vector>

#include "backend/cuda/utils.h"
#include "core/allocator.h"
#include "util/error.h"

namespace ingot {
namespace {

class CudaAllocator final : public CachingAllocator {
 public:
  explicit CudaAllocator(int index)
      : CachingAllocator("cuda:" + std::to_string(index), size_t(16) << 30), index_(index) {}

 protected:
  void* raw_alloc(size_t bytes) override {
    cu::set_device(Device{Device::Type::cuda, index_});
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky: clear it, the caller releases the cache and retries
      return nullptr;
    }
    if (e != cudaSuccess) cu::throw_cuda_error(e, "cudaMalloc", __FILE__, __LINE__);
    return p;
  }
  void raw_free(void* p, size_t) override {
    cu::set_device(Device{Device::Type::cuda, index_});
    cudaFree(p);  // synchronises the device, so queued kernels finish with the block first
  }
  size_t raw_available() const override {
    cu::set_device(Device{Device::Type::cuda, index_});
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return free;
  }

 private:
  const int index_;
};

}  // namespace

namespace gpu {

Allocator& allocator(int index) {
  static std::mutex mu;
  static std::vector<CudaAllocator*>* all = new std::vector<CudaAllocator*>();
  if (index < 0 || index >= device_count())
    raise("[cuda] cuda:{} requested but {} CUDA device(s) are available", index, device_count());
  std::lock_guard<std::mutex> lk(mu);
  if (all->size() <= static_cast<size_t>(index)) all->resize(index + 1, nullptr);
  if (!(*all)[index]) (*all)[index] = new CudaAllocator(index);
  return *(*all)[index];
}

}  // namespace gpu
}  // namespace ingot
