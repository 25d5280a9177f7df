// CUDA decode attention kernels of ScaledDotProductAttention (at most 8 query rows per kv head
// against many keys): the split kernel and the cluster kernel (sm_90), their plans and launchers;
// plan_sdpa and launch_sdpa (fast_sdpa.cu) choose them.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_rope_row.cuh"
#include "backend/cuda/fast_sdpa_common.cuh"
#include "backend/cuda/fast_sdpa_kernels.h"
#include "util/env.h"

namespace ingot::cu {
using namespace sdpa_detail;
namespace {

// ---- decode kernel: few rows (G * L <= 8) against many keys, 16-bit or float32 ----
//
// 128 threads. A key is read by a group of LPK lanes, one 16-byte chunk each (LPK = D / chunk),
// so a warp holds 32 / LPK keys at a time and the CTA's key range is dealt round-robin to its
// groups, U keys per group in flight. Each group keeps a running max, sum and output chunk for
// every row in registers (float32, like the CPU); groups merge by shuffles, warps through shared
// memory, and the result is the output (one split) or the split's partial for the combine pass.

constexpr int kDecodeThreads = 128, kDecodeWarps = kDecodeThreads / 32, kDecodeMaxRows = 8;
// Keys a group requests at once (4 for up to two rows measured 10% slower for Qwen3-0.6B
// single-stream decode on the H200).
constexpr int kDecodeUnroll = 2;

template <typename T, int LPK, int R>
__global__ void __launch_bounds__(kDecodeThreads) sdpa_decode_kernel(const KParams p) {
  pdl_prologue();
  constexpr int V = kVec16<T>, GPW = 32 / LPK, GROUPS = GPW * kDecodeWarps, UNR = kDecodeUnroll;
  static_assert(kDecodeWarps * R * LPK * V >= kMaxSplits && kDecodeThreads == kMaxSplits,
                "the combine reuses sm_o and needs a thread per split");
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  __shared__ float sm_ml[kDecodeWarps][R][2];
  __shared__ __align__(16) float sm_o[kDecodeWarps][R][LPK * V];
  const SdpaArgs& a = p.a;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane % LPK;
  const Block c = block_coords(p, blockIdx.x, R);
  int64_t kb, ke;
  key_range(p, c, p.rows, kb, ke);
  const int64_t d0 = int64_t(sub) * V;

  Row rw[R];
  float q[R][V];
  DecodeState<V> st[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rw[r] = row_at(p, c, r);
    float qf[V] = {};
    if (rw[r].valid)
      unpack16<T>(load16(static_cast<const T*>(a.q) + c.b * a.q_st[0] + rw[r].h * a.q_st[1] +
                         rw[r].l * a.q_st[2] + d0),
                  qf);
#pragma unroll
    for (int i = 0; i < V; ++i) q[r][i] = qf[i] * a.scale;  // pre-scaled as the CPU does
    decode_init(st[r]);
  }
  const T* kp = static_cast<const T*>(a.k) + c.b * a.k_st[0] + c.hk * a.k_st[1] + d0;
  const T* vp = static_cast<const T*>(a.v) + c.b * a.v_st[0] + c.hk * a.v_st[1] + d0;

  // Trip counts are warp-uniform (the shuffles need every lane); keys past ke score -inf.
  for (int64_t j0 = kb + warp * GPW + lane / LPK; j0 - lane / LPK < ke;
       j0 += int64_t(GROUPS) * UNR) {
    uint4 kv[UNR], vv[UNR];
    float mv[UNR][R];  // the mask's values, requested with the keys
#pragma unroll
    for (int u = 0; u < UNR; ++u) {
      const int64_t j = j0 + int64_t(u) * GROUPS;
      if (j < ke) {
        kv[u] = load16(kp + j * a.k_st[2]);
        vv[u] = load16(vp + j * a.v_st[2]);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) mv[u][r] = j < ke ? mask_at<float>(p, c, rw[r], j) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < UNR; ++u) {
      const int64_t j = j0 + int64_t(u) * GROUPS;
      float kf[V] = {}, vf[V] = {};
      if (j < ke) {
        unpack16<T>(kv[u], kf);
        unpack16<T>(vv[u], vf);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < V; ++i) d += q[r][i] * kf[i];
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        const float x = rw[r].valid ? score_mv<float>(p, rw[r], j, ke, d, mv[u][r]) : kNegInf;
        decode_add(st[r], x, vf);
      }
    }
  }
  // Groups of a warp (lanes sub, sub + LPK, ...), then warps.
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int off = LPK; off < 32; off <<= 1) {
      float to[V];
#pragma unroll
      for (int i = 0; i < V; ++i) to[i] = __shfl_xor_sync(0xffffffffu, st[r].o[i], off);
      const float tm = __shfl_xor_sync(0xffffffffu, st[r].m, off);
      const float tl = __shfl_xor_sync(0xffffffffu, st[r].l, off);
      decode_merge(st[r], tm, tl, to);
    }
    if (lane < LPK) {
#pragma unroll
      for (int i = 0; i < V; ++i) sm_o[warp][r][d0 + i] = st[r].o[i];
      if (lane == 0) {
        sm_ml[warp][r][0] = st[r].m;
        sm_ml[warp][r][1] = st[r].l;
      }
    }
  }
  __syncthreads();
  const bool writer = warp == 0 && lane < LPK;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (!writer || r >= p.rows) break;
    for (int w = 1; w < kDecodeWarps; ++w)
      decode_merge(st[r], sm_ml[w][r][0], sm_ml[w][r][1], &sm_o[w][r][d0]);
    if (p.splits == 1) {
      const float inv = st[r].l > 0.0f ? 1.0f / st[r].l : 0.0f;
      float y[V];
#pragma unroll
      for (int i = 0; i < V; ++i) y[i] = st[r].o[i] * inv;
      T* dst = static_cast<T*>(a.out) + ((c.b * a.H + rw[r].h) * a.L + rw[r].l) * a.Dv + d0;
      *reinterpret_cast<uint4*>(dst) = pack16<T>(y);
    } else {
      const int64_t pidx = (c.bh * p.rows + r) * p.splits + c.split;
      float* acc = static_cast<float*>(p.part);
      float* ml = acc + a.B * a.Hkv * p.rows * p.splits * a.Dv;
#pragma unroll
      for (int i = 0; i < V; ++i) acc[pidx * a.Dv + d0 + i] = st[r].o[i];
      if (lane == 0) {
        ml[pidx * 2] = st[r].m;
        ml[pidx * 2 + 1] = st[r].l;
      }
    }
  }
  if (p.splits == 1 || p.counters == nullptr) return;
  // The last split of this (batch, kv head) to arrive combines every split's partials (the
  // threadfence pattern: publish the partials, then count; the counter returns to zero).
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned seen = atomicAdd(&p.counters[c.bh], 1u);
    last = seen == static_cast<unsigned>(p.splits - 1);
    if (last) p.counters[c.bh] = 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // Every row of this (batch, kv head) at once: a warp per row finds its split weights (in the
  // shared output tile, free now), then all threads sum (row, column) outputs: combine_row's
  // formulas (the sum of the weights runs in another order).
  float* wts = &sm_o[0][0][0];  // [rows][splits]
  __shared__ float inv[R];
  const float* acc = static_cast<const float*>(p.part);
  const float* ml = acc + a.B * a.Hkv * p.rows * p.splits * a.Dv;
  const int S = p.splits;
  for (int r = warp; r < p.rows; r += kDecodeWarps) {
    const int64_t base = (c.bh * p.rows + r) * S;
    float mi[kMaxSplits / 32], mx = kNegInf;
#pragma unroll
    for (int j = 0; j < kMaxSplits / 32; ++j) {
      const int i = lane + 32 * j;
      mi[j] = i < S ? __ldcg(&ml[(base + i) * 2]) : kNegInf;
      mx = mi[j] > mx ? mi[j] : mx;
    }
    mx = __shfl_sync(0xffffffffu, warp_max(mx), 0);
    float ls = 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxSplits / 32; ++j) {
      const int i = lane + 32 * j;
      if (i < S) {
        const float wi = mx != kNegInf ? expf(mi[j] - mx) : 0.0f;
        wts[r * S + i] = wi;
        ls += __ldcg(&ml[(base + i) * 2 + 1]) * wi;
      }
    }
    ls = warp_sum(ls);
    if (lane == 0) inv[r] = ls > 0.0f ? 1.0f / ls : 0.0f;
  }
  __syncthreads();
  for (int64_t idx = threadIdx.x; idx < p.rows * a.Dv; idx += kDecodeThreads) {
    const int64_t r = idx / a.Dv, d = idx % a.Dv, base = (c.bh * p.rows + r) * S;
    float sum = 0.0f;
#pragma unroll 4
    for (int i = 0; i < S; ++i) sum += wts[r * S + i] * __ldcg(&acc[(base + i) * a.Dv + d]);
    const Row w = row_at(p, c, r);
    static_cast<T*>(a.out)[((c.b * a.H + w.h) * a.L + w.l) * a.Dv + d] = cast<T>(sum * inv[r]);
  }
}

