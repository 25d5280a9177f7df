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
#include "backend/cuda/device/types.cuh"
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

}  // namespace ingot::cu
