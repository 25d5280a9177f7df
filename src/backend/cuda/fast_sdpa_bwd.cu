// CUDA kernels of ScaledDotProductAttentionGrad, FlashAttention-2 style: a pre-pass per query
// row (log-sum-exp of the masked, scaled logits, recomputed; delta = d_out . out), then one CTA
// per (batch, kv head, key tile) for dk/dv looping over the group's query heads and query tiles,
// and one CTA per (batch, head, query tile) for dq looping over key tiles. No atomics: every
// output element is written once by one CTA (deterministic).
//
// Products run on tensor cores through wmma 16x16x16 fragments (16-bit inputs, float
// accumulators); tiles are staged in shared memory: the score and dP tiles in float, then the
// elementwise softmax-gradient step writes P and dS rounded to the input dtype for the next
// products (as FlashAttention does; the error is half an ulp of the dtype per term).
#include <mma.h>

#include <cmath>
#include <type_traits>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/fast_sdpa_bwd_kernels.h"

namespace ingot::cu {
namespace {

namespace wm = nvcuda::wmma;

// Tiles of head dim D. 8 warps; kBM query rows by kBN keys per score tile.
template <int D>
struct BwdTile {
  static constexpr int kWarps = 8, kThreads = 32 * kWarps;
  static constexpr int kBM = 64;
  static constexpr int kBN = D <= 128 ? 64 : 32;
  static constexpr int kLdT = D + 8;    // [rows][D] 16-bit tiles (rows shift banks by 16 bytes)
  static constexpr int kLdS = kBN + 4;  // [kBM][kBN] float tiles
  static constexpr int kLdP = kBN + 8;  // [kBM][kBN] 16-bit tiles
  // Shared memory layout (bytes; every region a multiple of 128 bytes from a 128-aligned base).
  static constexpr size_t kQ = size_t(kBM) * kLdT * 2;
  static constexpr size_t kK = size_t(kBN) * kLdT * 2;
  static constexpr size_t kS = size_t(kBM) * kLdS * 4;
  static constexpr size_t kP = size_t(kBM) * kLdP * 2;
  static constexpr size_t kRow = size_t(kBM) * 4;
  // q, d_out, k, v, s, dp, p, ds, lse, delta
  static constexpr size_t kSmem = 2 * kQ + 2 * kK + 2 * kS + 2 * kP + 2 * kRow;
  static_assert(kQ % 128 == 0 && kK % 128 == 0 && kS % 128 == 0 && kP % 128 == 0 &&
                kRow % 128 == 0);
  // Float staging of a finished [rows][D] accumulator tile (reuses the whole buffer).
  static constexpr int kLdO = D + 4;
  static_assert(size_t(kBM) * kLdO * 4 <= kSmem && size_t(kBN) * kLdO * 4 <= kSmem);
};

struct Smem {
  void* q;
  void* dout;
  void* k;
  void* v;
  float* s;
  float* dp;
  void* p;
  void* ds;
  float* lse;
  float* delta;
};

template <int D>
__device__ __forceinline__ Smem carve(unsigned char* base) {
  using C = BwdTile<D>;
  Smem m;
  unsigned char* x = base;
  m.q = x, x += C::kQ;
  m.dout = x, x += C::kQ;
  m.k = x, x += C::kK;
  m.v = x, x += C::kK;
  m.s = reinterpret_cast<float*>(x), x += C::kS;
  m.dp = reinterpret_cast<float*>(x), x += C::kS;
  m.p = x, x += C::kP;
  m.ds = x, x += C::kP;
  m.lse = reinterpret_cast<float*>(x), x += C::kRow;
  m.delta = reinterpret_cast<float*>(x);
  return m;
}

__device__ __forceinline__ float mask_value(const void* m, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::bool_:
      return static_cast<const uint8_t*>(m)[i] != 0 ? 1.0f : 0.0f;
    case Dtype::float16:
      return __half2float(static_cast<const __half*>(m)[i]);
    case Dtype::bfloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(m)[i]);
    case Dtype::float64:
      return static_cast<float>(static_cast<const double*>(m)[i]);
    default:
      return static_cast<const float*>(m)[i];
  }
}

