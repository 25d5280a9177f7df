// The fused decoder-block kernel of fast::decode_block: one decode step of a pre-norm block as
// one persistent kernel of one CTA per SM (256 threads), five phases separated by grid-wide
// barriers:
//   A. qkv = rms_norm(x) @ w_qkv^T             (every CTA normalises x into shared memory)
//   B. attention: per (row, q head, key split) the q/k norms and rotary of that head (and of the
//      new key), the new key/value written into the cache, the split's online softmax over the
//      cached keys; the last split of a head combines the partials into the head's output
//   C. h = x + attn @ w_o^T                    (product rounded first, as add_matmul)
//   D. g = act(gate) * up of rms_norm(h)       (a warp takes a gate row and its up row)
//   E. out = h + g @ w_down^T
// A GEMV phase gives each warp rows n = gw, gw + warps, ... (gw = CTA + CTAs * warp), each row
// summed as the decode GEMV (matmul.cu) sums it: lane l takes 16-byte chunks l, l + 32, ... in
// order, then a warp butterfly. So phases A, C, D and E give that GEMV's bits, and the norm
// prologue RmsNorm's (rows of up to 512 16-byte vectors). Before each barrier a warp requests
// the first chunks of its first row of the next product (weights never depend on the step), and
// within a phase the last chunks of a row overlap the first ones of the warp's next row, so HBM
// stays busy across the barriers. The barrier is a counter whose top bit flips when the last CTA
// arrives (one atomic per CTA); it needs every CTA resident, hence one CTA per SM and a grid of
// at most the SM count (nothing else runs beside a decode step; PDL's next kernel is let in
// only after the last barrier).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <type_traits>

#include "backend/cuda/decode_block_kernels.h"
#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_sdpa_common.cuh"
#include "backend/cuda/gemv_common.cuh"
#include "util/env.h"

namespace ingot::cu {
namespace {

constexpr int kDbThreads = 256, kDbWarps = kDbThreads / 32;
constexpr int kDbUnroll = 8;      // 16-byte chunks a lane has in flight (GEMV phases)
constexpr int kDbMaxSplits = 32;  // key splits per head (one combine lane each)
constexpr int kDbKeyUnroll = 2;   // keys a lane group requests at once

struct DbParams {
  DecodeBlockArgs a;
  RopeInvFreqs inv;
  void* qkv;      // [B, (H + 2 Hkv) D]
  void* attn;     // [B, H D]
  void* h;        // [B, E]
  void* g;        // [B, I]
  float* part;    // [B, H, splits, D + 2]: a split's output, max and sum
  unsigned* bar;  // the grid barrier's counter
  unsigned* cnt;  // [B * H] arrivals of a head's splits (back to zero after each use)
  int splits;
  int phases;  // phases run (5; fewer only to time them: INGOT_DECODE_BLOCK_PHASES)
};

// ---- loads ----

/// 16 bytes written earlier in this kernel by another CTA (through L2, not the incoherent L1 or
/// read-only paths).
__device__ __forceinline__ uint4 load_cg16(const void* p) {
  return __ldcg(static_cast<const uint4*>(p));
}

template <typename T>
__device__ __forceinline__ float load_cg_elem(const T* p) {
  const unsigned short u = __ldcg(reinterpret_cast<const unsigned short*>(p));
  T v;
  memcpy(&v, &u, sizeof(v));
  return to_float(v);
}

// ---- the grid barrier ----

/// Every CTA of the grid arrives; returns when all have (their global writes before it are
/// visible to every CTA after it). CTA 0 adds 2^31 - (CTAs - 1), the others 1: the counter's top
/// bit flips exactly when the last one arrives and its low bits return to where they were, so the
/// same word serves every barrier of every launch.
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned add = blockIdx.x == 0 ? 0x80000000u - (gridDim.x - 1) : 1u;
    __threadfence();
    unsigned old, cur;
    asm volatile("atom.add.release.gpu.u32 %0, [%1], %2;"
                 : "=r"(old)
                 : "l"(bar), "r"(add)
                 : "memory");
    do {
      asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(cur) : "l"(bar) : "memory");
    } while (((old ^ cur) & 0x80000000u) == 0);
  }
  __syncthreads();
}

// ---- GEMV phases ----

/// A warp's chunk steps of a product with N rows (and pair rows at + pair) of K elements: the
/// warp's rows n = gw, gw + warps, ... one after another, lane l taking chunks l, l + 32, ... of
/// each (steps = chunk slots per lane per row). Step f is (row f / steps, chunk slot f % steps).
struct DbSteps {
  int64_t gw, warps;
  int chunks, steps, total;
  __device__ __forceinline__ DbSteps(int64_t N, int64_t K, int V) {
    gw = blockIdx.x + int64_t(gridDim.x) * (threadIdx.x >> 5);
    warps = int64_t(gridDim.x) * (blockDim.x >> 5);
    chunks = static_cast<int>(K / V);
    steps = (chunks + 31) / 32;
    const int64_t rows = gw < N ? (N - gw + warps - 1) / warps : 0;
    total = static_cast<int>(rows * steps);
  }
};

