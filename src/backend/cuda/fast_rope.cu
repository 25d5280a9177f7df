// CUDA kernel of Rope. A block owns one position (batch row, l) and a group of heads: each
// thread computes cos/sin of its pairs once and rotates them in every head of the group.
// Angles are float32 products exactly as on the CPU; cos/sin are evaluated in double and
// rounded to float (the correctly rounded value in all but vanishingly rare cases, which is
// what the CPU's cosf/sinf return too); 16-bit inputs round where Hugging Face's bf16 code
// does (backend/cpu/fast_rope.cpp).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/device/vec.cuh"
#include "backend/cuda/fast_rope_kernels.h"
#include "backend/cuda/fast_rope_row.cuh"

namespace ingot::cu {
namespace {

/// Inverse frequency of pair k (the host table inv, else computed).
__device__ __forceinline__ float inv_freq(const RopeArgs& p, const RopeInvFreqs& inv, int64_t k) {
  return rope_inv_freq(p, inv.v, inv.n, k);
}

constexpr int kRopeHeadBatch = 8;

// Work item k of a row: k < half rotates pair k, the rest copy feature dims + (k - half)
// (the unrotated tail of partial rotary). Elements are read and written by the same thread,
// so out may alias x (a donated buffer).
template <typename T, typename A, bool Trad>
__global__ void rope_kernel(RopeArgs p, const __grid_constant__ RopeInvFreqs inv,
                            int64_t heads_per_block) {
  pdl_prologue();
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  const int64_t half = p.dims / 2, work = half + (p.D - p.dims);
  const int64_t G = p.rows_per_b / p.L;  // rows sharing one position
  const int64_t g0 = static_cast<int64_t>(blockIdx.y) * heads_per_block;
  const int64_t g1 = g0 + heads_per_block < G ? g0 + heads_per_block : G;
  for (int64_t t = blockIdx.x; t < p.nb * p.L; t += gridDim.x) {
    const int64_t bb = t / p.L, l = t % p.L;
    const int64_t start =
        p.offsets ? load_int(p.offsets, p.offsets_dtype, bb * p.offsets_stride) : p.offset;
    const float pos = __fmul_rn(static_cast<float>(start + l), p.scale);
    for (int64_t k = threadIdx.x; k < work; k += blockDim.x) {
      if (k < half) {
        const float ang = __fmul_rn(pos, inv_freq(p, inv, k));
        double sd, cd;
        sincos(static_cast<double>(ang), &sd, &cd);
        const A c = round_through<T>(static_cast<A>(static_cast<float>(cd)));
        const A s = round_through<T>(static_cast<A>(static_cast<float>(sd)));
        const int64_t i1 = Trad ? 2 * k : k, i2 = Trad ? 2 * k + 1 : k + half;
        // kRopeHeadBatch heads' pairs are loaded before any is written: out may alias x, so
        // the compiler could not hoist a later head's loads above an earlier head's stores,
        // and one load in flight per thread left the kernel far from the memory's rate.
        for (int64_t gb = g0; gb < g1; gb += kRopeHeadBatch) {
          A x1[kRopeHeadBatch], x2[kRopeHeadBatch];
#pragma unroll
          for (int u = 0; u < kRopeHeadBatch; ++u) {
            if (gb + u >= g1) break;
            const T* xr = x + elem_offset(bb * p.rows_per_b + (gb + u) * p.L + l, p.rows);
            x1[u] = to_acc<A>(xr[i1 * p.sx]);
            x2[u] = to_acc<A>(xr[i2 * p.sx]);
          }
#pragma unroll
          for (int u = 0; u < kRopeHeadBatch; ++u) {
            if (gb + u >= g1) break;
            const int64_t r = bb * p.rows_per_b + (gb + u) * p.L + l;
            const A o1 = round_through<T>(
                add_rn(round_through<T>(mul_rn(x1[u], c)), round_through<T>(mul_rn(-x2[u], s))));
            const A o2 = round_through<T>(
                add_rn(round_through<T>(mul_rn(x2[u], c)), round_through<T>(mul_rn(x1[u], s))));
            out[r * p.D + i1] = cast<T>(o1);
            out[r * p.D + i2] = cast<T>(o2);
          }
        }
      } else {
        const int64_t j = p.dims + (k - half);
        for (int64_t g = g0; g < g1; ++g) {
          const int64_t r = bb * p.rows_per_b + g * p.L + l;
          out[r * p.D + j] = x[elem_offset(r, p.rows) + j * p.sx];
        }
      }
    }
  }
}

// ---- rope_kv_update: a block per (position, group of heads), a warp per head row ----
//
// The block's threads first compute cos/sin of the position's D / 2 pairs in parallel (one
// float64 sincos per pair, as rope_kernel), then each warp normalises and rotates one head row
// from that table.

constexpr int kRopeKvWarps = 4;

template <typename T>
__global__ void __launch_bounds__(32 * kRopeKvWarps)
    rope_kv_kernel(const __grid_constant__ RopeKvArgs p, const __grid_constant__ RopeInvFreqs inv) {
  pdl_prologue();
  constexpr int V = 16 / sizeof(T);
  __shared__ float rows[kRopeKvWarps][256];
  __shared__ float cs[128], sn[128];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t heads = p.H + 2 * p.Hkv, half = p.D / 2;
  const int64_t l = int64_t(blockIdx.x) % p.L, b = int64_t(blockIdx.x) / p.L;
  const int64_t start =
      p.rope.offsets ? load_int(p.rope.offsets, p.rope.offsets_dtype, b * p.rope.offsets_stride)
                     : p.rope.offset;
  const float pos = __fmul_rn(static_cast<float>(start + l), p.rope.scale);
  for (int64_t k = threadIdx.x; k < half; k += blockDim.x)
    rope_cos_sin<T>(p.rope, inv.v, inv.n, pos, k, cs[k], sn[k]);
  __syncthreads();
  const int64_t hd = int64_t(blockIdx.y) * kRopeKvWarps + warp;
  if (hd >= heads) return;  // whole warps; no block-wide barrier below
  const int64_t nvec = p.D / V;
  const T* src = static_cast<const T*>(p.qkv) + b * p.sb + l * p.sl + hd * p.D;
  T* dst;
  if (hd < p.H) {
    dst = static_cast<T*>(p.q_out) + ((b * p.H + hd) * p.L + l) * p.D;
  } else {
    const bool is_k = hd < p.H + p.Hkv;
    const int64_t kh = is_k ? hd - p.H : hd - p.H - p.Hkv;
    const int64_t col = load_int(p.column, p.column_dtype, 0) + l;
    if (col < 0 || col >= p.C) {
      if (lane == 0) record_fault(p.site, col, p.C);
      return;
    }
    dst = static_cast<T*>(is_k ? p.keys : p.values) + ((b * p.Hkv + kh) * p.C + col) * p.D;
    if (!is_k) {  // values: a copy
      for (int64_t c = lane; c < nvec; c += 32)
        *reinterpret_cast<uint4*>(dst + c * V) = load16(src + c * V);
      return;
    }
  }
  const T* nw = static_cast<const T*>(hd < p.H ? p.q_norm : p.k_norm);
  rope_norm_row<T>(src, nw, p.eps, p.add_unit_offset, p.weight_in_float32, p.rope.traditional, p.D,
                   cs, sn, rows[warp], dst, nullptr);
}

// ---- cos/sin tables (packed attention): one thread per (position, pair) ----

template <typename T>
__global__ void rope_table_kernel(const RopeArgs p, const __grid_constant__ RopeInvFreqs inv,
                                  int64_t first, int64_t n, float* cs, float* sn) {
  pdl_prologue();
  const int64_t half = p.D / 2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * half;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i % half;
    const float pos = __fmul_rn(static_cast<float>(first + i / half), p.scale);
    const float ang = __fmul_rn(pos, inv_freq(p, inv, k));
    double sd, cd;
    sincos(static_cast<double>(ang), &sd, &cd);
    cs[i] = round_through<T>(static_cast<float>(cd));
    sn[i] = round_through<T>(static_cast<float>(sd));
  }
}

}  // namespace

