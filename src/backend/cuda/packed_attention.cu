// CUDA kernel of PackedAttention (fast::packed_attention): causal attention of sequences packed
// back to back, straight from the stacked q|k|v projection. Persistent CTAs of four warps take
// units (sequence, kv head, tile of 64 query rows) in turn; the rows of a unit are the G query
// heads of its group at each position (row r = l * G + g), as in the flash kernels of
// fast_sdpa.cu. Each unit copies its query rows and key/value tiles into shared memory as they
// are (cp.async, every request of a tile in flight at once), normalises and rotates the query
// rows and its own keys there (the shared prefix's keys are stored rotated), and walks the key
// tiles it can see with the tensor-core S = Q K^T, online softmax and
// O += P V of fast_sdpa_mma.cuh, and writes its rows straight into the [T, H D] output. The norm
// and rotation are computed as rope_kv_update's many-positions kernel computes them (the same
// sums and roundings, cos/sin from launch_rope_table), so q and k carry its values.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_sdpa_mma.cuh"
#include "backend/cuda/packed_attention_kernels.h"

namespace ingot::cu {
using namespace sdpa_detail;
namespace {

constexpr int kWarps = 4;
constexpr int kRows = 16 * kWarps;  // query rows per unit

// x[0..V) rounded to T and widened back, two at a time (one paired conversion for two values;
// each value rounds as round_through<T> rounds it alone).
template <typename T, int V>
__device__ __forceinline__ void round_pairs(float (&x)[V]) {
#pragma unroll
  for (int j = 0; j < V; j += 2) {
    const uint32_t u = pack2<T>(x[j], x[j + 1]);
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      x[j] = __uint_as_float(u << 16);
      x[j + 1] = __uint_as_float(u & 0xffff0000u);
    } else {
      __half2 h;
      memcpy(&h, &u, sizeof(h));
      const float2 f = __half22float2(h);
      x[j] = f.x;
      x[j + 1] = f.y;
    }
  }
}

// NB rows of D elements, each held by LPR lanes, a 16-byte chunk (V elements) a lane:
// normalised (when has_norm, by the lane's V weights w, the unit offset already added) and
// rotated at table rows trow[], rounded to T, in place. The same operations and roundings as
// rms_value and the rope kernels, with no branch per element; the rows are independent chains
// the scheduler interleaves.
template <typename T, int D, int NB>
__device__ __forceinline__ void norm_rope(uint4 (&raw)[NB], const float* w, bool has_norm,
                                          const PackedAttentionArgs& a, const int (&trow)[NB],
                                          int sub, unsigned gmask) {
  constexpr int V = 16 / sizeof(T), LPR = D / V, half = D / 2;
  static_assert(V == 8, "16-bit rows: eight elements a chunk");
  float v[NB][V];
#pragma unroll
  for (int b = 0; b < NB; ++b) unpack16<T>(raw[b], v[b]);
  if (has_norm) {
    float ss[NB];
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      ss[b] = 0.0f;
#pragma unroll
      for (int j = 0; j < V; ++j) ss[b] += v[b][j] * v[b][j];
    }
#pragma unroll
    for (int o = LPR / 2; o > 0; o >>= 1)
#pragma unroll
      for (int b = 0; b < NB; ++b) ss[b] += __shfl_xor_sync(gmask, ss[b], o);
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const float rr = 1.0f / sqrtf(ss[b] / static_cast<float>(D) + a.eps);
#pragma unroll
      for (int j = 0; j < V; ++j) v[b][j] = mul_rn(v[b][j], rr);
    }
    if (!a.weight_in_float32) {
#pragma unroll
      for (int b = 0; b < NB; ++b) round_pairs<T, V>(v[b]);
    }
#pragma unroll
    for (int b = 0; b < NB; ++b) {
#pragma unroll
      for (int j = 0; j < V; ++j) v[b][j] = mul_rn(v[b][j], w[j]);
      round_pairs<T, V>(v[b]);
    }
  }
  // The partner of element e: e ^ 1 (interleaved pairs) or e +- half, which sits LPR / 2 lanes
  // away; the lane's cos / sin in 16-byte loads: pairs k0 .. k0 + V (half-split: elements
  // e = sub V + j, k = e mod half) or k0 .. k0 + V / 2 (interleaved: k = e / 2).
  float pv[NB][V], cs[NB][V], sn[NB][V];
  if (a.traditional) {
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const int64_t o = int64_t{trow[b]} * half + sub * V / 2;
      const float4 c = *reinterpret_cast<const float4*>(a.cs + o);
      const float4 sv = *reinterpret_cast<const float4*>(a.sn + o);
      const float cc[4] = {c.x, c.y, c.z, c.w}, s4[4] = {sv.x, sv.y, sv.z, sv.w};
#pragma unroll
      for (int j = 0; j < V; ++j) {
        pv[b][j] = (j & 1) == 0 ? -v[b][j ^ 1] : v[b][j ^ 1];
        cs[b][j] = cc[j / 2], sn[b][j] = s4[j / 2];
      }
    }
  } else {
    const bool first_half = sub * V < half;
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const int64_t o = int64_t{trow[b]} * half + (sub * V) % half;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float4 c = reinterpret_cast<const float4*>(a.cs + o)[i];
        const float4 sv = reinterpret_cast<const float4*>(a.sn + o)[i];
        cs[b][4 * i] = c.x, cs[b][4 * i + 1] = c.y, cs[b][4 * i + 2] = c.z, cs[b][4 * i + 3] = c.w;
        sn[b][4 * i] = sv.x, sn[b][4 * i + 1] = sv.y, sn[b][4 * i + 2] = sv.z,
                  sn[b][4 * i + 3] = sv.w;
      }
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float p = __shfl_xor_sync(gmask, v[b][j], LPR / 2);
        pv[b][j] = first_half ? -p : p;
      }
    }
  }
