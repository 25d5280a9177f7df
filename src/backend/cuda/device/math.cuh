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

}  // namespace ingot::cu