// The masked, scaled logit of query row i (< L) of head h and key j (< S) from the raw dot
// product x, in the forward's order (scale, then mask, then causal/window); -inf when masked.
__device__ __forceinline__ float logit(const SdpaBwdArgs& a, int64_t b, int64_t h, int64_t i,
                                       int64_t j, float x) {
  x *= a.scale;
  if (a.mask_kind != SdpaMaskKind::none) {
    const float mv = mask_value(a.mask, a.mask_dtype,
                                b * a.m_st[0] + h * a.m_st[1] + i * a.m_st[2] + j * a.m_st[3]);
    if (a.mask_kind == SdpaMaskKind::boolean) {
      if (mv == 0.0f) x = -INFINITY;
    } else {
      x += mv;
    }
  }
  const int64_t pos = a.S - a.L + i;
  if (a.causal && (j > pos || (a.window > 0 && j <= pos - a.window))) x = -INFINITY;
  return x;
}

// Keys [kb, ke) that some query row of [i0, i1) may see (all keys without causal masking).
__device__ __forceinline__ void key_range(const SdpaBwdArgs& a, int64_t i0, int64_t i1, int64_t& kb,
                                          int64_t& ke) {
  kb = 0;
  ke = a.S;
  if (a.causal) {
    const int64_t off = a.S - a.L;
    ke = min(ke, max(int64_t(0), i1 - 1 + off + 1));
    if (a.window > 0) kb = max(kb, i0 + off - a.window + 1);
  }
}

// Rows [0, rows) of a [rows][D] tile from global memory (row-major, row length D) at src into
// shared memory with row stride LD; rows at or past `valid` are zero.
template <typename T, int D, int LD>
__device__ __forceinline__ void load_rows(T* dst, const T* src, int rows, int64_t valid) {
  constexpr int CH = D / 8;  // 16-byte chunks per row
  for (int idx = threadIdx.x; idx < rows * CH; idx += blockDim.x) {
    const int r = idx / CH, c = idx % CH;
    uint4 x = make_uint4(0u, 0u, 0u, 0u);
    if (r < valid) x = *reinterpret_cast<const uint4*>(src + int64_t(r) * D + c * 8);
    *reinterpret_cast<uint4*>(dst + r * LD + c * 8) = x;
  }
}

// out[kBM][kBN] (float, ld kLdS) = A[kBM][D] . B[kBN][D]^T, both 16-bit row-major tiles with
// stride kLdT; the warps share the 16x16 output tiles.
template <typename T, int D>
__device__ __forceinline__ void product_abt(float* out, const T* A, const T* Bm) {
  using C = BwdTile<D>;
  constexpr int NT = (C::kBM / 16) * (C::kBN / 16);
  const int warp = threadIdx.x >> 5;
  for (int t = warp; t < NT; t += C::kWarps) {
    const int ti = t / (C::kBN / 16), tj = t % (C::kBN / 16);
    wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
    wm::fill_fragment(acc, 0.0f);
#pragma unroll 4
    for (int kk = 0; kk < D / 16; ++kk) {
      wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major> fa;
      wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::col_major> fb;
      wm::load_matrix_sync(fa, A + ti * 16 * C::kLdT + kk * 16, C::kLdT);
      wm::load_matrix_sync(fb, Bm + tj * 16 * C::kLdT + kk * 16, C::kLdT);
      wm::mma_sync(acc, fa, fb, acc);
    }
    wm::store_matrix_sync(out + ti * 16 * C::kLdS + tj * 16, acc, C::kLdS, wm::mem_row_major);
  }
}

// Writes a warp's NF accumulator fragments of a [rows][D] result (fragment f of the warp is
// output tile warp * NF + f, row-major over (rows / 16, D / 16)) to global row-major dst, rows
// below `valid`, in T, staged through shared memory (the whole buffer is free by now).
template <typename T, int D, int NF>
__device__ __forceinline__ void store_result(
    wm::fragment<wm::accumulator, 16, 16, 16, float> (&acc)[NF], unsigned char* smem, T* dst,
    int rows, int64_t valid) {
  constexpr int LD = BwdTile<D>::kLdO;
  float* st = reinterpret_cast<float*>(smem);
  const int warp = threadIdx.x >> 5;
  __syncthreads();  // every warp is done with the tiles
#pragma unroll
  for (int f = 0; f < NF; ++f) {
    const int t = warp * NF + f, ti = t / (D / 16), tj = t % (D / 16);
    wm::store_matrix_sync(st + ti * 16 * LD + tj * 16, acc[f], LD, wm::mem_row_major);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
    const int r = idx / D, d = idx % D;
    if (r < valid) dst[int64_t(r) * D + d] = cast<T>(st[r * LD + d]);
  }
}