void launch_rope_table(Dtype t, const RopeArgs& a, const RopeInvFreqs& inv, int64_t first,
                       int64_t n, float* cs, float* sn, cudaStream_t s) {
  const int64_t work = n * (a.D / 2);
  if (work == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((work + 255) / 256, 4096));
  switch (t) {
    case Dtype::float16:
      launch_pdl(rope_table_kernel<__half>, blocks, 256, 0, s, a, inv, first, n, cs, sn);
      break;
    case Dtype::bfloat16:
      launch_pdl(rope_table_kernel<__nv_bfloat16>, blocks, 256, 0, s, a, inv, first, n, cs, sn);
      break;
    default:
      launch_pdl(rope_table_kernel<float>, blocks, 256, 0, s, a, inv, first, n, cs, sn);
      break;
  }
  check_launch("rope_table_kernel");
}

void launch_rope(Dtype t, const RopeArgs& a, const RopeInvFreqs& inv, cudaStream_t s) {
  if (a.n_rows == 0 || a.D == 0 || a.L == 0) return;
  const int64_t positions = a.nb * a.L;
  const int64_t G = a.rows_per_b / a.L;
  // Many positions: a block rotates up to 32 heads (every head of a q or q|k view, so each
  // position's cos/sin, computed in float64, is computed once); few rows (decode): one head per
  // block for parallelism. In between, as many heads a block as keep ~2048 blocks: a training
  // batch whose batch axis is folded into the heads (G = B x H = 256 at 512 positions) ran one
  // head a block and spent its time in float64 sincos (161 us for an 8 x 32 x 512 x 64 q on an
  // H100, 3.5% of the memory's rate; ncu, session 29).
  const int64_t hmax = G < 32 ? G : 32;
  int64_t hpb = positions >= 1024 ? hmax : positions * G / 2048;
  hpb = hpb < 1 ? 1 : (hpb > hmax ? hmax : hpb);
  if ((G + hpb - 1) / hpb > 65535) hpb = (G + 65534) / 65535;
  const int64_t work = a.dims / 2 + (a.D - a.dims);
  int64_t threads = (work + 31) / 32 * 32;
  threads = threads > 256 ? 256 : threads;
  const dim3 grid(
      static_cast<unsigned>(positions < (int64_t{1} << 30) ? positions : int64_t{1} << 30),
      static_cast<unsigned>((G + hpb - 1) / hpb));
  const unsigned block = static_cast<unsigned>(threads);
  dispatch_cuda_float(t, [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    if (a.traditional)
      launch_pdl(rope_kernel<T, A, true>, grid, block, 0, s, a, inv, hpb);
    else
      launch_pdl(rope_kernel<T, A, false>, grid, block, 0, s, a, inv, hpb);
  });
  check_launch("rope_kernel");
}