// ---- cluster decode kernel: few rows (G * L <= 8), 16-bit D 64/128/256 (sm_90) ----
//
// Built for the latency of one call rather than bandwidth: a decode step's attention reads well
// under a megabyte, so the time is the chain of dependent steps. The keys [kmin, S) that some
// row may see (kmin from the window) are dealt in equal spans to the `ncl` CTAs of a thread-block
// cluster per (batch, kv head). A CTA copies all of its span's K and V rows into shared memory
// with cp.async at once (one DRAM round trip; spans longer than one stage run in two stages that
// load while the other computes), then
//   1. scores: groups of LPK lanes (16 bytes each) take keys g, g + GROUPS, ..., four at a time
//      without branches between them; lane `sub` of a group applies softcap, mask and
//      visibility for row `sub` (score_mv) and stores the score;
//   2. softmax: warp w takes rows w, w + 4: the span's maximum, probabilities in place of the
//      scores, the row sum (one rescale per stage of the running state, none per key);
//   3. P.V: each group sums probability x value chunk for its keys, groups then warps add up;
//   4. the CTAs of the cluster store (max, sum, output) into rank 0's shared memory
//      (distributed shared memory) and rank 0 combines them into the output after one cluster
//      barrier. A cluster of one CTA writes its output directly.
// Each thread copies exactly the K/V chunks that it reads later, so the copies need no barrier.
// Index math is 32-bit (spans and row coordinates), addresses 64-bit.

constexpr int kCdThreads = 128, kCdWarps = kCdThreads / 32;
constexpr int kCdMaxCluster = 8;          // portable cluster size
constexpr int64_t kCdShortSpan = 2048;    // keys up to which it takes any decode problem
constexpr int kCdStageBytes = 64 * 1024;  // K and V rows of one CTA in shared memory at once
constexpr int kCdKeysPerGroup = 16;       // kCdStageBytes / (4 D) / (128 / (D / 8)) for any D
constexpr int kCdKeyBatch = 4;  // keys a group scores (and adds into P.V) without a branch
constexpr int kCdLaneKeys = 8;  // a stage's keys per lane of a softmax warp: 256 at most
static_assert(kCdStageBytes / (4 * 64) <= 32 * kCdLaneKeys && kCdKeysPerGroup % kCdKeyBatch == 0);

struct CdParams {
  KParams p;  // q/k/v/mask/out and options for the shared helpers (score_mv, mask_value)
  int Hkv, G, rows, L, S;
  int kmin;  // first key some row may see
  int kps;   // keys per CTA
  int cap;   // keys per shared-memory stage (a multiple of the key groups)
  int ncl;   // CTAs per (batch, kv head): the cluster
  // Byte offsets in dynamic shared memory: scores [R][cap], warp outputs [4][R][D], row state
  // (max, sum, rescale) [R] each, and on rank 0 the cluster's partials [ncl][R][D], [ncl][R][2].
  int off_s, off_o, off_ml, off_part, off_pml;
};

// The new token's prologue of the fused kernel (launch_rope_kv_attention): rope_kv_update's
// arguments and the first 128 host-computed inverse frequencies (head dims up to 256).
struct CdFused {
  RopeKvArgs kv;
  int n_inv;
  float inv[128];
};

__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
  return r;
}
// Cluster barrier halves (every thread of every CTA of the cluster arrives once per phase).
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_arrive_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire;" ::: "memory");
#endif
}
// The address of *p in the shared memory of cluster CTA `rank` (generic addresses).
__device__ __forceinline__ float* cluster_map(float* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint64_t r;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(r) : "l"(p), "r"(rank));
  return reinterpret_cast<float*>(r);
#else
  (void)rank;
  __trap();
  return p;
#endif
}

