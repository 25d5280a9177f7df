// 16-byte vectors of float, half or bfloat16 elements: loads that bypass L1, and conversion of
// a vector to and from float (the GEMV and decode-attention kernels read operands this way).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ingot::cu {

/// Elements of T in 16 bytes.
template <typename T>
inline constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

/// 16 bytes read once (weights streamed past): not kept in L1, where reused operands live.
__device__ __forceinline__ uint4 load_stream16(const void* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

/// 16 bytes through the read-only cache.
__device__ __forceinline__ uint4 load16(const void* p) {
  return __ldg(static_cast<const uint4*>(p));
}

/// The kVec16<T> elements of a 16-byte vector as floats (T: float, __half or __nv_bfloat16).
template <typename T>
__device__ __forceinline__ void unpack16(const uint4& v, float* f) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      f[i] = __uint_as_float(u[i]);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      f[2 * i] = __uint_as_float(u[i] << 16);  // bf16 is float's high half
      f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    } else {
      __half2 h;
      memcpy(&h, &u[i], sizeof(h));
      const float2 x = __half22float2(h);
      f[2 * i] = x.x;
      f[2 * i + 1] = x.y;
    }
  }
}

/// kVec16<T> floats rounded to T (round to nearest even) as one 16-byte vector.
template <typename T>
__device__ __forceinline__ uint4 pack16(const float* f) {
  uint32_t u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      u[i] = __float_as_uint(f[i]);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
      memcpy(&u[i], &h, sizeof(h));
    } else {
      const __half2 h = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
      memcpy(&u[i], &h, sizeof(h));
    }
  }
  return make_uint4(u[0], u[1], u[2], u[3]);
}

}  // namespace ingot::cu