// ---- pre-pass: lse and delta per query row ----

template <typename T, int D>
__global__ void __launch_bounds__(BwdTile<D>::kThreads) sdpa_bwd_rows_kernel(const SdpaBwdArgs a) {
  using C = BwdTile<D>;
  constexpr int BM = C::kBM, BN = C::kBN, RPW = BM / C::kWarps;  // rows per warp
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const Smem sm = carve<D>(smem_raw);
  const int64_t bh = blockIdx.x % (a.B * a.H), i0 = (blockIdx.x / (a.B * a.H)) * BM;
  const int64_t b = bh / a.H, h = bh % a.H, hk = h / (a.H / a.Hkv);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t nq = min(int64_t(BM), a.L - i0);
  const T* q = static_cast<const T*>(a.q) + (bh * a.L + i0) * D;
  const T* k = static_cast<const T*>(a.k) + (b * a.Hkv + hk) * a.S * D;
  T* qs = static_cast<T*>(sm.q);
  T* ks = static_cast<T*>(sm.k);
  load_rows<T, D, C::kLdT>(qs, q, BM, nq);

  // delta_i = d_out_i . out_i (a warp per row, lanes over d).
  const T* o = static_cast<const T*>(a.out) + (bh * a.L + i0) * D;
  const T* g = static_cast<const T*>(a.d_out) + (bh * a.L + i0) * D;
  for (int r = warp; r < nq; r += C::kWarps) {
    float acc = 0.0f;
    for (int d = lane; d < D; d += 32) acc += to_float(g[r * D + d]) * to_float(o[r * D + d]);
    acc = warp_sum(acc);
    if (lane == 0) a.delta[bh * a.L + i0 + r] = acc;
  }

  float m[RPW], l[RPW];
#pragma unroll
  for (int r = 0; r < RPW; ++r) m[r] = -INFINITY, l[r] = 0.0f;
  int64_t kb, ke;
  key_range(a, i0, i0 + nq, kb, ke);
  for (int64_t j0 = (kb / BN) * BN; j0 < ke; j0 += BN) {
    __syncthreads();  // the previous tile's scores are consumed
    load_rows<T, D, C::kLdT>(ks, k + j0 * D, BN, a.S - j0);
    __syncthreads();
    product_abt<T, D>(sm.s, qs, ks);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int rr = warp * RPW + r;
      if (rr >= nq) break;  // warp-uniform
      float x[BN / 32], mx = m[r];
#pragma unroll
      for (int u = 0; u < BN / 32; ++u) {
        const int64_t j = j0 + lane + 32 * u;
        x[u] = j < a.S ? logit(a, b, h, i0 + rr, j, sm.s[rr * C::kLdS + lane + 32 * u]) : -INFINITY;
        mx = fmaxf(mx, x[u]);
      }
      mx = __shfl_sync(0xffffffffu, warp_max(mx), 0);
      if (mx == -INFINITY) continue;  // nothing visible yet (warp-uniform)
      float sum = 0.0f;
#pragma unroll
      for (int u = 0; u < BN / 32; ++u) sum += expf(x[u] - mx);
      sum = warp_sum(sum);
      l[r] = l[r] * expf(m[r] - mx) + sum;  // exp(-inf) = 0 for the first visible tile
      m[r] = mx;
    }
  }
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int rr = warp * RPW + r;
    if (rr < nq && lane == 0)
      a.lse[bh * a.L + i0 + rr] = m[r] == -INFINITY ? -INFINITY : m[r] + logf(l[r]);
  }
}

