// CUDA kernels of ScaledDotProductAttention: flash attention with an online softmax in float32
// (float64 for float64). The rows of one (batch, kv head) are the G query heads of its group at
// each position (row r = l * G + g), so a CTA reads K and V once for the whole group.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_sdpa_kernels.h"

namespace ingot::cu {
namespace {

constexpr int kSimtThreads = 128;
constexpr int kSimtKeys = 32;    // keys per tile of the SIMT kernel: one per lane
constexpr int kMaxSplits = 128;  // one per thread of the combine kernel
constexpr int kMaxThreads = 128;

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

// ---- tensor-core kernel: bf16/f16, D == Dv in {64, 80, 96, 128, 256} ----

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
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// c += a (16x16, row) * b (16x8, col), float accumulators.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
// Two floats rounded to T, packed low-first as the mma fragments and memory order want.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float x, float y) {
  uint32_t u;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    memcpy(&u, &h, 4);
  } else {
    const __half2 h = __floats2half2_rn(x, y);
    memcpy(&u, &h, 4);
  }
  return u;
}

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

// Per-thread state of a warp's 16 rows: Q fragments (D <= 128), output accumulators and the
// online softmax's running maximum (log2 units) and sum.
template <int D>
struct MmaRows {
  uint32_t qf[MmaTile<D>::kQRegs ? D / 16 : 1][4];
  float o[D / 8][4];
  float m[2], l[2];
  Row rw[2];
};

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

