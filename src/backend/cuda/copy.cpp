// Moving arrays between devices (ToDevice) and the view primitives on CUDA (views only touch
// metadata; a Reshape that strides cannot express copies on the device).
#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "backend/common/views.h"
#include "backend/cuda/graph.h"
#include "backend/cuda/utils.h"
#include "core/primitives/creation.h"
#include "core/primitives/views.h"

namespace ingot {
namespace {

// Host-to-device copies of large buffers (weights read from a memory map) go through a ring of
// pinned staging buffers: the host fills one (page faults of the map included) while the DMA
// engine drains the others, and a buffer is refilled only after its copy's event fired.
class PinnedRing {
 public:
  static constexpr size_t kChunk = size_t(32) << 20;
  static constexpr int kSlots = 3;

  void copy(void* dst, const void* src, size_t bytes, cudaStream_t st) {
    std::lock_guard<std::mutex> lk(mu_);
    init();
    const char* in = static_cast<const char*>(src);
    char* out = static_cast<char*>(dst);
    for (size_t off = 0; off < bytes; off += kChunk) {
      const size_t n = std::min(kChunk, bytes - off);
      Slot& s = slots_[next_];
      next_ = (next_ + 1) % kSlots;
      INGOT_CUDA_CHECK(cudaEventSynchronize(s.done));
      std::memcpy(s.host, in + off, n);
      INGOT_CUDA_CHECK(cudaMemcpyAsync(out + off, s.host, n, cudaMemcpyHostToDevice, st));
      INGOT_CUDA_CHECK(cudaEventRecord(s.done, st));
    }
  }

 private:
  struct Slot {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
  };
  void init() {
    if (slots_[0].host) return;
    for (Slot& s : slots_) {
      INGOT_CUDA_CHECK(cudaHostAlloc(&s.host, kChunk, cudaHostAllocPortable));
      INGOT_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    }
  }
  std::mutex mu_;
  Slot slots_[kSlots];
  int next_ = 0;
};

PinnedRing& pinned_ring() {
  static PinnedRing* r = new PinnedRing();  // never destroyed: outlives the CUDA context's users
  return *r;
}

}  // namespace

void ToDevice::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (in.device().type == Device::Type::cpu && cu::capturing(out.device()) && out.size() > 0) {
    std::vector<uint8_t> tmp(in.nbytes());
    copy_to_row_major(in, tmp.data());
    cu::upload_during_capture(out, tmp.data(), tmp.size());
    return;
  }
  cu::alloc(out);
  if (out.size() == 0) return;
  cudaStream_t st = cu::stream(stream());
  if (in.device().type == Device::Type::cpu) {
    // Pageable host memory: cudaMemcpyAsync stages it before returning, so a temporary
    // row-major copy may be dropped right after.
    std::vector<uint8_t> tmp;
    const void* src = in.raw_ptr();
    if (!in.flags().row_contiguous || in.data_size() != in.size()) {
      tmp.resize(in.nbytes());
      copy_to_row_major(in, tmp.data());
      src = tmp.data();
    }
    if (in.nbytes() >= (size_t(4) << 20))
      pinned_ring().copy(out.raw_ptr(), src, in.nbytes(), st);
    else
      INGOT_CUDA_CHECK(
          cudaMemcpyAsync(out.raw_ptr(), src, in.nbytes(), cudaMemcpyHostToDevice, st));
    return;
  }
  // From another GPU: a row-major copy on the source device, then a peer copy ordered after it.
  cudaStream_t src_st = cu::stream(default_stream(in.device()));
  cu::Scratch tmp(in.device(), in.nbytes());
  cu::copy_to_row_major_device(in, tmp.ptr(), src_st);
  INGOT_CUDA_CHECK(cudaStreamSynchronize(src_st));
  st = cu::stream(stream());
  INGOT_CUDA_CHECK(cudaMemcpyPeerAsync(out.raw_ptr(), out.device().index, tmp.ptr(),
                                       in.device().index, in.nbytes(), st));
  INGOT_CUDA_CHECK(cudaStreamSynchronize(st));  // before the source scratch is reused
}

void Reshape::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  if (backend::reshape_view(inputs[0], out)) return;
  cu::alloc(out);
  cu::copy_to_row_major_device(inputs[0], out.raw_ptr(), cu::stream(stream()));
}

void Transpose::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  backend::transpose_view(inputs[0], out, axes_);
}

void Broadcast::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  backend::broadcast_view(inputs[0], out);
}

void Slice::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  if (out.size() == 0) {
    cu::alloc(out);
    return;
  }
  backend::slice_view(inputs[0], out, start_, strides_);
}

}  // namespace ingot
