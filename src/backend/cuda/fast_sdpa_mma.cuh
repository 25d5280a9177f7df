// The tensor-core pieces of the flash attention kernels (fast_sdpa.cu) shared with the packed
// attention kernel (packed_attention.cu): the ldmatrix/mma wrappers (device/mma.cuh), a warp's row
// state, S = Q K^T, the online softmax step and O += P V over shared-memory tiles.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cuda/device/mma.cuh"
#include "backend/cuda/fast_sdpa_common.cuh"

namespace ingot::cu::sdpa_detail {

using cu::ldsm_x4;
using cu::ldsm_x4_t;
using cu::mma_16816;
using cu::pack2;

// 2^x by the MUFU unit (relative error about 2^-22; 2^-inf = 0).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <int D>
struct MmaTile {
  static constexpr int kKeys = D <= 128 ? 64 : 32;  // keys per tile (register budget at D=256)
  static constexpr int kStride = D + 8;     // smem row stride: rows shift banks, ldmatrix is clean
  static constexpr int kChunks = D / 8;     // 16-byte chunks per row
  static constexpr bool kQRegs = D <= 128;  // Q fragments kept in registers
};

// The pieces of the tensor-core kernels. One warp per 16 rows (1 to 4 warps). Fragment layouts
// follow PTX's mma.m16n8k16: thread (g = lane / 4, q = lane % 4) holds rows g and g + 8,
// columns 2q and 2q + 1 of each 8-wide tile.

// Per-thread state of a warp's 16 rows: Q fragments (QR: kept in registers, by default when
// D <= 128), output accumulators and the online softmax's running maximum (log2 units) and sum.
template <int D, bool QR = MmaTile<D>::kQRegs>
struct MmaRows {
  static constexpr bool kQRegs = QR;
  uint32_t qf[QR ? D / 16 : 1][4];
  float o[D / 8][4];
  float m[2], l[2];
  Row rw[2];
};

// s = Q K_j^T for the warp's 16 rows and the tile's keys (K tile in shared memory).
template <typename T, int D, bool QR>
__device__ __forceinline__ void mma_scores(float (&s)[MmaTile<D>::kKeys / 8][4],
                                           const MmaRows<D, QR>& r, const T* qwarp, const T* ks) {
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < BC / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    if constexpr (QR) {
      af[0] = r.qf[kk][0], af[1] = r.qf[kk][1], af[2] = r.qf[kk][2], af[3] = r.qf[kk][3];
    } else {
      ldsm_x4(af, qwarp + kk * 16);
    }
#pragma unroll
    for (int n2 = 0; n2 < BC / 16; ++n2) {
      uint32_t bf[4];
      ldsm_x4(bf, ks + (n2 * 16 + (lane & 7) + ((lane >> 4) << 3)) * ST + kk * 16 +
                      (((lane >> 3) & 1) << 3));
      mma_16816<T>(s[2 * n2], af, bf[0], bf[1]);
      mma_16816<T>(s[2 * n2 + 1], af, bf[2], bf[3]);
    }
  }
}

// The online softmax step over a tile of scores already scaled to log2 units (masked keys
// -inf): turns them into probabilities and rescales the accumulators and sums by the change of
// the running maximum.
template <int D, bool QR>
__device__ __forceinline__ void mma_online_softmax(float (&s)[MmaTile<D>::kKeys / 8][4],
                                                   MmaRows<D, QR>& r) {
  constexpr int BC = MmaTile<D>::kKeys;
  float alpha[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float mx = r.m[i];
#pragma unroll
    for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * i], s[n][2 * i + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    // A row that has seen no visible key keeps max -inf; its probabilities are 2^-inf = 0.
    const float mu = mx == -INFINITY ? 0.0f : mx;
    alpha[i] = ex2(r.m[i] - mu);
    r.m[i] = mx;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 2 * i; e < 2 * i + 2; ++e) {
        s[n][e] = ex2(s[n][e] - mu);
        sum += s[n][e];
      }
    r.l[i] = r.l[i] * alpha[i] + sum;  // this thread's columns; the quad is summed at the end
  }
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    r.o[dt][0] *= alpha[0], r.o[dt][1] *= alpha[0];
    r.o[dt][2] *= alpha[1], r.o[dt][3] *= alpha[1];
  }
}

// O += P V_j (V tile in shared memory).
template <typename T, int D, bool QR>
__device__ __forceinline__ void mma_pv(MmaRows<D, QR>& r,
                                       const float (&s)[MmaTile<D>::kKeys / 8][4], const T* vs) {
  constexpr int BC = MmaTile<D>::kKeys, ST = MmaTile<D>::kStride;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kt = 0; kt < BC / 16; ++kt) {
    const uint32_t pa[4] = {
        pack2<T>(s[2 * kt][0], s[2 * kt][1]), pack2<T>(s[2 * kt][2], s[2 * kt][3]),
        pack2<T>(s[2 * kt + 1][0], s[2 * kt + 1][1]), pack2<T>(s[2 * kt + 1][2], s[2 * kt + 1][3])};
#pragma unroll
    for (int d2 = 0; d2 < D / 16; ++d2) {
      uint32_t bf[4];
      ldsm_x4_t(bf, vs + (kt * 16 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ST + d2 * 16 +
                        ((lane >> 4) << 3));
      mma_16816<T>(r.o[2 * d2], pa, bf[0], bf[1]);
      mma_16816<T>(r.o[2 * d2 + 1], pa, bf[2], bf[3]);
    }
  }
}

// Sums the row sums over the quad (after the last tile).
template <int D, bool QR>
__device__ __forceinline__ void mma_rows_end(MmaRows<D, QR>& r) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    r.l[i] += __shfl_xor_sync(0xffffffffu, r.l[i], 1);
    r.l[i] += __shfl_xor_sync(0xffffffffu, r.l[i], 2);
  }
}

// The warp's 16 rows divided by their sums and rounded to T, staged through `stage` ([16][ST],
// shared memory no other warp reads), then handed out as 16-byte chunks: store(i, ch, chunk)
// for row i of the warp's 16 and chunk ch (elements 8 ch .. 8 ch + 7), rows past the end
// included (store skips them).
template <typename T, int D, bool QR, typename F>
__device__ __forceinline__ void mma_write_rows(const MmaRows<D, QR>& r, T* stage, F&& store) {
  constexpr int ST = MmaTile<D>::kStride, CH = MmaTile<D>::kChunks;
  const int lane = threadIdx.x & 31, quad = lane & 3;
  const float inv[2] = {r.l[0] > 0.0f ? 1.0f / r.l[0] : 0.0f, r.l[1] > 0.0f ? 1.0f / r.l[1] : 0.0f};
  __syncwarp();
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int i = 0; i < 2; ++i)
      *reinterpret_cast<uint32_t*>(stage + ((lane >> 2) + 8 * i) * ST + dt * 8 + quad * 2) =
          pack2<T>(r.o[dt][2 * i] * inv[i], r.o[dt][2 * i + 1] * inv[i]);
  __syncwarp();
  for (int idx = lane; idx < 16 * CH; idx += 32) {
    const int i = idx / CH, ch = idx % CH;
    store(i, ch, *reinterpret_cast<const uint4*>(stage + i * ST + ch * 8));
  }
  __syncwarp();
}

}  // namespace ingot::cu::sdpa_detail
