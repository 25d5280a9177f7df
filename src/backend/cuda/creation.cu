// CUDA kernels of the creation primitives: Arange/Linspace values computed per element exactly
// as the CPU does (double multiply then add, no FMA; or wrapping int64) and converted with
// AsType's rules, and Eye written in one pass (no separate memset).
#include <cstdint>

#include "backend/cuda/creation_kernels.h"
#include "backend/cuda/device/ew_ops.cuh"
#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"

namespace ingot::cu {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) range_fill_kernel(T* out, RangeFill f) {
  INGOT_CUDA_KERNEL_LOOP(i, f.n) {
    if (f.integral) {
      const unsigned long long v =
          static_cast<unsigned long long>(f.start_i) +
          static_cast<unsigned long long>(i) * static_cast<unsigned long long>(f.step_i);
      out[i] = ew::convert<T>(static_cast<long long>(v));
    } else {
      // __dmul_rn/__dadd_rn: an FMA would round differently from the CPU's i * step + start.
      const double v = i == f.exact_index
                           ? f.exact_value
                           : __dadd_rn(f.start, __dmul_rn(static_cast<double>(i), f.step));
      out[i] = ew::convert<T>(v);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) eye_kernel(T* out, EyeFill e) {
  const T one = ew::convert<T>(1), zero = ew::convert<T>(0);
  INGOT_CUDA_KERNEL_LOOP(i, e.rows * e.cols) {
    const int64_t r = i / e.cols, c = i - r * e.cols;
    out[i] = c - r == e.k ? one : zero;
  }
}

}  // namespace

void launch_range_fill(Dtype t, void* out, const RangeFill& f, cudaStream_t s) {
  if (f.n == 0) return;
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    range_fill_kernel<T><<<grid_for(f.n, kThreads), kThreads, 0, s>>>(static_cast<T*>(out), f);
    check_launch("range_fill_kernel");
  });
}

void launch_eye(Dtype t, void* out, const EyeFill& e, cudaStream_t s) {
  const int64_t n = e.rows * e.cols;
  if (n == 0) return;
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    eye_kernel<T><<<grid_for(n, kThreads), kThreads, 0, s>>>(static_cast<T*>(out), e);
    check_launch("eye_kernel");
  });
}

}  // namespace ingot::cu