#pragma unroll
  for (int b = 0; b < NB; ++b) {
    float x[V], y[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      x[j] = mul_rn(v[b][j], cs[b][j]);
      y[j] = mul_rn(pv[b][j], sn[b][j]);
    }
    round_pairs<T, V>(x);
    round_pairs<T, V>(y);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = add_rn(x[j], y[j]);
    raw[b] = pack16<T>(x);
  }
}

// One row (the streaming kernel's calls).
template <typename T, int D>
__device__ __forceinline__ uint4 norm_rope(const uint4 raw, const float* w, bool has_norm,
                                           const PackedAttentionArgs& a, int64_t trow, int sub,
                                           unsigned gmask) {
  uint4 r[1] = {raw};
  const int t[1] = {static_cast<int>(trow)};
  norm_rope<T, D, 1>(r, w, has_norm, a, t, sub, gmask);
  return r[0];
}

// The lane's V elements of the q and k norm weights (unused without norms), with the unit
// offset added (as rms_value adds it).
template <typename T, int D>
__device__ __forceinline__ void load_norm_weights(const PackedAttentionArgs& a, int sub, float* qw,
                                                  float* kw) {
  constexpr int V = 16 / sizeof(T);
  if (a.q_norm == nullptr) return;
  unpack16<T>(load16(static_cast<const T*>(a.q_norm) + sub * V), qw);
  unpack16<T>(load16(static_cast<const T*>(a.k_norm) + sub * V), kw);
  if (a.add_unit_offset) {
#pragma unroll
    for (int j = 0; j < V; ++j) qw[j] = add_rn(qw[j], 1.0f), kw[j] = add_rn(kw[j], 1.0f);
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(32 * kWarps, D <= 128 ? 3 : 2)
    packed_attention_kernel(const __grid_constant__ PackedAttentionArgs a) {
  pdl_prologue();
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride, CH = Cfg::kChunks;
  constexpr int V = 16 / sizeof(T), LPR = D / V, RPW = 32 / LPR;  // rows a warp moves at once
  constexpr float kLog2e = 1.4426950408889634f;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // [kRows][ST]
  T* ks = qs + kRows * ST;                 // [BC][ST]
  T* vs = ks + BC * ST;                    // [BC][ST]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, quad = lane & 3;
  const int sub = lane % LPR, grp = lane / LPR;
  const unsigned gmask = LPR == 32 ? 0xffffffffu : ((1u << LPR) - 1u) << (grp * LPR);
  const int64_t G = a.H / a.Hkv;
  const bool has_norm = a.q_norm != nullptr;
  const T* qkv = static_cast<const T*>(a.qkv);
  float qw[V] = {}, kw[V] = {};
  load_norm_weights<T, D>(a, sub, qw, kw);
  const int64_t tiles = (G * a.max_len + kRows - 1) / kRows;
  const int64_t units = a.N * a.Hkv * tiles;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const int64_t tile = u % tiles, sh = u / tiles;
    const int64_t hk = sh % a.Hkv, s = sh / a.Hkv;
    const int64_t t0 = a.starts[s], len = a.starts[s + 1] - t0;
    const int64_t rows = G * len, r0 = tile * kRows;
    if (r0 >= rows) continue;  // the whole CTA: the sequence is shorter than this tile
    const int64_t r1 = min(r0 + kRows, rows);
    // Keys some row of the unit sees: the prefix and own rows up to the last row's position,
    // from the first row's window on.
    const int64_t ke = a.P + (r1 - 1) / G + 1;
    int64_t kb = 0;
    if (a.window > 0) kb = max(int64_t(0), a.P + r0 / G - a.window + 1);

    // The unit's query rows and its first key tile, as they are, into shared memory (all
    // requests in flight at once); then each row is normalised and rotated in place.
    for (int idx = threadIdx.x; idx < kRows * CH; idx += blockDim.x) {
      const int i = idx / CH, ch = idx % CH;
      const bool ok = r0 + i < rows;
      const int64_t rr = ok ? r0 + i : r0;
      const int64_t l = rr / G, h = hk * G + rr % G;
      cp_async16(qs + i * ST + ch * 8, qkv + (t0 + l) * a.row_stride + h * D + ch * 8, ok);
    }
    // Keys j0 .. j0 + BC of the prefix or the sequence's own rows (zeros from ke on).
    auto load_tile = [&](int64_t j0) {
      for (int idx = threadIdx.x; idx < BC * CH; idx += blockDim.x) {
        const int i = idx / CH, ch = idx % CH;
        const int64_t j = j0 + i;
        const T *ksrc = qkv, *vsrc = qkv;
        if (j < ke && j < a.P) {
          ksrc = static_cast<const T*>(a.prefix_k) + hk * a.pk_st[0] + j * a.pk_st[1];
          vsrc = static_cast<const T*>(a.prefix_v) + hk * a.pv_st[0] + j * a.pv_st[1];
        } else if (j < ke) {
          const T* row = qkv + (t0 + j - a.P) * a.row_stride;
          ksrc = row + (a.H + hk) * D;
          vsrc = row + (a.H + a.Hkv + hk) * D;
        }
        cp_async16(ks + i * ST + ch * 8, ksrc + ch * 8, j < ke);
        cp_async16(vs + i * ST + ch * 8, vsrc + ch * 8, j < ke);
      }
      cp_async_commit();
    };
    load_tile(kb);
    cp_async_wait<0>();
    __syncthreads();
    // Warp w's groups rotate its own 16 query rows (the rows its mma fragments read).
#pragma unroll
    for (int i = grp; i < 16; i += RPW) {
      const int64_t rr = r0 + warp * 16 + i;
      if (rr >= rows) continue;
      uint4* q = reinterpret_cast<uint4*>(qs + (warp * 16 + i) * ST + sub * V);
      *q = norm_rope<T, D>(*q, qw, has_norm, a, rr / G, sub, gmask);
    }
    __syncwarp();
    const T* qwarp = qs + (warp * 16 + (lane & 15)) * ST + (lane >> 4) * 8;
    MmaRows<D> r;
    if constexpr (Cfg::kQRegs) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(r.qf[kk], qwarp + kk * 16);
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) r.o[dt][0] = r.o[dt][1] = r.o[dt][2] = r.o[dt][3] = 0.0f;
    r.m[0] = r.m[1] = -INFINITY;
    r.l[0] = r.l[1] = 0.0f;
    // The positions of the thread's two rows (rows past the end take the last row's).
    int64_t qpos[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t rr = min(r0 + warp * 16 + (lane >> 2) + 8 * i, rows - 1);
      qpos[i] = a.P + rr / G;
    }
    const int64_t lmin = r0 / G, lmax = (r1 - 1) / G;

    for (int64_t j0 = kb;;) {
      // The tile's own keys (j >= P) are normalised and rotated in place: warp w takes rows
      // w * BC / 4 .., RPW at a time.
#pragma unroll 2
      for (int i = grp; i < BC / kWarps; i += RPW) {
        const int kr = warp * (BC / kWarps) + i;
        const int64_t j = j0 + kr;
        if (j < a.P || j >= ke) continue;
        uint4* k = reinterpret_cast<uint4*>(ks + kr * ST + sub * V);
        *k = norm_rope<T, D>(*k, kw, has_norm, a, j - a.P, sub, gmask);
      }
      __syncthreads();  // the tile is ready

      float sc[BC / 8][4];
      mma_scores<T, D>(sc, r, qwarp, ks);
      // Fully visible tile (every key to every row of the unit, no softcap): scale only.
      const bool full = !(a.softcap > 0) && j0 + BC <= ke && j0 + BC - 1 <= a.P + lmin &&
                        (a.window <= 0 || j0 > a.P + lmax - a.window);
      if (full) {
        const float sl2 = a.scale * kLog2e;
#pragma unroll
        for (int n = 0; n < BC / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) sc[n][e] *= sl2;
      } else {
#pragma unroll
        for (int n = 0; n < BC / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t j = j0 + n * 8 + quad * 2 + (e & 1), p = qpos[e >> 1];
            float x = sc[n][e] * a.scale;
            if (a.softcap > 0) x = a.softcap * tanhf(x * (1.0f / a.softcap));
            const bool vis = j < ke && j <= p && (a.window <= 0 || j > p - a.window);
            sc[n][e] = vis ? x * kLog2e : -INFINITY;
          }
      }
      mma_online_softmax<D>(sc, r);
      mma_pv<T, D>(r, sc, vs);
      __syncthreads();  // every warp is done with the tile
      j0 += BC;
      if (j0 >= ke) break;
      load_tile(j0);
      cp_async_wait<0>();
      __syncthreads();
    }
    mma_rows_end<D>(r);

    // The warp's rows, normalised, staged through its own Q rows (no other warp reads them),
    // then out in 16-byte stores.
    T* out = static_cast<T*>(a.out);
    mma_write_rows<T, D>(r, qs + warp * 16 * ST, [&](int i, int ch, const uint4& v) {
      const int64_t rr = r0 + warp * 16 + i;
      if (rr >= rows) return;
      const int64_t l = rr / G, h = hk * G + rr % G;
      *reinterpret_cast<uint4*>(out + (t0 + l) * a.H * D + h * D + ch * 8) = v;
    });
    __syncthreads();  // every warp is done with the Q rows before the next unit's
  }
}

