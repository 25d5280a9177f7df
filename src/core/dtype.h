// Element types, their sizes and names, and NumPy/MLX type promotion.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/half.h"

namespace ingot {

/// Element type of an Array.
enum class Dtype : uint8_t {
  bool_,
  uint8,
  int8,
  int32,
  uint32,
  int64,
  float16,
  bfloat16,
  float32,
  float64,
};
inline constexpr int kNumDtypes = 10;

inline constexpr Dtype bool_ = Dtype::bool_;
inline constexpr Dtype uint8 = Dtype::uint8;
inline constexpr Dtype int8 = Dtype::int8;
inline constexpr Dtype int32 = Dtype::int32;
inline constexpr Dtype uint32 = Dtype::uint32;
inline constexpr Dtype int64 = Dtype::int64;
inline constexpr Dtype float16 = Dtype::float16;
inline constexpr Dtype bfloat16 = Dtype::bfloat16;
inline constexpr Dtype float32 = Dtype::float32;
inline constexpr Dtype float64 = Dtype::float64;

/// Bytes per element.
size_t size_of(Dtype t);
/// "float32", "bfloat16", ...
std::string_view dtype_name(Dtype t);
/// Parses a name as dtype_name prints it (also "bf16", "f16", "f32", "fp32", "half", "float");
/// throws InvalidArgument naming the string otherwise.
Dtype dtype_from_name(std::string_view name);

bool is_floating(Dtype t);
bool is_integral(Dtype t);  // ints and bool
bool is_signed_int(Dtype t);
bool is_unsigned_int(Dtype t);  // uint8, uint32 (not bool)

/// Result type of a binary op on a and b (NumPy rules as MLX applies them, e.g.
/// int32+float16=float16, bfloat16+float16=float32, uint32+int32=int64).
Dtype promote_types(Dtype a, Dtype b);

/// C++ storage type for a Dtype and back.
template <Dtype T>
struct dtype_traits;
template <>
struct dtype_traits<Dtype::bool_> {
  using type = bool;
};
template <>
struct dtype_traits<Dtype::uint8> {
  using type = uint8_t;
};
template <>
struct dtype_traits<Dtype::int8> {
  using type = int8_t;
};
template <>
struct dtype_traits<Dtype::int32> {
  using type = int32_t;
};
template <>
struct dtype_traits<Dtype::uint32> {
  using type = uint32_t;
};
template <>
struct dtype_traits<Dtype::int64> {
  using type = int64_t;
};
template <>
struct dtype_traits<Dtype::float16> {
  using type = ingot::float16_t;
};
template <>
struct dtype_traits<Dtype::bfloat16> {
  using type = ingot::bfloat16_t;
};
template <>
struct dtype_traits<Dtype::float32> {
  using type = float;
};
template <>
struct dtype_traits<Dtype::float64> {
  using type = double;
};

template <typename T>
constexpr Dtype dtype_of();
template <>
constexpr Dtype dtype_of<bool>() {
  return Dtype::bool_;
}
template <>
constexpr Dtype dtype_of<uint8_t>() {
  return Dtype::uint8;
}
template <>
constexpr Dtype dtype_of<int8_t>() {
  return Dtype::int8;
}
template <>
constexpr Dtype dtype_of<int32_t>() {
  return Dtype::int32;
}
template <>
constexpr Dtype dtype_of<uint32_t>() {
  return Dtype::uint32;
}
template <>
constexpr Dtype dtype_of<int64_t>() {
  return Dtype::int64;
}
template <>
constexpr Dtype dtype_of<ingot::float16_t>() {
  return Dtype::float16;
}
template <>
constexpr Dtype dtype_of<ingot::bfloat16_t>() {
  return Dtype::bfloat16;
}
template <>
constexpr Dtype dtype_of<float>() {
  return Dtype::float32;
}
template <>
constexpr Dtype dtype_of<double>() {
  return Dtype::float64;
}

/// Calls f(T{}) with T the storage type of `t` (a generic lambda taking a typed tag).
template <typename F>
decltype(auto) dispatch_dtype(Dtype t, F&& f) {
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
      return f(ingot::float16_t{});
    case Dtype::bfloat16:
      return f(ingot::bfloat16_t{});
    case Dtype::float32:
      return f(float{});
    case Dtype::float64:
      return f(double{});
  }
  return f(float{});
}

/// Accumulation type for reductions: float32 for 16-bit floats, double for double, int64 for
/// integers (bool included).
template <typename T>
using acc_type_t = std::conditional_t<
    std::is_same_v<T, double>, double,
    std::conditional_t<std::is_same_v<T, float> || std::is_same_v<T, ingot::float16_t> ||
                           std::is_same_v<T, ingot::bfloat16_t>,
                       float,
                       std::conditional_t<std::is_same_v<T, uint32_t> || std::is_same_v<T, uint8_t>,
                                          uint64_t, int64_t>>>;

}  // namespace ingot
