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

// One row of D elements held by LPR lanes, a 16-byte chunk (V elements) each: normalised (when
// has_norm, by the weights nw [D]) and rotated at table row `trow`, rounded to T.
template <typename T, int D>
__device__ __forceinline__ uint4 norm_rope(const uint4 raw, const void* nw, bool has_norm,
                                           const PackedAttentionArgs& a, int64_t trow, int sub,
                                           unsigned gmask) {
  constexpr int V = 16 / sizeof(T), LPR = D / V, half = D / 2;
  float v[V];
  unpack16<T>(raw, v);
  if (has_norm) {
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < V; ++j) ss += v[j] * v[j];
#pragma unroll
    for (int o = LPR / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(gmask, ss, o);
    const float rr = 1.0f / sqrtf(ss / static_cast<float>(D) + a.eps);
    float w[V];
    unpack16<T>(load16(static_cast<const T*>(nw) + sub * V), w);
#pragma unroll
    for (int j = 0; j < V; ++j)
      v[j] = to_float(rms_value<T>(v[j], rr, true, w[j], a.add_unit_offset, a.weight_in_float32));
  }
  // The partner of element e: e ^ 1 (interleaved pairs) or e +- half, which sits LPR / 2 lanes
  // away.
  float pv[V];
#pragma unroll
  for (int j = 0; j < V; ++j)
    pv[j] = a.traditional ? v[j ^ 1] : __shfl_xor_sync(gmask, v[j], LPR / 2);
  // The lane's cos / sin in 16-byte loads: pairs k0 .. k0 + V (half-split: elements
  // e = sub V + j, k = e mod half) or k0 .. k0 + V / 2 (interleaved: k = e / 2).
  static_assert(V == 8, "16-bit rows: eight elements a chunk");
  float cs[V], sn[V];
  const int k0 = a.traditional ? sub * V / 2 : (sub * V) % half;
  const float4* c4 = reinterpret_cast<const float4*>(a.cs + trow * half + k0);
  const float4* s4 = reinterpret_cast<const float4*>(a.sn + trow * half + k0);
  if (a.traditional) {
    const float4 c = c4[0], sv = s4[0];
    const float cc[4] = {c.x, c.y, c.z, c.w}, ss[4] = {sv.x, sv.y, sv.z, sv.w};
#pragma unroll
    for (int j = 0; j < V; ++j) cs[j] = cc[j / 2], sn[j] = ss[j / 2];
  } else {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float4 c = c4[i], sv = s4[i];
      cs[4 * i] = c.x, cs[4 * i + 1] = c.y, cs[4 * i + 2] = c.z, cs[4 * i + 3] = c.w;
      sn[4 * i] = sv.x, sn[4 * i + 1] = sv.y, sn[4 * i + 2] = sv.z, sn[4 * i + 3] = sv.w;
    }
  }
  const bool first_half = sub * V < half;
  float o[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const bool first = a.traditional ? (j & 1) == 0 : first_half;
    const float other = first ? -pv[j] : pv[j];
    o[j] = round_through<T>(
        add_rn(round_through<T>(mul_rn(v[j], cs[j])), round_through<T>(mul_rn(other, sn[j]))));
  }
  return pack16<T>(o);
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
      *q = norm_rope<T, D>(*q, a.q_norm, has_norm, a, rr / G, sub, gmask);
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
        *k = norm_rope<T, D>(*k, a.k_norm, has_norm, a, j - a.P, sub, gmask);
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
    const float inv[2] = {r.l[0] > 0.0f ? 1.0f / r.l[0] : 0.0f,
                          r.l[1] > 0.0f ? 1.0f / r.l[1] : 0.0f};
    T* stage = qs + warp * 16 * ST;
    __syncwarp();
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
      for (int i = 0; i < 2; ++i)
        *reinterpret_cast<uint32_t*>(stage + ((lane >> 2) + 8 * i) * ST + dt * 8 + quad * 2) =
            pack2<T>(r.o[dt][2 * i] * inv[i], r.o[dt][2 * i + 1] * inv[i]);
    __syncwarp();
    T* out = static_cast<T*>(a.out);
    for (int idx = lane; idx < 16 * CH; idx += 32) {
      const int i = idx / CH, ch = idx % CH;
      const int64_t rr = r0 + warp * 16 + i;
      if (rr >= rows) continue;
      const int64_t l = rr / G, h = hk * G + rr % G;
      *reinterpret_cast<uint4*>(out + (t0 + l) * a.H * D + h * D + ch * 8) =
          *reinterpret_cast<const uint4*>(stage + i * ST + ch * 8);
    }
    __syncthreads();  // every warp is done with the Q rows before the next unit's
  }
}

template <typename T, int D>
void launch_dim(const PackedAttentionArgs& a, int sm_count, cudaStream_t s) {
  using Cfg = MmaTile<D>;
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
