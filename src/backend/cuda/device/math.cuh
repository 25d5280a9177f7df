// Device arithmetic with the CPU backend's rounding points: accumulation-type widening,
// multiply/add without FMA contraction, and rounding through a storage type.
#pragma once

#include "backend/cuda/device/types.cuh"

namespace ingot::cu {

/// v widened to the accumulation type A (16-bit floats through float).
template <typename A, typename T>
__device__ __forceinline__ A to_acc(T v) {
  if constexpr (is_half_v<T>)
    return static_cast<A>(to_float(v));
  else
    return static_cast<A>(v);
}

/// Products and sums rounded on their own, as the CPU computes them (no fused multiply-add).
__device__ __forceinline__ float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}
__device__ __forceinline__ float add_rn(float a, float b) {
  return __fadd_rn(a, b);
}
__device__ __forceinline__ double add_rn(double a, double b) {
  return __dadd_rn(a, b);
}

/// v rounded to T's precision and widened back (identity for float and double).
template <typename T, typename A>
__device__ __forceinline__ A round_through(A v) {
  if constexpr (is_half_v<T>)
    return static_cast<A>(to_float(cast<T>(v)));
  else
    return v;
}

/// RmsNorm's output element for x value v and inverse deviation r, weight w in the compute type
/// (ignored without a weight), rounded as the CPU kernel does: the norm kernels and the GEMV's
/// norm prologue share it.
template <typename T, typename A>
__device__ __forceinline__ T rms_value(A v, A r, bool has_weight, A w, bool add_unit_offset,
                                       bool weight_in_float32) {
  A y = mul_rn(v, r);
  if (has_weight) {
    if (add_unit_offset) w = add_rn(w, A(1));
    if (!weight_in_float32) y = round_through<T>(y);
    y = mul_rn(y, w);
  }
  return cast<T>(y);
}

}  // namespace ingot::cu
