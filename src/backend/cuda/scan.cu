// CUDA kernels of Scan: blocks walk rows in shared-memory tiles with a carry (split rows start
// from the ordered totals of earlier chunks), or one thread per row along a strided axis.
#include <cuda_runtime.h>

#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/reduce_kernels.h"
#include "backend/cuda/scan_kernels.h"

namespace ingot::cu {

namespace {

// A tile is kRowThreads * kItems elements staged through shared memory (coalesced both ways);
// each thread scans kItems consecutive ones and a block scan combines the threads.
constexpr int kItems = 4;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

/// Accumulator of a scan over T: double for double, float for the other floats, wrapping
/// 64-bit for integers.
template <typename T>
using scan_acc_t = std::conditional_t<std::is_same_v<T, double>, double,
                                      std::conditional_t<is_float_v<T>, float, unsigned long long>>;

template <typename T, bool kProd>
struct ScanOp {
  using A = scan_acc_t<T>;
  __device__ static A id() { return kProd ? A(1) : A(0); }
  __device__ static A load(T v) {
    if constexpr (std::is_same_v<A, unsigned long long>)
      return static_cast<unsigned long long>(static_cast<long long>(v));
    else
      return static_cast<A>(load_val(v));
  }
  __device__ A operator()(A a, A b) const { return kProd ? a * b : a + b; }
  /// Stored value (integers as signed 64-bit, as the CPU's store type).
  __device__ static auto out(A a) {
    if constexpr (std::is_same_v<A, unsigned long long>)
      return static_cast<long long>(a);
    else
      return a;
  }
};

/// Exclusive scan of one value per thread over the block (kRowThreads threads); `total` gets
/// the combination of all. `wsum` holds 32 values; the caller syncs before reusing it.
template <typename A, typename F>
__device__ __forceinline__ A block_excl_scan(A v, F f, A id, A* wsum, A& total) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  A inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const A y = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc = f(y, inc);
  }
  A ex = __shfl_up_sync(0xffffffffu, inc, 1);
  if (lane == 0) ex = id;
  if (lane == 31) wsum[w] = inc;
  __syncthreads();
  A wp = id, tot = id;
  for (int i = 0; i < nw; ++i) {
    if (i < w) wp = f(wp, wsum[i]);
    tot = f(tot, wsum[i]);
  }
  total = tot;
  return f(wp, ex);
}

/// Physical index of logical position k (reverse scans walk the axis backwards).
__device__ __forceinline__ int64_t phys(int64_t k, int64_t n, bool reverse) {
  return reverse ? n - 1 - k : k;
}

/// Split rows, first pass: totals[o * splits + s] = combination of chunk s of row o.
template <typename T, bool kProd>
__global__ void __launch_bounds__(kRowThreads)
    scan_totals(const T* x, RowPlan p, int splits, bool reverse, scan_acc_t<T>* totals) {
  using Op = ScanOp<T, kProd>;
  using A = scan_acc_t<T>;
  __shared__ A smem[32];
  const int64_t n = p.n_red, sx = p.red[0].strides[0];
  for (int64_t u = blockIdx.x; u < p.n_out * splits; u += gridDim.x) {
    const int64_t o = u / splits, s = u % splits;
    const int64_t b = n * s / splits, e = n * (s + 1) / splits;
    const T* row = x + elem_offset(o, p.kept[0]);
    A acc = Op::id();
    for (int64_t k = b + threadIdx.x; k < e; k += blockDim.x)
      acc = Op{}(acc, Op::load(row[phys(k, n, reverse) * sx]));
    acc = block_reduce(acc, Op{}, smem);
    if (threadIdx.x == 0) totals[u] = acc;
  }
}

