// The attention backward on tensor cores through mma.sync with the fragments kept in registers
// (FlashAttention-2's scheme), for the unmasked problems training runs: no mask (causal and
// sliding-window allowed), 16-bit q/k/v, D == Dv in {64, 128}. fast_sdpa_bwd.cu's wmma kernels
// (scores and dP staged in shared memory as floats) keep every other case.
//
// Three kernels, 4 warps a CTA, each warp owning 16 rows of the CTA's 64:
//  - rows: per query row, lse in log2 units (the row's online max and sum over S = Q K^T,
//    recomputed) and delta = d_out . out. A row that sees no key gets +inf, so every P of it is
//    2^-inf = 0.
//  - dk/dv: a CTA per (batch, kv head, 64 keys); a warp's 16 keys are the rows of
//    S^T = K Q^T and dP^T = V dO^T over the query tiles of every head of the group; P^T and
//    dS^T stay in the accumulators and feed dV += P^T dO and dK += dS^T Q as A fragments.
//    The next query tile (q, d_out, lse, delta) loads while the current one is multiplied.
//  - dq: a CTA per (batch, head, 64 queries); S = Q K^T and dP = dO V^T per key tile, then
//    dQ += dS K; the next key tile loads while the current one is multiplied.
// q, k, v, out and d_out are read through their (batch, head, position) strides (attention's
// transposed [B, L, H, D] storage in place); dq, dk, dv are written row-major. No atomics: every
// output element is written once (deterministic). P and dS are rounded to the input dtype
// before their products, as in fast_sdpa_bwd.cu.
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/fast_sdpa_bwd_kernels.h"
#include "backend/cuda/fast_sdpa_mma.cuh"
#include "util/env.h"

namespace ingot::cu {
namespace {

using sdpa_detail::cp_async16;
using sdpa_detail::cp_async_commit;
using sdpa_detail::cp_async_wait;
using sdpa_detail::ex2;
using sdpa_detail::ldsm_x4;
using sdpa_detail::ldsm_x4_t;
using sdpa_detail::mma_16816;
using sdpa_detail::pack2;

constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct BwdMma {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int kRows = 16 * kWarps;        // a CTA's own rows (queries or keys)
  static constexpr int kTile = D <= 64 ? 64 : 32;  // rows of the tiles a CTA loops over
  static constexpr int kRowsTile = 64;             // key tile of the rows kernel
  static constexpr int kST = D + 8;                // shared row stride: ldmatrix is conflict-free
  static constexpr int kCH = D / 8;                // 16-byte chunks a row
  static constexpr size_t kRowBytes = size_t(kST) * 2;
  // dk/dv: k, v [kRows]; two buffers of q, d_out [kTile], lse, delta [kTile].
  static constexpr size_t kSmemKv =
      2 * kRows * kRowBytes + 2 * (2 * kTile * kRowBytes) + 2 * 2 * kTile * sizeof(float);
  // dq: q, d_out [kRows]; two buffers of k, v [kTile].
  static constexpr size_t kSmemQ = 2 * kRows * kRowBytes + 2 * (2 * kTile * kRowBytes);
  // rows: q [kRows]; two buffers of k [kRowsTile].
  static constexpr size_t kSmemRows = kRows * kRowBytes + 2 * kRowsTile * kRowBytes;
};

// Row l of head h of batch b of an input read through its (batch, head, position) strides.
template <typename T>
__device__ __forceinline__ const T* row_at(const void* base, const int64_t (&st)[3], int64_t b,
                                           int64_t h, int64_t l) {
  return static_cast<const T*>(base) + b * st[0] + h * st[1] + l * st[2];
}

// Rows [0, n) of a [n][D] tile at src (row stride rs elements) into dst (row stride kST),
// async; rows at or past `valid` are zeros (their source is not read).
template <typename T, int D>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t rs, int n, int64_t valid) {
  constexpr int CH = BwdMma<D>::kCH, ST = BwdMma<D>::kST;
  for (int idx = threadIdx.x; idx < n * CH; idx += blockDim.x) {
    const int r = idx / CH, c = idx % CH;
    const bool ok = r < valid;
    cp_async16(dst + r * ST + c * 8, src + (ok ? int64_t(r) * rs + c * 8 : 0), ok);
  }
}

// The lane's ldmatrix address of the A fragments of the 16 rows at `rows` (a [16][kST] tile).
template <typename T, int D>
__device__ __forceinline__ const T* a_lane(const T* rows) {
  const int lane = threadIdx.x & 31;
  return rows + (lane & 15) * BwdMma<D>::kST + (lane >> 4) * 8;
}

// c = A B^T: A the warp's 16 rows (a_lane address), B N rows of D at bs; c[n] holds columns
// 8n .. 8n + 7 in the mma accumulator layout.
template <typename T, int D, int N>
__device__ __forceinline__ void product_abt(float (&c)[N / 8][4], const T* a, const T* bs) {
  constexpr int ST = BwdMma<D>::kST;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < N / 8; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
  const T* b = bs + ((lane & 7) + ((lane >> 4) << 3)) * ST + (((lane >> 3) & 1) << 3);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    ldsm_x4(af, a + kk * 16);
#pragma unroll
    for (int n2 = 0; n2 < N / 16; ++n2) {
      uint32_t bf[4];
      ldsm_x4(bf, b + n2 * 16 * ST + kk * 16);
      mma_16816<T>(c[2 * n2], af, bf[0], bf[1]);
      mma_16816<T>(c[2 * n2 + 1], af, bf[2], bf[3]);
    }
  }
}