/// Requests the weight chunks of steps f0 .. f0 + kDbUnroll - 1 (zeros past the row or the
/// end); (k0, s0) is step f0's (row index among the warp's rows, chunk slot).
template <typename T, int R>
__device__ __forceinline__ void db_load_steps(uint4 (&wv)[R][kDbUnroll], const T* w,
                                              const DbSteps& st, int64_t pair, int64_t K, int f0,
                                              int k0, int s0) {
  const int lane = threadIdx.x & 31;
  int k = k0, slot = s0;
#pragma unroll
  for (int u = 0; u < kDbUnroll; ++u) {
    const int64_t n = st.gw + k * st.warps;
    const int c = lane + 32 * slot;
    const bool ok = f0 + u < st.total && c < st.chunks;
#pragma unroll
    for (int r = 0; r < R; ++r)
      wv[r][u] = ok ? load_stream16(reinterpret_cast<const char*>(w + (n + r * pair) * K) +
                                    int64_t(c) * 16)
                    : make_uint4(0, 0, 0, 0);
    if (++slot == st.steps) slot = 0, ++k;
  }
}

/// The warp's first chunk steps of a product, requested before the barrier that precedes it.
template <typename T, int R>
__device__ __forceinline__ void db_prime(uint4 (&wv)[R][kDbUnroll], const void* w, int64_t N,
                                         int64_t pair, int64_t K) {
  const DbSteps st(N, K, kVec16<T>);
  db_load_steps<T, R>(wv, static_cast<const T*>(w), st, pair, K, 0, 0, 0);
}

/// Rows n = gw, gw + warps, ... of w [N (+ pair), K] times the M rows of xs (shared memory,
/// [M, K]); epi(n, acc) gets each row's sums (acc[r][m], r = 1 for the pair row) on lane 0. wv
/// holds the first steps (db_prime); the loads run kDbUnroll steps ahead across the rows.
template <typename T, int M, int R, typename Epi>
__device__ __forceinline__ void db_gemv(const void* wp, int64_t N, int64_t K, int64_t pair,
                                        const T* xs, uint4 (&wv)[R][kDbUnroll], Epi&& epi) {
  constexpr int V = kVec16<T>, U = kDbUnroll;
  const T* w = static_cast<const T*>(wp);
  const int lane = threadIdx.x & 31;
  const DbSteps st(N, K, V);
  const char* x = reinterpret_cast<const char*>(xs);
  const int64_t xrow = K * int64_t(sizeof(T));
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  int k = 0, slot = 0;  // the step's row (among the warp's) and chunk slot
  for (int f0 = 0; f0 < st.total; f0 += U) {
    uint4 wn[R][U];
    const bool more = f0 + U < st.total;
    if (more) {
      const int fn = f0 + U;
      db_load_steps<T, R>(wn, w, st, pair, K, fn, fn / st.steps, fn % st.steps);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (f0 + u >= st.total) break;  // warp-uniform
      const int c = lane + 32 * slot;
      if (c < st.chunks) {
        uint4 xv[M];
#pragma unroll
        for (int m = 0; m < M; ++m)
          xv[m] = *reinterpret_cast<const uint4*>(x + m * xrow + int64_t(c) * 16);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wf[V];
          unpack16<T>(wv[r][u], wf);
#pragma unroll
          for (int m = 0; m < M; ++m) {
            float xf[V];
            unpack16<T>(xv[m], xf);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[r][m] = fmaf(wf[j], xf[j], acc[r][m]);
          }
        }
      }
      if (++slot == st.steps) {  // the row's last step: every lane (warp-uniform)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int m = 0; m < M; ++m) acc[r][m] = warp_sum(acc[r][m]);
        if (lane == 0) epi(st.gw + k * st.warps, acc);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
        slot = 0;
        ++k;
      }
    }
    if (more) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int u = 0; u < U; ++u) wv[r][u] = wn[r][u];
    }
  }
}

// ---- GEMV phases through a shared-memory ring (cp.async) ----
//
// The register pipeline above keeps kDbUnroll chunks a lane in flight (32 KB an SM), too few for
// HBM's latency with one CTA an SM. Here each thread owns kDbRing 16-byte slots of shared memory
// (128 KB a CTA) that cp.async fills without registers: a step's R chunks go to the slots of
// step f mod P (P = kDbRing / R steps in flight, one commit group each), a thread reads only the
// slots it filled itself (no barrier), and refills a slot with step f + P once it has used it.

constexpr int kDbRing = 32;

__device__ __forceinline__ uint32_t db_smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ unsigned char* db_slot(unsigned char* ring, int slot) {
  return ring + (size_t(slot) * kDbThreads + threadIdx.x) * 16;
}

/// The next step a thread issues: its index, row (among the warp's rows) and chunk slot.
struct DbCursor {
  int f, k, slot;
  __device__ __forceinline__ DbCursor(const DbSteps& st, int f0)
      : f(f0), k(f0 / st.steps), slot(f0 % st.steps) {}
};