// P and dS of a [kBM][kBN] tile (query rows i0.. of head h, keys j0..) from the raw scores and
// dP in shared memory: P = exp(logit - lse), dS = P (dP - delta) scale, rounded to T. Rows past
// L, keys past S and fully masked rows give zeros.
template <typename T, int D>
__device__ __forceinline__ void softmax_grad(const SdpaBwdArgs& a, const Smem& sm, int64_t b,
                                             int64_t h, int64_t i0, int64_t j0, bool want_p) {
  using C = BwdTile<D>;
  T* ps = static_cast<T*>(sm.p);
  T* dss = static_cast<T*>(sm.ds);
  for (int e = threadIdx.x; e < C::kBM * C::kBN; e += C::kThreads) {
    const int r = e / C::kBN, c = e % C::kBN;
    const int64_t i = i0 + r, j = j0 + c;
    const float lse = sm.lse[r];
    float p = 0.0f, ds = 0.0f;
    if (i < a.L && j < a.S && lse != -INFINITY) {
      const float x = logit(a, b, h, i, j, sm.s[r * C::kLdS + c]);
      if (x != -INFINITY) {
        p = expf(x - lse);
        ds = p * (sm.dp[r * C::kLdS + c] - sm.delta[r]) * a.scale;
      }
    }
    if (want_p) ps[r * C::kLdP + c] = cast<T>(p);
    dss[r * C::kLdP + c] = cast<T>(ds);
  }
}

// lse and delta of query rows i0.. of row block bh into shared memory (-inf / 0 past L).
template <int D>
__device__ __forceinline__ void load_row_stats(const SdpaBwdArgs& a, const Smem& sm, int64_t bh,
                                               int64_t i0) {
  for (int r = threadIdx.x; r < BwdTile<D>::kBM; r += blockDim.x) {
    const bool ok = i0 + r < a.L;
    sm.lse[r] = ok ? a.lse[bh * a.L + i0 + r] : -INFINITY;
    sm.delta[r] = ok ? a.delta[bh * a.L + i0 + r] : 0.0f;
  }
}

// ---- dk, dv: one CTA per (batch, kv head, key tile) ----