// FUSED (rope_kv_attention_kernel): the query rows are normalised and rotated here from the
// stacked q|k|v product (fz->kv.qkv) into shared memory, and the CTA whose span holds the new
// column also normalises and rotates the new key, writes it and the value to the cache and,
// once that stage's copy of the old column has landed, over it in the stage buffer; all while
// the stages' copies are in flight.
template <typename T, int LPK, int R, bool FUSED>
__device__ __forceinline__ void cluster_decode_body(const CdParams& cp, const CdFused* fz) {
  pdl_prologue();
  constexpr int V = kVec16<T>, D = LPK * V, GPW = 32 / LPK, GROUPS = GPW * kCdWarps;
  constexpr int KPG = kCdKeysPerGroup, KB = kCdKeyBatch, RW = (R + kCdWarps - 1) / kCdWarps;
  static_assert(R <= LPK, "lane `sub` of a group finishes the score of row `sub`");
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const KParams& p = cp.p;
  const SdpaArgs& a = p.a;
  const bool clustered = cp.ncl > 1;
  if (clustered) cluster_arrive_relaxed();  // waited on before the first remote store
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, group = tid / LPK,
            sub = lane % LPK;
  const unsigned rank = clustered ? cluster_rank() : 0u;
  const int bh = static_cast<int>(blockIdx.y), b = bh / cp.Hkv, hk = bh - b * cp.Hkv;
  const int kb = cp.kmin + static_cast<int>(rank) * cp.kps;
  const int ke = min(cp.S, kb + cp.kps), n = max(ke - kb, 0), cap = cp.cap;
  const int nstage = (n + cap - 1) / cap;
  const int rows = cp.rows;

  T* kv = reinterpret_cast<T*>(smem_raw);  // stage buffers: K [cap][D], then V [cap][D]
  float* ss = reinterpret_cast<float*>(smem_raw + cp.off_s);
  float* so = reinterpret_cast<float*>(smem_raw + cp.off_o);
  float* sm = reinterpret_cast<float*>(smem_raw + cp.off_ml);  // max [R], sum [R], rescale [R]
  const T* kg = static_cast<const T*>(a.k) + b * a.k_st[0] + hk * a.k_st[1] + sub * V;
  const T* vg = static_cast<const T*>(a.v) + b * a.v_st[0] + hk * a.v_st[1] + sub * V;
  const int64_t kst = a.k_st[2], vst = a.v_st[2];

  // Stage s (keys kb + s * cap ..) into buffer `buf`: this thread's chunks only.
  auto issue = [&](int s, int buf) {
    const int j0 = kb + s * cap, nk = min(cap, ke - j0);
    T* kd = kv + buf * 2 * cap * D + sub * V;
    T* vd = kd + cap * D;
#pragma unroll
    for (int u = 0; u < KPG; ++u) {
      const int i = group + u * GROUPS;
      if (i < nk) {
        cp_async16(kd + i * D, kg + (j0 + i) * kst, true);
        cp_async16(vd + i * D, vg + (j0 + i) * vst, true);
      }
    }
    cp_async_commit();
  };
  if (nstage > 0) issue(0, 0);
  if (nstage > 1) issue(1, 1);

  // FUSED: the prologue, while those copies are in flight. Its loads go out together first
  // (the column, the position, each warp's rows of q|k|v and their norm weights); then cos/sin
  // of the position and a warp per row: the G query rows into fz_q, and in the CTA whose span
  // holds the new column (col; -1 when out of range: recorded as put_along_axis's fault,
  // nothing written) the new key (normalised, rotated) and value, written to the cache and kept
  // in fz_new for patch_new.
  int col = -1;
  const T* fz_q = nullptr;    // [R][D]
  const T* fz_new = nullptr;  // key [D], then value [D]
  if constexpr (FUSED) {
    constexpr int NV = kRopeRowVecs<T>, RPW = (R + 2 + kCdWarps - 1) / kCdWarps;
    __shared__ float f_cs[128], f_sn[128];
    __shared__ float f_buf[kCdWarps][256];
    __shared__ __align__(16) T f_rows[R + 2][D];
    const RopeKvArgs& k = fz->kv;
    const int64_t c = load_int(k.column, k.column_dtype, 0);
    const int64_t start =
        k.rope.offsets ? load_int(k.rope.offsets, k.rope.offsets_dtype, b * k.rope.offsets_stride)
                       : k.rope.offset;
    // Row i of this CTA: q rows 0..rows-1 (heads hk G + i), then the new key and value.
    const T* src = static_cast<const T*>(k.qkv) + b * k.sb;
    const T* qn = static_cast<const T*>(k.q_norm);
    const T* kn = static_cast<const T*>(k.k_norm);
    auto row_src = [&](int i) {
      const int64_t head = i < rows    ? int64_t(hk) * cp.G + i
                           : i == rows ? k.H + hk
                                       : k.H + k.Hkv + hk;
      return src + head * D;
    };
    uint4 xr[RPW][NV], wr[RPW][NV];
#pragma unroll
    for (int j = 0; j < RPW; ++j) {
      const int i = warp + kCdWarps * j;
      if (i < rows + 2)
        rope_row_load<T>(row_src(i), i < rows ? qn : i == rows ? kn : nullptr, D, xr[j], wr[j]);
    }
    if (c >= 0 && c < cp.S)
      col = static_cast<int>(c);
    else if (tid == 0 && rank == 0 && bh == 0)
      record_fault(k.site, c, cp.S);
    const float pos = __fmul_rn(static_cast<float>(start), k.rope.scale);
    for (int j = tid; j < D / 2; j += kCdThreads)
      rope_cos_sin<T>(k.rope, fz->inv, fz->n_inv, pos, j, f_cs[j], f_sn[j]);
    __syncthreads();
    const bool owner = col >= kb && col < ke;
    const int64_t dst_row = ((int64_t(b) * k.Hkv + hk) * k.C + col) * D;
#pragma unroll
    for (int j = 0; j < RPW; ++j) {
      const int i = warp + kCdWarps * j;
      if (i < rows) {
        rope_row_finish<T>(xr[j], wr[j], qn != nullptr, k.eps, k.add_unit_offset,
                           k.weight_in_float32, k.rope.traditional, D, f_cs, f_sn, f_buf[warp],
                           f_rows[i], nullptr);
      } else if (i == rows && owner) {
        rope_row_finish<T>(xr[j], wr[j], kn != nullptr, k.eps, k.add_unit_offset,
                           k.weight_in_float32, k.rope.traditional, D, f_cs, f_sn, f_buf[warp],
                           f_rows[R], static_cast<T*>(k.keys) + dst_row);
      } else if (i == rows + 1 && owner) {  // the value: a copy
        T* vdst = static_cast<T*>(k.values) + dst_row;
#pragma unroll
        for (int v = 0; v < NV; ++v) {
          const int cc = lane + 32 * v;
          if (cc < D / V) {
            *reinterpret_cast<uint4*>(vdst + cc * V) = xr[j][v];
            *reinterpret_cast<uint4*>(&f_rows[R + 1][cc * V]) = xr[j][v];
          }
        }
      }
    }
    __syncthreads();
    fz_q = &f_rows[0][0];
    fz_new = &f_rows[R][0];
  }
  // FUSED: the new column's key and value over what stage s copied from the cache (the old
  // column), by the threads that copied those chunks and will read them, once their copies have
  // landed (after their cp_async_wait).
  auto patch_new = [&](int s, int buf) {
    if constexpr (FUSED) {
      const int i = col - (kb + s * cap);
      if (col < kb || col >= ke || i < 0 || i >= cap || group != i % GROUPS) return;
      T* kd = kv + buf * 2 * cap * D + sub * V;
      *reinterpret_cast<uint4*>(kd + i * D) = *reinterpret_cast<const uint4*>(fz_new + sub * V);
      *reinterpret_cast<uint4*>(kd + cap * D + i * D) =
          *reinterpret_cast<const uint4*>(fz_new + D + sub * V);
    }
  };

  // Row coordinates (32-bit) and the pre-scaled query chunks.
  auto row_of = [&](int r) {
    Row w;
    w.valid = r < rows;
    const int rr = w.valid ? r : 0, l = rr / cp.G;
    w.l = l;
    w.h = hk * cp.G + rr - l * cp.G;
    w.pos = cp.S - cp.L + l;
    return w;
  };
  // Every row's load is issued before any is used (rows past the end read row 0's).
  uint4 qraw[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if constexpr (FUSED) {
      qraw[r] = *reinterpret_cast<const uint4*>(fz_q + (r < rows ? r : 0) * D + sub * V);
    } else {
      const Row w = row_of(r);
      qraw[r] = load16(static_cast<const T*>(a.q) + b * a.q_st[0] + w.h * a.q_st[1] +
                       w.l * a.q_st[2] + sub * V);
    }
  }
  float q[R][V];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float qf[V];
    unpack16<T>(qraw[r], qf);
#pragma unroll
    for (int i = 0; i < V; ++i) q[r][i] = r < rows ? qf[i] * a.scale : 0.0f;  // pre-scaled
  }
  // Lane `sub` finishes row `sub`'s scores and reads its mask values, a stage ahead. Boolean
  // masks (the static KV cache's) keep the loaded bytes until the scores need them, so that the
  // loads stay in flight; other mask dtypes are converted to float bits as they arrive.
  const Row my_row = row_of(sub);
  const bool my_valid = sub < rows;
  const bool has_mask = a.mask_kind != SdpaMaskKind::none;
  const bool mask_bytes = has_mask && a.mask_dtype == Dtype::bool_;
  const int64_t mbase = int64_t(b) * a.m_st[0] + my_row.h * a.m_st[1] + my_row.l * a.m_st[2],
                mst = a.m_st[3];
  uint32_t mreg[KPG];
  auto load_mask = [&](int s) {
    const int j0 = kb + s * cap, nk = min(cap, ke - j0);
    const bool on = has_mask && my_valid;
    if (mask_bytes) {
      const uint8_t* m = static_cast<const uint8_t*>(a.mask) + mbase;
#pragma unroll
      for (int u = 0; u < KPG; ++u) {
        const int i = group + u * GROUPS;
        mreg[u] = on && i < nk ? m[(j0 + i) * mst] : 0u;
      }
    } else {
#pragma unroll
      for (int u = 0; u < KPG; ++u) {
        const int i = group + u * GROUPS;
        mreg[u] =
            on && i < nk
                ? __float_as_uint(mask_value<float>(a.mask, a.mask_dtype, mbase + (j0 + i) * mst))
                : 0u;
      }
    }
  };
  auto mask_val = [&](uint32_t w) {
    return mask_bytes ? (w != 0u ? 1.0f : 0.0f) : __uint_as_float(w);
  };
  if (nstage > 0) load_mask(0);

  float mrun[RW], lrun[RW], o[R][V];
