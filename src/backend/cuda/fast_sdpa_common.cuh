// Device pieces shared by the attention kernels of fast_sdpa.cu (SIMT, tensor-core, split-K
// combine) and fast_sdpa_decode.cu (split and cluster decode): the kernels' parameters, the score
// helpers, cp.async copies, and the functions that fast_sdpa.cu calls in fast_sdpa_decode.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "backend/cuda/device/types.cuh"
#include "backend/cuda/fast_sdpa_kernels.h"

namespace ingot::cu::sdpa_detail {

inline constexpr int kMaxSplits = 128;  // one per thread of the combine kernel

struct KParams {
  SdpaArgs a;
  int64_t G, rows, row_tiles, kps;
  int splits;
  void* part;  // split partials: acc [B*Hkv*rows*splits][Dv], then (max, sum) pairs
  // Decode kernel: per-(batch, kv head) arrival counters (zero between launches); the last
  // split to finish combines the partials itself. Null: a separate combine pass does it.
  unsigned* counters;
};

// ---- shared pieces ----

template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}
template <typename A>
__device__ __forceinline__ A exp_(A x) {
  if constexpr (std::is_same_v<A, double>)
    return exp(x);
  else
    return expf(x);
}
template <typename A>
__device__ __forceinline__ A tanh_(A x) {
  if constexpr (std::is_same_v<A, double>)
    return tanh(x);
  else
    return tanhf(x);
}
template <typename A, typename T>
__device__ __forceinline__ A to_acc(T v) {
  if constexpr (std::is_same_v<T, double>)
    return static_cast<A>(v);
  else
    return static_cast<A>(to_float(v));
}

template <typename A>
__device__ __forceinline__ A mask_value(const void* m, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::bool_:
      return static_cast<const uint8_t*>(m)[i] != 0 ? A(1) : A(0);
    case Dtype::float16:
      return static_cast<A>(__half2float(static_cast<const __half*>(m)[i]));
    case Dtype::bfloat16:
      return static_cast<A>(__bfloat162float(static_cast<const __nv_bfloat16*>(m)[i]));
    case Dtype::float64:
      return static_cast<A>(static_cast<const double*>(m)[i]);
    default:
      return static_cast<A>(static_cast<const float*>(m)[i]);
  }
}

// A CTA's (batch, kv head), split and first row; the row tiles with the most causal work are
// numbered first so they start first.
struct Block {
  int64_t b, hk, bh, r0;
  int split;
};
__device__ __forceinline__ Block block_coords(const KParams& p, int64_t x, int rows_per_cta) {
  const int64_t bhkv = p.a.B * p.a.Hkv;
  Block c;
  c.bh = x % bhkv;
  x /= bhkv;
  c.split = static_cast<int>(x % p.splits);
  c.r0 = (p.row_tiles - 1 - x / p.splits) * rows_per_cta;
  c.b = c.bh / p.a.Hkv;
  c.hk = c.bh % p.a.Hkv;
  return c;
}

// Keys [kb, ke) that some row of [c.r0, r1) may see within the CTA's split.
__device__ __forceinline__ void key_range(const KParams& p, const Block& c, int64_t r1, int64_t& kb,
                                          int64_t& ke) {
  const SdpaArgs& a = p.a;
  kb = c.split * p.kps;
  ke = min(a.S, kb + p.kps);
  if (a.causal) {
    const int64_t off = a.S - a.L;
    ke = min(ke, off + (r1 - 1) / p.G + 1);
    if (a.window > 0) kb = max(kb, off + c.r0 / p.G - a.window + 1);
  }
}

// Head, position and absolute key position of a row; rows past the end alias row 0 so their
// (discarded) reads stay in bounds.
struct Row {
  bool valid;
  int64_t h, l, pos;
};
__device__ __forceinline__ Row row_at(const KParams& p, const Block& c, int64_t r) {
  Row w;
  w.valid = r < p.rows;
  const int64_t rr = w.valid ? r : 0;
  w.l = rr / p.G;
  w.h = c.hk * p.G + rr % p.G;
  w.pos = p.a.S - p.a.L + w.l;
  return w;
}

