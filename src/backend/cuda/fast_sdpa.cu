// CUDA flash attention of ScaledDotProductAttention (decode kernels: fast_sdpa_decode.cu), online
// softmax in float32 (float64 for float64). The rows of one (batch, kv head) are the G query heads
// of its group at each position (row r = l * G + g), so a CTA reads K and V once for the group.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_sdpa_common.cuh"
#include "backend/cuda/fast_sdpa_kernels.h"
#include "backend/cuda/fast_sdpa_mma.cuh"
#include "util/env.h"

namespace ingot::cu {
using namespace sdpa_detail;
namespace {

constexpr int kSimtThreads = 128;
constexpr int kSimtKeys = 32;  // keys per tile of the SIMT kernel: one per lane
constexpr int kMaxThreads = 128;

// ---- generic SIMT kernel: any dtype, D and Dv <= 256 ----
//
// 128 threads, BR rows and 32 keys per tile. Warp w owns rows w + 4t: lane = key for the scores
// and the softmax, lane = column (d = lane + 32u) for the P.V update, so the row statistics stay
// in the warp's registers. Tiles live in shared memory in the accumulation type A.

// Rows [0, 32) x cols of a strided source (row stride st) into shared memory as A with row
// stride lds, zero from row nk on. Loads are issued in batches: one at a time would leave each
// thread a single request in flight (the compiler cannot move a load past a shared store).
template <typename A, typename T>
__device__ __forceinline__ void load_keys(A* dst, int64_t lds, const T* src, int64_t st,
                                          int64_t cols, int nk) {
  constexpr int U = 8;
  const int64_t n = kSimtKeys * cols;
  for (int64_t base = threadIdx.x; base < n; base += int64_t(kSimtThreads) * U) {
    A tmp[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t idx = base + int64_t(u) * kSimtThreads;
      const int64_t i = idx / cols, d = idx % cols;
      tmp[u] = idx < n && i < nk ? to_acc<A>(src[i * st + d]) : A(0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t idx = base + int64_t(u) * kSimtThreads;
      if (idx < n) dst[(idx / cols) * lds + idx % cols] = tmp[u];
    }
  }
}

template <typename T, typename A, int BR>
__global__ void __launch_bounds__(kSimtThreads) sdpa_simt_kernel(const KParams p) {
  constexpr int BC = kSimtKeys, RT = BR / 4, NDV = kSdpaMaxHeadDim / 32;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const SdpaArgs& a = p.a;
  const int64_t D = a.D, Dv = a.Dv;
  A* qs = reinterpret_cast<A*>(smem_raw);  // [BR][D], pre-scaled as the CPU does
  A* ks = qs + BR * D;                     // [BC][D + 1] (odd stride: no bank conflicts)
  A* vs = ks + BC * (D + 1);               // [BC][Dv]
  A* ps = vs + BC * Dv;                    // [BR][BC] probabilities
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const Block c = block_coords(p, blockIdx.x, BR);
  const int64_t r1 = min(c.r0 + BR, p.rows);
  int64_t kb, ke;
  key_range(p, c, r1, kb, ke);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k) + c.b * a.k_st[0] + c.hk * a.k_st[1];
  const T* v = static_cast<const T*>(a.v) + c.b * a.v_st[0] + c.hk * a.v_st[1];

  for (int64_t idx = tid; idx < BR * D; idx += kSimtThreads) {
    const int64_t i = idx / D, d = idx % D;
    const Row w = row_at(p, c, c.r0 + i);
    qs[idx] = w.valid ? to_acc<A>(q[c.b * a.q_st[0] + w.h * a.q_st[1] + w.l * a.q_st[2] + d]) *
                            static_cast<A>(a.scale)
                      : A(0);
  }
  Row rw[RT];
  A m[RT], l[RT], o[RT][NDV];
#pragma unroll
  for (int t = 0; t < RT; ++t) {
    rw[t] = row_at(p, c, c.r0 + warp + 4 * t);
    m[t] = neg_inf<A>();
    l[t] = A(0);
#pragma unroll
    for (int u = 0; u < NDV; ++u) o[t][u] = A(0);
  }

  for (int64_t j0 = kb; j0 < ke; j0 += BC) {
    __syncthreads();  // q is written; every warp is done with the previous tile
    const int nk = static_cast<int>(min(static_cast<int64_t>(BC), ke - j0));
    load_keys(ks, D + 1, k + j0 * a.k_st[2], a.k_st[2], D, nk);
    load_keys(vs, Dv, v + j0 * a.v_st[2], a.v_st[2], Dv, nk);
    __syncthreads();

    A s[RT];
#pragma unroll
    for (int t = 0; t < RT; ++t) s[t] = A(0);
    for (int64_t d = 0; d < D; ++d) {
      const A kv = ks[lane * (D + 1) + d];
#pragma unroll
      for (int t = 0; t < RT; ++t) s[t] += qs[(warp + 4 * t) * D + d] * kv;
    }
    A alpha[RT];
#pragma unroll
    for (int t = 0; t < RT; ++t) {
      const A x = score<A>(p, c, rw[t], j0 + lane, ke, s[t]);
      A mx = warp_max(x);
      // Lane 0's maximum for every lane: with a NaN score the butterfly's comparisons can leave
      // lanes with different maxima, and the branch below (which shuffles) must stay
      // warp-uniform or the warp deadlocks. NaN then propagates as on the CPU.
      mx = __shfl_sync(0xffffffffu, mx, 0);
      if (m[t] > mx) mx = m[t];
      A pr = A(0);
      alpha[t] = A(1);
      if (mx != neg_inf<A>()) {  // warp-uniform
        alpha[t] = m[t] == neg_inf<A>() ? A(0) : exp_(m[t] - mx);
        pr = exp_(x - mx);
        l[t] = l[t] * alpha[t] + warp_sum(pr);
        m[t] = mx;
      }
      ps[(warp + 4 * t) * BC + lane] = pr;
    }
    __syncwarp();
#pragma unroll
    for (int t = 0; t < RT; ++t)
#pragma unroll
      for (int u = 0; u < NDV; ++u) o[t][u] *= alpha[t];
    for (int cc = 0; cc < nk; ++cc) {
      A pc[RT];
#pragma unroll
      for (int t = 0; t < RT; ++t) pc[t] = ps[(warp + 4 * t) * BC + cc];
#pragma unroll
      for (int u = 0; u < NDV; ++u) {
        const int64_t d = lane + 32 * u;
        if (d < Dv) {
          const A vv = vs[cc * Dv + d];
#pragma unroll
          for (int t = 0; t < RT; ++t) o[t][u] += pc[t] * vv;
        }
      }
    }
  }

#pragma unroll
  for (int t = 0; t < RT; ++t) {
    const int64_t r = c.r0 + warp + 4 * t;
    if (r >= p.rows) continue;
    if (p.splits == 1) {
      const A inv = l[t] > A(0) ? A(1) / l[t] : A(0);
      T* dst = static_cast<T*>(a.out) + ((c.b * a.H + rw[t].h) * a.L + rw[t].l) * Dv;
#pragma unroll
      for (int u = 0; u < NDV; ++u)
        if (lane + 32 * u < Dv) dst[lane + 32 * u] = cast<T>(o[t][u] * inv);
    } else {
      const int64_t pidx = (c.bh * p.rows + r) * p.splits + c.split;
      A* acc = static_cast<A*>(p.part);
      A* ml = acc + a.B * a.Hkv * p.rows * p.splits * Dv;
#pragma unroll
      for (int u = 0; u < NDV; ++u)
        if (lane + 32 * u < Dv) acc[pidx * Dv + lane + 32 * u] = o[t][u];
      if (lane == 0) {
        ml[pidx * 2] = m[t];
        ml[pidx * 2 + 1] = l[t];
      }
    }
  }
}

// ---- tensor-core kernel: bf16/f16, D == Dv in {64, 80, 96, 128, 256} (pieces in
// fast_sdpa_mma.cuh) ----

// Q rows [c.r0, c.r0 + BR) of the CTA into shared memory (async; rows past the end read zeros).
template <typename T, int D>
__device__ __forceinline__ void mma_load_q(T* qs, const KParams& p, const Block& c, int BR) {
  using Cfg = MmaTile<D>;
  const SdpaArgs& a = p.a;
  const T* q = static_cast<const T*>(a.q);
  for (int idx = threadIdx.x; idx < BR * Cfg::kChunks; idx += blockDim.x) {
    const int i = idx / Cfg::kChunks, ch = idx % Cfg::kChunks;
    const Row w = row_at(p, c, c.r0 + i);
    cp_async16(qs + i * Cfg::kStride + ch * 8,
               q + c.b * a.q_st[0] + w.h * a.q_st[1] + w.l * a.q_st[2] + ch * 8, w.valid);
  }
}

// Rows of keys j0.. (row stride st) into a tile (async); keys at or past ke are zero (V must
// not carry NaN garbage). A thread's chunks are tid, tid + nthr, ...: when nthr is a multiple
// of the row's chunks they sit in one column, a fixed number of rows apart, so the addresses
// just step.
template <typename T, int D>
__device__ __forceinline__ void mma_load_tile(T* dst, const T* src, int64_t st, int64_t j0,
                                              int64_t ke) {
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride, CH = Cfg::kChunks;
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int nk = static_cast<int>(min(static_cast<int64_t>(BC), ke - j0));
  if (nthr % CH == 0) {
    const int row_step = nthr / CH, my_row = tid / CH, my_col = (tid % CH) * 8;
    int64_t g = (j0 + my_row) * st + my_col;
    const int64_t gstep = row_step * st;
    T* sm = dst + my_row * ST + my_col;
    for (int i = my_row; i < BC; i += row_step, g += gstep, sm += row_step * ST)
      cp_async16(sm, src + (i < nk ? g : 0), i < nk);
  } else {
    for (int idx = tid; idx < BC * CH; idx += nthr) {
      const int i = idx / CH, ch = idx % CH;
      cp_async16(dst + i * ST + ch * 8, src + (i < nk ? (j0 + i) * st : 0) + ch * 8, i < nk);
    }
  }
}

// Starts a warp's rows: Q fragments from shared memory (when kept in registers), zeroed
// accumulators, the rows' coordinates.
template <typename T, int D>
__device__ __forceinline__ void mma_rows_begin(MmaRows<D>& r, const KParams& p, const Block& c,
                                               const T* qwarp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  r.rw[0] = row_at(p, c, c.r0 + warp * 16 + (lane >> 2));
  r.rw[1] = row_at(p, c, c.r0 + warp * 16 + (lane >> 2) + 8);
  if constexpr (MmaTile<D>::kQRegs) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(r.qf[kk], qwarp + kk * 16);
  }
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) r.o[dt][0] = r.o[dt][1] = r.o[dt][2] = r.o[dt][3] = 0.0f;
  r.m[0] = r.m[1] = -INFINITY;
  r.l[0] = r.l[1] = 0.0f;
}

