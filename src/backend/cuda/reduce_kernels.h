// Launchers of the CUDA Reduce and ArgReduce kernels, the row plan shared by the reduction,
// softmax, scan and sort families (fmt-free: included by .cpp and .cu files), and, for nvcc
// only, device helpers those families share: group reductions, typed stores, vector loads.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cuda/device/layout.h"
#include "core/dtype.h"

namespace ingot::cu {

/// A reduction seen as rows: output (kept) positions, each reducing n_red elements. Index 0
/// of kept/red holds the input's strides; index 1 those of a row-major output of the input's
/// shape (only when planned with same_shape_out). Both layouts have at least one axis.
struct RowPlan {
  Layout kept[2];
  Layout red[2];
  int64_t n_out = 1;  // kept positions (row-major over the kept axes, in axis order)
  int64_t n_red = 1;  // elements per row
};

/// Plans rows over the sorted, non-negative `axes` of an array of `shape` and `strides`
/// (collapsing contiguous axes). Without same_shape_out the reduced axes are reordered with
/// the smallest stride innermost (their order is free); with it they keep axis order.
/// Defined in reduce.cpp; throws Unsupported beyond kMaxDims axes after collapsing.
RowPlan plan_rows(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                  const std::vector<int>& axes, bool same_shape_out);

/// Threads per block of the row kernels.
inline constexpr int kRowThreads = 256;

/// Blocks wanted in flight on a GPU of `sms` multiprocessors before rows are split.
inline int64_t target_blocks(int sms) {
  return 4 * static_cast<int64_t>(sms > 0 ? sms : 1);
}

/// Chunks to split each of n_out rows of n elements into so that the grid fills the GPU,
/// with at least `min_chunk` elements per chunk; 1 when the rows already fill it.
inline int row_splits(int64_t n_out, int64_t n, int sms, int64_t min_chunk, int64_t max_splits) {
  const int64_t t = target_blocks(sms);
  if (n_out >= t || n < 2 * min_chunk) return 1;
  int64_t s = (t + n_out - 1) / n_out;
  if (s > n / min_chunk) s = n / min_chunk;
  if (s > max_splits) s = max_splits;
  return s < 1 ? 1 : static_cast<int>(s);
}

/// Kind of a Reduce (mirrors ingot::ReduceType, which nvcc cannot see).
enum class RedKind : int { sum, prod, max, min, all, any };

/// How a Reduce runs: the kernel, and into how many chunks each row's reduced range is split
/// (splits > 1: per-chunk partials go to scratch, then a pass combines them in order).
struct ReduceConfig {
  enum class Kernel { fill, warp_rows, block_rows, cols } kernel = Kernel::warp_rows;
  int splits = 1;
  size_t scratch_bytes = 0;
};
/// Chooses the kernel for plan `p` (planned without same_shape_out) on `sms` multiprocessors.
ReduceConfig reduce_config(const RowPlan& p, int sms);

/// Reduces `in` (element type in_type, strided as p) into the row-major `out` of out_type;
/// `scratch` holds cfg.scratch_bytes bytes (may be null when 0).
void launch_reduce(RedKind kind, const void* in, Dtype in_type, const RowPlan& p, void* out,
                   Dtype out_type, const ReduceConfig& cfg, void* scratch, cudaStream_t s);

/// Chunks each row of an ArgReduce is split into (1: none): few long contiguous rows (a decode
/// step's argmax over the vocabulary) are spread over the GPU, their chunks' bests combined by
/// a second kernel.
int arg_reduce_splits(const RowPlan& p, int sms);
/// Scratch bytes of an ArgReduce split into `splits` chunks a row (0 when 1).
size_t arg_reduce_scratch(const RowPlan& p, int splits);

/// argmax (is_max) or argmin along the single reduced axis of p: first index of the extreme,
/// NaN counting as the extreme; uint32 indices into row-major `out`. With splits > 1 (from
/// arg_reduce_splits) `scratch` holds arg_reduce_scratch(p, splits) bytes.
void launch_arg_reduce(bool is_max, const void* in, Dtype in_type, const RowPlan& p, uint32_t* out,
                       int splits, void* scratch, cudaStream_t s);

}  // namespace ingot::cu

#ifdef __CUDACC__
#include <type_traits>

#include "backend/cuda/device/types.cuh"

