// CUDA kernels of AdamStep and SumSquares. Both take up to kGroup tensors a launch, described
// in the kernel's parameters; each block handles kChunk consecutive elements of one tensor
// (found from the group's block offsets). Adam: products, sums, quotients and the root with _rn
// intrinsics, so nothing contracts into an FMA and the results are the separate ops' bit for
// bit. Sum of squares: a partial sum per block in float64, written to scratch, then summed in a
// fixed order by one block (the same result on every run).
#include <algorithm>
#include <cstdint>

#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/math.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/fast_optim_kernels.h"

namespace ingot::cu {
namespace {

constexpr int kGroup = 24;  // tensors a launch (the parameter block stays under 4 KB)
constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int64_t kChunk = int64_t{kThreads} * kPerThread;

int64_t blocks_of(int64_t n) {
  return (n + kChunk - 1) / kChunk;
}

/// The group's tensor that block b belongs to (first[] holds the block offsets).
__device__ __forceinline__ int tensor_of(const int64_t* first, int count, int64_t b) {
  int i = 0;
  while (i + 1 < count && b >= first[i + 1]) ++i;
  return i;
}

struct AdamGroup {
  AdamTensor t[kGroup];
  int64_t first[kGroup + 1];
  int count;
  AdamScalars s;
};

template <typename P, typename G>
__device__ __forceinline__ void adam_chunk(const AdamTensor& t, const AdamScalars& s,
                                           int64_t begin) {
  const P* p = static_cast<const P*>(t.p);
  const G* g = static_cast<const G*>(t.g);
  const float scale = s.scale ? *s.scale : 1.0f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t i = begin + int64_t{k} * kThreads + threadIdx.x;
    if (i >= t.n) break;
    float gi = to_float(g[i]);
    if (s.scale) gi = round_through<G>(__fmul_rn(gi, scale));
    float pi = to_float(p[i]);
    if (s.decoupled)
      pi = __fmul_rn(pi, s.decay);
    else if (s.weight_decay != 0.0f)
      gi = __fadd_rn(gi, __fmul_rn(s.weight_decay, pi));
    const float m = __fadd_rn(__fmul_rn(s.beta1, t.m[i]), __fmul_rn(s.one_minus_beta1, gi));
    const float v =
        __fadd_rn(__fmul_rn(s.beta2, t.v[i]), __fmul_rn(s.one_minus_beta2, __fmul_rn(gi, gi)));
    const float dir =
        __fdiv_rn(__fdiv_rn(m, s.c1), __fadd_rn(__fsqrt_rn(__fdiv_rn(v, s.c2)), s.eps));
    static_cast<P*>(t.p_out)[i] = cast<P>(__fsub_rn(pi, __fmul_rn(s.lr, dir)));
    t.m_out[i] = m;
    t.v_out[i] = v;
  }
}

template <typename P>
__device__ __forceinline__ void adam_chunk_g(const AdamTensor& t, const AdamScalars& s,
                                             int64_t begin) {
  switch (t.g_dtype) {
    case Dtype::bfloat16:
      return adam_chunk<P, __nv_bfloat16>(t, s, begin);
    case Dtype::float16:
      return adam_chunk<P, __half>(t, s, begin);
    default:
      return adam_chunk<P, float>(t, s, begin);
  }
}

__global__ void __launch_bounds__(kThreads) adam_step_kernel(const AdamGroup grp) {
  pdl_prologue();
  const int ti = tensor_of(grp.first, grp.count, blockIdx.x);
  const AdamTensor& t = grp.t[ti];
  const int64_t begin = (int64_t{blockIdx.x} - grp.first[ti]) * kChunk;
  switch (t.p_dtype) {
    case Dtype::bfloat16:
      return adam_chunk_g<__nv_bfloat16>(t, grp.s, begin);
    case Dtype::float16:
      return adam_chunk_g<__half>(t, grp.s, begin);
    default:
      return adam_chunk_g<float>(t, grp.s, begin);
  }
}

struct SquaresGroup {
  SquaresInput x[kGroup];
  int64_t first[kGroup + 1];
  int count;
  double* partials;  // this group's first partial
};

template <typename T>
__device__ __forceinline__ double squares_chunk(const SquaresInput& in, int64_t begin) {
  const T* x = static_cast<const T*>(in.x);
  double s = 0.0;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t i = begin + int64_t{k} * kThreads + threadIdx.x;
    if (i >= in.n) break;
    const double v = to_float(x[i]);
    s += v * v;
  }
  return s;
}

__global__ void __launch_bounds__(kThreads) squares_kernel(const SquaresGroup grp) {
  pdl_prologue();
  __shared__ double smem[32];
  const int ti = tensor_of(grp.first, grp.count, blockIdx.x);
  const SquaresInput& in = grp.x[ti];
  const int64_t begin = (int64_t{blockIdx.x} - grp.first[ti]) * kChunk;
  double s;
  switch (in.dtype) {
    case Dtype::bfloat16:
      s = squares_chunk<__nv_bfloat16>(in, begin);
      break;
    case Dtype::float16:
      s = squares_chunk<__half>(in, begin);
      break;
    default:
      s = squares_chunk<float>(in, begin);
  }
  s = block_sum(s, smem);
  if (threadIdx.x == 0) grp.partials[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kThreads)
    squares_total_kernel(const double* partials, int64_t n, float* out) {
  pdl_prologue();
  __shared__ double smem[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += partials[i];
  s = block_sum(s, smem);
  if (threadIdx.x == 0) *out = static_cast<float>(s);
}

/// Copies items [at, at + kGroup) of `items` into a group's table, sets its block offsets and
/// count, and returns its blocks.
template <typename Item, typename Group>
int64_t fill_group(Group& grp, Item (&table)[kGroup], const Item* items, int at, int count) {
  grp.first[0] = 0;
  grp.count = 0;
  for (int k = 0; k < kGroup && at + k < count; ++k) {
    table[k] = items[at + k];
    grp.first[k + 1] = grp.first[k] + blocks_of(items[at + k].n);
    grp.count = k + 1;
  }
  return grp.first[grp.count];
}

}  // namespace

void launch_adam_step(const AdamTensor* tensors, int count, const AdamScalars& s,
                      cudaStream_t stream) {
  for (int at = 0; at < count; at += kGroup) {
    AdamGroup grp{};
    grp.s = s;
    const int64_t blocks = fill_group(grp, grp.t, tensors, at, count);
    if (blocks == 0) continue;
    launch_pdl(adam_step_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0, stream,
               grp);
    check_launch("adam_step_kernel");
  }
}

int64_t squares_partials(const SquaresInput* inputs, int count) {
  int64_t n = 0;
  for (int i = 0; i < count; ++i) n += blocks_of(inputs[i].n);
  return n;
}

void launch_sum_squares(const SquaresInput* inputs, int count, double* partials, float* out,
                        cudaStream_t stream) {
  int64_t done = 0;
  for (int at = 0; at < count; at += kGroup) {
    SquaresGroup grp{};
    const int64_t blocks = fill_group(grp, grp.x, inputs, at, count);
    if (blocks == 0) continue;
    grp.partials = partials + done;
    launch_pdl(squares_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0, stream, grp);
    check_launch("squares_kernel");
    done += blocks;
  }
  launch_pdl(squares_total_kernel, dim3(1), dim3(kThreads), 0, stream,
             static_cast<const double*>(partials), done, out);
  check_launch("squares_total_kernel");
}

}  // namespace ingot::cu