// The online softmax over the tile of keys j0..: scales the scores (softcap, mask and
// visibility where the tile is not `full`), turns them into probabilities (log2 units) and
// rescales the accumulators and sums by the change of the running maximum.
template <int D>
__device__ __forceinline__ void mma_softmax(float (&s)[MmaTile<D>::kKeys / 8][4], MmaRows<D>& r,
                                            const KParams& p, const Block& c, int64_t j0,
                                            int64_t ke, bool full) {
  constexpr int BC = MmaTile<D>::kKeys;
  constexpr float kLog2e = 1.4426950408889634f;
  const int quad = threadIdx.x & 3;
  const SdpaArgs& a = p.a;
  // The branch stays outside the element loops so that the checks are not predicated inline.
  if (full) {
    const float sl2 = a.scale * kLog2e;
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] *= sl2;
  } else {
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        s[n][e] = score<float>(p, c, r.rw[e >> 1], j0 + n * 8 + quad * 2 + (e & 1), ke,
                               s[n][e] * a.scale) *
                  kLog2e;
  }
  mma_online_softmax<D>(s, r);
}

// The warp's normalised rows into the output, staged through `stage` (16 rows of the warp's
// own shared memory, no longer read by any other warp) so that each row goes out in 16-byte
// stores.
template <typename T, int D>
__device__ __forceinline__ void mma_store(const MmaRows<D>& r, const KParams& p, const Block& c,
                                          T* stage) {
  const int warp = threadIdx.x >> 5;
  const SdpaArgs& a = p.a;
  T* out = static_cast<T*>(a.out);
  mma_write_rows<T, D>(r, stage, [&](int i, int ch, const uint4& v) {
    const int64_t rr = c.r0 + warp * 16 + i;
    if (rr >= p.rows) return;
    const Row w = row_at(p, c, rr);
    *reinterpret_cast<uint4*>(out + ((c.b * a.H + w.h) * a.L + w.l) * D + ch * 8) = v;
  });
}

