// CUDA kernels of the copying shape ops: a strided copy with optional dtype conversion (used by
// slice_update and concatenate; same-dtype copies move 16-byte units where the layout allows)
// and a one-pass pad.
#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/shape_kernels.h"

namespace ingot::cu {

namespace {

constexpr int kThreads = 256;

/// Value conversion of the CPU's cast_value: unlike cast<>, double reaches 16-bit floats
/// through float (the CPU rounds twice there).
template <typename D, typename S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<S, double> && is_half_v<D>)
    return cast<D>(static_cast<float>(v));
  else
    return cast<D>(v);
}

template <typename S, typename D>
__global__ void strided_copy_kernel(const S* src, D* dst, StridedCopy c, int64_t n) {
  pdl_prologue();
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    int64_t r = i, so = 0, dof = 0;
    for (int d = c.ndim - 1; d >= 0; --d) {
      const int64_t q = r / c.shape[d];
      const int64_t k = r - q * c.shape[d];
      so += k * c.src_strides[d];
      dof += k * c.dst_strides[d];
      r = q;
    }
    if constexpr (std::is_same_v<S, D>)
      dst[dof] = src[so];
    else
      dst[dof] = convert<D>(src[so]);
  }
}

bool aligned(const void* p, int bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

/// Rescales a same-dtype copy of `e`-byte elements to the widest unit (<= 16 bytes) that the
/// innermost run, every other stride and both pointers allow; returns the unit's size.
int widen_units(StridedCopy& c, int e) {
  const int last = c.ndim - 1;
  if (last < 0 || c.src_strides[last] != 1 || c.dst_strides[last] != 1) return e;
  for (int v = 16; v > e; v /= 2) {
    if (v % e != 0) continue;
    const int64_t r = v / e;
    bool ok = c.shape[last] % r == 0 && aligned(c.src, v) && aligned(c.dst, v);
    for (int d = 0; ok && d < last; ++d)
      ok = c.src_strides[d] % r == 0 && c.dst_strides[d] % r == 0;
    if (!ok) continue;
    c.shape[last] /= r;
    for (int d = 0; d < last; ++d) {
      c.src_strides[d] /= r;
      c.dst_strides[d] /= r;
    }
    return v;
  }
  return e;
}

template <typename T>
__global__ void pad_kernel(const T* a, const T* value, T* out, PadCopy p, int64_t n) {
  const T fill = *value;
  INGOT_CUDA_KERNEL_LOOP(i, n) {
    int64_t r = i, src = 0;
    bool inside = true;
    for (int d = p.ndim - 1; d >= 0; --d) {
      const int64_t q = r / p.out_shape[d];
      const int64_t c = r - q * p.out_shape[d] - p.low[d];
      r = q;
      inside = inside && c >= 0 && c < p.in_shape[d];
      src += c * p.in_strides[d];
    }
    out[i] = inside ? a[src] : fill;
  }
}

}  // namespace

void launch_strided_copy(const StridedCopy& c0, cudaStream_t s) {
  int64_t n = 1;
  for (int d = 0; d < c0.ndim; ++d) n *= c0.shape[d];
  if (n == 0) return;
  if (c0.src_type != c0.dst_type) {
    dispatch_cuda_dtype(c0.src_type, [&](auto s0) {
      using S = decltype(s0);
      dispatch_cuda_dtype(c0.dst_type, [&](auto d0) {
        using D = decltype(d0);
        launch_pdl(strided_copy_kernel<S, D>, grid_for(n, kThreads), kThreads, 0, s,
                   static_cast<const S*>(c0.src), static_cast<D*>(c0.dst), c0, n);
      });
    });
    check_launch("strided_copy_kernel (convert)");
    return;
  }
  const int e = static_cast<int>(size_of(c0.src_type));
  if (c0.ndim == 1 && c0.src_strides[0] == 1 && c0.dst_strides[0] == 1) {
    INGOT_CUDA_CHECK(
        cudaMemcpyAsync(c0.dst, c0.src, static_cast<size_t>(n) * e, cudaMemcpyDeviceToDevice, s));
    return;
  }
  StridedCopy c = c0;
  const int unit = widen_units(c, e);
  const int64_t units = n * e / unit;
  dispatch_unit(unit, [&](auto u0) {
    using U = decltype(u0);
    launch_pdl(strided_copy_kernel<U, U>, grid_for(units, kThreads), kThreads, 0, s,
               static_cast<const U*>(c.src), static_cast<U*>(c.dst), c, units);
  });
  check_launch("strided_copy_kernel");
}

void launch_pad(const PadCopy& p, cudaStream_t s) {
  int64_t n = 1;
  for (int d = 0; d < p.ndim; ++d) n *= p.out_shape[d];
  if (n == 0) return;
  dispatch_unit(p.elem_size, [&](auto u0) {
    using T = decltype(u0);
    pad_kernel<T><<<grid_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(p.a), static_cast<const T*>(p.value), static_cast<T*>(p.out), p, n);
  });
  check_launch("pad_kernel");
}

}  // namespace ingot::cu