/// Issues step cur.f's R chunks (nothing past the end or the row) into the ring and commits
/// them as one group (an empty one keeps the group count uniform); advances the cursor.
template <typename T, int R>
__device__ __forceinline__ void db_issue(unsigned char* ring, const T* w, const DbSteps& st,
                                         int64_t pair, int64_t K, DbCursor& cur) {
  constexpr int P = kDbRing / R;
  const int c = (threadIdx.x & 31) + 32 * cur.slot;
  if (cur.f < st.total && c < st.chunks) {
    const int64_t n = st.gw + cur.k * st.warps;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const char* src = reinterpret_cast<const char*>(w + (n + r * pair) * K) + int64_t(c) * 16;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(
                       db_smem_addr(db_slot(ring, (cur.f & (P - 1)) * R + r))),
                   "l"(src)
                   : "memory");
    }
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
  ++cur.f;
  if (++cur.slot == st.steps) cur.slot = 0, ++cur.k;
}

/// The first P steps of a product, issued before the barrier that precedes it.
template <typename T, int R>
__device__ __forceinline__ void db_ring_prime(unsigned char* ring, const void* w, int64_t N,
                                              int64_t pair, int64_t K) {
  constexpr int P = kDbRing / R;
  const DbSteps st(N, K, kVec16<T>);
  DbCursor cur(st, 0);
#pragma unroll 1
  for (int i = 0; i < P; ++i) db_issue<T, R>(ring, static_cast<const T*>(w), st, pair, K, cur);
}

/// db_gemv's rows and sums (the same bits) with the weights from the ring (db_ring_prime first).
template <typename T, int M, int R, typename Epi>
__device__ __forceinline__ void db_ring_gemv(unsigned char* ring, const void* wp, int64_t N,
                                             int64_t K, int64_t pair, const T* xs, Epi&& epi) {
  constexpr int V = kVec16<T>, P = kDbRing / R;
  const T* w = static_cast<const T*>(wp);
  const int lane = threadIdx.x & 31;
  const DbSteps st(N, K, V);
  DbCursor cur(st, P);
  const char* x = reinterpret_cast<const char*>(xs);
  const int64_t xrow = K * int64_t(sizeof(T));
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  int k = 0, slot = 0;
  for (int f = 0; f < st.total; ++f) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(P - 1) : "memory");
    const int c = lane + 32 * slot;
    if (c < st.chunks) {
      uint4 xv[M];
#pragma unroll
      for (int m = 0; m < M; ++m)
        xv[m] = *reinterpret_cast<const uint4*>(x + m * xrow + int64_t(c) * 16);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[V];
        unpack16<T>(*reinterpret_cast<const uint4*>(db_slot(ring, (f & (P - 1)) * R + r)), wf);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xf[V];
          unpack16<T>(xv[m], xf);
#pragma unroll
          for (int j = 0; j < V; ++j) acc[r][m] = fmaf(wf[j], xf[j], acc[r][m]);
        }
      }
    }
    // The slots just read (their values are in the sums above) take step f + P.
    db_issue<T, R>(ring, w, st, pair, K, cur);
    if (++slot == st.steps) {  // the row's last step: every lane (warp-uniform)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = warp_sum(acc[r][m]);
      if (lane == 0) epi(st.gw + k * st.warps, acc);
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
      slot = 0;
      ++k;
    }
  }
}

/// The M rows of x [M, K] normalised into xs as RmsNorm's kernel computes them (the decode GEMV's
/// norm prologue, gemv_norm_rows, with this block's threads). Coherent: x was written by this
/// kernel (read through L2).
template <typename T, int M, bool Coherent>
__device__ __forceinline__ void db_norm_rows(const void* xp, int64_t K, const void* wp, float eps,
                                             bool unit, bool wf32, T* xs) {
  __shared__ float part[M][32];
  __shared__ float inv[M];
  constexpr int V = kVec16<T>;
  const int64_t chunks = K / V;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const char* x = static_cast<const char*>(xp);
  const char* w = static_cast<const char*>(wp);
  const int64_t xrow = K * int64_t(sizeof(T));
  auto ld = [&](const char* p) { return Coherent ? load_cg16(p) : load16(p); };
  float ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) ss[m] = 0.0f;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float f[V];
      unpack16<T>(ld(x + m * xrow + c * 16), f);
#pragma unroll
      for (int j = 0; j < V; ++j) ss[m] += f[j] * f[j];
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    ss[m] = warp_sum(ss[m]);
    if (lane == 0) part[m][warp] = ss[m];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float r = warp_sum(lane < nw ? part[m][lane] : 0.0f);
      if (lane == 0) inv[m] = 1.0f / sqrtf(r / static_cast<float>(K) + eps);
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    float wf[V];
    unpack16<T>(load16(w + c * 16), wf);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float f[V];
      unpack16<T>(ld(x + m * xrow + c * 16), f);
      alignas(16) T o[V];