// Softcap, mask and causal/window/split visibility of the scaled score x of key j, in the CPU's
// order; masked keys give -inf.
// The mask's value for row w and key j (0 without a mask).
template <typename A>
__device__ __forceinline__ A mask_at(const KParams& p, const Block& c, const Row& w, int64_t j) {
  const SdpaArgs& a = p.a;
  if (a.mask_kind == SdpaMaskKind::none) return A(0);
  return mask_value<A>(a.mask, a.mask_dtype,
                       c.b * a.m_st[0] + w.h * a.m_st[1] + w.l * a.m_st[2] + j * a.m_st[3]);
}

// score() with the mask's value mv read ahead (mask_at), so that its load can be issued with
// the key's.
template <typename A>
__device__ __forceinline__ A score_mv(const KParams& p, const Row& w, int64_t j, int64_t ke, A x,
                                      A mv) {
  const SdpaArgs& a = p.a;
  if (j >= ke) return neg_inf<A>();
  if (a.softcap > 0) {
    const A cap = static_cast<A>(a.softcap);
    x = cap * tanh_(x * (A(1) / cap));
  }
  if (a.mask_kind != SdpaMaskKind::none) {
    if (a.mask_kind == SdpaMaskKind::boolean) {
      if (mv == A(0)) x = neg_inf<A>();
    } else {
      x += mv;
    }
  }
  if (a.causal && (j > w.pos || (a.window > 0 && j <= w.pos - a.window))) x = neg_inf<A>();
  return x;
}

template <typename A>
__device__ __forceinline__ A score(const KParams& p, const Block& c, const Row& w, int64_t j,
                                   int64_t ke, A x) {
  return score_mv<A>(p, w, j, ke, x, j < ke ? mask_at<A>(p, c, w, j) : A(0));
}

// ---- decode attention's online softmax (the decode kernels and the decode block) ----

// Running softmax state (m, l) and output chunk o of one row.
template <int V>
struct DecodeState {
  float m, l, o[V];
};

template <int V>
__device__ __forceinline__ void decode_init(DecodeState<V>& s) {
  s.m = -std::numeric_limits<float>::infinity();
  s.l = 0.0f;
#pragma unroll
  for (int i = 0; i < V; ++i) s.o[i] = 0.0f;
}

// Adds key score x with value chunk v. A NaN score never becomes the maximum and its weight
// is NaN, so it reaches the output as on the CPU.
template <int V>
__device__ __forceinline__ void decode_add(DecodeState<V>& s, float x, const float* v) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float alpha = 1.0f;
  if (x > s.m) {
    alpha = s.m == kNegInf ? 0.0f : expf(s.m - x);
    s.m = x;
  }
  const float pr = x == kNegInf ? 0.0f : expf(x - s.m);
  s.l = s.l * alpha + pr;
#pragma unroll
  for (int i = 0; i < V; ++i) s.o[i] = s.o[i] * alpha + pr * v[i];
}

// s = merge of s and t (partials over disjoint keys).
template <int V>
__device__ __forceinline__ void decode_merge(DecodeState<V>& s, float tm, float tl,
                                             const float* to) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const float mx = tm > s.m ? tm : s.m;
  const float ws = s.m == kNegInf ? 0.0f : expf(s.m - mx);
  const float wt = tm == kNegInf ? 0.0f : expf(tm - mx);
  s.m = mx;
  s.l = s.l * ws + tl * wt;
#pragma unroll
  for (int i = 0; i < V; ++i) s.o[i] = s.o[i] * ws + to[i] * wt;
}

// ---- cp.async: 16-byte global-to-shared copies ----

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte global-to-shared async copy; writes zeros (reading nothing) when !valid.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---- decode attention (fast_sdpa_decode.cu), for plan_sdpa and launch_sdpa ----

/// The plan of a decode problem (sdpa_uses_decode): the cluster kernel's when it takes the
/// problem, else the split kernel's.
SdpaPlan plan_decode(const SdpaArgs& a, int sm_count);

/// Zeroed arrival counters (at least n) for decode launches on stream s, or null when none
/// can be had now (too many, or a first use while s is being captured into a graph: the
/// buffer is zeroed synchronously). Per stream, because launches on one stream never overlap;
/// kept for the process (captured graphs hold the pointer).
unsigned* decode_counters(cudaStream_t s, int64_t n);

/// Queues the split decode kernel of plan pl (pl.decode, pl.cluster == 0) for kp.a's dtype.
void launch_split_decode(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s);

/// Queues the cluster decode kernel of plan pl (pl.cluster > 0).
void launch_cluster(const SdpaArgs& a, const KParams& kp, const SdpaPlan& pl, cudaStream_t s);

}  // namespace ingot::cu::sdpa_detail