// ---- the resident variant: a unit's keys stay in shared memory ----
//
// When every key a sequence sees (the prefix and its own rows) fits in KC shared-memory rows, a
// unit is (sequence, kv head, chunk of kUnitRows query rows): its keys and values are loaded
// once, its own keys normalised and rotated once (before any accumulator is live), and each warp
// then walks its 16-row slabs on its own (at D = 64 slab k + 1's rows load while slab k
// computes), seeing only the key tiles its rows can see. Two block-wide barriers a unit. (Queuing
// each CTA's next unit into L2 measured 5-10% slower on the H200: not done.)
constexpr int kUnitRows = 128;

template <int D>
constexpr int kResidentBlocks = D <= 64    ? 5
                                : D <= 128 ? 4
                                           : 2;
// Slab buffers a warp has: two (the next slab loads while this one computes) where shared
// memory leaves that many blocks resident.
template <int D>
constexpr int kResidentQBufs = D <= 64 ? 2 : 1;
template <typename T, int D, int KC>
constexpr size_t resident_smem() {
  return static_cast<size_t>(2 * KC + kWarps * 16 * kResidentQBufs<D>) * MmaTile<D>::kStride *
             sizeof(T) +
         2 * D * sizeof(float);
}

template <typename T, int D, int KC>
__global__ void __launch_bounds__(32 * kWarps, kResidentBlocks<D>)
    packed_attention_resident_kernel(const __grid_constant__ PackedAttentionArgs a) {
  pdl_prologue();
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride, CH = Cfg::kChunks;
  constexpr int V = 16 / sizeof(T), LPR = D / V, RPW = 32 / LPR;
  constexpr int QB = kResidentQBufs<D>;
  constexpr float kLog2e = 1.4426950408889634f;
  static_assert(KC % BC == 0, "whole key tiles");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* ks = reinterpret_cast<T*>(smem_raw);  // [KC][ST]: keys kb, kb + 1, ...
  T* vs = ks + KC * ST;                    // [KC][ST]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, quad = lane & 3;
  T* qbuf = vs + KC * ST + warp * QB * 16 * ST;  // the warp's slab buffers [QB][16][ST]
  const int sub = lane % LPR, grp = lane / LPR;
  const unsigned gmask = LPR == 32 ? 0xffffffffu : ((1u << LPR) - 1u) << (grp * LPR);
  const int G = static_cast<int>(a.H / a.Hkv);
  // Row r is query head r % G at position r / G: shifts when G is a power of two.
  const int gshift = (G & (G - 1)) == 0 ? __ffs(G) - 1 : -1;
  auto pos_of = [&](int r) { return gshift >= 0 ? r >> gshift : r / G; };
  auto head_of = [&](int r) { return gshift >= 0 ? r & (G - 1) : r % G; };
  const int P = static_cast<int>(a.P);
  const bool has_norm = a.q_norm != nullptr;
  const T* qkv = static_cast<const T*>(a.qkv);
  // The norm weights as floats (unit offset added) in shared memory, read where a row is
  // normalised: registers held across the attention would spill.
  float* nws = reinterpret_cast<float*>(qbuf - warp * QB * 16 * ST + kWarps * QB * 16 * ST);
  if (has_norm && threadIdx.x < LPR) {
    float qw[V], kw[V];
    load_norm_weights<T, D>(a, threadIdx.x, qw, kw);
#pragma unroll
    for (int j = 0; j < V; ++j)
      nws[threadIdx.x * V + j] = qw[j], nws[D + threadIdx.x * V + j] = kw[j];
  }
  const int chunks = static_cast<int>((G * a.max_len + kUnitRows - 1) / kUnitRows);
  const int64_t units = a.N * a.Hkv * chunks;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const int64_t sh = u / chunks;
    const int c = static_cast<int>(u % chunks);
    const int64_t hk = sh % a.Hkv, sq = sh / a.Hkv;
    const int64_t t0 = a.starts[sq];
    const int rows = G * static_cast<int>(a.starts[sq + 1] - t0), r0 = c * kUnitRows;
    if (r0 >= rows) continue;  // the whole CTA: the sequence is shorter than this chunk
    const int r1 = min(r0 + kUnitRows, rows);
    // Keys some row of the unit sees: from the first row's window on, up to the last row.
    const int ke = P + (r1 - 1) / G + 1;
    const int kb = a.window > 0 ? max(0, P + r0 / G - a.window + 1) : 0;
    const int nk = ke - kb, nkt = (nk + BC - 1) / BC * BC;
    for (int idx = threadIdx.x; idx < nkt * CH; idx += blockDim.x) {
      const int i = idx / CH, ch = idx % CH, j = kb + i;
      const T *ksrc = qkv, *vsrc = qkv;
      if (j < ke && j < P) {
        ksrc = static_cast<const T*>(a.prefix_k) + hk * a.pk_st[0] + j * a.pk_st[1];
        vsrc = static_cast<const T*>(a.prefix_v) + hk * a.pv_st[0] + j * a.pv_st[1];
      } else if (j < ke) {
        const T* row = qkv + (t0 + j - P) * a.row_stride;
        ksrc = row + (a.H + hk) * D;
        vsrc = row + (a.H + a.Hkv + hk) * D;
      }
      cp_async16(ks + i * ST + ch * 8, ksrc + ch * 8, j < ke);
      cp_async16(vs + i * ST + ch * 8, vsrc + ch * 8, j < ke);
    }
    cp_async_commit();
    // The warp's slab of rows w0 .. w0 + 16 (rows past r1: zeros) into buffer b.
    auto load_slab = [&](int w0, int b) {
      T* dst = qbuf + b * 16 * ST;
      for (int idx = lane; idx < 16 * CH; idx += 32) {
        const int i = idx / CH, ch = idx % CH;
        const bool ok = w0 + i < r1;
        const int rr = ok ? w0 + i : w0;
        const int64_t l = pos_of(rr), h = hk * G + head_of(rr);
        cp_async16(dst + i * ST + ch * 8, qkv + (t0 + l) * a.row_stride + h * D + ch * 8, ok);
      }
      cp_async_commit();
    };
    const int first = r0 + warp * 16;
    if (first < r1) load_slab(first, 0);
    cp_async_wait<0>();
    __syncthreads();
    // The unit's own keys (j >= P), normalised and rotated once: RPW rows a warp at a time.
    // Two rows a group at a time (independent chains); rows that are not the unit's own keys
    // are computed from zeros at table row 0 and not stored.
    for (int i = warp * RPW + grp; i < nk; i += 2 * kWarps * RPW) {
      uint4 kr[2];
      int tr[2];
      bool own[2];
#pragma unroll
      for (int b = 0; b < 2; ++b) {
        const int ib = i + b * kWarps * RPW, j = kb + ib;
        own[b] = ib < nk && j >= P;
        kr[b] = own[b] ? *reinterpret_cast<const uint4*>(ks + ib * ST + sub * V)
                       : make_uint4(0, 0, 0, 0);
        tr[b] = own[b] ? j - P : 0;
      }
      norm_rope<T, D, 2>(kr, nws + D + sub * V, has_norm, a, tr, sub, gmask);
#pragma unroll
      for (int b = 0; b < 2; ++b)
        if (own[b]) *reinterpret_cast<uint4*>(ks + (i + b * kWarps * RPW) * ST + sub * V) = kr[b];
    }
    __syncthreads();  // the keys are ready

    int b = 0;
    for (int w0 = first; w0 < r1; w0 += kWarps * 16) {
      const int w1 = min(w0 + 16, r1);
      T* qs = qbuf + b * 16 * ST;
      if constexpr (QB == 2) {
        if (w0 + kWarps * 16 < r1) {
          load_slab(w0 + kWarps * 16, b ^ 1);
          cp_async_wait<1>();
        } else {
          cp_async_wait<0>();
        }
      } else {
        if (w0 != first) load_slab(w0, 0);
        cp_async_wait<0>();
      }
      __syncwarp();
      // Two rows a group at a time; rows past w1 (zeros) are left as they are.
#pragma unroll
      for (int i = grp; i < 16; i += 2 * RPW) {
        uint4 qr[2];
        int tr[2];
#pragma unroll
        for (int b = 0; b < 2; ++b) {
          const int rr = min(w0 + i + b * RPW, w1 - 1);
          qr[b] = *reinterpret_cast<const uint4*>(qs + (i + b * RPW) * ST + sub * V);
          tr[b] = pos_of(rr);
        }
        norm_rope<T, D, 2>(qr, nws + sub * V, has_norm, a, tr, sub, gmask);
#pragma unroll
        for (int b = 0; b < 2; ++b)
          if (w0 + i + b * RPW < w1)
            *reinterpret_cast<uint4*>(qs + (i + b * RPW) * ST + sub * V) = qr[b];
      }
      __syncwarp();

      const T* qwarp = qs + (lane & 15) * ST + (lane >> 4) * 8;
      // Q fragments are read from shared memory per key tile (most slabs see one or two tiles):
      // the registers go to occupancy instead.
      MmaRows<D, false> r;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) r.o[dt][0] = r.o[dt][1] = r.o[dt][2] = r.o[dt][3] = 0.0f;
      r.m[0] = r.m[1] = -INFINITY;
      r.l[0] = r.l[1] = 0.0f;
      int qpos[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) qpos[i] = P + pos_of(min(w0 + (lane >> 2) + 8 * i, w1 - 1));
      const int lmin = pos_of(w0), lmax = pos_of(w1 - 1);
      const int kwe = P + lmax + 1;  // keys past the slab's last row are never seen
      const int kwb = a.window > 0 ? max(kb, P + lmin - a.window + 1) : kb;
      for (int j0 = kb + (kwb - kb) / BC * BC; j0 < kwe; j0 += BC) {
        float sc[BC / 8][4];
        mma_scores<T, D>(sc, r, qwarp, ks + (j0 - kb) * ST);
        const bool full = !(a.softcap > 0) && j0 + BC - 1 <= P + lmin &&
                          (a.window <= 0 || j0 > P + lmax - a.window);
        if (full) {
          const float sl2 = a.scale * kLog2e;
#pragma unroll
          for (int n = 0; n < BC / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) sc[n][e] *= sl2;
        } else {
          // Key j = j0 + base + off (off = n * 8 + (e & 1), a constant) is visible to a row at
          // position p when off <= p - j0 - base and (with a window) off > p - window - j0 - base.
          const int base = j0 + quad * 2;
          const int hi[2] = {qpos[0] - base, qpos[1] - base};
          const int lo[2] = {a.window > 0 ? qpos[0] - a.window - base : INT_MIN,
                             a.window > 0 ? qpos[1] - a.window - base : INT_MIN};
          if (a.softcap > 0) {
            const float inv_cap = 1.0f / a.softcap;
#pragma unroll
            for (int n = 0; n < BC / 8; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e)
                sc[n][e] = a.softcap * tanhf(sc[n][e] * a.scale * inv_cap);
          } else {
#pragma unroll
            for (int n = 0; n < BC / 8; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) sc[n][e] *= a.scale;
          }
#pragma unroll
          for (int n = 0; n < BC / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int off = n * 8 + (e & 1), i = e >> 1;
              sc[n][e] = off <= hi[i] && off > lo[i] ? sc[n][e] * kLog2e : -INFINITY;
            }
        }
        mma_online_softmax<D>(sc, r);
        mma_pv<T, D>(r, sc, vs + (j0 - kb) * ST);
      }
      mma_rows_end<D>(r);

      // The slab's rows, normalised, staged through its own buffer, out in 16-byte stores
      // (then the buffer is free for the slab after next).
      T* out = static_cast<T*>(a.out);
      mma_write_rows<T, D>(r, qs, [&](int i, int ch, const uint4& v) {
        const int rr = w0 + i;
        if (rr >= w1) return;
        const int64_t l = pos_of(rr), h = hk * G + head_of(rr);
        *reinterpret_cast<uint4*>(out + (t0 + l) * a.H * D + h * D + ch * 8) = v;
      });
      if constexpr (QB == 2) b ^= 1;
    }
    __syncthreads();  // every warp is done with the keys before the next unit's
  }
}