// True when every key of the tile j0.. is visible to every row of the CTA without checks (no
// softcap or mask, inside the causal band and the window).
__device__ __forceinline__ bool mma_full_tile(const KParams& p, const Block& c, int64_t r1,
                                              int64_t j0, int64_t ke, int bc) {
  const SdpaArgs& a = p.a;
  const bool plain = !(a.softcap > 0) && a.mask_kind == SdpaMaskKind::none;
  const int64_t off = a.S - a.L, lmin = c.r0 / p.G, lmax = (r1 - 1) / p.G;
  return plain && j0 + bc <= ke &&
         (!a.causal ||
          (j0 + bc - 1 <= off + lmin && (a.window <= 0 || j0 > off + lmax - a.window)));
}

// K and V tiles are single-buffered with cp.async so that V_j loads during S = Q K_j^T and
// K_{j+1} during the softmax and O += P V_j.
template <typename T, int D>
__global__ void __launch_bounds__(kMaxThreads) sdpa_mma_kernel(const __grid_constant__ KParams p) {
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride;
  constexpr float kLn2 = 0.6931471805599453f;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const SdpaArgs& a = p.a;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int BR = blockDim.x / 2;  // 16 rows per warp
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* ks = qs + BR * ST;
  T* vs = ks + BC * ST;
  const Block c = block_coords(p, blockIdx.x, BR);
  const int64_t r1 = min(c.r0 + BR, p.rows);
  int64_t kb, ke;
  key_range(p, c, r1, kb, ke);
  const T* k = static_cast<const T*>(a.k) + c.b * a.k_st[0] + c.hk * a.k_st[1];
  const T* v = static_cast<const T*>(a.v) + c.b * a.v_st[0] + c.hk * a.v_st[1];

  mma_load_q<T, D>(qs, p, c, BR);
  cp_async_commit();
  if (kb < ke) mma_load_tile<T, D>(ks, k, a.k_st[2], kb, ke);
  cp_async_commit();
  cp_async_wait<1>();
  __syncthreads();

  const T* qwarp = qs + (warp * 16 + (lane & 15)) * ST + (lane >> 4) * 8;
  MmaRows<D> r;
  mma_rows_begin<T, D>(r, p, c, qwarp);

  for (int64_t j0 = kb; j0 < ke; j0 += BC) {
    mma_load_tile<T, D>(vs, v, a.v_st[2], j0, ke);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // K_j has landed

    float s[BC / 8][4];
    mma_scores<T, D>(s, r, qwarp, ks);
    __syncthreads();  // every warp is done with K_j
    if (j0 + BC < ke) mma_load_tile<T, D>(ks, k, a.k_st[2], j0 + BC, ke);
    cp_async_commit();

    mma_softmax<D>(s, r, p, c, j0, ke, mma_full_tile(p, c, r1, j0, ke, BC));
    cp_async_wait<1>();
    __syncthreads();  // V_j has landed
    mma_pv<T, D>(r, s, vs);
    __syncthreads();  // every warp is done with V_j
  }
  cp_async_wait<0>();
  __syncthreads();  // no copy into Q is still in flight: the warp's Q rows become its staging
  mma_rows_end<D>(r);

  if (p.splits == 1) {
    mma_store<T, D>(r, p, c, qs + warp * 16 * ST);
  } else {
    const int quad = lane & 3;
    float* acc = static_cast<float*>(p.part);
    float* ml = acc + a.B * a.Hkv * p.rows * p.splits * D;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t rr = c.r0 + warp * 16 + (lane >> 2) + 8 * i;
      if (rr >= p.rows) continue;
      const int64_t pidx = (c.bh * p.rows + rr) * p.splits + c.split;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        *reinterpret_cast<float2*>(acc + pidx * D + dt * 8 + quad * 2) =
            make_float2(r.o[dt][2 * i], r.o[dt][2 * i + 1]);
      if (quad == 0) {
        ml[pidx * 2] = r.m[i] * kLn2;  // back to natural units for the combine
        ml[pidx * 2 + 1] = r.l[i];
      }
    }
  }
}