#pragma unroll
      for (int j = 0; j < V; ++j) o[j] = rms_value<T>(f[j], inv[m], true, wf[j], unit, wf32);
      *reinterpret_cast<uint4*>(xs + m * K + c * V) = *reinterpret_cast<const uint4*>(o);
    }
  }
  __syncthreads();
}

/// Rows [M, K] written earlier in this kernel into xs.
template <typename T>
__device__ __forceinline__ void db_copy_rows(const void* src, int64_t elems, T* xs) {
  const char* s = static_cast<const char*>(src);
  for (int64_t c = threadIdx.x; c < elems / kVec16<T>; c += blockDim.x)
    *reinterpret_cast<uint4*>(xs + c * kVec16<T>) = load_cg16(s + c * 16);
  __syncthreads();
}

// ---- attention phase ----

/// Inverse frequency of rotary pair k (rope_kernel's inv_freq).
__device__ __forceinline__ float db_inv_freq(const DbParams& P, int k) {
  const DecodeBlockArgs& a = P.a;
  if (a.freqs) return static_cast<const float*>(a.freqs)[k * a.freqs_stride];
  if (k < P.inv.n) return P.inv.v[k];
  return 0.0f;  // unreachable: the launcher fills inv when there are no freqs
}

/// One warp: head row src (D elements of T, written by phase A) normalised with nw (or not) and
/// rotated with the cos/sin table, as rope_kv_update computes it; the rotated values (exact T
/// values, in float) go to out[e] * mul, and to dst (T) when set. buf: D floats of scratch.
template <typename T>
__device__ __forceinline__ void db_head_row(const DecodeBlockArgs& a, const T* src, const void* nw,
                                            float eps, bool unit, bool wf32, const float* cs,
                                            const float* sn, float* buf, float* out, float mul,
                                            T* dst) {
  constexpr int V = kVec16<T>;
  const int lane = threadIdx.x & 31;
  const int nvec = a.D / V, half = a.D / 2;  // nvec <= 32: a chunk per lane at most
  float vals[V];
  float ss = 0.0f;
  if (lane < nvec) {
    unpack16<T>(load_cg16(src + lane * V), vals);
#pragma unroll
    for (int j = 0; j < V; ++j) ss += vals[j] * vals[j];
  }
  float r = 0.0f;
  if (nw) {
    ss = warp_sum(ss);
    r = 1.0f / sqrtf(ss / static_cast<float>(a.D) + eps);
  }
  if (lane < nvec) {
    float w[V];
    if (nw) unpack16<T>(load16(static_cast<const T*>(nw) + lane * V), w);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if (nw) vals[j] = to_float(rms_value<T>(vals[j], r, true, w[j], unit, wf32));
      buf[lane * V + j] = vals[j];
    }
  }
  __syncwarp();
  if (lane < nvec) {
    float o[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int e = lane * V + j;
      int k, i1, i2;
      if (a.traditional) {
        k = e / 2;
        i1 = 2 * k;
        i2 = i1 + 1;
      } else {
        k = e < half ? e : e - half;
        i1 = k;
        i2 = k + half;
      }
      const float c = cs[k], s = sn[k], x1 = buf[i1], x2 = buf[i2];
      o[j] = e == i1 ? round_through<T>(add_rn(round_through<T>(mul_rn(x1, c)),
                                               round_through<T>(mul_rn(-x2, s))))
                     : round_through<T>(add_rn(round_through<T>(mul_rn(x2, c)),
                                               round_through<T>(mul_rn(x1, s))));
      out[e] = o[j] * mul;
    }
    if (dst) *reinterpret_cast<uint4*>(dst + lane * V) = pack16<T>(o);
  }
}

/// Shared memory of the attention phase (floats): the q row (scaled), the new key and value,
/// the cos/sin table, two row buffers, the warps' outputs and (max, sum), the split weights.
struct DbAttnSmem {
  int q, k, v, cs, sn, buf, wo, wml, wts, inv;
  int floats;
};
__host__ __device__ inline DbAttnSmem db_attn_smem(int D) {
  DbAttnSmem s{};
  int o = 0;
  s.q = o, o += D;
  s.k = o, o += D;
  s.v = o, o += D;
  s.cs = o, o += D / 2;
  s.sn = o, o += D / 2;
  s.buf = o, o += 2 * D;
  s.wo = o, o += kDbWarps * D;
  s.wml = o, o += kDbWarps * 2;
  s.wts = o, o += kDbMaxSplits;
  s.inv = o, o += 4;
  s.floats = o;
  return s;
}

