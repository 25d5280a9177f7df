// CUDA kernel of ActivationGrad: 16-byte vectors of x and g where aligned, the derivative in
// float32 (float64 for float64) from backend/common/activation_grad.h, one rounding.
#include <cstdint>
#include <type_traits>

#include "backend/common/activation_grad.h"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_activation_kernels.h"

namespace ingot::cu {
namespace {

constexpr int kThreads = 256;

// Vectors of V elements first (V = 1: every element), then the tail one by one. Each element
// is read and written by the same thread, so out may alias g.
template <typename T, typename A, int V>
__global__ void __launch_bounds__(kThreads)
    act_grad_kernel(const T* x, const T* g, T* out, int64_t n, int act) {
  pdl_prologue();
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t i = first; i < nv; i += stride) {
    if constexpr (V > 1) {
      float xv[V], gv[V];
      // Plain loads (not the read-only path): out may be g's buffer.
      unpack16<T>(*reinterpret_cast<const uint4*>(x + i * V), xv);
      unpack16<T>(*reinterpret_cast<const uint4*>(g + i * V), gv);
#pragma unroll
      for (int j = 0; j < V; ++j) gv[j] *= actgrad::derivative<float>(act, xv[j]);
      *reinterpret_cast<uint4*>(out + i * V) = pack16<T>(gv);
    } else {
      const A d = actgrad::derivative<A>(act, to_acc<A>(x[i]));
      out[i] = cast<T>(to_acc<A>(g[i]) * d);
    }
  }
  for (int64_t i = nv * V + first; i < n; i += stride) {
    const A d = actgrad::derivative<A>(act, to_acc<A>(x[i]));
    out[i] = cast<T>(to_acc<A>(g[i]) * d);
  }
}

}  // namespace

void launch_activation_grad(Dtype t, int act, const void* x, const void* g, void* out, int64_t n,
                            cudaStream_t s) {
  if (n == 0) return;
  dispatch_cuda_float(t, [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* xp = static_cast<const T*>(x);
    const T* gp = static_cast<const T*>(g);
    T* op = static_cast<T*>(out);
    const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(g) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(out) % 16 == 0;
    if constexpr (!std::is_same_v<T, double>) {
      if (aligned) {
        constexpr int V = kVec16<T>;
        launch_pdl(act_grad_kernel<T, A, V>, grid_for(n / V + 1, kThreads), dim3(kThreads), 0, s,
                   xp, gp, op, n, act);
        return;
      }
    }
    launch_pdl(act_grad_kernel<T, A, 1>, grid_for(n, kThreads), dim3(kThreads), 0, s, xp, gp, op, n,
               act);
  });
  check_launch("activation_grad_kernel");
}

}  // namespace ingot::cu