// Short rows (every CTA's keys fit one tile, no splits: classification and scoring batches of
// many short sequences): persistent CTAs take CTA-sized units (b, kv head, row tile) in turn.
// The general kernel's registers (224 at D = 128) and shared memory allow 2 CTAs, 8 warps, an
// SM, and ncu found it bound by the latency of dependent tensor-core and exp instructions with
// so few warps (12.5% occupancy, 18% of DRAM bandwidth, 505 us for a Qwen3 batch of 512 x 64).
// One tile needs no loop state: at most 128 registers and one stage of shared memory give 4
// CTAs an SM at D = 128. (A first version with two stages, the next unit loading during the
// current one, stayed at 2 CTAs an SM and was no faster: 550 us.)
template <typename T, int D>
__global__ void __launch_bounds__(kMaxThreads, D <= 128 ? 4 : 2)
    sdpa_mma_short_kernel(const __grid_constant__ KParams p) {
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const SdpaArgs& a = p.a;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int BR = blockDim.x / 2;
  const int64_t units = a.B * a.Hkv * p.row_tiles;
  T* cur = reinterpret_cast<T*>(smem_raw);
  for (int64_t x = blockIdx.x; x < units; x += gridDim.x) {
    const Block c = block_coords(p, x, BR);
    const int64_t r1 = min(c.r0 + BR, p.rows);
    int64_t kb, ke;
    key_range(p, c, r1, kb, ke);
    // Unit x into shared memory: Q rows, then the K and V tiles.
    mma_load_q<T, D>(cur, p, c, BR);
    if (kb < ke) {
      mma_load_tile<T, D>(cur + BR * ST,
                          static_cast<const T*>(a.k) + c.b * a.k_st[0] + c.hk * a.k_st[1],
                          a.k_st[2], kb, ke);
      mma_load_tile<T, D>(cur + (BR + BC) * ST,
                          static_cast<const T*>(a.v) + c.b * a.v_st[0] + c.hk * a.v_st[1],
                          a.v_st[2], kb, ke);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();  // this unit's Q, K and V have landed

    const T* qwarp = cur + (warp * 16 + (lane & 15)) * ST + (lane >> 4) * 8;
    MmaRows<D> r;
    mma_rows_begin<T, D>(r, p, c, qwarp);
    if (kb < ke) {
      float s[BC / 8][4];
      mma_scores<T, D>(s, r, qwarp, cur + BR * ST);
      mma_softmax<D>(s, r, p, c, kb, ke, mma_full_tile(p, c, r1, kb, ke, BC));
      mma_pv<T, D>(r, s, cur + (BR + BC) * ST);
    }
    mma_rows_end<D>(r);
    // The warp's Q rows become its staging: only this warp read them (Q fragments, and
    // ldmatrix from them when Q is not kept in registers, all done above).
    __syncwarp();
    mma_store<T, D>(r, p, c, cur + warp * 16 * ST);
    __syncthreads();  // every warp is done with the tiles before the next unit's loads refill them
  }
}

// ---- split-K combine: one CTA per row ----

// Combines the split partials of row x = (b * Hkv + hk) * rows + r into the output, with
// blockDim.x (>= splits, <= kMaxSplits) threads; reads bypass L1 (other CTAs wrote them).
template <typename T, typename A>
__device__ void combine_row(const KParams& p, int64_t x, A* w, A* red) {
  const SdpaArgs& a = p.a;
  const int64_t bh = x / p.rows, r = x % p.rows;
  const int64_t b = bh / a.Hkv, h = (bh % a.Hkv) * p.G + r % p.G, lpos = r / p.G;
  const A* acc = static_cast<const A*>(p.part);
  const A* ml = acc + a.B * a.Hkv * p.rows * p.splits * a.Dv;
  const int tid = threadIdx.x;
  const int64_t base = x * p.splits;
  const bool mine = tid < p.splits;
  const A mi = mine ? __ldcg(&ml[(base + tid) * 2]) : neg_inf<A>();
  const A mx = block_max(mi, red, neg_inf<A>());
  const A wi = mine && mx != neg_inf<A>() ? exp_(mi - mx) : A(0);
  const A lsum = block_sum(mine ? __ldcg(&ml[(base + tid) * 2 + 1]) * wi : A(0), red);
  if (tid < kMaxSplits) w[tid] = wi;
  __syncthreads();
  const A inv = lsum > A(0) ? A(1) / lsum : A(0);
  T* out = static_cast<T*>(a.out) + ((b * a.H + h) * a.L + lpos) * a.Dv;
  for (int64_t d = tid; d < a.Dv; d += blockDim.x) {
    A s = A(0);
    for (int i = 0; i < p.splits; ++i) s += w[i] * __ldcg(&acc[(base + i) * a.Dv + d]);
    out[d] = cast<T>(s * inv);
  }
  __syncthreads();  // w and red are reused by the next row
}

template <typename T, typename A>
__global__ void __launch_bounds__(kMaxSplits) sdpa_combine_kernel(const KParams p) {
  __shared__ A w[kMaxSplits];
  __shared__ A red[32];
  combine_row<T, A>(p, blockIdx.x, w, red);
}

// ---- launchers ----

template <typename T, int D>
void launch_mma(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s) {
  if (pl.short_rows) {
    const auto kernel = sdpa_mma_short_kernel<T, D>;
    allow_dynamic_smem(kernel, pl.smem);
    int per_sm = 0;
    INGOT_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, pl.threads, pl.smem));
    const int64_t grid = std::min<int64_t>(blocks, int64_t(std::max(per_sm, 1)) * pl.sm_count);
    kernel<<<static_cast<unsigned>(grid), pl.threads, pl.smem, s>>>(kp);
    check_launch("sdpa_mma_short_kernel");
    return;
  }
  allow_dynamic_smem(sdpa_mma_kernel<T, D>, pl.smem);
  sdpa_mma_kernel<T, D><<<blocks, pl.threads, pl.smem, s>>>(kp);
  check_launch("sdpa_mma_kernel");
}