template <typename T, int LPK>
__device__ void db_attention(const DbParams& P, float* sm) {
  constexpr int V = kVec16<T>, GPW = 32 / LPK, GROUPS = GPW * kDbWarps, UNR = kDbKeyUnroll;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const DecodeBlockArgs& a = P.a;
  const DbAttnSmem L = db_attn_smem(a.D);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane % LPK;
  const int D = a.D, H = a.H, Hkv = a.Hkv, G = H / Hkv, C = a.C;
  const int64_t N = int64_t(H + 2 * Hkv) * D;
  int64_t col = load_int(a.column, a.column_dtype, 0);
  if (col < 0 || col >= C) {
    if (blockIdx.x == 0 && threadIdx.x == 0) record_fault(a.site, col, C);
    col = col < 0 ? 0 : C - 1;  // the step's values are then meaningless; the fault is raised
  }
  const int64_t nkeys = col + 1;
  const int splits = P.splits;
  const int64_t span = (nkeys + splits - 1) / splits;
  const T* qkv = static_cast<const T*>(P.qkv);
  __shared__ bool last;
  for (int64_t item = blockIdx.x; item < int64_t(a.B) * H * splits; item += gridDim.x) {
    const int s = static_cast<int>(item % splits);
    const int64_t bh = item / splits;
    const int h = static_cast<int>(bh % H), b = static_cast<int>(bh / H), kvh = h / G;
    const int64_t kb = s * span, ke = min(kb + span, nkeys);
    const bool has_new = kb <= col && col < ke;
    // The position's cos/sin (a float64 sincos per pair, as the rope kernels).
    const float pos = __fmul_rn(
        static_cast<float>(load_int(a.positions, a.positions_dtype, b * a.positions_stride)),
        a.rope_scale);
    for (int k = threadIdx.x; k < D / 2; k += blockDim.x) {
      const float ang = __fmul_rn(pos, db_inv_freq(P, k));
      double sd, cd;
      sincos(static_cast<double>(ang), &sd, &cd);
      sm[L.cs + k] = round_through<T>(static_cast<float>(cd));
      sm[L.sn + k] = round_through<T>(static_cast<float>(sd));
    }
    __syncthreads();
    const T* row = qkv + b * N;
    const int64_t cache_row = ((int64_t(b) * Hkv + kvh) * C + col) * D;
    const bool writer = has_new && h % G == 0;  // one CTA writes the new column of a kv head
    if (warp == 0) {
      db_head_row<T>(a, row + int64_t(h) * D, a.q_norm, a.qk_eps, a.qk_add_unit_offset,
                     a.qk_weight_in_float32, sm + L.cs, sm + L.sn, sm + L.buf, sm + L.q, a.scale,
                     nullptr);
    } else if (warp == 1 && has_new) {
      db_head_row<T>(a, row + int64_t(H + kvh) * D, a.k_norm, a.qk_eps, a.qk_add_unit_offset,
                     a.qk_weight_in_float32, sm + L.cs, sm + L.sn, sm + L.buf + D, sm + L.k, 1.0f,
                     writer ? static_cast<T*>(a.keys) + cache_row : nullptr);
    } else if (warp == 2 && has_new) {
      const T* src = row + int64_t(H + Hkv + kvh) * D;
      if (lane < D / V) {
        const uint4 vv = load_cg16(src + lane * V);
        float f[V];
        unpack16<T>(vv, f);
#pragma unroll
        for (int j = 0; j < V; ++j) sm[L.v + lane * V + j] = f[j];
        if (writer)
          *reinterpret_cast<uint4*>(static_cast<T*>(a.values) + cache_row + lane * V) = vv;
      }
    }
    __syncthreads();
    const int d0 = sub * V;
    float q[V];
#pragma unroll
    for (int i = 0; i < V; ++i) q[i] = sm[L.q + d0 + i];
    sdpa_detail::DecodeState<V> st;
    sdpa_detail::decode_init(st);
    const T* kp = static_cast<const T*>(a.keys) + (int64_t(b) * Hkv + kvh) * C * D + d0;
    const T* vp = static_cast<const T*>(a.values) + (int64_t(b) * Hkv + kvh) * C * D + d0;
    const bool* mk = a.mask + int64_t(b) * C;
    // Trip counts are warp-uniform (the shuffles need every lane); keys past ke score -inf.
    for (int64_t j0 = kb + warp * GPW + lane / LPK; j0 - lane / LPK < ke;
         j0 += int64_t(GROUPS) * UNR) {
      uint4 kv[UNR], vv[UNR];
      bool keep[UNR];
#pragma unroll
      for (int u = 0; u < UNR; ++u) {
        const int64_t j = j0 + int64_t(u) * GROUPS;
        keep[u] = false;
        if (j < ke && j != col) {
          kv[u] = load16(kp + j * D);
          vv[u] = load16(vp + j * D);
        }
        if (j < ke) keep[u] = mk[j];
      }
#pragma unroll
      for (int u = 0; u < UNR; ++u) {
        const int64_t j = j0 + int64_t(u) * GROUPS;
        float kf[V] = {}, vf[V] = {};
        if (j < ke) {
          if (j == col) {
#pragma unroll
            for (int i = 0; i < V; ++i) {
              kf[i] = sm[L.k + d0 + i];
              vf[i] = sm[L.v + d0 + i];
            }
          } else {
            unpack16<T>(kv[u], kf);
            unpack16<T>(vv[u], vf);
          }
        }
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < V; ++i) d += q[i] * kf[i];
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        sdpa_detail::decode_add(st, j < ke && keep[u] ? d : kNegInf, vf);
      }
    }
    // Groups of a warp, then warps.
#pragma unroll
    for (int off = LPK; off < 32; off <<= 1) {
      float to[V];
#pragma unroll
      for (int i = 0; i < V; ++i) to[i] = __shfl_xor_sync(0xffffffffu, st.o[i], off);
      const float tm = __shfl_xor_sync(0xffffffffu, st.m, off);
      const float tl = __shfl_xor_sync(0xffffffffu, st.l, off);
      sdpa_detail::decode_merge(st, tm, tl, to);
    }
    if (lane < LPK) {
#pragma unroll
      for (int i = 0; i < V; ++i) sm[L.wo + warp * D + d0 + i] = st.o[i];
      if (lane == 0) {
        sm[L.wml + 2 * warp] = st.m;
        sm[L.wml + 2 * warp + 1] = st.l;
      }
    }
    __syncthreads();
    const int64_t hd = int64_t(b) * H * D + int64_t(h) * D;  // the head's output in attn
    if (warp == 0 && lane < LPK) {
      for (int w = 1; w < kDbWarps; ++w)
        sdpa_detail::decode_merge(st, sm[L.wml + 2 * w], sm[L.wml + 2 * w + 1],
                                  sm + L.wo + w * D + d0);
      if (splits == 1) {
        const float inv = st.l > 0.0f ? 1.0f / st.l : 0.0f;
        float y[V];
#pragma unroll
        for (int i = 0; i < V; ++i) y[i] = st.o[i] * inv;
        *reinterpret_cast<uint4*>(static_cast<T*>(P.attn) + hd + d0) = pack16<T>(y);
      } else {
        float* pp = P.part + (bh * splits + s) * (D + 2);
#pragma unroll
        for (int i = 0; i < V; ++i) pp[d0 + i] = st.o[i];
        if (lane == 0) {
          pp[D] = st.m;
          pp[D + 1] = st.l;
        }
      }
    }
    if (splits > 1) {
      // The last split of the head to arrive combines them (publish, then count; the counter
      // goes back to zero).
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) {
        const unsigned seen = atomicAdd(&P.cnt[bh], 1u);
        last = seen == static_cast<unsigned>(splits - 1);
        if (last) P.cnt[bh] = 0;
      }
      __syncthreads();
      if (last) {
        __threadfence();
        const float* base = P.part + bh * splits * (D + 2);
        if (warp == 0) {
          const float mi = lane < splits ? __ldcg(base + lane * (D + 2) + D) : kNegInf;
          const float mx = __shfl_sync(0xffffffffu, warp_max(mi), 0);
          float wi = 0.0f, li = 0.0f;
          if (lane < splits) {
            wi = mx != kNegInf && mi != kNegInf ? expf(mi - mx) : 0.0f;
            li = __ldcg(base + lane * (D + 2) + D + 1);
            sm[L.wts + lane] = wi;
          }
          const float ls = warp_sum(li * wi);
          if (lane == 0) sm[L.inv] = ls > 0.0f ? 1.0f / ls : 0.0f;
        }
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
          float sum = 0.0f;
          for (int i = 0; i < splits; ++i) sum += sm[L.wts + i] * __ldcg(base + i * (D + 2) + d);
          static_cast<T*>(P.attn)[hd + d] = cast<T>(sum * sm[L.inv]);
        }
      }
    }
    __syncthreads();  // shared memory is reused by the next item
  }
}