// ---- rope_kv_update over many positions (prefill, scoring, classification) ----
//
// The one-position-per-block kernel above is latency bound there: each small block computes
// the cos/sin table again for every group of heads and then moves four rows. Here a block of
// kRowsThreads owns P consecutive positions: it computes their cos/sin once (a float64 sincos
// a thread), then groups of LPR lanes (a row of D elements as LPR 16-byte chunks per lane, NV
// chunks each) normalise and rotate the P * heads rows, a rotation partner being the chunk
// LPR / 2 lanes away (NV 1) or the lane's other chunk (NV 2), so no row passes through shared
// memory. Values as the kernel above computes them (the norm's sum over the row's lanes in
// another order: within an output ulp).

constexpr int kRowsThreads = 256, kRowsMaxP = 16, kRowsUnroll = 4;

template <typename T, int LPR, int NV>
__global__ void __launch_bounds__(kRowsThreads)
    rope_kv_rows_kernel(const __grid_constant__ RopeKvArgs p,
                        const __grid_constant__ RopeInvFreqs inv, int P) {
  pdl_prologue();
  constexpr int V = 16 / sizeof(T);
  __shared__ float cs[kRowsMaxP][128], sn[kRowsMaxP][128];
  // Per position of the block: its batch row and column, found once here (64-bit divisions
  // per row and element made this kernel issue-bound: ~5x its bytes' time on the H200).
  __shared__ int64_t pos_b[kRowsMaxP], pos_l[kRowsMaxP];
  const int heads = static_cast<int>(p.H + 2 * p.Hkv), half = static_cast<int>(p.D / 2);
  const int64_t positions = p.B * p.L;
  const int64_t t0 = int64_t(blockIdx.x) * P;
  const int np = static_cast<int>(positions - t0 < P ? positions - t0 : P);
  if (static_cast<int>(threadIdx.x) < np) {
    const int64_t t = t0 + threadIdx.x;
    pos_b[threadIdx.x] = t / p.L;
    pos_l[threadIdx.x] = t % p.L;
  }
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < np * half; i += kRowsThreads) {
    const int pi = i / half, k = i - pi * half;
    const int64_t b = pos_b[pi], l = pos_l[pi];
    const int64_t start =
        p.rope.offsets ? load_int(p.rope.offsets, p.rope.offsets_dtype, b * p.rope.offsets_stride)
                       : p.rope.offset;
    const float pos = __fmul_rn(static_cast<float>(start + l), p.rope.scale);
    const float ang = __fmul_rn(pos, inv_freq(p.rope, inv, k));
    double sd, cd;
    sincos(static_cast<double>(ang), &sd, &cd);
    cs[pi][k] = round_through<T>(static_cast<float>(cd));
    sn[pi][k] = round_through<T>(static_cast<float>(sd));
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, sub = lane % LPR;
  const int group = static_cast<int>(threadIdx.x) / LPR, groups = kRowsThreads / LPR;
  // The lanes of a group as a shuffle mask (LPR divides 32).
  const unsigned mask = LPR == 32 ? 0xffffffffu : ((1u << LPR) - 1u) << ((lane / LPR) * LPR);
  const int64_t column = load_int(p.column, p.column_dtype, 0);
  const int rows = np * heads;  // at most kRowsMaxP * heads
  // The lane's chunks of the norm weights, read once.
  uint4 qn[NV], kn[NV];
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = sub + LPR * i;
    if (p.q_norm) qn[i] = load16(static_cast<const T*>(p.q_norm) + c * V);
    if (p.k_norm) kn[i] = load16(static_cast<const T*>(p.k_norm) + c * V);
  }
  // A group requests the chunks of kRowsUnroll rows before it works on the first, so the
  // rows' loads overlap. Trip counts are uniform within a group (the shuffles need all its
  // lanes).
  constexpr int U = kRowsUnroll;
  for (int r0 = group; r0 < rows; r0 += groups * U) {
    uint4 raw[U][NV];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int r = r0 + u * groups;
      if (r >= rows) break;
      const int pi = r / heads, hd = r - pi * heads;
      const T* src = static_cast<const T*>(p.qkv) + pos_b[pi] * p.sb + pos_l[pi] * p.sl + hd * p.D;
#pragma unroll
      for (int i = 0; i < NV; ++i) raw[u][i] = load16(src + (sub + LPR * i) * V);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int r = r0 + u * groups;
      if (r >= rows) break;
      const int pi = r / heads, hd = r - pi * heads;
      const int64_t b = pos_b[pi], l = pos_l[pi];
      T* dst;
      if (hd < p.H) {
        dst = static_cast<T*>(p.q_out) + ((b * p.H + hd) * p.L + l) * p.D;
      } else {
        const bool is_k = hd < p.H + p.Hkv;
        const int64_t kh = is_k ? hd - p.H : hd - p.H - p.Hkv;
        const int64_t col = column + l;
        if (col < 0 || col >= p.C) {
          if (sub == 0) record_fault(p.site, col, p.C);
          continue;
        }
        dst = static_cast<T*>(is_k ? p.keys : p.values) + ((b * p.Hkv + kh) * p.C + col) * p.D;
        if (!is_k) {  // values: a copy
#pragma unroll
          for (int i = 0; i < NV; ++i)
            *reinterpret_cast<uint4*>(dst + (sub + LPR * i) * V) = raw[u][i];
          continue;
        }
      }
      float v[NV][V];
      float ss = 0.0f;
#pragma unroll
      for (int i = 0; i < NV; ++i) {
        unpack16<T>(raw[u][i], v[i]);
#pragma unroll
        for (int j = 0; j < V; ++j) ss += v[i][j] * v[i][j];
      }
      const bool is_q = hd < p.H;
      if (is_q ? p.q_norm != nullptr : p.k_norm != nullptr) {
#pragma unroll
        for (int o = LPR / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(mask, ss, o);
        const float rr = 1.0f / sqrtf(ss / static_cast<float>(p.D) + p.eps);
#pragma unroll
        for (int i = 0; i < NV; ++i) {
          float w[V];
          unpack16<T>(is_q ? qn[i] : kn[i], w);
#pragma unroll
          for (int j = 0; j < V; ++j)
            v[i][j] = to_float(
                rms_value<T>(v[i][j], rr, true, w[j], p.add_unit_offset, p.weight_in_float32));
        }
      }
      // The partner values: pairs (2k, 2k + 1) sit in one chunk; pairs (k, k + half) in the
      // chunk LPR / 2 lanes away (NV 1) or in the lane's other chunk (NV 2).
      float w[NV][V];
#pragma unroll
      for (int i = 0; i < NV; ++i)
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if (p.rope.traditional)
            w[i][j] = v[i][j ^ 1];
          else if (NV == 2)
            w[i][j] = v[1 - i][j];
          else
            w[i][j] = __shfl_xor_sync(mask, v[i][j], LPR / 2);
        }
#pragma unroll
      for (int i = 0; i < NV; ++i) {
        const int64_t c = sub + LPR * i;
        float o[V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const int e = static_cast<int>(c) * V + j;
          int k;
          bool first;
          if (p.rope.traditional) {
            k = e / 2;
            first = (e & 1) == 0;
          } else {
            first = e < half;
            k = first ? e : e - half;
          }
          const float cc = cs[pi][k], sv = sn[pi][k];
          // first: x1 = v, x2 = partner; else x1 = partner, x2 = v (rope_element's formulas).
          const float other = first ? -w[i][j] : w[i][j];
          o[j] = round_through<T>(
              add_rn(round_through<T>(mul_rn(v[i][j], cc)), round_through<T>(mul_rn(other, sv))));
        }
        *reinterpret_cast<uint4*>(dst + c * V) = pack16<T>(o);
      }
    }
  }
}

