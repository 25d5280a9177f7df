// CUDA kernel of GluGrad: one pass over g, u and dh, writing dg and du. du = dh * round(act(g))
// takes the forward kernels' rounded activation (gated_act) and the multiply's rounding, so it
// is the composition's value bit for bit; dg = dh * u * act'(g) uses the derivative formulas
// the CPU uses (backend/common/activation_grad.h) in float32 (float64 for float64).
#include <cstdint>
#include <type_traits>

#include "backend/common/activation_grad.h"
#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_glu_kernels.h"
#include "backend/cuda/gemv_common.cuh"

namespace ingot::cu {
namespace {

constexpr int kThreads = 256;

/// One element: g, u, h widened to T's compute type C (float for 16-bit T).
template <typename T, typename C>
__device__ __forceinline__ void glu_grad_one(int act, C g, C u, C h, T* dg, T* du) {
  *dg = ew::from_compute<T>(h * u * actgrad::derivative<C>(act, g));
  *du = ew::from_compute<T>(ew::MultiplyOp{}(h, gated_act<T>(g, act + 1)));
}

// Each thread takes V consecutive elements of one row: one 16-byte vector of each operand when
// V > 1 and the row has V elements left (the launcher checks alignment), else element by
// element. Each element is read and written by the same thread, so du may alias dh.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads) glu_grad_kernel(int act, GluGradRows p) {
  pdl_prologue();
  using C = ew::compute_t<T>;
  const int64_t per_row = (p.k + V - 1) / V;
  INGOT_CUDA_KERNEL_LOOP(i, p.rows * per_row) {
    const int64_t r = i / per_row, j = (i - r * per_row) * V;
    const T* g = static_cast<const T*>(p.g) + r * p.sg + j;
    const T* u = static_cast<const T*>(p.u) + r * p.su + j;
    const T* h = static_cast<const T*>(p.dh) + r * p.sd + j;
    T* dg = static_cast<T*>(p.dg) + r * p.k + j;
    T* du = static_cast<T*>(p.du) + r * p.k + j;
    if constexpr (V > 1) {
      if (j + V <= p.k) {
        float gf[V], uf[V], hf[V], dgf[V], duf[V];
        unpack16<T>(load16(g), gf);
        unpack16<T>(load16(u), uf);
        // A plain load (not the read-only path): du may be dh's buffer.
        unpack16<T>(*reinterpret_cast<const uint4*>(h), hf);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          dgf[e] = hf[e] * uf[e] * actgrad::derivative<float>(act, gf[e]);
          duf[e] = ew::MultiplyOp{}(hf[e], gated_act<T>(gf[e], act + 1));
        }
        *reinterpret_cast<uint4*>(dg) = pack16<T>(dgf);
        *reinterpret_cast<uint4*>(du) = pack16<T>(duf);
        continue;
      }
    }
    for (int e = 0; e < V && j + e < p.k; ++e)
      glu_grad_one<T, C>(act, ew::to_compute<C>(g[e]), ew::to_compute<C>(u[e]),
                         ew::to_compute<C>(h[e]), dg + e, du + e);
  }
}

}  // namespace

void launch_glu_grad(Dtype t, int act, const GluGradRows& p, cudaStream_t s) {
  if (p.rows == 0 || p.k == 0) return;
  dispatch_cuda_float(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, double>) {
      launch_pdl(glu_grad_kernel<T, 1>, grid_for(p.rows * p.k, kThreads), dim3(kThreads), 0, s, act,
                 p);
    } else {
      constexpr int V = kVec16<T>;
      const auto a16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
      // Every row's first element 16-byte aligned (one row: its start only).
      const bool rows_aligned =
          p.rows == 1 || (p.k % V == 0 && p.sg % V == 0 && p.su % V == 0 && p.sd % V == 0);
      const bool vec = rows_aligned && a16(p.g) && a16(p.u) && a16(p.dh) && a16(p.dg) && a16(p.du);
      if (vec)
        launch_pdl(glu_grad_kernel<T, V>, grid_for(p.rows * ((p.k + V - 1) / V), kThreads),
                   dim3(kThreads), 0, s, act, p);
      else
        launch_pdl(glu_grad_kernel<T, 1>, grid_for(p.rows * p.k, kThreads), dim3(kThreads), 0, s,
                   act, p);
    }
  });
  check_launch("glu_grad_kernel");
}

}  // namespace ingot::cu