// ---- the kernel ----

/// The end of the kernel: no cp.async left in flight when the CTA exits.
template <bool RING>
__device__ __forceinline__ void db_end() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (RING) asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

template <typename T, int M, int LPK, bool RING>
__global__ void __launch_bounds__(kDbThreads, 1)
    decode_block_kernel(const __grid_constant__ DbParams P) {
  extern __shared__ __align__(16) unsigned char db_smem[];
  const DecodeBlockArgs& a = P.a;
  unsigned char* ring = db_smem;  // RING: kDbRing slots a thread, then the work area
  unsigned char* work = RING ? db_smem + size_t(kDbRing) * kDbThreads * 16 : db_smem;
  T* xs = reinterpret_cast<T*>(work);
  const int64_t E = a.E, HD = int64_t(a.H) * a.D, I = a.I, N = int64_t(a.H + 2 * a.Hkv) * a.D;
  T* qkv = static_cast<T*>(P.qkv);
  T* h = static_cast<T*>(P.h);
  T* g = static_cast<T*>(P.g);
  T* out = static_cast<T*>(a.out);
  const T* x = static_cast<const T*>(a.x);
  // A product's first chunks (before the barrier ahead of it), then the product.
  auto prime = [&](auto r_tag, uint4(&wv)[decltype(r_tag)::value][kDbUnroll], const void* w,
                   int64_t rows, int64_t pair, int64_t K) {
    constexpr int R = decltype(r_tag)::value;
    if constexpr (RING)
      db_ring_prime<T, R>(ring, w, rows, pair, K);
    else
      db_prime<T, R>(wv, w, rows, pair, K);
  };
  auto gemv = [&](auto r_tag, uint4(&wv)[decltype(r_tag)::value][kDbUnroll], const void* w,
                  int64_t rows, int64_t K, int64_t pair, auto&& epi) {
    constexpr int R = decltype(r_tag)::value;
    if constexpr (RING)
      db_ring_gemv<T, M, R>(ring, w, rows, K, pair, xs, epi);
    else
      db_gemv<T, M, R>(w, rows, K, pair, xs, wv, epi);
  };
  using R1 = std::integral_constant<int, 1>;
  using R2 = std::integral_constant<int, 2>;

  // A: the weights first (they never depend on earlier kernels), then wait for them.
  uint4 wa[1][kDbUnroll];
  prime(R1{}, wa, a.w_qkv, N, 0, E);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  db_norm_rows<T, M, false>(a.x, E, a.in_norm, a.eps, a.add_unit_offset, a.weight_in_float32, xs);
  gemv(R1{}, wa, a.w_qkv, N, E, 0, [&](int64_t n, const float(&acc)[1][M]) {
#pragma unroll
    for (int m = 0; m < M; ++m) qkv[m * N + n] = cast<T>(acc[0][m]);
  });
  uint4 wc[1][kDbUnroll];
  prime(R1{}, wc, a.w_o, E, 0, HD);
  grid_barrier(P.bar);
  if (P.phases <= 1) return db_end<RING>();  // timing runs only (uniform over the grid)

  // B
  db_attention<T, LPK>(P, reinterpret_cast<float*>(work));
  grid_barrier(P.bar);
  if (P.phases <= 2) return db_end<RING>();  // timing runs only (uniform over the grid)

  // C: h = x + attn @ w_o^T, the product rounded first.
  db_copy_rows<T>(P.attn, M * HD, xs);
  gemv(R1{}, wc, a.w_o, E, HD, 0, [&](int64_t n, const float(&acc)[1][M]) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float r = to_float(cast<T>(acc[0][m]));
      h[m * E + n] = cast<T>(to_float(x[m * E + n]) + r);
    }
  });
  uint4 wd[2][kDbUnroll];
  prime(R2{}, wd, a.w_gu, I, I, E);
  grid_barrier(P.bar);
  if (P.phases <= 3) return db_end<RING>();  // timing runs only (uniform over the grid)

  // D: g = act(gate) * up of rms_norm(h).
  db_norm_rows<T, M, true>(P.h, E, a.post_norm, a.eps, a.add_unit_offset, a.weight_in_float32, xs);
  gemv(R2{}, wd, a.w_gu, I, E, I, [&](int64_t n, const float(&acc)[2][M]) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float gv = to_float(cast<T>(acc[0][m]));
      const float uv = to_float(cast<T>(acc[1][m]));
      g[m * I + n] = gated_value<T>(gv, uv, a.gate);
    }
  });
  uint4 we[1][kDbUnroll];
  prime(R1{}, we, a.w_down, E, 0, I);
  grid_barrier(P.bar);
  if (P.phases <= 4) return db_end<RING>();  // timing runs only (uniform over the grid)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif

  // E: out = h + g @ w_down^T.
  db_copy_rows<T>(P.g, M * I, xs);
  gemv(R1{}, we, a.w_down, E, I, 0, [&](int64_t n, const float(&acc)[1][M]) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float r = to_float(cast<T>(acc[0][m]));
      out[m * E + n] = cast<T>(load_cg_elem(h + m * E + n) + r);
    }
  });
  db_end<RING>();
}