// acc += P B: P the warp's [16][N] accumulators (rounded to T as A fragments), B a row-major
// [N][D] tile at bs.
template <typename T, int D, int N>
__device__ __forceinline__ void product_pb(float (&acc)[D / 8][4], const float (&p)[N / 8][4],
                                           const T* bs) {
  constexpr int ST = BwdMma<D>::kST;
  const int lane = threadIdx.x & 31;
  const T* b = bs + ((lane & 7) + (((lane >> 3) & 1) << 3)) * ST + ((lane >> 4) << 3);
#pragma unroll
  for (int kt = 0; kt < N / 16; ++kt) {
    const uint32_t pa[4] = {
        pack2<T>(p[2 * kt][0], p[2 * kt][1]), pack2<T>(p[2 * kt][2], p[2 * kt][3]),
        pack2<T>(p[2 * kt + 1][0], p[2 * kt + 1][1]), pack2<T>(p[2 * kt + 1][2], p[2 * kt + 1][3])};
#pragma unroll
    for (int d2 = 0; d2 < D / 16; ++d2) {
      uint32_t bf[4];
      ldsm_x4_t(bf, b + kt * 16 * ST + d2 * 16);
      mma_16816<T>(acc[2 * d2], pa, bf[0], bf[1]);
      mma_16816<T>(acc[2 * d2 + 1], pa, bf[2], bf[3]);
    }
  }
}

template <int D>
__device__ __forceinline__ void zero_acc(float (&acc)[D / 8][4]) {
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
}

// The warp's 16 accumulator rows rounded to T into global rows dst (row-major, length D), the
// first `valid` of them, staged through `stage` (16 rows of shared memory only this warp reads)
// so that rows go out in 16-byte stores.
template <typename T, int D>
__device__ __forceinline__ void store_rows(const float (&acc)[D / 8][4], T* stage, T* dst,
                                           int64_t valid) {
  constexpr int ST = BwdMma<D>::kST, CH = BwdMma<D>::kCH;
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  __syncwarp();
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
    for (int i = 0; i < 2; ++i)
      *reinterpret_cast<uint32_t*>(stage + (g + 8 * i) * ST + dt * 8 + q * 2) =
          pack2<T>(acc[dt][2 * i], acc[dt][2 * i + 1]);
  __syncwarp();
  for (int idx = lane; idx < 16 * CH; idx += 32) {
    const int r = idx / CH, ch = idx % CH;
    if (r < valid)
      *reinterpret_cast<uint4*>(dst + int64_t(r) * D + ch * 8) =
          *reinterpret_cast<const uint4*>(stage + r * ST + ch * 8);
  }
  __syncwarp();
}

// True when key j is visible to query row i (causal band and window; no mask on this path).
__device__ __forceinline__ bool visible(const SdpaBwdArgs& a, int64_t i, int64_t j) {
  const int64_t pos = a.S - a.L + i;
  return !a.causal || (j <= pos && (a.window <= 0 || j > pos - a.window));
}

// True when every key of [j0, j1] is visible to every query row of [i0, i1] (and below S).
__device__ __forceinline__ bool tile_visible(const SdpaBwdArgs& a, int64_t i0, int64_t i1,
                                             int64_t j0, int64_t j1) {
  if (j1 >= a.S) return false;
  const int64_t off = a.S - a.L;
  return !a.causal || (j1 <= i0 + off && (a.window <= 0 || j0 > i1 + off - a.window));
}