#pragma unroll
  for (int t = 0; t < RW; ++t) mrun[t] = kNegInf, lrun[t] = 0.0f;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < V; ++i) o[r][i] = 0.0f;

  for (int s = 0; s < nstage; ++s) {
    if (s + 1 < nstage)
      cp_async_wait<1>();
    else
      cp_async_wait<0>();
    const int j0 = kb + s * cap, nk = min(cap, ke - j0), buf = s & 1;
    patch_new(s, buf);
    const T* ks = kv + buf * 2 * cap * D + sub * V;
    const T* vs = ks + cap * D;
    // 1. Scores, KB keys per group at a time with no branch between them, so that their
    // shared-memory reads and shuffles overlap. Trip counts are warp-uniform (the shuffles need
    // every lane); a group past the stage's keys reads a row of the buffer (clamped into it)
    // and stores nothing.
#pragma unroll
    for (int u0 = 0; u0 < KPG; u0 += KB) {
      if (warp * GPW + u0 * GROUPS >= nk) break;
      float kf[KB][V];
#pragma unroll
      for (int ub = 0; ub < KB; ++ub) {
        const int i = min(group + (u0 + ub) * GROUPS, cap - 1);
        unpack16<T>(*reinterpret_cast<const uint4*>(ks + i * D), kf[ub]);
      }
      float mine[KB];
#pragma unroll
      for (int ub = 0; ub < KB; ++ub) mine[ub] = 0.0f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        float d[KB];
#pragma unroll
        for (int ub = 0; ub < KB; ++ub) {
          d[ub] = 0.0f;
#pragma unroll
          for (int e = 0; e < V; ++e) d[ub] += q[r][e] * kf[ub][e];
        }
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1)
#pragma unroll
          for (int ub = 0; ub < KB; ++ub) d[ub] += __shfl_xor_sync(0xffffffffu, d[ub], off);
#pragma unroll
        for (int ub = 0; ub < KB; ++ub)
          if (r == sub) mine[ub] = d[ub];
      }
