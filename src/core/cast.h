// Value conversion between storage types (bool, ints, halves, floats) used by every kernel.
#pragma once

#include <type_traits>

#include "core/half.h"

namespace ingot {

template <typename T>
inline constexpr bool is_half_v =
    std::is_same_v<T, ingot::float16_t> || std::is_same_v<T, ingot::bfloat16_t>;

/// Converts v to D: via float for 16-bit floats; to bool as v != 0.
template <typename D, typename S>
inline D cast_value(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (is_half_v<S>)
      return static_cast<float>(v) != 0.0f;
    else
      return v != S(0);
  } else if constexpr (is_half_v<S>) {
    return cast_value<D>(static_cast<float>(v));
  } else if constexpr (is_half_v<D>) {
    return D(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace ingot