namespace ingot::cu {

/// Value of an element as the reductions compute with it: float for 16-bit floats.
template <typename T>
using load_t = std::conditional_t<is_half_v<T>, float, T>;

template <typename T>
__device__ __forceinline__ load_t<T> load_val(T v) {
  if constexpr (is_half_v<T>)
    return to_float(v);
  else
    return v;
}

/// Shuffles of the scalar accumulator types (overloaded for pair states where needed).
template <typename A>
__device__ __forceinline__ A shfl_xor(A v, int o) {
  return __shfl_xor_sync(0xffffffffu, v, o);
}

/// Reduces over the 32 lanes of a warp with `f` (a fixed tree: deterministic); all lanes get it.
template <typename A, typename F>
__device__ __forceinline__ A warp_reduce(A v, F f) {
  for (int o = 16; o > 0; o >>= 1) v = f(v, shfl_xor(v, o));
  return v;
}

/// Reduces over the block (1-D, a multiple of 32 threads) with `f`; every thread gets the
/// result. `smem` holds 32 values. Contains __syncthreads: call from all threads.
template <typename A, typename F>
__device__ __forceinline__ A block_reduce(A v, F f, A* smem) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, f);
  __syncthreads();  // earlier readers of smem are done
  if (lane == 0) smem[w] = v;
  __syncthreads();
  A r = smem[0];
  for (int i = 1; i < nw; ++i) r = f(r, smem[i]);
  return r;
}

/// Converts v to D as the CPU backend's cast_value does (double reaches 16-bit floats
/// through float, as there).
template <typename D, typename S>
__device__ __forceinline__ D conv(S v) {
  if constexpr (is_half_v<D> && std::is_same_v<S, double>)
    return cast<D>(static_cast<float>(v));
  else
    return cast<D>(v);
}

/// out[i] = v converted to the run-time dtype od (one uniform branch per store).
template <typename S>
__device__ __forceinline__ void store_as(void* out, int64_t i, Dtype od, S v) {
  switch (od) {
    case Dtype::bool_:
      static_cast<bool*>(out)[i] = conv<bool>(v);
      break;
    case Dtype::uint8:
      static_cast<uint8_t*>(out)[i] = conv<uint8_t>(v);
      break;
    case Dtype::int8:
      static_cast<int8_t*>(out)[i] = conv<int8_t>(v);
      break;
    case Dtype::int32:
      static_cast<int32_t*>(out)[i] = conv<int32_t>(v);
      break;
    case Dtype::uint32:
      static_cast<uint32_t*>(out)[i] = conv<uint32_t>(v);
      break;
    case Dtype::int64:
      static_cast<int64_t*>(out)[i] = conv<int64_t>(v);
      break;
    case Dtype::float16:
      static_cast<__half*>(out)[i] = conv<__half>(v);
      break;
    case Dtype::bfloat16:
      static_cast<__nv_bfloat16*>(out)[i] = conv<__nv_bfloat16>(v);
      break;
    case Dtype::float32:
      static_cast<float*>(out)[i] = conv<float>(v);
      break;
    case Dtype::float64:
      static_cast<double*>(out)[i] = conv<double>(v);
      break;
  }
}

/// Calls f(value, j) for the elements j in [b, e) of the contiguous row p that thread t of nt
/// owns, each thread in increasing j; the 16-byte-aligned body is read with vector loads.
template <typename T, typename F>
__device__ __forceinline__ void for_each_contig(const T* p, int64_t b, int64_t e, int t, int nt,
                                                F&& f) {
  constexpr int V = 16 / sizeof(T);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p + b);
  int64_t head = static_cast<int64_t>(((16 - (addr & 15)) & 15) / sizeof(T));
  if (addr % sizeof(T) != 0 || head > e - b) head = e - b;
  for (int64_t j = b + t; j < b + head; j += nt) f(p[j], j);
  const int64_t vb = b + head, nvec = (e - vb) / V;
  const uint4* vp = reinterpret_cast<const uint4*>(p + vb);
  // kUnroll independent loads in flight per thread before any use: row loops are otherwise
  // bound by memory latency, not bandwidth.
  constexpr int kUnroll = 4;
  int64_t v = t;
  for (; v + (kUnroll - 1) * int64_t(nt) < nvec; v += kUnroll * int64_t(nt)) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) raw[u] = __ldg(vp + v + u * int64_t(nt));
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const T* vals = reinterpret_cast<const T*>(&raw[u]);
      const int64_t j0 = vb + (v + u * int64_t(nt)) * V;
#pragma unroll
      for (int k = 0; k < V; ++k) f(vals[k], j0 + k);
    }
  }
  for (; v < nvec; v += nt) {
    const uint4 raw = __ldg(vp + v);
    const T* vals = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < V; ++k) f(vals[k], vb + v * V + k);
  }
  for (int64_t j = vb + nvec * V + t; j < e; j += nt) f(p[j], j);
}

/// Offset of element j of a row whose reduced layout is l (fast for one axis).
__device__ __forceinline__ int64_t red_offset(int64_t j, const Layout& l) {
  if (l.ndim == 1) return j * l.strides[0];
  int64_t off = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const int64_t n = l.shape[d];
    off += (j % n) * l.strides[d];
    j /= n;
  }
  return off;
}

}  // namespace ingot::cu
#endif  // __CUDACC__