#pragma unroll
      for (int ub = 0; ub < KB; ++ub) {
        const int i = group + (u0 + ub) * GROUPS;
        if (my_valid && i < nk)
          ss[sub * cap + i] =
              score_mv<float>(p, my_row, j0 + i, ke, mine[ub], mask_val(mreg[u0 + ub]));
      }
    }
    if (s + 1 < nstage) load_mask(s + 1);
    __syncthreads();  // the stage's scores are stored
    // 2. Softmax of the stage against the running maximum (in registers of warp r % 4): a
    // lane's scores (at most kCdLaneKeys) stay in registers between the two passes.
#pragma unroll
    for (int t = 0; t < RW; ++t) {
      const int r = warp + kCdWarps * t;
      if (r >= rows) break;
      float* sr = ss + r * cap;
      float x[kCdLaneKeys];
      float mx = kNegInf;  // NaN scores never become the maximum; their weight is NaN
#pragma unroll
      for (int k = 0; k < kCdLaneKeys; ++k) {
        const int i = lane + 32 * k;
        x[k] = i < nk ? sr[i] : kNegInf;
        mx = x[k] > mx ? x[k] : mx;
      }
      mx = warp_max(mx);
      const float mnew = mrun[t] > mx ? mrun[t] : mx;
      const float alpha = mrun[t] == kNegInf ? 0.0f : expf(mrun[t] - mnew);
      float ls = 0.0f;
#pragma unroll
      for (int k = 0; k < kCdLaneKeys; ++k) {
        const int i = lane + 32 * k;
        const float pr = x[k] == kNegInf ? 0.0f : expf(x[k] - mnew);
        if (i < nk) sr[i] = pr;
        ls += pr;
      }
      lrun[t] = lrun[t] * alpha + warp_sum(ls);
      mrun[t] = mnew;
      if (lane == 0) sm[2 * R + r] = alpha;
    }
    __syncthreads();  // probabilities and rescales are stored

    // 3. O = O * rescale + P V over this group's keys, KB at a time (keys past the stage's
    // count weigh 0 and read a zeroed value: the buffer row is stale).
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      const float al = sm[2 * R + r];
#pragma unroll
      for (int e = 0; e < V; ++e) o[r][e] *= al;
    }
#pragma unroll
    for (int u0 = 0; u0 < KPG; u0 += KB) {
      if (group + u0 * GROUPS >= nk) break;
      float vf[KB][V], pr[KB][R];
#pragma unroll
      for (int ub = 0; ub < KB; ++ub) {
        const int i = group + (u0 + ub) * GROUPS, ic = min(i, cap - 1);
        unpack16<T>(*reinterpret_cast<const uint4*>(vs + ic * D), vf[ub]);
#pragma unroll
        for (int r = 0; r < R; ++r) pr[ub][r] = r < rows ? ss[r * cap + ic] : 0.0f;
        if (i >= nk) {
#pragma unroll
          for (int e = 0; e < V; ++e) vf[ub][e] = 0.0f;
#pragma unroll
          for (int r = 0; r < R; ++r) pr[ub][r] = 0.0f;
        }
      }
#pragma unroll
      for (int ub = 0; ub < KB; ++ub)
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= rows) break;
#pragma unroll
          for (int e = 0; e < V; ++e) o[r][e] += pr[ub][r] * vf[ub][e];
        }
    }
    if (s + 1 < nstage) {
      __syncthreads();  // every thread is done with the scores and with its buffer `buf`
      if (s + 2 < nstage) issue(s + 2, buf);
    }
  }
  // 4. Groups of a warp, then warps (all at the same running maximum: plain sums).
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
#pragma unroll
    for (int off = LPK; off < 32; off <<= 1)
#pragma unroll
      for (int e = 0; e < V; ++e) o[r][e] += __shfl_xor_sync(0xffffffffu, o[r][e], off);
    if (lane < LPK) {
      float4* dst = reinterpret_cast<float4*>(so + (warp * R + r) * D + sub * V);
#pragma unroll
      for (int e = 0; e < V; e += 4)
        dst[e / 4] = make_float4(o[r][e], o[r][e + 1], o[r][e + 2], o[r][e + 3]);
    }
  }
#pragma unroll
  for (int t = 0; t < RW; ++t) {
    const int r = warp + kCdWarps * t;
    if (r < rows && lane == 0) {
      sm[r] = mrun[t];
      sm[R + r] = lrun[t];
    }
  }
  __syncthreads();
  float* part = reinterpret_cast<float*>(smem_raw + cp.off_part);  // [ncl][R][D]
  float* pml = reinterpret_cast<float*>(smem_raw + cp.off_pml);    // [ncl][R][2]
  T* out = static_cast<T*>(a.out);
  auto out_row = [&](int r) {
    const Row w = row_of(r);
    return out + ((static_cast<int64_t>(b) * a.H + w.h) * cp.L + w.l) * D;
  };
  if (clustered) cluster_wait();  // every CTA of the cluster is running: rank 0 can be written
  for (int e = tid; e < rows * LPK; e += kCdThreads) {
    const int r = e / LPK, d0 = (e % LPK) * V;
    float y[V] = {};
#pragma unroll
    for (int w = 0; w < kCdWarps; ++w) {
      const float4* src = reinterpret_cast<const float4*>(so + (w * R + r) * D + d0);
#pragma unroll
      for (int i = 0; i < V; i += 4) {
        const float4 f = src[i / 4];
        y[i] += f.x, y[i + 1] += f.y, y[i + 2] += f.z, y[i + 3] += f.w;
      }
    }
    if (!clustered) {
      const float l = sm[R + r], inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
      for (int i = 0; i < V; ++i) y[i] *= inv;
      *reinterpret_cast<uint4*>(out_row(r) + d0) = pack16<T>(y);
    } else {
      float4* dst = reinterpret_cast<float4*>(cluster_map(part + (rank * R + r) * D + d0, 0));
#pragma unroll
      for (int i = 0; i < V; i += 4) dst[i / 4] = make_float4(y[i], y[i + 1], y[i + 2], y[i + 3]);
    }
  }
  if (!clustered) return;
  if (tid < rows) {
    float* dst = cluster_map(pml + (rank * R + tid) * 2, 0);
    dst[0] = sm[tid];
    dst[1] = sm[R + tid];
  }
  cluster_arrive_release();
  cluster_wait();  // the partials of every CTA are in rank 0's shared memory
  if (rank != 0) return;
  const int ncl = cp.ncl;
  for (int e = tid; e < rows * LPK; e += kCdThreads) {
    const int r = e / LPK, d0 = (e % LPK) * V;
    float mx = kNegInf;
    for (int j = 0; j < ncl; ++j) {
      const float mj = pml[(j * R + r) * 2];
      mx = mj > mx ? mj : mx;
    }
    float y[V] = {}, den = 0.0f;
    for (int j = 0; j < ncl; ++j) {
      const float mj = pml[(j * R + r) * 2];
      const float wj = mj == kNegInf ? 0.0f : expf(mj - mx);
      den += pml[(j * R + r) * 2 + 1] * wj;
      const float4* src = reinterpret_cast<const float4*>(part + (j * R + r) * D + d0);
#pragma unroll
      for (int i = 0; i < V; i += 4) {
        const float4 f = src[i / 4];
        y[i] += wj * f.x, y[i + 1] += wj * f.y, y[i + 2] += wj * f.z, y[i + 3] += wj * f.w;
      }
    }
    const float inv = den > 0.0f ? 1.0f / den : 0.0f;
#pragma unroll
    for (int i = 0; i < V; ++i) y[i] *= inv;
    *reinterpret_cast<uint4*>(out_row(r) + d0) = pack16<T>(y);
  }
}