// ---- host side ----

int lanes_per_key(const DecodeBlockArgs& a) {
  return a.D / 8;  // 16-bit elements: 8 per 16-byte chunk
}

/// The ring GEMV (default) or the register one (INGOT_DECODE_BLOCK_RING=0).
bool db_ring() {
  static const bool on = env::flag("INGOT_DECODE_BLOCK_RING", true);
  return on;
}

size_t db_smem_bytes(const DecodeBlockArgs& a) {
  const int64_t kmax = std::max({int64_t(a.E), int64_t(a.H) * a.D, int64_t(a.I)});
  const size_t gemv = static_cast<size_t>(a.B * kmax * 2);
  const size_t attn = static_cast<size_t>(db_attn_smem(a.D).floats) * 4;
  const size_t ring = db_ring() ? size_t(kDbRing) * kDbThreads * 16 : 0;
  return ring + std::max(gemv, attn);
}

int db_grid(int sm_count) {
  return std::max(sm_count, 1);
}

int db_splits(const DecodeBlockArgs& a, int sm_count) {
  const int64_t heads = int64_t(a.B) * a.H;
  return static_cast<int>(std::clamp<int64_t>(db_grid(sm_count) / std::max<int64_t>(heads, 1), 1,
                                              std::min(kDbMaxSplits, a.C)));
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

struct DbScratch {
  size_t qkv, attn, h, g, part, total;
};
DbScratch db_scratch(const DecodeBlockArgs& a, int sm_count) {
  const size_t es = 2, B = static_cast<size_t>(a.B);
  DbScratch s{};
  size_t o = 0;
  s.qkv = o, o += align256(B * (a.H + 2 * a.Hkv) * a.D * es);
  s.attn = o, o += align256(B * a.H * a.D * es);
  s.h = o, o += align256(B * a.E * es);
  s.g = o, o += align256(B * a.I * es);
  s.part = o, o += align256(B * a.H * db_splits(a, sm_count) * (a.D + 2) * 4);
  s.total = o;
  return s;
}

/// Per stream: the barrier word and the heads' arrival counters, zeroed once (through a side
/// stream, so that a first use while the stream is being captured works) and kept for the
/// process (captured graphs hold the pointer). Launches on one stream never overlap.
constexpr int64_t kDbCounters = 1 << 14;
unsigned* db_counters(cudaStream_t s) {
  static std::mutex mu;
  static auto* bufs = new std::map<cudaStream_t, unsigned*>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = bufs->find(s);
  if (it != bufs->end()) return it->second;
  void* p = nullptr;
  INGOT_CUDA_CHECK(cudaMalloc(&p, kDbCounters * sizeof(unsigned)));
  cudaStream_t side = nullptr;
  INGOT_CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  INGOT_CUDA_CHECK(cudaMemsetAsync(p, 0, kDbCounters * sizeof(unsigned), side));
  INGOT_CUDA_CHECK(cudaStreamSynchronize(side));
  INGOT_CUDA_CHECK(cudaStreamDestroy(side));
  bufs->emplace(s, static_cast<unsigned*>(p));
  return static_cast<unsigned*>(p);
}

template <typename T, int M, int LPK>
void launch_t(const DbParams& P, size_t smem, cudaStream_t s, int grid) {
  auto* k =
      db_ring() ? decode_block_kernel<T, M, LPK, true> : decode_block_kernel<T, M, LPK, false>;
  if (smem > 48 * 1024)
    INGOT_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  launch_pdl(k, dim3(static_cast<unsigned>(grid)), dim3(kDbThreads), smem, s, P);
  check_launch("decode_block_kernel");
}

template <typename T, int M>
void launch_m(const DbParams& P, size_t smem, cudaStream_t s, int grid) {
  switch (lanes_per_key(P.a)) {
    case 8:
      return launch_t<T, M, 8>(P, smem, s, grid);
    case 16:
      return launch_t<T, M, 16>(P, smem, s, grid);
    default:
      return launch_t<T, M, 32>(P, smem, s, grid);
  }
}

}  // namespace