template <typename T, int D>
__global__ void __launch_bounds__(BwdTile<D>::kThreads) sdpa_bwd_dkdv_kernel(const SdpaBwdArgs a) {
  using C = BwdTile<D>;
  constexpr int BM = C::kBM, BN = C::kBN;
  constexpr int NF = (BN / 16) * (D / 16) / C::kWarps;  // dk (and dv) fragments per warp
  static_assert(NF >= 1 && (BN / 16) * (D / 16) % C::kWarps == 0);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const Smem sm = carve<D>(smem_raw);
  const int64_t bhk = blockIdx.x % (a.B * a.Hkv), j0 = (blockIdx.x / (a.B * a.Hkv)) * BN;
  const int64_t b = bhk / a.Hkv, hk = bhk % a.Hkv, G = a.H / a.Hkv;
  const int warp = threadIdx.x >> 5;
  const int64_t nk = min(int64_t(BN), a.S - j0);
  T* qs = static_cast<T*>(sm.q);
  T* gs = static_cast<T*>(sm.dout);
  T* ks = static_cast<T*>(sm.k);
  T* vs = static_cast<T*>(sm.v);
  const T* ps = static_cast<const T*>(sm.p);
  const T* dss = static_cast<const T*>(sm.ds);
  load_rows<T, D, C::kLdT>(ks, static_cast<const T*>(a.k) + (bhk * a.S + j0) * D, BN, nk);
  load_rows<T, D, C::kLdT>(vs, static_cast<const T*>(a.v) + (bhk * a.S + j0) * D, BN, nk);

  wm::fragment<wm::accumulator, 16, 16, 16, float> dk[NF], dv[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wm::fill_fragment(dk[f], 0.0f), wm::fill_fragment(dv[f], 0.0f);

  // Query rows that see some key of [j0, j0 + nk): causal needs i + off >= j0, the window
  // j0 + nk - 1 > i + off - window.
  const int64_t off = a.S - a.L;
  int64_t qb = 0, qe = a.L;
  if (a.causal) {
    qb = max(int64_t(0), j0 - off);
    if (a.window > 0) qe = min(qe, j0 + nk - 1 - off + a.window);
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = hk * G + g, bh = b * a.H + h;
    for (int64_t i0 = (qb / BM) * BM; i0 < qe; i0 += BM) {
      __syncthreads();  // the previous tile's q, d_out, P and dS are consumed
      const int64_t nq = min(int64_t(BM), a.L - i0);
      load_rows<T, D, C::kLdT>(qs, static_cast<const T*>(a.q) + (bh * a.L + i0) * D, BM, nq);
      load_rows<T, D, C::kLdT>(gs, static_cast<const T*>(a.d_out) + (bh * a.L + i0) * D, BM, nq);
      load_row_stats<D>(a, sm, bh, i0);
      __syncthreads();
      product_abt<T, D>(sm.s, qs, ks);   // S = Q K^T
      product_abt<T, D>(sm.dp, gs, vs);  // dP = dO V^T
      __syncthreads();
      softmax_grad<T, D>(a, sm, b, h, i0, j0, true);
      __syncthreads();
      // dV += P^T dO and dK += dS^T Q: A = P^T (dS^T) is the [kBM][kBN] tile read column-major.
#pragma unroll
      for (int f = 0; f < NF; ++f) {
        const int t = warp * NF + f, ti = t / (D / 16), tj = t % (D / 16);
#pragma unroll 2
        for (int kk = 0; kk < BM / 16; ++kk) {
          wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::col_major> fa;
          wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major> fb;
          wm::load_matrix_sync(fa, ps + kk * 16 * C::kLdP + ti * 16, C::kLdP);
          wm::load_matrix_sync(fb, gs + kk * 16 * C::kLdT + tj * 16, C::kLdT);
          wm::mma_sync(dv[f], fa, fb, dv[f]);
          wm::load_matrix_sync(fa, dss + kk * 16 * C::kLdP + ti * 16, C::kLdP);
          wm::load_matrix_sync(fb, qs + kk * 16 * C::kLdT + tj * 16, C::kLdT);
          wm::mma_sync(dk[f], fa, fb, dk[f]);
        }
      }
    }
  }
  store_result<T, D, NF>(dk, smem_raw, static_cast<T*>(a.dk) + (bhk * a.S + j0) * D, BN, nk);
  store_result<T, D, NF>(dv, smem_raw, static_cast<T*>(a.dv) + (bhk * a.S + j0) * D, BN, nk);
}

// ---- dq: one CTA per (batch, head, query tile) ----

template <typename T, int D>
__global__ void __launch_bounds__(BwdTile<D>::kThreads) sdpa_bwd_dq_kernel(const SdpaBwdArgs a) {
  using C = BwdTile<D>;
  constexpr int BM = C::kBM, BN = C::kBN;
  constexpr int NF = (BM / 16) * (D / 16) / C::kWarps;  // dq fragments per warp
  static_assert(NF >= 1 && (BM / 16) * (D / 16) % C::kWarps == 0);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const Smem sm = carve<D>(smem_raw);
  const int64_t bh = blockIdx.x % (a.B * a.H), i0 = (blockIdx.x / (a.B * a.H)) * BM;
  const int64_t b = bh / a.H, h = bh % a.H, hk = h / (a.H / a.Hkv);
  const int warp = threadIdx.x >> 5;
  const int64_t nq = min(int64_t(BM), a.L - i0);
  T* qs = static_cast<T*>(sm.q);
  T* gs = static_cast<T*>(sm.dout);
  T* ks = static_cast<T*>(sm.k);
  T* vs = static_cast<T*>(sm.v);
  const T* dss = static_cast<const T*>(sm.ds);
  const T* k = static_cast<const T*>(a.k) + (b * a.Hkv + hk) * a.S * D;
  const T* v = static_cast<const T*>(a.v) + (b * a.Hkv + hk) * a.S * D;
  load_rows<T, D, C::kLdT>(qs, static_cast<const T*>(a.q) + (bh * a.L + i0) * D, BM, nq);
  load_rows<T, D, C::kLdT>(gs, static_cast<const T*>(a.d_out) + (bh * a.L + i0) * D, BM, nq);
  load_row_stats<D>(a, sm, bh, i0);

  wm::fragment<wm::accumulator, 16, 16, 16, float> dq[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wm::fill_fragment(dq[f], 0.0f);
  int64_t kb, ke;
  key_range(a, i0, i0 + nq, kb, ke);
  for (int64_t j0 = (kb / BN) * BN; j0 < ke; j0 += BN) {
    __syncthreads();  // the previous tile's k and dS are consumed
    load_rows<T, D, C::kLdT>(ks, k + j0 * D, BN, a.S - j0);
    load_rows<T, D, C::kLdT>(vs, v + j0 * D, BN, a.S - j0);
    __syncthreads();
    product_abt<T, D>(sm.s, qs, ks);
    product_abt<T, D>(sm.dp, gs, vs);
    __syncthreads();
    softmax_grad<T, D>(a, sm, b, h, i0, j0, false);
    __syncthreads();
    // dQ += dS K: dS [kBM][kBN] row-major, K [kBN][D] row-major.
#pragma unroll
    for (int f = 0; f < NF; ++f) {
      const int t = warp * NF + f, ti = t / (D / 16), tj = t % (D / 16);
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major> fa;
        wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major> fb;
        wm::load_matrix_sync(fa, dss + ti * 16 * C::kLdP + kk * 16, C::kLdP);
        wm::load_matrix_sync(fb, ks + kk * 16 * C::kLdT + tj * 16, C::kLdT);
        wm::mma_sync(dq[f], fa, fb, dq[f]);
      }
    }
  }
  store_result<T, D, NF>(dq, smem_raw, static_cast<T*>(a.dq) + (bh * a.L + i0) * D, BM, nq);
}

// ---- launchers ----

int64_t ceil_div(int64_t x, int64_t y) {
  return (x + y - 1) / y;
}

template <typename T, int D>
void launch_dim(const SdpaBwdArgs& a, cudaStream_t s) {
  using C = BwdTile<D>;
  const auto rows_grid = static_cast<unsigned>(a.B * a.H * ceil_div(a.L, C::kBM));
  const auto keys_grid = static_cast<unsigned>(a.B * a.Hkv * ceil_div(a.S, C::kBN));
  allow_dynamic_smem(sdpa_bwd_rows_kernel<T, D>, C::kSmem);
  sdpa_bwd_rows_kernel<T, D><<<rows_grid, C::kThreads, C::kSmem, s>>>(a);
  check_launch("sdpa_bwd_rows_kernel");
  allow_dynamic_smem(sdpa_bwd_dkdv_kernel<T, D>, C::kSmem);
  sdpa_bwd_dkdv_kernel<T, D><<<keys_grid, C::kThreads, C::kSmem, s>>>(a);
  check_launch("sdpa_bwd_dkdv_kernel");
  allow_dynamic_smem(sdpa_bwd_dq_kernel<T, D>, C::kSmem);
  sdpa_bwd_dq_kernel<T, D><<<rows_grid, C::kThreads, C::kSmem, s>>>(a);
  check_launch("sdpa_bwd_dq_kernel");
}

template <typename T>
void launch_type(const SdpaBwdArgs& a, cudaStream_t s) {
  switch (a.D) {
    case 64:
      return launch_dim<T, 64>(a, s);
    case 128:
      return launch_dim<T, 128>(a, s);
    default:
      return launch_dim<T, 256>(a, s);
  }
}

}  // namespace

bool sdpa_bwd_supported(Dtype t, int64_t D, int64_t Dv) {
  return (t == Dtype::bfloat16 || t == Dtype::float16) && D == Dv &&
         (D == 64 || D == 128 || D == 256);
}

size_t sdpa_bwd_smem(int64_t D) {
  return D <= 64 ? BwdTile<64>::kSmem : D <= 128 ? BwdTile<128>::kSmem : BwdTile<256>::kSmem;
}

void launch_sdpa_bwd(const SdpaBwdArgs& a, cudaStream_t s) {
  if (sdpa_bwd_mma_takes(a)) return launch_sdpa_bwd_mma(a, s);
  if (a.dtype == Dtype::bfloat16)
    launch_type<__nv_bfloat16>(a, s);
  else
    launch_type<__half>(a, s);
}

}  // namespace ingot::cu