template <typename T>
void launch_mma_dim(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s) {
  switch (kp.a.D) {
    case 64:
      return launch_mma<T, 64>(kp, pl, blocks, s);
    case 80:
      return launch_mma<T, 80>(kp, pl, blocks, s);
    case 96:
      return launch_mma<T, 96>(kp, pl, blocks, s);
    case 128:
      return launch_mma<T, 128>(kp, pl, blocks, s);
    default:
      return launch_mma<T, 256>(kp, pl, blocks, s);
  }
}

template <typename T, typename A, int BR>
void launch_simt(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s) {
  allow_dynamic_smem(sdpa_simt_kernel<T, A, BR>, pl.smem);
  sdpa_simt_kernel<T, A, BR><<<blocks, kSimtThreads, pl.smem, s>>>(kp);
  check_launch("sdpa_simt_kernel");
}

}  // namespace

bool sdpa_uses_mma(Dtype t, int64_t D, int64_t Dv) {
  return (t == Dtype::bfloat16 || t == Dtype::float16) && D == Dv &&
         (D == 64 || D == 80 || D == 96 || D == 128 || D == 256);
}

SdpaPlan plan_sdpa(const SdpaArgs& a, int sm_count) {
  SdpaPlan pl;
  const int64_t rows = (a.H / a.Hkv) * a.L;
  const size_t acc_size = a.dtype == Dtype::float64 ? 8 : 4;
  if (sdpa_uses_decode(a)) return plan_decode(a, sm_count);
  int64_t bc;
  if (sdpa_uses_mma(a.dtype, a.D, a.Dv)) {
    pl.mma = true;
    const int warps = static_cast<int>(std::clamp<int64_t>(ceil_div(rows, 16), 1, 4));
    pl.threads = 32 * warps;
    pl.rows_per_cta = 16 * warps;
    bc = a.D <= 128 ? 64 : 32;
    pl.smem = static_cast<size_t>(pl.rows_per_cta + 2 * bc) * static_cast<size_t>(a.D + 8) * 2;
  } else {
    pl.threads = kSimtThreads;
    // Few rows (decode) get small tiles; float64 stops at 8 rows to fit sm_80's shared memory.
    pl.rows_per_cta = rows <= 4 ? 4 : rows <= 8 || a.dtype == Dtype::float64 ? 8 : 16;
    bc = kSimtKeys;
    const int64_t br = pl.rows_per_cta;
    pl.smem = static_cast<size_t>(br * a.D + bc * (a.D + 1) + bc * a.Dv + br * bc) * acc_size;
  }
  pl.row_tiles = ceil_div(rows, pl.rows_per_cta);
  // Split the keys when the (b, kv head, row tile) CTAs cannot fill the GPU (decode, or a short
  // chunk against a long cache); each split keeps at least four key tiles.
  const int64_t ctas = a.B * a.Hkv * pl.row_tiles;
  // CTAs wanted: one-warp tensor-core CTAs and SIMT CTAs (no async copies) need several per SM
  // to keep enough loads in flight.
  const int64_t per_sm = pl.mma ? (pl.threads == 32 ? 4 : 2) : 8;
  const int64_t target = per_sm * std::max(sm_count, 1);
  const int64_t min_keys = 4 * bc;
  int64_t splits = 1;
  if (ctas < target && a.S > min_keys)
    splits = std::min({ceil_div(target, ctas), ceil_div(a.S, min_keys), int64_t(kMaxSplits)});
  pl.keys_per_split = ceil_div(ceil_div(a.S, splits), bc) * bc;
  pl.splits = static_cast<int>(ceil_div(a.S, pl.keys_per_split));
  // Many CTAs whose keys fit one tile: the persistent two-stage kernel.
  static const bool short_on = env::flag("INGOT_CUDA_SDPA_SHORT", true);
  if (pl.mma && short_on && pl.splits == 1 && a.S <= bc && ctas >= 8 * int64_t(sm_count)) {
    pl.short_rows = true;
    pl.sm_count = std::max(sm_count, 1);
  }
  if (pl.splits > 1)
    pl.partial_bytes = static_cast<size_t>(a.B * a.Hkv * rows * pl.splits * (a.Dv + 2)) * acc_size;
  return pl;
}