template <typename T, int D, int KC>
bool launch_resident(const PackedAttentionArgs& a, int sm_count, cudaStream_t s) {
  const auto kernel = packed_attention_resident_kernel<T, D, KC>;
  const size_t smem = resident_smem<T, D, KC>();
  if (smem > 48 * 1024)
    INGOT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  int per_sm = 0;
  INGOT_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * kWarps, smem));
  if (per_sm <= 0) return false;
  const int64_t chunks = (a.H / a.Hkv * a.max_len + kUnitRows - 1) / kUnitRows;
  const int64_t units = a.N * a.Hkv * chunks;
  const int64_t grid = std::min<int64_t>(units, int64_t(per_sm) * sm_count);
  if (grid <= 0) return true;
  launch_pdl(kernel, static_cast<unsigned>(grid), 32 * kWarps, smem, s, a);
  check_launch("packed_attention_resident_kernel");
  return true;
}

template <typename T, int D>
void launch_dim(const PackedAttentionArgs& a, int sm_count, cudaStream_t s) {
  using Cfg = MmaTile<D>;
  // The resident kernel when the longest sequence's keys fit (and it was not ruled out).
  const int64_t need = a.P + a.max_len;
  if (a.kernel != 1 && need <= 64 && launch_resident<T, D, 64>(a, sm_count, s)) return;
  if (a.kernel != 1 && need <= 128 && launch_resident<T, D, 128>(a, sm_count, s)) return;
  const auto kernel = packed_attention_kernel<T, D>;
  const size_t smem = static_cast<size_t>(kRows + 2 * Cfg::kKeys) * Cfg::kStride * sizeof(T);
  if (smem > 48 * 1024)
    INGOT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  int per_sm = 0;
  INGOT_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * kWarps, smem));
  const int64_t tiles = (a.H / a.Hkv * a.max_len + kRows - 1) / kRows;
  const int64_t units = a.N * a.Hkv * tiles;
  const int64_t grid = std::min<int64_t>(units, int64_t(std::max(per_sm, 1)) * sm_count);
  if (grid <= 0) return;
  launch_pdl(kernel, static_cast<unsigned>(grid), 32 * kWarps, smem, s, a);
  check_launch("packed_attention_kernel");
}

template <typename T>
void launch_type(const PackedAttentionArgs& a, int sm_count, cudaStream_t s) {
  switch (a.D) {
    case 64:
      return launch_dim<T, 64>(a, sm_count, s);
    case 128:
      return launch_dim<T, 128>(a, sm_count, s);
    default:
      return launch_dim<T, 256>(a, sm_count, s);
  }
}

}  // namespace

bool packed_attention_supported(Dtype t, int64_t D) {
  return (t == Dtype::bfloat16 || t == Dtype::float16) && (D == 64 || D == 128 || D == 256);
}

void launch_packed_attention(Dtype t, const PackedAttentionArgs& a, int sm_count, cudaStream_t s) {
  if (t == Dtype::bfloat16)
    launch_type<__nv_bfloat16>(a, sm_count, s);
  else
    launch_type<__half>(a, sm_count, s);
}

}  // namespace ingot::cu
