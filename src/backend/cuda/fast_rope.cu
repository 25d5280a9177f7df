// CUDA kernel of Rope. A block owns one position (batch row, l) and a group of heads: each
// thread computes cos/sin of its pairs once and rotates them in every head of the group.
// Angles are float32 products exactly as on the CPU; cos/sin are evaluated in double and
// rounded to float (the correctly rounded value in all but vanishingly rare cases, which is
// what the CPU's cosf/sinf return too); 16-bit inputs round where Hugging Face's bf16 code
// does (backend/cpu/fast_rope.cpp).
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

namespace ingot::cu {
namespace {

__device__ __forceinline__ int64_t load_int(const void* p, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::int8:
      return static_cast<const int8_t*>(p)[i];
    case Dtype::uint8:
      return static_cast<const uint8_t*>(p)[i];
    case Dtype::uint32:
      return static_cast<const uint32_t*>(p)[i];
    case Dtype::int64:
      return static_cast<const int64_t*>(p)[i];
    default:
      return static_cast<const int32_t*>(p)[i];
  }
}

__device__ __forceinline__ float load_float(const void* p, Dtype t, int64_t i) {
  switch (t) {
    case Dtype::float16:
      return to_float(static_cast<const __half*>(p)[i]);
    case Dtype::bfloat16:
      return to_float(static_cast<const __nv_bfloat16*>(p)[i]);
    case Dtype::float64:
      return static_cast<float>(static_cast<const double*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

/// Inverse frequency of pair k.
__device__ __forceinline__ float inv_freq(const RopeArgs& p, const RopeInvFreqs& inv, int64_t k) {
  if (p.freqs) return load_float(p.freqs, p.freqs_dtype, k * p.freqs_stride);
  if (k < inv.n) return inv.v[k];
  const float e = __fdiv_rn(static_cast<float>(2 * k), static_cast<float>(p.dims));
  return __fdiv_rn(1.0f,
                   static_cast<float>(pow(static_cast<double>(p.base), static_cast<double>(e))));
}

// Work item k of a row: k < half rotates pair k, the rest copy feature dims + (k - half)
// (the unrotated tail of partial rotary). Elements are read and written by the same thread,
// so out may alias x (a donated buffer).
template <typename T, typename A, bool Trad>
__global__ void rope_kernel(RopeArgs p, RopeInvFreqs inv, int64_t heads_per_block) {
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
        for (int64_t g = g0; g < g1; ++g) {
          const int64_t r = bb * p.rows_per_b + g * p.L + l;
          const T* xr = x + elem_offset(r, p.rows);
          const A x1 = to_acc<A>(xr[i1 * p.sx]), x2 = to_acc<A>(xr[i2 * p.sx]);
          const A o1 = round_through<T>(
              add_rn(round_through<T>(mul_rn(x1, c)), round_through<T>(mul_rn(-x2, s))));
          const A o2 = round_through<T>(
              add_rn(round_through<T>(mul_rn(x2, c)), round_through<T>(mul_rn(x1, s))));
          out[r * p.D + i1] = cast<T>(o1);
          out[r * p.D + i2] = cast<T>(o2);
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

/// Rotates element e of a row held (as the dtype's values, in float) in buf.
template <typename T>
__device__ __forceinline__ float rope_element(bool traditional, int64_t half, const float* buf,
                                              const float* cs, const float* sn, int64_t e) {
  int64_t k, i1, i2;
  if (traditional) {
    k = e / 2;
    i1 = 2 * k;
    i2 = i1 + 1;
  } else {
    k = e < half ? e : e - half;
    i1 = k;
    i2 = k + half;
  }
  const float c = cs[k], s = sn[k];
  const float x1 = buf[i1], x2 = buf[i2];
  if (e == i1)
    return round_through<T>(
        add_rn(round_through<T>(mul_rn(x1, c)), round_through<T>(mul_rn(-x2, s))));
  return round_through<T>(add_rn(round_through<T>(mul_rn(x2, c)), round_through<T>(mul_rn(x1, s))));
}

template <typename T>
__global__ void __launch_bounds__(32 * kRopeKvWarps)
    rope_kv_kernel(RopeKvArgs p, RopeInvFreqs inv) {
  pdl_prologue();
  constexpr int V = 16 / sizeof(T);
  constexpr int NV = 256 / V > 32 ? 2 : 1;  // 16-byte vectors a lane holds (D <= 256)
  __shared__ float rows[kRopeKvWarps][256];
  __shared__ float cs[128], sn[128];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t heads = p.H + 2 * p.Hkv, half = p.D / 2;
  const int64_t l = int64_t(blockIdx.x) % p.L, b = int64_t(blockIdx.x) / p.L;
  const int64_t start =
      p.rope.offsets ? load_int(p.rope.offsets, p.rope.offsets_dtype, b * p.rope.offsets_stride)
                     : p.rope.offset;
  const float pos = __fmul_rn(static_cast<float>(start + l), p.rope.scale);
  for (int64_t k = threadIdx.x; k < half; k += blockDim.x) {
    const float ang = __fmul_rn(pos, inv_freq(p.rope, inv, k));
    double sd, cd;
    sincos(static_cast<double>(ang), &sd, &cd);
    cs[k] = round_through<T>(static_cast<float>(cd));
    sn[k] = round_through<T>(static_cast<float>(sd));
  }
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
  float vals[NV][V];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < nvec) {
      unpack16<T>(load16(src + c * V), vals[i]);
#pragma unroll
      for (int j = 0; j < V; ++j) ss += vals[i][j] * vals[i][j];
    }
  }
  const void* nw = hd < p.H ? p.q_norm : p.k_norm;
  float* buf = rows[warp];
  float r = 0.0f;
  if (nw) {
    ss = warp_sum(ss);
    r = 1.0f / sqrtf(ss / static_cast<float>(p.D) + p.eps);
  }
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < nvec) {
      float w[V];
      if (nw) unpack16<T>(load16(static_cast<const T*>(nw) + c * V), w);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (nw)
          vals[i][j] = to_float(
              rms_value<T>(vals[i][j], r, true, w[j], p.add_unit_offset, p.weight_in_float32));
        buf[c * V + j] = vals[i][j];
      }
    }
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < nvec) {
      float o[V];
#pragma unroll
      for (int j = 0; j < V; ++j)
        o[j] = rope_element<T>(p.rope.traditional, half, buf, cs, sn, c * V + j);
      *reinterpret_cast<uint4*>(dst + c * V) = pack16<T>(o);
    }
  }
}

}  // namespace

void launch_rope(Dtype t, const RopeArgs& a, const RopeInvFreqs& inv, cudaStream_t s) {
  if (a.n_rows == 0 || a.D == 0 || a.L == 0) return;
  const int64_t positions = a.nb * a.L;
  const int64_t G = a.rows_per_b / a.L;
  // Many positions: a block rotates up to 32 heads (every head of a q or q|k view, so each
  // position's cos/sin, computed in float64, is computed once); few (decode): one head per
  // block for parallelism.
  int64_t hpb = positions >= 1024 ? (G < 32 ? G : 32) : 1;
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

void launch_rope_kv(Dtype t, const RopeKvArgs& a, const RopeInvFreqs& inv, cudaStream_t s) {
  const int64_t positions = a.B * a.L, heads = a.H + 2 * a.Hkv;
  if (positions == 0 || heads == 0) return;
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