// s = Q K_j^T for the warp's 16 rows and the tile's keys (K tile in shared memory).
template <typename T, int D>
__device__ __forceinline__ void mma_scores(float (&s)[MmaTile<D>::kKeys / 8][4],
                                           const MmaRows<D>& r, const T* qwarp, const T* ks) {
  using Cfg = MmaTile<D>;
  constexpr int BC = Cfg::kKeys, ST = Cfg::kStride;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < BC / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    if constexpr (Cfg::kQRegs) {
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
template <typename T, int D>
__device__ __forceinline__ void mma_pv(MmaRows<D>& r, const float (&s)[MmaTile<D>::kKeys / 8][4],
                                       const T* vs) {
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
template <int D>
__device__ __forceinline__ void mma_rows_end(MmaRows<D>& r) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    r.l[i] += __shfl_xor_sync(0xffffffffu, r.l[i], 1);
    r.l[i] += __shfl_xor_sync(0xffffffffu, r.l[i], 2);
  }
}

// The warp's normalised rows into the output, staged through `stage` (16 rows of the warp's
// own shared memory, no longer read by any other warp) so that each row goes out in 16-byte
// stores.
template <typename T, int D>
__device__ __forceinline__ void mma_store(const MmaRows<D>& r, const KParams& p, const Block& c,
                                          T* stage) {
  constexpr int ST = MmaTile<D>::kStride, CH = MmaTile<D>::kChunks;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, quad = lane & 3;
  const SdpaArgs& a = p.a;
  const float inv[2] = {r.l[0] > 0.0f ? 1.0f / r.l[0] : 0.0f, r.l[1] > 0.0f ? 1.0f / r.l[1] : 0.0f};
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
    const int64_t rr = c.r0 + warp * 16 + i;
    if (rr >= p.rows) continue;
    const Row w = row_at(p, c, rr);
    *reinterpret_cast<uint4*>(out + ((c.b * a.H + w.h) * a.L + w.l) * D + ch * 8) =
        *reinterpret_cast<const uint4*>(stage + i * ST + ch * 8);
  }
  __syncwarp();
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

template <typename T, int LPK, int R>
__global__ void __launch_bounds__(kCdThreads, 1)
    sdpa_decode_cluster_kernel(const __grid_constant__ CdParams cp) {
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
    const Row w = row_of(r);
    qraw[r] = load16(static_cast<const T*>(a.q) + b * a.q_st[0] + w.h * a.q_st[1] +
                     w.l * a.q_st[2] + sub * V);
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

// ---- launchers ----

template <typename K>
void set_smem(K kernel, size_t smem) {
  if (smem > 48 * 1024)
    INGOT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
}

template <typename T, int D>
void launch_mma(const KParams& kp, const SdpaPlan& pl, unsigned blocks, cudaStream_t s) {
  if (pl.short_rows) {
    const auto kernel = sdpa_mma_short_kernel<T, D>;
    set_smem(kernel, pl.smem);
    int per_sm = 0;
    INGOT_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, pl.threads, pl.smem));
    const int64_t grid = std::min<int64_t>(blocks, int64_t(std::max(per_sm, 1)) * pl.sm_count);
    kernel<<<static_cast<unsigned>(grid), pl.threads, pl.smem, s>>>(kp);
    check_launch("sdpa_mma_short_kernel");
    return;
  }
  set_smem(sdpa_mma_kernel<T, D>, pl.smem);
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
  set_smem(sdpa_simt_kernel<T, A, BR>, pl.smem);
  sdpa_simt_kernel<T, A, BR><<<blocks, kSimtThreads, pl.smem, s>>>(kp);
  check_launch("sdpa_simt_kernel");
}

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
template <typename T, int LPK, int R>
bool cd_fits(int ncl) {
  const auto kernel = sdpa_decode_cluster_kernel<T, LPK, R>;
  constexpr int64_t D = LPK * kVec16<T>;
  int dev = 0;
  INGOT_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;
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

template <typename T, int LPK, int R>
void launch_cluster_decode(const CdParams& cp, int64_t bh, size_t smem, cudaStream_t s) {
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
  (void)cudaLaunchKernelEx(&cfg, sdpa_decode_cluster_kernel<T, LPK, R>, cp);
  check_launch("sdpa_decode_cluster_kernel");
}

/// Zeroed arrival counters (at least n) for decode launches on stream s, or null when none
/// can be had now (too many, or a first use while s is being captured into a graph: the
/// buffer is zeroed synchronously). Per stream, because launches on one stream never overlap;
/// kept for the process (captured graphs hold the pointer).
unsigned* decode_counters(cudaStream_t s, int64_t n) {
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

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

/// Which kernel takes decode attention: INGOT_CUDA_DECODE_KERNEL=1 the cluster kernel, =0 the
/// split kernel (sdpa_decode_kernel), unset: by the problem (use_cluster_decode); read once.
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

// Queues the cluster kernel of plan pl (pl.cluster > 0).
void launch_cluster(const SdpaArgs& a, const KParams& kp, const SdpaPlan& pl, cudaStream_t s) {
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
  cd_dispatch(a.dtype, a.D, pl.rows_per_cta, [&](auto t, auto lpk, auto r) {
    launch_cluster_decode<decltype(t), decltype(lpk)::value, decltype(r)::value>(cp, a.B * a.Hkv,
                                                                                 pl.smem, s);
    return true;
  });
}

}  // namespace

bool sdpa_uses_mma(Dtype t, int64_t D, int64_t Dv) {
  return (t == Dtype::bfloat16 || t == Dtype::float16) && D == Dv &&
         (D == 64 || D == 80 || D == 96 || D == 128 || D == 256);
}

bool sdpa_uses_decode(const SdpaArgs& a) {
  static const bool on = [] {
    const char* v = std::getenv("INGOT_CUDA_DECODE_ATTENTION");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  const int64_t es = a.dtype == Dtype::float32                                 ? 4
                     : a.dtype == Dtype::bfloat16 || a.dtype == Dtype::float16 ? 2
                                                                               : 0;
  if (!on || es == 0 || a.D != a.Dv || (a.D * es) % 16 != 0 || a.Hkv < 1) return false;
  const int64_t lpk = a.D * es / 16;
  return (lpk == 8 || lpk == 16 || lpk == 32) && (a.H / a.Hkv) * a.L <= kDecodeMaxRows;
}

SdpaPlan plan_sdpa(const SdpaArgs& a, int sm_count) {
  SdpaPlan pl;
  const int64_t rows = (a.H / a.Hkv) * a.L;
  const size_t acc_size = a.dtype == Dtype::float64 ? 8 : 4;
  if (sdpa_uses_decode(a)) {
    // Two CTAs per SM over (batch, kv head, key split), at least 32 keys per split.
    pl.decode = true;
    pl.threads = kDecodeThreads;
    pl.rows_per_cta = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
    // The cluster kernel once its clusters (up to cluster_decode_max() CTAs per (batch, kv
    // head)) give about two CTAs per SM, as the split kernel's splits do: measured on the H200
    // (Llama-3.2-1B, 8 kv heads), 1.33x the split kernel's decode rate at batch 16 / 4096
    // keys and 1.84x at batch 64 / 2048, but 0.85x at batch 1 / 16384 keys (8 clusters of 8
    // CTAs leave half the SMs idle) and 0.98x at batch 1 / 4096.
    const int mode = cluster_decode_mode();
    const bool fills = a.B * a.Hkv * cluster_decode_max() >= 2 * int64_t(std::max(sm_count, 1));
    if (mode == 1 || (mode == -1 && fills)) {
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
  static const bool short_on = [] {
    const char* v = std::getenv("INGOT_CUDA_SDPA_SHORT");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
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
  dispatch_cuda_float(a.dtype, [&](auto t) {
    using T = decltype(t);
    using A = acc_t<T>;
    if constexpr (!std::is_same_v<T, double>) {
      if (pl.decode) launch_decode<T>(kp, pl, nb, s);
    }
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