template <typename T, int LPK, int R>
__global__ void __launch_bounds__(kCdThreads, 1)
    sdpa_decode_cluster_kernel(const __grid_constant__ CdParams cp) {
  cluster_decode_body<T, LPK, R, false>(cp, nullptr);
}

template <typename T, int LPK, int R>
__global__ void __launch_bounds__(kCdThreads, 1)
    rope_kv_attention_kernel(const __grid_constant__ CdParams cp,
                             const __grid_constant__ CdFused fz) {
  cluster_decode_body<T, LPK, R, true>(cp, &fz);
}

// ---- launchers ----

template <typename T, int LPK>
void launch_decode_rows(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s) {
  switch (pl.rows_per_cta) {
    case 1:
      launch_pdl(sdpa_decode_kernel<T, LPK, 1>, blocks, kDecodeThreads, 0, s, kp);
      break;
    case 2:
      launch_pdl(sdpa_decode_kernel<T, LPK, 2>, blocks, kDecodeThreads, 0, s, kp);
      break;
    case 4:
      launch_pdl(sdpa_decode_kernel<T, LPK, 4>, blocks, kDecodeThreads, 0, s, kp);
      break;
    default:
      launch_pdl(sdpa_decode_kernel<T, LPK, 8>, blocks, kDecodeThreads, 0, s, kp);
      break;
  }
  check_launch("sdpa_decode_kernel");
}

template <typename T>
void launch_decode(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s) {
  switch (kp.a.D / kVec16<T>) {
    case 8:
      return launch_decode_rows<T, 8>(kp, pl, blocks, s);
    case 16:
      return launch_decode_rows<T, 16>(kp, pl, blocks, s);
    default:
      return launch_decode_rows<T, 32>(kp, pl, blocks, s);
  }
}

// The cluster decode kernel's shared memory: stage buffers, then the regions of CdParams.
struct CdLayout {
  int off_s = 0, off_o = 0, off_ml = 0, off_part = 0, off_pml = 0;
  size_t bytes = 0;
};
CdLayout cd_layout(int64_t D, int R, int64_t cap, int stages, int ncl) {
  CdLayout l;
  int64_t off = int64_t(stages) * 2 * cap * D * 2;  // K and V rows of 16-bit elements
  l.off_s = static_cast<int>(off);
  off += R * cap * 4;
  l.off_o = static_cast<int>(off);
  off += int64_t(kCdWarps) * R * D * 4;
  l.off_ml = static_cast<int>(off);
  off += 4 * R * 4;
  l.off_part = static_cast<int>(off);
  if (ncl > 1) off += int64_t(ncl) * R * D * 4;
  l.off_pml = static_cast<int>(off);
  if (ncl > 1) off += int64_t(ncl) * R * 2 * 4;
  l.bytes = static_cast<size_t>(off);
  return l;
}

// Keys per stage of one CTA when its whole span fits: kCdStageBytes of K and V rows.
int64_t cd_stage_keys(int64_t D) {
  return kCdStageBytes / (4 * D);
}

// First key some row of the problem may see (the window of the first row's position).
int64_t cd_kmin(const SdpaArgs& a) {
  return a.causal && a.window > 0 ? std::max<int64_t>(0, a.S - a.L - a.window + 1) : 0;
}

// Calls f(T{}, LPK, R) (integral constants) for a 16-bit problem of head dim D and R rows.
template <typename F>
bool cd_dispatch(Dtype t, int64_t D, int R, F&& f) {
  auto rows = [&](auto tt, auto lpk) {
    switch (R) {
      case 1:
        return f(tt, lpk, std::integral_constant<int, 1>{});
      case 2:
        return f(tt, lpk, std::integral_constant<int, 2>{});
      case 4:
        return f(tt, lpk, std::integral_constant<int, 4>{});
      default:
        return f(tt, lpk, std::integral_constant<int, 8>{});
    }
  };
  auto dims = [&](auto tt) {
    switch (D) {
      case 64:
        return rows(tt, std::integral_constant<int, 8>{});
      case 128:
        return rows(tt, std::integral_constant<int, 16>{});
      default:
        return rows(tt, std::integral_constant<int, 32>{});
    }
  };
  return t == Dtype::bfloat16 ? dims(__nv_bfloat16{}) : dims(__half{});
}

