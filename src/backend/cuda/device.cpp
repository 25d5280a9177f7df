// GPU hooks core calls (defined here for CUDA builds): device count, stream synchronisation
// and reads of device arrays into host memory.
#include "core/device.h"

#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "backend/cuda/utils.h"
#include "util/error.h"

namespace ingot::gpu {

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: a CPU-only run
      return 0;
    }
    return n;
  }();
  return count;
}

void synchronize(Stream s) {
  INGOT_CUDA_CHECK(cudaStreamSynchronize(cu::stream(s)));
  cu::check_index_fault(s.device);
}

void copy_to_host(const Array& a, void* dst) {
  if (a.size() == 0) return;
  const Stream s = default_stream(a.device());
  cudaStream_t st = cu::stream(s);
  if (a.flags().row_contiguous) {
    INGOT_CUDA_CHECK(cudaMemcpyAsync(dst, a.raw_ptr(), a.nbytes(), cudaMemcpyDeviceToHost, st));
    INGOT_CUDA_CHECK(cudaStreamSynchronize(st));
  } else {
    cu::Scratch tmp(a.device(), a.nbytes());
    cu::copy_to_row_major_device(a, tmp.ptr(), st);
    INGOT_CUDA_CHECK(cudaMemcpyAsync(dst, tmp.ptr(), a.nbytes(), cudaMemcpyDeviceToHost, st));
    INGOT_CUDA_CHECK(cudaStreamSynchronize(st));  // before the scratch block is reused
  }
  cu::check_index_fault(a.device());
}

namespace {

// Pinned host blocks for start_host_read, kept for reuse in power-of-two sizes (up to kKeep
// bytes in all; cudaHostAlloc costs far more than a copy of a batch's results).
class PinnedPool {
 public:
  static constexpr size_t kKeep = size_t(64) << 20;

  void* get(size_t bytes, size_t& size) {
    size = 4096;
    while (size < bytes) size <<= 1;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        kept_ -= size;
        return p;
      }
    }
    void* p = nullptr;
    INGOT_CUDA_CHECK(cudaHostAlloc(&p, size, cudaHostAllocPortable));
    return p;
  }

  void put(void* p, size_t size) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (kept_ + size <= kKeep) {
        free_.emplace(size, p);
        kept_ += size;
        return;
      }
    }
    (void)cudaFreeHost(p);
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t kept_ = 0;
};

PinnedPool& pinned_pool() {
  static PinnedPool* p = new PinnedPool();  // never destroyed: outlives the CUDA context's users
  return *p;
}

struct HostRead {
  Device device;
  void* host = nullptr;
  size_t size = 0;
  cudaEvent_t done = nullptr;
  std::optional<cu::Scratch> staging;  // a non-contiguous array's row-major copy
  bool waited = false;

  ~HostRead() {
    if (done) {
      if (!waited) (void)cudaEventSynchronize(done);  // the copy may still write `host`
      (void)cudaEventDestroy(done);
    }
    if (host) pinned_pool().put(host, size);
  }
};

}  // namespace

std::shared_ptr<void> start_host_read(const Array& a) {
  auto r = std::make_shared<HostRead>();
  r->device = a.device();
  const cudaStream_t st = cu::stream(default_stream(a.device()));
  r->host = pinned_pool().get(a.nbytes(), r->size);
  INGOT_CUDA_CHECK(cudaEventCreateWithFlags(&r->done, cudaEventDisableTiming));
  const void* src = a.raw_ptr();
  if (!a.flags().row_contiguous) {
    r->staging.emplace(a.device(), a.nbytes());
    cu::copy_to_row_major_device(a, r->staging->ptr(), st);
    src = r->staging->ptr();
  }
  INGOT_CUDA_CHECK(cudaMemcpyAsync(r->host, src, a.nbytes(), cudaMemcpyDeviceToHost, st));
  INGOT_CUDA_CHECK(cudaEventRecord(r->done, st));
  return r;
}

const void* finish_host_read(const std::shared_ptr<void>& read) {
  auto* r = static_cast<HostRead*>(read.get());
  if (!r->waited) {
    INGOT_CUDA_CHECK(cudaEventSynchronize(r->done));
    r->waited = true;
    cu::check_index_fault(r->device);
  }
  return r->host;
}

}  // namespace ingot::gpu