// Keys [kb, ke) that some query row of [i0, i1) sees.
__device__ __forceinline__ void keys_of(const SdpaBwdArgs& a, int64_t i0, int64_t i1, int64_t& kb,
                                        int64_t& ke) {
  kb = 0;
  ke = a.S;
  if (a.causal) {
    const int64_t off = a.S - a.L;
    ke = max(int64_t(0), min(ke, i1 - 1 + off + 1));
    if (a.window > 0) kb = max(kb, i0 + off - a.window + 1);
  }
}

// ---- rows: lse (log2 units, +inf for a row that sees nothing) and delta ----

template <typename T, int D>
__global__ void __launch_bounds__(BwdMma<D>::kThreads) sdpa_bwd_mma_rows(const SdpaBwdArgs a) {
  using C = BwdMma<D>;
  constexpr int BR = C::kRows, BC = C::kRowsTile, ST = C::kST;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* kbuf = qs + BR * ST;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, quad = lane & 3;
  const int64_t bh = blockIdx.x % (a.B * a.H), i0 = (blockIdx.x / (a.B * a.H)) * BR;
  const int64_t b = bh / a.H, hk = (bh % a.H) / (a.H / a.Hkv);
  const int64_t nq = min(int64_t(BR), a.L - i0);
  const int64_t h = bh % a.H;
  const T* k = row_at<T>(a.k, a.k_st, b, hk, 0);
  int64_t kb, ke;
  keys_of(a, i0, i0 + nq, kb, ke);

  load_tile<T, D>(qs, row_at<T>(a.q, a.q_st, b, h, i0), a.q_st[2], BR, nq);
  if (kb < ke) load_tile<T, D>(kbuf, k + kb * a.k_st[2], a.k_st[2], BC, ke - kb);
  cp_async_commit();

  // delta of the warp's rows: D / 8 lanes a row, 16-byte loads.
  {
    constexpr int LPR = D / 8, RPP = 32 / LPR;
    const T* o = row_at<T>(a.out, a.o_st, b, h, i0);
    const T* dout = row_at<T>(a.d_out, a.g_st, b, h, i0);
    for (int r0 = warp * 16; r0 < warp * 16 + 16; r0 += RPP) {
      const int r = r0 + lane / LPR, ch = lane % LPR;
      float acc = 0.0f;
      if (r < nq) {
        const uint4 xo = *reinterpret_cast<const uint4*>(o + r * a.o_st[2] + ch * 8);
        const uint4 xg = *reinterpret_cast<const uint4*>(dout + r * a.g_st[2] + ch * 8);
        const T* po = reinterpret_cast<const T*>(&xo);
        const T* pg = reinterpret_cast<const T*>(&xg);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc += to_float(po[e]) * to_float(pg[e]);
      }
#pragma unroll
      for (int w = LPR / 2; w > 0; w /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, w);
      if (r < nq && ch == 0) a.delta[bh * a.L + i0 + r] = acc;
    }
  }

  const float sl2 = a.scale * kLog2e;
  const int64_t rw = i0 + warp * 16 + g;  // the thread's rows rw and rw + 8
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const T* qa = a_lane<T, D>(qs + warp * 16 * ST);
  int buf = 0;
  for (int64_t j0 = kb; j0 < ke; j0 += BC, buf ^= 1) {
    if (j0 + BC < ke)
      load_tile<T, D>(kbuf + (buf ^ 1) * BC * ST, k + (j0 + BC) * a.k_st[2], a.k_st[2], BC,
                      ke - j0 - BC);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // tile j0 (and q) landed
    float s[BC / 8][4];
    product_abt<T, D, BC>(s, qa, kbuf + buf * BC * ST);
    const bool full = tile_visible(a, i0, i0 + BR - 1, j0, j0 + BC - 1);
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t j = j0 + n * 8 + quad * 2 + (e & 1);
        s[n][e] *= sl2;
        if (!full && (j >= ke || !visible(a, rw + 8 * (e >> 1), j))) s[n][e] = -INFINITY;
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = m[i];
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * i], s[n][2 * i + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mu = mx == -INFINITY ? 0.0f : mx;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) sum += ex2(s[n][2 * i] - mu) + ex2(s[n][2 * i + 1] - mu);
      l[i] = l[i] * ex2(m[i] - mu) + sum;
      m[i] = mx;
    }
    __syncthreads();  // every warp is done with tile j0 before the next load overwrites it
  }
  cp_async_wait<0>();
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    const int64_t r = rw + 8 * i;
    if (quad == 0 && r < a.L)
      a.lse[bh * a.L + r] = m[i] == -INFINITY ? INFINITY : m[i] + log2f(l[i]);
  }
}