// Whether clusters of `ncl` CTAs of the kernel fit the current device (sm_90+, the largest
// shared memory of any plan), cached per device and cluster size. The first query of a device
// also raises the kernel's shared-memory limit to that largest size.
template <typename T, int LPK, int R, bool FUSED = false>
bool cd_fits(int ncl) {
  const auto kernel = [] {
    if constexpr (FUSED)
      return rope_kv_attention_kernel<T, LPK, R>;
    else
      return sdpa_decode_cluster_kernel<T, LPK, R>;
  }();
  constexpr int64_t D = LPK * kVec16<T>;
  int dev = 0;
  INGOT_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;  // one per instantiation (kernel)
  static auto* seen = new std::map<std::pair<int, int>, bool>;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(dev, ncl);
  if (auto it = seen->find(key); it != seen->end()) return it->second;
  int major = 0;
  bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            major >= 9;
  const size_t smem = cd_layout(D, R, cd_stage_keys(D), 1, kCdMaxCluster).bytes;
  ok = ok && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem)) == cudaSuccess;
  if (ok && ncl == 1) {  // launched without a cluster
    int per_sm = 0;
    ok = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kCdThreads, smem) ==
             cudaSuccess &&
         per_sm > 0;
  } else if (ok) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(static_cast<unsigned>(ncl), 1, 1);
    cfg.blockDim = dim3(kCdThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = static_cast<unsigned>(ncl);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    ok = cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess && clusters > 0;
  }
  if (!ok) (void)cudaGetLastError();  // an unsupported query: the split kernel runs instead
  seen->emplace(key, ok);
  return ok;
}

// fz: the fused kernel's prologue (rope_kv_attention_kernel), else null.
template <typename T, int LPK, int R>
void launch_cluster_decode(const CdParams& cp, int64_t bh, size_t smem, cudaStream_t s,
                           const CdFused* fz) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(cp.ncl), static_cast<unsigned>(bh), 1);
  cfg.blockDim = dim3(kCdThreads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (cp.ncl > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = static_cast<unsigned>(cp.ncl);
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (pdl_enabled()) {  // the kernel begins with pdl_prologue()
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  if (fz) {
    (void)cudaLaunchKernelEx(&cfg, rope_kv_attention_kernel<T, LPK, R>, cp, *fz);
    check_launch("rope_kv_attention_kernel");
  } else {
    (void)cudaLaunchKernelEx(&cfg, sdpa_decode_cluster_kernel<T, LPK, R>, cp);
    check_launch("sdpa_decode_cluster_kernel");
  }
}

/// Which kernel takes decode attention: INGOT_CUDA_DECODE_KERNEL=1 the cluster kernel, =0 the
/// split kernel (sdpa_decode_kernel), unset: by the problem (plan_decode); read once.
int cluster_decode_mode() {
  static const int mode = [] {
    const char* v = std::getenv("INGOT_CUDA_DECODE_KERNEL");
    if (v != nullptr && std::strcmp(v, "1") == 0) return 1;
    if (v != nullptr && std::strcmp(v, "0") == 0) return 0;
    return -1;
  }();
  return mode;
}

/// INGOT_CUDA_DECODE_CLUSTER=N (1 to 8): at most N CTAs per cluster of the cluster kernel (1: a
/// CTA per (batch, kv head), no cluster); read once.
int64_t cluster_decode_max() {
  static const int64_t n = [] {
    const char* v = std::getenv("INGOT_CUDA_DECODE_CLUSTER");
    const int x = v != nullptr ? std::atoi(v) : 0;
    return int64_t(x >= 1 && x <= kCdMaxCluster ? x : kCdMaxCluster);
  }();
  return n;
}

// The cluster kernel's plan for a decode problem with R rows per CTA, or cluster == 0 when it
// cannot take it (float32, a device without clusters, too many (batch, kv head) pairs).
// Clusters of up to 8 CTAs (INGOT_CUDA_DECODE_CLUSTER) per (batch, kv head), as many as keep
// about two CTAs per SM, and at least two keys per lane group in each; a CTA's span in one
// stage when it fits, else stages of half the buffer, one loading while the other computes.
SdpaPlan plan_cluster_decode(const SdpaArgs& a, int sm_count, int R) {
  SdpaPlan pl;
  const int64_t bh = a.B * a.Hkv, D = a.D;
  if ((a.dtype != Dtype::bfloat16 && a.dtype != Dtype::float16) || bh < 1 || bh > 65535 ||
      a.S > (int64_t{1} << 30))
    return pl;
  const int64_t groups = kCdThreads / (D / 8), cap1 = cd_stage_keys(D);
  const int64_t span = a.S - cd_kmin(a);
  const int64_t target = 2 * int64_t(std::max(sm_count, 1));
  int64_t ncl = std::min(
      {cluster_decode_max(), std::max<int64_t>(1, target / bh), ceil_div(span, 2 * groups)});
  ncl = std::max<int64_t>(ncl, 1);
  const int64_t kps = ceil_div(span, ncl);
  ncl = ceil_div(span, kps);
  const int stages = kps <= cap1 ? 1 : 2;
  const int64_t cap = stages == 1 ? ceil_div(kps, groups) * groups : cap1 / 2;
  const bool fits = cd_dispatch(a.dtype, D, R, [&](auto t, auto lpk, auto r) {
    return cd_fits<decltype(t), decltype(lpk)::value, decltype(r)::value>(static_cast<int>(ncl));
  });
  if (!fits) return pl;
  pl.decode = true;
  pl.threads = kCdThreads;
  pl.rows_per_cta = R;
  pl.row_tiles = 1;
  pl.splits = static_cast<int>(ncl);
  pl.keys_per_split = kps;
  pl.cluster = static_cast<int>(ncl);
  pl.stage_keys = static_cast<int>(cap);
  pl.stages = stages;
  pl.smem = cd_layout(D, R, cap, stages, static_cast<int>(ncl)).bytes;
  return pl;
}

}  // namespace

unsigned* sdpa_detail::decode_counters(cudaStream_t s, int64_t n) {
  constexpr int64_t kCounters = 1 << 16;
  if (n > kCounters) return nullptr;
  static std::mutex mu;
  static auto* bufs = new std::map<cudaStream_t, unsigned*>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = bufs->find(s);
  if (it != bufs->end()) return it->second;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  INGOT_CUDA_CHECK(cudaStreamIsCapturing(s, &cs));
  if (cs != cudaStreamCaptureStatusNone) return nullptr;
  void* p = nullptr;
  if (cudaMalloc(&p, kCounters * sizeof(unsigned)) != cudaSuccess) {
    (void)cudaGetLastError();  // out of memory: use the combine pass
    return nullptr;
  }
  INGOT_CUDA_CHECK(cudaMemsetAsync(p, 0, kCounters * sizeof(unsigned), s));
  bufs->emplace(s, static_cast<unsigned*>(p));
  return static_cast<unsigned*>(p);
}

void sdpa_detail::launch_split_decode(const KParams& kp, const SdpaPlan& pl, unsigned blocks,
                                      cudaStream_t s) {
  dispatch_cuda_float(kp.a.dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (!std::is_same_v<T, double>) launch_decode<T>(kp, pl, blocks, s);
  });
}

