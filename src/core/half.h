// bfloat16 and float16 storage types with round-to-nearest-even conversion from float.
#pragma once

#include <cstdint>
#include <cstring>

namespace ingot {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Brain float: the top 16 bits of an IEEE float32.
struct bfloat16_t {
  uint16_t bits = 0;
  bfloat16_t() = default;
  bfloat16_t(float f) : bits(from_float(f)) {}  // NOLINT: implicit like a builtin float type
  operator float() const { return bits_f32(static_cast<uint32_t>(bits) << 16); }
  static bfloat16_t from_bits(uint16_t b) {
    bfloat16_t r;
    r.bits = b;
    return r;
  }
  static uint16_t from_float(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>(u >> 16);
  }
};

/// IEEE binary16.
struct float16_t {
  uint16_t bits = 0;
  float16_t() = default;
  float16_t(float f) : bits(from_float(f)) {}  // NOLINT
  operator float() const { return to_float(bits); }
  static float16_t from_bits(uint16_t b) {
    float16_t r;
    r.bits = b;
    return r;
  }
  static uint16_t from_float(float f) {
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
    if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
    if (a < 0x38800000u) {  // subnormal or zero in half: shift the mantissa with RNE
      if (a < 0x33000000u) return static_cast<uint16_t>(sign);  // below half the min subnormal
      uint32_t e = a >> 23;
      uint32_t m = (a & 0x7fffffu) | 0x800000u;
      uint32_t shift = 126 - e;  // so that value = m * 2^(e-150) -> units of 2^-24
      uint32_t q = m >> shift;
      uint32_t rem = m & ((1u << shift) - 1);
      uint32_t halfway = 1u << (shift - 1);
      if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
      return static_cast<uint16_t>(sign | q);
    }
    // normal: rebias exponent 127 -> 15, round mantissa 23 -> 10 bits
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  static float to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
      if (m == 0) return bits_f32(sign);
      float f = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24
      return sign ? -f : f;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
  }
};

}  // namespace ingot