/// Launches rope_kv_rows_kernel when D's chunks split into groups of 8, 16 or 32 lanes (one or
/// two chunks a lane); false otherwise.
template <typename T>
bool launch_rope_kv_rows(const RopeKvArgs& a, const RopeInvFreqs& inv, cudaStream_t s) {
  constexpr int64_t V = 16 / sizeof(T);
  const int64_t chunks = a.D / V, heads = a.H + 2 * a.Hkv, positions = a.B * a.L;
  const int P = static_cast<int>(std::clamp<int64_t>(128 / heads, 1, kRowsMaxP));
  const auto blocks = static_cast<unsigned>((positions + P - 1) / P);
  switch (chunks) {
    case 8:
      launch_pdl(rope_kv_rows_kernel<T, 8, 1>, blocks, kRowsThreads, 0, s, a, inv, P);
      return true;
    case 16:
      launch_pdl(rope_kv_rows_kernel<T, 16, 1>, blocks, kRowsThreads, 0, s, a, inv, P);
      return true;
    case 32:
      launch_pdl(rope_kv_rows_kernel<T, 32, 1>, blocks, kRowsThreads, 0, s, a, inv, P);
      return true;
    case 64:
      launch_pdl(rope_kv_rows_kernel<T, 32, 2>, blocks, kRowsThreads, 0, s, a, inv, P);
      return true;
    default:
      return false;
  }
}