// ---- dk, dv: a CTA per (batch, kv head, 64 keys) ----

template <typename T, int D>
__global__ void __launch_bounds__(BwdMma<D>::kThreads) sdpa_bwd_mma_dkdv(const SdpaBwdArgs a) {
  using C = BwdMma<D>;
  constexpr int BK = C::kRows, QT = C::kTile, ST = C::kST;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* ks = reinterpret_cast<T*>(smem_raw);
  T* vs = ks + BK * ST;
  T* tiles = vs + BK * ST;  // buffer u: q at tiles + 2u QT ST, d_out at tiles + (2u + 1) QT ST
  float* stats = reinterpret_cast<float*>(tiles + 4 * QT * ST);  // buffer u: lse, delta
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, quad = lane & 3;
  const int64_t bhk = blockIdx.x % (a.B * a.Hkv), j0 = (blockIdx.x / (a.B * a.Hkv)) * BK;
  const int64_t b = bhk / a.Hkv, hk = bhk % a.Hkv, G = a.H / a.Hkv;
  const int64_t nk = min(int64_t(BK), a.S - j0);
  load_tile<T, D>(ks, row_at<T>(a.k, a.k_st, b, hk, j0), a.k_st[2], BK, nk);
  load_tile<T, D>(vs, row_at<T>(a.v, a.v_st, b, hk, j0), a.v_st[2], BK, nk);

  // Query rows that see some key of [j0, j0 + nk).
  const int64_t off = a.S - a.L;
  int64_t qb = 0, qe = a.L;
  if (a.causal) {
    qb = max(int64_t(0), j0 - off);
    if (a.window > 0) qe = min(qe, j0 + nk - 1 - off + a.window);
  }
  const int64_t ntiles = qb < qe ? (qe - qb + QT - 1) / QT : 0, total = G * ntiles;
  // Tile t: head hk G + t / ntiles, query rows qb + (t % ntiles) QT ...
  auto load = [&](int64_t t, int u) {
    const int64_t h = hk * G + t / ntiles, bh = b * a.H + h, i0 = qb + (t % ntiles) * QT;
    const int64_t valid = a.L - i0;
    load_tile<T, D>(tiles + 2 * u * QT * ST, row_at<T>(a.q, a.q_st, b, h, i0), a.q_st[2], QT,
                    valid);
    load_tile<T, D>(tiles + (2 * u + 1) * QT * ST, row_at<T>(a.d_out, a.g_st, b, h, i0), a.g_st[2],
                    QT, valid);
    for (int r = threadIdx.x; r < QT; r += blockDim.x) {
      const bool ok = i0 + r < a.L;
      stats[2 * u * QT + r] = ok ? a.lse[bh * a.L + i0 + r] : INFINITY;
      stats[(2 * u + 1) * QT + r] = ok ? a.delta[bh * a.L + i0 + r] : 0.0f;
    }
  };
  if (total > 0) load(0, 0);
  cp_async_commit();

  float dk[D / 8][4], dv[D / 8][4];
  zero_acc<D>(dk);
  zero_acc<D>(dv);
  const float sl2 = a.scale * kLog2e;
  const int64_t kw = j0 + warp * 16;  // the warp's keys kw .. kw + 15
  const T* ka = a_lane<T, D>(ks + warp * 16 * ST);
  const T* va = a_lane<T, D>(vs + warp * 16 * ST);
  for (int64_t t = 0; t < total; ++t) {
    const int u = static_cast<int>(t & 1);
    if (t + 1 < total) load(t + 1, u ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // tile t (and k, v) landed; its lse / delta stores are visible
    const T* qt = tiles + 2 * u * QT * ST;
    const T* gt = tiles + (2 * u + 1) * QT * ST;
    const float* lse = stats + 2 * u * QT;
    const float* delta = stats + (2 * u + 1) * QT;
    const int64_t i0 = qb + (t % ntiles) * QT;

    // P^T = 2^(S^T sl2 - lse): rows the warp's keys, columns the tile's queries.
    float p[QT / 8][4];
    product_abt<T, D, QT>(p, ka, qt);
    const bool full =
        !a.causal || (kw + 15 <= i0 + off && (a.window <= 0 || kw > i0 + QT - 1 + off - a.window));
#pragma unroll
    for (int n = 0; n < QT / 8; ++n) {
      const float2 ls = *reinterpret_cast<const float2*>(lse + n * 8 + quad * 2);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = p[n][e] * sl2 - ((e & 1) ? ls.y : ls.x);
        if (!full && !visible(a, i0 + n * 8 + quad * 2 + (e & 1), kw + g + 8 * (e >> 1)))
          x = -INFINITY;
        p[n][e] = ex2(x);
      }
    }
    product_pb<T, D, QT>(dv, p, gt);  // dV += P^T dO

    // dS^T = P^T (dP^T - delta) scale, dP^T = V dO^T.
    float ds[QT / 8][4];
    product_abt<T, D, QT>(ds, va, gt);
#pragma unroll
    for (int n = 0; n < QT / 8; ++n) {
      const float2 dl = *reinterpret_cast<const float2*>(delta + n * 8 + quad * 2);
#pragma unroll
      for (int e = 0; e < 4; ++e)
        ds[n][e] = p[n][e] * (ds[n][e] - ((e & 1) ? dl.y : dl.x)) * a.scale;
    }
    product_pb<T, D, QT>(dk, ds, qt);  // dK += dS^T Q
    __syncthreads();  // every warp is done with buffer u before tile t + 2 loads into it
  }
  cp_async_wait<0>();
  __syncthreads();  // k and v landed even when there was no tile; the warp's rows are its own
  const int64_t valid = a.S - kw;
  store_rows<T, D>(dk, ks + warp * 16 * ST, static_cast<T*>(a.dk) + (bhk * a.S + kw) * D, valid);
  store_rows<T, D>(dv, vs + warp * 16 * ST, static_cast<T*>(a.dv) + (bhk * a.S + kw) * D, valid);
}

