// Device pieces of rope_kv_update shared by its kernels (fast_rope.cu) and the fused new-token
// attention kernel (fast_sdpa_decode.cu): the inverse frequencies, one position's cos/sin
// (float64 sincos rounded through T) and one head row normalised and rotated by a warp, each
// computed exactly as Rope's and RmsNorm's kernels compute them.
#pragma once

#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_rope_kernels.h"

namespace ingot::cu {

__device__ __forceinline__ float rope_load_float(const void* p, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::float16:
      return to_float(static_cast<const __half*>(p)[i]);
    case Dtype::bfloat16:
      return to_float(static_cast<const __nv_bfloat16*>(p)[i]);
    case Dtype::float64:
      return static_cast<float>(static_cast<const double*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

/// Inverse frequency of pair k: p.freqs[k] when set, else inv[k] (host-computed) for k < n,
/// else 1 / base^(2k / dims) computed here.
__device__ __forceinline__ float rope_inv_freq(const RopeArgs& p, const float* inv, int n,
                                               int64_t k) {
  if (p.freqs) return rope_load_float(p.freqs, p.freqs_dtype, k * p.freqs_stride);
  if (k < n) return inv[k];
  const float e = __fdiv_rn(static_cast<float>(2 * k), static_cast<float>(p.dims));
  return __fdiv_rn(1.0f,
                   static_cast<float>(pow(static_cast<double>(p.base), static_cast<double>(e))));
}

/// cos and sin of pair k at position `pos` (already multiplied by the rope scale), evaluated
/// in float64 and rounded to float, then through T.
template <typename T>
__device__ __forceinline__ void rope_cos_sin(const RopeArgs& p, const float* inv, int n, float pos,
                                             int64_t k, float& c, float& s) {
  const float ang = __fmul_rn(pos, rope_inv_freq(p, inv, n, k));
  double sd, cd;
  sincos(static_cast<double>(ang), &sd, &cd);
  c = round_through<T>(static_cast<float>(cd));
  s = round_through<T>(static_cast<float>(sd));
}

/// Rotates element e of a row held (as the dtype's values, in float) in buf.
template <typename T>
__device__ __forceinline__ float rope_element(bool traditional, int64_t half, const float* buf,
                                              const float* cs, const float* sn, int64_t e) {
  int64_t k, i1, i2;
  if (traditional) {
    k = e / 2;
    i1 = 2 * k;
    i2 = i1 + 1;
  } else {
    k = e < half ? e : e - half;
    i1 = k;
    i2 = k + half;
  }
  const float c = cs[k], s = sn[k];
  const float x1 = buf[i1], x2 = buf[i2];
  if (e == i1)
    return round_through<T>(
        add_rn(round_through<T>(mul_rn(x1, c)), round_through<T>(mul_rn(-x2, s))));
  return round_through<T>(add_rn(round_through<T>(mul_rn(x2, c)), round_through<T>(mul_rn(x1, s))));
}

/// 16-byte vectors a lane holds of a head row of up to 256 elements of T.
template <typename T>
inline constexpr int kRopeRowVecs = 256 / (16 / int(sizeof(T))) > 32 ? 2 : 1;

/// One warp's loads of a head row src [D] (16-byte aligned, D a multiple of 16 and at most 256)
/// and of its norm weight nw (null: none): lane l holds vectors l and l + 32 (those below D / V).
template <typename T>
__device__ __forceinline__ void rope_row_load(const T* src, const T* nw, int64_t D,
                                              uint4 (&x)[kRopeRowVecs<T>],
                                              uint4 (&w)[kRopeRowVecs<T>]) {
  constexpr int V = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < kRopeRowVecs<T>; ++i) {
    const int64_t c = lane + 32 * i;
    x[i] = c < D / V ? load16(src + c * V) : make_uint4(0, 0, 0, 0);
    w[i] = nw && c < D / V ? load16(nw + c * V) : make_uint4(0, 0, 0, 0);
  }
}

/// One warp: the row loaded by rope_row_load normalised (has_norm) as RmsNorm computes it,
/// rotated with the table cs/sn [D / 2] and rounded to T, stored to dst and, when set, dst2.
/// buf: D floats of shared memory of this warp's own.
template <typename T>
__device__ __forceinline__ void rope_row_finish(const uint4 (&x)[kRopeRowVecs<T>],
                                                const uint4 (&w)[kRopeRowVecs<T>], bool has_norm,
                                                float eps, bool add_unit_offset,
                                                bool weight_in_float32, bool traditional, int64_t D,
                                                const float* cs, const float* sn, float* buf,
                                                T* dst, T* dst2) {
  constexpr int V = 16 / sizeof(T);
  constexpr int NV = kRopeRowVecs<T>;
  const int lane = threadIdx.x & 31;
  const int64_t nvec = D / V, half = D / 2;
  float vals[NV][V];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < nvec) {
      unpack16<T>(x[i], vals[i]);
#pragma unroll
      for (int j = 0; j < V; ++j) ss += vals[i][j] * vals[i][j];
    }
  }
  float r = 0.0f;
  if (has_norm) {
    ss = warp_sum(ss);
    r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  }
  __syncwarp();  // a previous row's readers of buf are done
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < nvec) {
      float wf[V];
      if (has_norm) unpack16<T>(w[i], wf);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (has_norm)
          vals[i][j] = to_float(
              rms_value<T>(vals[i][j], r, true, wf[j], add_unit_offset, weight_in_float32));
        buf[c * V + j] = vals[i][j];
      }
    }
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < nvec) {
      float o[V];
#pragma unroll
      for (int j = 0; j < V; ++j) o[j] = rope_element<T>(traditional, half, buf, cs, sn, c * V + j);
      const uint4 packed = pack16<T>(o);
      *reinterpret_cast<uint4*>(dst + c * V) = packed;
      if (dst2) *reinterpret_cast<uint4*>(dst2 + c * V) = packed;
    }
  }
}

/// rope_row_load then rope_row_finish.
template <typename T>
__device__ __forceinline__ void rope_norm_row(const T* src, const T* nw, float eps,
                                              bool add_unit_offset, bool weight_in_float32,
                                              bool traditional, int64_t D, const float* cs,
                                              const float* sn, float* buf, T* dst, T* dst2) {
  uint4 x[kRopeRowVecs<T>], w[kRopeRowVecs<T>];
  rope_row_load<T>(src, nw, D, x, w);
  rope_row_finish<T>(x, w, nw != nullptr, eps, add_unit_offset, weight_in_float32, traditional, D,
                     cs, sn, buf, dst, dst2);
}

}  // namespace ingot::cu