void launch_rope_kv(Dtype t, const RopeKvArgs& a, const RopeInvFreqs& inv, cudaStream_t s) {
  const int64_t positions = a.B * a.L, heads = a.H + 2 * a.Hkv;
  if (positions == 0 || heads == 0) return;
  if (positions >= kRopeKvRowsMin) {
    bool done = false;
    if (t == Dtype::float16)
      done = launch_rope_kv_rows<__half>(a, inv, s);
    else if (t == Dtype::bfloat16)
      done = launch_rope_kv_rows<__nv_bfloat16>(a, inv, s);
    else
      done = launch_rope_kv_rows<float>(a, inv, s);
    if (done) return check_launch("rope_kv_rows_kernel");
  }
  const dim3 grid(static_cast<unsigned>(positions),
                  static_cast<unsigned>((heads + kRopeKvWarps - 1) / kRopeKvWarps));
  switch (t) {
    case Dtype::float16:
      launch_pdl(rope_kv_kernel<__half>, grid, 32 * kRopeKvWarps, 0, s, a, inv);
      break;
    case Dtype::bfloat16:
      launch_pdl(rope_kv_kernel<__nv_bfloat16>, grid, 32 * kRopeKvWarps, 0, s, a, inv);
      break;
    default:
      launch_pdl(rope_kv_kernel<float>, grid, 32 * kRopeKvWarps, 0, s, a, inv);
      break;
  }
  check_launch("rope_kv_kernel");
}

}  // namespace ingot::cu
