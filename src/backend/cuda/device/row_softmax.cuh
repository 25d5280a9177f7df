// Row state of the softmax-family kernels (softmax.cu, cross_entropy.cu): a running max and sum
// of exponentials per thread, merged per warp or block in a fixed order.
#pragma once

#include <cuda_runtime.h>

#include <limits>
#include <type_traits>

#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/reduce_kernels.h"

namespace ingot::cu::rowsm {

template <typename T>
using comp_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__device__ __forceinline__ comp_t<T> to_c(T v) {
  if constexpr (is_half_v<T>)
    return to_float(v);
  else
    return static_cast<comp_t<T>>(v);
}

__device__ __forceinline__ float c_exp(float v) {
  return expf(v);
}
__device__ __forceinline__ double c_exp(double v) {
  return exp(v);
}
__device__ __forceinline__ float c_log(float v) {
  return logf(v);
}
__device__ __forceinline__ double c_log(double v) {
  return log(v);
}

template <typename C>
__device__ __forceinline__ bool finite(C v) {
  return v > -std::numeric_limits<C>::infinity() && v < std::numeric_limits<C>::infinity();
}

/// Running max m (NaN once any NaN was seen) and s = sum of exp(x - m); s only matters
/// while m is finite.
template <typename C>
struct MS {
  C m;
  C s;
};

template <typename C>
__device__ __forceinline__ MS<C> ms_init() {
  return {-std::numeric_limits<C>::infinity(), C(0)};
}

template <typename C>
__device__ __forceinline__ MS<C> shfl_xor(MS<C> a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
}

template <typename C>
__device__ __forceinline__ void ms_step(MS<C>& st, C x) {
  if (x != x) {
    st.m = x;
  } else if (x > st.m) {  // false once m is NaN or +inf: those rows are decided
    st.s = st.s * c_exp(st.m - x) + C(1);
    st.m = x;
  } else if (x > -std::numeric_limits<C>::infinity() && st.m < std::numeric_limits<C>::infinity()) {
    st.s += c_exp(x - st.m);
  }
}

struct MSMerge {
  template <typename C>
  __device__ MS<C> operator()(MS<C> a, MS<C> b) const {
    if (a.m != a.m) return a;
    if (b.m != b.m) return b;
    const C m = a.m > b.m ? a.m : b.m;
    if (!finite(m)) return {m, C(0)};
    return {m, a.s * c_exp(a.m - m) + b.s * c_exp(b.m - m)};
  }
};

/// logsumexp of a merged row: the max itself when it is not finite (all -inf or empty, +inf,
/// NaN), as the CPU.
template <typename C>
__device__ __forceinline__ C lse_of(MS<C> t) {
  return finite(t.m) ? t.m + c_log(t.s) : t.m;
}

/// Output value of x given the row's merged state: NaN for rows whose max is not finite
/// (the CPU's exp(x - m) of inf - inf).
template <typename C>
struct RowOut {
  C m, inv, lse;
  bool bad, log;
  __device__ RowOut(MS<C> t, bool lg) : m(t.m), inv(C(1) / t.s), lse(lse_of(t)), log(lg) {
    bad = !finite(t.m);
  }
  __device__ C operator()(C x) const {
    if (bad) return std::numeric_limits<C>::quiet_NaN();
    return log ? x - lse : c_exp(x - m) * inv;
  }
};

/// Which rows a thread of a row kernel works on: a warp per row (kWarp, kRowThreads / 32 rows per
/// block) or the whole block per row. t of nt is the thread's place within its row's threads;
/// rows first, first + step, ...
template <bool kWarp>
struct RowThreads {
  int t, nt;
  int64_t first, step;
  __device__ RowThreads() {
    t = kWarp ? (threadIdx.x & 31) : threadIdx.x;
    nt = kWarp ? 32 : blockDim.x;
    const int per_block = kWarp ? kRowThreads / 32 : 1;
    first = int64_t(blockIdx.x) * per_block + (kWarp ? (threadIdx.x >> 5) : 0);
    step = int64_t(gridDim.x) * per_block;
  }
};

__device__ __forceinline__ bool contiguous(const Layout& l) {
  return l.ndim == 1 && l.strides[0] == 1;
}

/// The running state of elements [b, e) of a row that thread t of nt owns.
template <typename T>
__device__ __forceinline__ MS<comp_t<T>> row_stats(const T* row, const Layout& red, int64_t b,
                                                   int64_t e, int t, int nt) {
  auto st = ms_init<comp_t<T>>();
  if (contiguous(red))
    for_each_contig(row, b, e, t, nt, [&](T v, int64_t) { ms_step(st, to_c(v)); });
  else
    for (int64_t j = b + t; j < e; j += nt) ms_step(st, to_c(row[red_offset(j, red)]));
  return st;
}

}  // namespace ingot::cu::rowsm