// ---- dq: a CTA per (batch, head, 64 queries) ----

template <typename T, int D>
__global__ void __launch_bounds__(BwdMma<D>::kThreads) sdpa_bwd_mma_dq(const SdpaBwdArgs a) {
  using C = BwdMma<D>;
  constexpr int BR = C::kRows, KT = C::kTile, ST = C::kST;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* gs = qs + BR * ST;
  T* tiles = gs + BR * ST;  // buffer u: k at tiles + 2u KT ST, v at tiles + (2u + 1) KT ST
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, quad = lane & 3;
  const int64_t nqt = (a.L + BR - 1) / BR;
  const int64_t bh = blockIdx.x % (a.B * a.H);
  const int64_t i0 = (nqt - 1 - blockIdx.x / (a.B * a.H)) * BR;  // most causal work first
  const int64_t b = bh / a.H, hk = (bh % a.H) / (a.H / a.Hkv);
  const int64_t nq = min(int64_t(BR), a.L - i0);
  const int64_t h = bh % a.H;
  const T* k = row_at<T>(a.k, a.k_st, b, hk, 0);
  const T* v = row_at<T>(a.v, a.v_st, b, hk, 0);
  int64_t kb, ke;
  keys_of(a, i0, i0 + nq, kb, ke);

  load_tile<T, D>(qs, row_at<T>(a.q, a.q_st, b, h, i0), a.q_st[2], BR, nq);
  load_tile<T, D>(gs, row_at<T>(a.d_out, a.g_st, b, h, i0), a.g_st[2], BR, nq);
  auto load = [&](int64_t j, int u) {
    load_tile<T, D>(tiles + 2 * u * KT * ST, k + j * a.k_st[2], a.k_st[2], KT, ke - j);
    load_tile<T, D>(tiles + (2 * u + 1) * KT * ST, v + j * a.v_st[2], a.v_st[2], KT, ke - j);
  };
  if (kb < ke) load(kb, 0);
  cp_async_commit();

  const int64_t rw = i0 + warp * 16 + g;  // the thread's rows rw and rw + 8
  float lse[2], delta[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const bool ok = rw + 8 * i < a.L;
    lse[i] = ok ? a.lse[bh * a.L + rw + 8 * i] : INFINITY;
    delta[i] = ok ? a.delta[bh * a.L + rw + 8 * i] : 0.0f;
  }
  float dq[D / 8][4];
  zero_acc<D>(dq);
  const float sl2 = a.scale * kLog2e;
  const T* qa = a_lane<T, D>(qs + warp * 16 * ST);
  const T* ga = a_lane<T, D>(gs + warp * 16 * ST);
  int u = 0;
  for (int64_t j0 = kb; j0 < ke; j0 += KT, u ^= 1) {
    if (j0 + KT < ke) load(j0 + KT, u ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // tile j0 (and q, d_out) landed
    const T* kt = tiles + 2 * u * KT * ST;
    const T* vt = tiles + (2 * u + 1) * KT * ST;

    float p[KT / 8][4];
    product_abt<T, D, KT>(p, qa, kt);
    const bool full = tile_visible(a, i0 + warp * 16, i0 + warp * 16 + 15, j0, j0 + KT - 1);
#pragma unroll
    for (int n = 0; n < KT / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t j = j0 + n * 8 + quad * 2 + (e & 1);
        float x = p[n][e] * sl2 - lse[e >> 1];
        if (!full && (j >= ke || !visible(a, rw + 8 * (e >> 1), j))) x = -INFINITY;
        p[n][e] = ex2(x);
      }
    float ds[KT / 8][4];
    product_abt<T, D, KT>(ds, ga, vt);  // dP = dO V^T
#pragma unroll
    for (int n = 0; n < KT / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[n][e] = p[n][e] * (ds[n][e] - delta[e >> 1]) * a.scale;
    product_pb<T, D, KT>(dq, ds, kt);  // dQ += dS K
    __syncthreads();  // every warp is done with buffer u before tile j0 + 2 KT loads into it
  }
  cp_async_wait<0>();
  __syncthreads();  // q landed even when there was no key; the warp's q rows are its own
  store_rows<T, D>(dq, qs + warp * 16 * ST, static_cast<T*>(a.dq) + (bh * a.L + i0 + warp * 16) * D,
                   nq - warp * 16);
}

// ---- launchers ----

template <typename T, int D>
void launch_dim(const SdpaBwdArgs& a, cudaStream_t s) {
  using C = BwdMma<D>;
  const int64_t qt = (a.L + C::kRows - 1) / C::kRows, kt = (a.S + C::kRows - 1) / C::kRows;
  const auto rows_grid = static_cast<unsigned>(a.B * a.H * qt);
  const auto keys_grid = static_cast<unsigned>(a.B * a.Hkv * kt);
  allow_dynamic_smem(sdpa_bwd_mma_rows<T, D>, C::kSmemRows);
  sdpa_bwd_mma_rows<T, D><<<rows_grid, C::kThreads, C::kSmemRows, s>>>(a);
  check_launch("sdpa_bwd_mma_rows");
  allow_dynamic_smem(sdpa_bwd_mma_dkdv<T, D>, C::kSmemKv);
  sdpa_bwd_mma_dkdv<T, D><<<keys_grid, C::kThreads, C::kSmemKv, s>>>(a);
  check_launch("sdpa_bwd_mma_dkdv");
  allow_dynamic_smem(sdpa_bwd_mma_dq<T, D>, C::kSmemQ);
  sdpa_bwd_mma_dq<T, D><<<rows_grid, C::kThreads, C::kSmemQ, s>>>(a);
  check_launch("sdpa_bwd_mma_dq");
}

template <typename T>
void launch_type(const SdpaBwdArgs& a, cudaStream_t s) {
  if (a.D == 64)
    launch_dim<T, 64>(a, s);
  else
    launch_dim<T, 128>(a, s);
}

}  // namespace

bool sdpa_bwd_mma_takes(const SdpaBwdArgs& a) {
  // INGOT_SDPA_BWD_MMA=0: the wmma kernels for everything.
  return a.mask_kind == SdpaMaskKind::none && (a.D == 64 || a.D == 128) &&
         (a.dtype == Dtype::bfloat16 || a.dtype == Dtype::float16) &&
         env::flag("INGOT_SDPA_BWD_MMA", true);
}

void launch_sdpa_bwd_mma(const SdpaBwdArgs& a, cudaStream_t s) {
  if (a.dtype == Dtype::bfloat16)
    launch_type<__nv_bfloat16>(a, s);
  else
    launch_type<__half>(a, s);
}

}  // namespace ingot::cu
