// GPU hooks core calls (defined here for CUDA builds): device count, stream synchronisation
// and reads of device arrays into host memory.
#include "core/device.h"
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

}  // namespace ingot::gpu