template <typename T, bool kProd>
__global__ void __launch_bounds__(kRowThreads)
    scan_rows(const T* x, RowPlan p, int splits, bool reverse, bool inclusive,
              const scan_acc_t<T>* totals, void* out, Dtype od) {
  using Op = ScanOp<T, kProd>;
  using A = scan_acc_t<T>;
  constexpr int kTile = kRowThreads * kItems;
  __shared__ A tile[kTile];
  __shared__ A wsum[32];
  const int t = threadIdx.x;
  const int64_t n = p.n_red, sx = p.red[0].strides[0], so = p.red[1].strides[0];
  for (int64_t u = blockIdx.x; u < p.n_out * splits; u += gridDim.x) {
    const int64_t o = u / splits, s = u % splits;
    const int64_t b = n * s / splits, e = n * (s + 1) / splits;
    const T* row = x + elem_offset(o, p.kept[0]);
    const int64_t obase = elem_offset(o, p.kept[1]);
    A carry = Op::id();
    for (int64_t q = 0; q < s; ++q) carry = Op{}(carry, totals[o * splits + q]);
    for (int64_t tb = b; tb < e; tb += kTile) {
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int64_t lk = tb + k * kRowThreads + t;
        tile[k * kRowThreads + t] = lk < e ? Op::load(row[phys(lk, n, reverse) * sx]) : Op::id();
      }
      __syncthreads();
      A loc[kItems];
      A tot = Op::id();
#pragma unroll
      for (int k = 0; k < kItems; ++k) loc[k] = tile[t * kItems + k], tot = Op{}(tot, loc[k]);
      A tile_total;
      A run = Op{}(carry, block_excl_scan(tot, Op{}, Op::id(), wsum, tile_total));
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        if (inclusive) {
          run = Op{}(run, loc[k]);
          tile[t * kItems + k] = run;
        } else {
          tile[t * kItems + k] = run;
          run = Op{}(run, loc[k]);
        }
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int64_t lk = tb + k * kRowThreads + t;
        if (lk < e)
          store_as(out, obase + phys(lk, n, reverse) * so, od, Op::out(tile[k * kRowThreads + t]));
      }
      carry = Op{}(carry, tile_total);
      __syncthreads();  // tile and wsum are reused by the next tile
    }
  }
}

/// One thread per row, sequential along the axis (the CPU's order: identical float results).
template <typename T, bool kProd>
__global__ void scan_cols(const T* x, RowPlan p, bool reverse, bool inclusive, void* out,
                          Dtype od) {
  using Op = ScanOp<T, kProd>;
  const int64_t n = p.n_red, sx = p.red[0].strides[0], so = p.red[1].strides[0];
  INGOT_CUDA_KERNEL_LOOP(o, p.n_out) {
    const T* row = x + elem_offset(o, p.kept[0]);
    const int64_t obase = elem_offset(o, p.kept[1]);
    auto acc = Op::id();
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = phys(k, n, reverse);
      const auto prev = acc;
      acc = Op{}(acc, Op::load(row[i * sx]));
      store_as(out, obase + i * so, od, Op::out(inclusive ? acc : prev));
    }
  }
}

template <typename T, bool kProd>
void run_scan(bool reverse, bool inclusive, const T* x, const RowPlan& p, void* out, Dtype od,
              const ScanConfig& cfg, void* scratch, cudaStream_t s) {
  using A = scan_acc_t<T>;
  if (cfg.cols) {
    scan_cols<T, kProd><<<grid_for(p.n_out, 128), 128, 0, s>>>(x, p, reverse, inclusive, out, od);
    return check_launch("scan_cols");
  }
  A* totals = static_cast<A*>(scratch);
  int64_t blocks = p.n_out * cfg.splits;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  if (cfg.splits > 1) {
    scan_totals<T, kProd>
        <<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(x, p, cfg.splits, reverse, totals);
    check_launch("scan_totals");
  }
  scan_rows<T, kProd><<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(
      x, p, cfg.splits, reverse, inclusive, totals, out, od);
  check_launch("scan_rows");
}

}  // namespace

ScanConfig scan_config(const RowPlan& p, int sms) {
  ScanConfig c;
  const Layout& red = p.red[0];
  const Layout& kept = p.kept[0];
  if (red.strides[0] != 1 && red.shape[0] > 1 && kept.strides[kept.ndim - 1] == 1 &&
      p.n_out >= 512) {
    c.cols = true;
    return c;
  }
  c.splits = row_splits(p.n_out, p.n_red, sms, 4096, 1024);
  if (c.splits > 1) c.scratch_bytes = static_cast<size_t>(c.splits) * p.n_out * 8;
  return c;
}

void launch_scan(bool prod, bool reverse, bool inclusive, const void* in, Dtype in_type,
                 const RowPlan& p, void* out, Dtype out_type, const ScanConfig& cfg, void* scratch,
                 cudaStream_t s) {
  if (p.n_out == 0 || p.n_red == 0) return;
  dispatch_cuda_dtype(in_type, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(in);
    if (prod)
      run_scan<T, true>(reverse, inclusive, x, p, out, out_type, cfg, scratch, s);
    else
      run_scan<T, false>(reverse, inclusive, x, p, out, out_type, cfg, scratch, s);
  });
}

}  // namespace ingot::cu