bool decode_block_supported(const DecodeBlockArgs& a, int sm_count) {
  if (a.dtype != Dtype::bfloat16 && a.dtype != Dtype::float16) return false;
  if (a.B < 1 || a.B > kDecodeBlockMaxRows || a.H < 1 || a.Hkv < 1 || a.H % a.Hkv != 0)
    return false;
  if (a.D != 64 && a.D != 128 && a.D != 256) return false;
  if (a.E % 8 != 0 || a.I % 8 != 0 || a.E <= 0 || a.I <= 0 || a.C < 1) return false;
  if (int64_t(a.B) * a.H + 1 > kDbCounters) return false;
  if (db_smem_bytes(a) > 220 * 1024) return false;
  if (!a.freqs && a.D / 2 > kRopeMaxInvFreqs) return false;
  return sm_count > 0;
}

size_t decode_block_scratch_bytes(const DecodeBlockArgs& a, int sm_count) {
  return db_scratch(a, sm_count).total;
}

void launch_decode_block(const DecodeBlockArgs& a, const RopeInvFreqs& inv, void* scratch,
                         cudaStream_t s, int sm_count) {
  const DbScratch sc = db_scratch(a, sm_count);
  char* base = static_cast<char*>(scratch);
  DbParams P{};
  P.a = a;
  P.inv = inv;
  P.qkv = base + sc.qkv;
  P.attn = base + sc.attn;
  P.h = base + sc.h;
  P.g = base + sc.g;
  P.part = reinterpret_cast<float*>(base + sc.part);
  unsigned* c = db_counters(s);
  P.bar = c;
  P.cnt = c + 1;
  P.splits = db_splits(a, sm_count);
  // INGOT_DECODE_BLOCK_PHASES=1..4 stops after that many phases (A qkv, B attention, C o, D GLU;
  // E down): wrong values, for timing the phases by differences only.
  static const int phases = [] {
    const char* v = std::getenv("INGOT_DECODE_BLOCK_PHASES");
    const int n = v ? std::atoi(v) : 5;
    return n >= 1 && n <= 5 ? n : 5;
  }();
  P.phases = phases;
  const size_t smem = db_smem_bytes(a);
  const int grid = db_grid(sm_count);
  if (a.dtype == Dtype::bfloat16)
    launch_m<__nv_bfloat16, 1>(P, smem, s, grid);
  else
    launch_m<__half, 1>(P, smem, s, grid);
}

}  // namespace ingot::cu