void launch_sdpa(const SdpaArgs& a, const SdpaPlan& pl, void* partials, cudaStream_t s) {
  KParams kp{a, a.H / a.Hkv, 0, pl.row_tiles, pl.keys_per_split, pl.splits, partials, nullptr};
  // Every launch makes sure the stream has counters, so that they exist before a decode step
  // is captured into a graph (a prefill on the same stream comes first).
  unsigned* counters = decode_counters(s, a.B * a.Hkv);
  if (pl.decode && pl.splits > 1) kp.counters = counters;
  kp.rows = kp.G * a.L;
  if (pl.cluster > 0) {
    if (a.B * a.Hkv > 0) launch_cluster(a, kp, pl, s);
    return;
  }
  const int64_t blocks = a.B * a.Hkv * pl.row_tiles * pl.splits;
  if (blocks == 0) return;
  const auto nb = static_cast<unsigned>(blocks);
  if (pl.decode) launch_split_decode(kp, pl, nb, s);
  dispatch_cuda_float(a.dtype, [&](auto t) {
    using T = decltype(t);
    using A = acc_t<T>;
    if constexpr (is_half_v<T>) {
      if (pl.mma) launch_mma_dim<T>(kp, pl, nb, s);
    }
    if (!pl.mma && !pl.decode) {
      if (pl.rows_per_cta == 4)
        launch_simt<T, A, 4>(kp, pl, nb, s);
      else if (pl.rows_per_cta == 8)
        launch_simt<T, A, 8>(kp, pl, nb, s);
      else if constexpr (!std::is_same_v<T, double>)
        launch_simt<T, A, 16>(kp, pl, nb, s);
    }
    if (pl.splits > 1 && kp.counters == nullptr) {
      sdpa_combine_kernel<T, A>
          <<<static_cast<unsigned>(a.B * a.Hkv * kp.rows), kMaxSplits, 0, s>>>(kp);
      check_launch("sdpa_combine_kernel");
    }
  });
}

}  // namespace ingot::cu
