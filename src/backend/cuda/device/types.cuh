// Device-side element types and conversions: ingot Dtypes map to bool, the integer types,
// __half, __nv_bfloat16, float and double; 16-bit floats compute through float.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"

namespace ingot::cu {

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
template <typename T>
inline constexpr bool is_float_v =
    is_half_v<T> || std::is_same_v<T, float> || std::is_same_v<T, double>;

/// Device storage type of a Dtype.
template <Dtype D>
struct device_type;
template <>
struct device_type<Dtype::bool_> {
  using type = bool;
};
template <>
struct device_type<Dtype::uint8> {
  using type = uint8_t;
};
template <>
struct device_type<Dtype::int8> {
  using type = int8_t;
};
template <>
struct device_type<Dtype::int32> {
  using type = int32_t;
};
template <>
struct device_type<Dtype::uint32> {
  using type = uint32_t;
};
template <>
struct device_type<Dtype::int64> {
  using type = int64_t;
};
template <>
struct device_type<Dtype::float16> {
  using type = __half;
};
template <>
struct device_type<Dtype::bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct device_type<Dtype::float32> {
  using type = float;
};
template <>
struct device_type<Dtype::float64> {
  using type = double;
};

/// Calls f(T{}) with T the device storage type of `t` (host code; a generic lambda).
template <typename F>
decltype(auto) dispatch_cuda_dtype(Dtype t, F&& f) {
  switch (t) {
    case Dtype::bool_:
      return f(bool{});
    case Dtype::uint8:
      return f(uint8_t{});
    case Dtype::int8:
      return f(int8_t{});
    case Dtype::int32:
      return f(int32_t{});
    case Dtype::uint32:
      return f(uint32_t{});
    case Dtype::int64:
      return f(int64_t{});
    case Dtype::float16:
      return f(__half{});
    case Dtype::bfloat16:
      return f(__nv_bfloat16{});
    case Dtype::float32:
      return f(float{});
    case Dtype::float64:
      return f(double{});
  }
  return f(float{});
}

/// Same, limited to the floating dtypes (others are a caller bug: throws via the fallback).
template <typename F>
decltype(auto) dispatch_cuda_float(Dtype t, F&& f) {
  switch (t) {
    case Dtype::float16:
      return f(__half{});
    case Dtype::bfloat16:
      return f(__nv_bfloat16{});
    case Dtype::float64:
      return f(double{});
    default:
      return f(float{});
  }
}

/// Accumulation type: float for 16-bit floats and float, double for double, int64 for signed
/// integers and bool, uint64 for unsigned (as the CPU backend's acc_type_t).
template <typename T>
using acc_t = std::conditional_t<
    std::is_same_v<T, double>, double,
    std::conditional_t<is_half_v<T> || std::is_same_v<T, float>, float,
                       std::conditional_t<std::is_same_v<T, uint32_t> || std::is_same_v<T, uint8_t>,
                                          unsigned long long, long long>>>;

/// Value as float (16-bit floats widen exactly).
template <typename T>
__device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, __half>)
    return __half2float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else
    return static_cast<float>(v);
}

/// Converts v to D the way the CPU backend's cast_value does for ordinary values: through
/// float for 16-bit floats (round to nearest even), to bool as v != 0. (AsType's special
/// float-to-integer rules live in elementwise.cu.)
template <typename D, typename S>
__device__ __forceinline__ D cast(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (is_half_v<S>)
      return to_float(v) != 0.0f;
    else
      return v != S(0);
  } else if constexpr (std::is_same_v<D, __half>) {
    return __float2half_rn(to_float(v));  // doubles round through float, as on the CPU
  } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    return __float2bfloat16_rn(to_float(v));
  } else if constexpr (is_half_v<S>) {
    return static_cast<D>(to_float(v));
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace ingot::cu