namespace {

// The cluster kernel's parameters for plan pl.
CdParams cd_params(const SdpaArgs& a, const KParams& kp, const SdpaPlan& pl) {
  CdParams cp{};
  cp.p = kp;
  cp.Hkv = static_cast<int>(a.Hkv);
  cp.G = static_cast<int>(kp.G);
  cp.rows = static_cast<int>(kp.rows);
  cp.L = static_cast<int>(a.L);
  cp.S = static_cast<int>(a.S);
  cp.kmin = static_cast<int>(cd_kmin(a));
  cp.kps = static_cast<int>(pl.keys_per_split);
  cp.cap = pl.stage_keys;
  cp.ncl = pl.cluster;
  const CdLayout l = cd_layout(a.D, pl.rows_per_cta, pl.stage_keys, pl.stages, pl.cluster);
  cp.off_s = l.off_s;
  cp.off_o = l.off_o;
  cp.off_ml = l.off_ml;
  cp.off_part = l.off_part;
  cp.off_pml = l.off_pml;
  return cp;
}

}  // namespace

void sdpa_detail::launch_cluster(const SdpaArgs& a, const KParams& kp, const SdpaPlan& pl,
                                 cudaStream_t s) {
  const CdParams cp = cd_params(a, kp, pl);
  cd_dispatch(a.dtype, a.D, pl.rows_per_cta, [&](auto t, auto lpk, auto r) {
    launch_cluster_decode<decltype(t), decltype(lpk)::value, decltype(r)::value>(
        cp, a.B * a.Hkv, pl.smem, s, nullptr);
    return true;
  });
}

bool launch_rope_kv_attention(const SdpaArgs& a, const SdpaPlan& pl, const RopeKvArgs& kv,
                              const RopeInvFreqs& inv, cudaStream_t s) {
  if (!pl.decode || pl.cluster <= 0 || a.L != 1 || kv.L != 1 || a.D != kv.D || a.D > 256 ||
      a.D != a.Dv || (a.dtype != Dtype::bfloat16 && a.dtype != Dtype::float16) || a.B * a.Hkv <= 0)
    return false;
  const bool fits = cd_dispatch(a.dtype, a.D, pl.rows_per_cta, [&](auto t, auto lpk, auto r) {
    return cd_fits<decltype(t), decltype(lpk)::value, decltype(r)::value, true>(pl.cluster);
  });
  if (!fits) return false;
  (void)decode_counters(s, a.B * a.Hkv);  // as launch_sdpa: before any capture of the stream
  KParams kp{a, a.H / a.Hkv, 0, pl.row_tiles, pl.keys_per_split, pl.splits, nullptr, nullptr};
  kp.rows = kp.G * a.L;
  const CdParams cp = cd_params(a, kp, pl);
  auto fz = std::make_unique<CdFused>();
  fz->kv = kv;
  fz->n_inv = std::min(inv.n, 128);
  for (int i = 0; i < fz->n_inv; ++i) fz->inv[i] = inv.v[i];
  cd_dispatch(a.dtype, a.D, pl.rows_per_cta, [&](auto t, auto lpk, auto r) {
    launch_cluster_decode<decltype(t), decltype(lpk)::value, decltype(r)::value>(
        cp, a.B * a.Hkv, pl.smem, s, fz.get());
    return true;
  });
  return true;
}

bool sdpa_uses_decode(const SdpaArgs& a) {
  static const bool on = env::flag("INGOT_CUDA_DECODE_ATTENTION", true);
  const int64_t es = a.dtype == Dtype::float32                                 ? 4
                     : a.dtype == Dtype::bfloat16 || a.dtype == Dtype::float16 ? 2
                                                                               : 0;
  if (!on || es == 0 || a.D != a.Dv || (a.D * es) % 16 != 0 || a.Hkv < 1) return false;
  const int64_t lpk = a.D * es / 16;
  return (lpk == 8 || lpk == 16 || lpk == 32) && (a.H / a.Hkv) * a.L <= kDecodeMaxRows;
}

SdpaPlan sdpa_detail::plan_decode(const SdpaArgs& a, int sm_count) {
  SdpaPlan pl;
  const int64_t rows = (a.H / a.Hkv) * a.L;
  // Two CTAs per SM over (batch, kv head, key split), at least 32 keys per split.
  pl.decode = true;
  pl.threads = kDecodeThreads;
  pl.rows_per_cta = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
  // The cluster kernel once its clusters (up to cluster_decode_max() CTAs per (batch, kv
  // head)) give about two CTAs per SM, as the split kernel's splits do: measured on the H200
  // (Llama-3.2-1B, 8 kv heads), 1.33x the split kernel's decode rate at batch 16 / 4096
  // keys and 1.84x at batch 64 / 2048, but 0.85x at batch 1 / 16384 keys (8 clusters of 8
  // CTAs leave half the SMs idle) and 0.98x at batch 1 / 4096.
  // On the H100 (session 35) the cluster kernel also won single-stream decode over a
  // 384-column fixed cache: Qwen3-0.6B +3%, Llama-3.2-1B +6.5%, Gemma3-1B (one kv head) +13%
  // tok/s. So it takes spans of up to kCdShortSpan keys whether or not its clusters fill the
  // GPU (below the 4096 keys where the H200 measured it level).
  const int mode = cluster_decode_mode();
  const bool fills = a.B * a.Hkv * cluster_decode_max() >= 2 * int64_t(std::max(sm_count, 1));
  const bool short_span = a.S - cd_kmin(a) <= kCdShortSpan;
  if (mode == 1 || (mode == -1 && (fills || short_span))) {
    const SdpaPlan cpl = plan_cluster_decode(a, sm_count, pl.rows_per_cta);
    if (cpl.cluster > 0) return cpl;
  }
  pl.row_tiles = 1;
  const int64_t base = a.B * a.Hkv, target = 2 * int64_t(std::max(sm_count, 1));
  const int64_t kps =
      std::max({int64_t(32), ceil_div(a.S * base, target), ceil_div(a.S, int64_t(kMaxSplits))});
  pl.splits = static_cast<int>(ceil_div(a.S, kps));
  pl.keys_per_split = ceil_div(a.S, pl.splits);
  if (pl.splits > 1)
    pl.partial_bytes = static_cast<size_t>(a.B * a.Hkv * rows * pl.splits * (a.Dv + 2)) * 4;
  return pl;
}

}  // namespace ingot::cu
