// CUDA kernels of Reduce and ArgReduce: a warp or block per row (vector loads), 32 columns
// per block when kept elements are contiguous; long reductions split into chunks whose
// partials a second pass combines in a fixed order (deterministic: no float atomics).
#include <cuda_runtime.h>

#include <limits>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/launch.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/reduce_kernels.h"

namespace ingot::cu {

namespace {

constexpr int kColThreadsY = 8;  // threads down each column of a cols block (x: 32 outputs)
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

template <typename T>
inline constexpr bool kFloat = is_float_v<T>;

/// Float accumulator of T: double for double, float otherwise.
template <typename T>
using facc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// Integers of at most 32 bits widened to a shuffle-able type (same values).
template <typename T>
using wide_t = std::conditional_t<
    kFloat<T>, facc_t<T>,
    std::conditional_t<std::is_same_v<T, int64_t>, long long,
                       std::conditional_t<std::is_same_v<T, uint32_t> || std::is_same_v<T, uint8_t>,
                                          unsigned, int>>>;

template <typename T, RedKind K>
struct Op;

// Sums and products: float (double) for floats, wrapping 64-bit for integers, as the CPU.
template <typename T, bool kProd>
struct ArithOp {
  using Acc = std::conditional_t<kFloat<T>, facc_t<T>, unsigned long long>;
  using Out = std::conditional_t<kFloat<T>, Acc, long long>;
  __device__ static Acc init() { return kProd ? Acc(1) : Acc(0); }
  __device__ static Acc step(Acc a, T x) {
    Acc v;
    if constexpr (kFloat<T>)
      v = static_cast<Acc>(load_val(x));
    else
      v = static_cast<unsigned long long>(static_cast<long long>(x));
    return kProd ? a * v : a + v;
  }
  __device__ static Acc merge(Acc a, Acc b) { return kProd ? a * b : a + b; }
  __device__ static Out out(Acc a) { return static_cast<Out>(a); }
};
template <typename T>
struct Op<T, RedKind::sum> : ArithOp<T, false> {};
template <typename T>
struct Op<T, RedKind::prod> : ArithOp<T, true> {};

// Max and min: NaN sticks (any NaN gives NaN), as the CPU's ((x > a) | (x != x)) ? x : a.
template <typename T, bool kMax>
struct ExtOp {
  using Acc = wide_t<T>;
  using Out = Acc;
  __device__ static Acc init() {
    if constexpr (kFloat<T>)
      return kMax ? -std::numeric_limits<Acc>::infinity() : std::numeric_limits<Acc>::infinity();
    else
      return static_cast<Acc>(kMax ? std::numeric_limits<T>::lowest()
                                   : std::numeric_limits<T>::max());
  }
  __device__ static Acc merge(Acc a, Acc v) {
    if constexpr (kFloat<T>)
      return ((kMax ? v > a : v < a) || v != v) ? v : a;
    else
      return (kMax ? v > a : v < a) ? v : a;
  }
  __device__ static Acc step(Acc a, T x) { return merge(a, static_cast<Acc>(load_val(x))); }
  __device__ static Out out(Acc a) { return a; }
};
template <typename T>
struct Op<T, RedKind::max> : ExtOp<T, true> {};
template <typename T>
struct Op<T, RedKind::min> : ExtOp<T, false> {};

template <typename T, bool kAll>
struct BoolOp {
  using Acc = int;
  using Out = int;
  __device__ static Acc init() { return kAll ? 1 : 0; }
  __device__ static Acc step(Acc a, T x) {
    const int v = load_val(x) != load_t<T>(0);
    return kAll ? (a & v) : (a | v);
  }
  __device__ static Acc merge(Acc a, Acc b) { return kAll ? (a & b) : (a | b); }
  __device__ static Out out(Acc a) { return a; }
};
template <typename T>
struct Op<T, RedKind::all> : BoolOp<T, true> {};
template <typename T>
struct Op<T, RedKind::any> : BoolOp<T, false> {};

template <typename O>
struct Merge {
  __device__ typename O::Acc operator()(typename O::Acc a, typename O::Acc b) const {
    return O::merge(a, b);
  }
};

/// Accumulates the elements [b, e) of one row that thread t of nt owns.
template <typename T, typename O>
__device__ __forceinline__ typename O::Acc accumulate_row(const T* row, const Layout& red,
                                                          int64_t b, int64_t e, int t, int nt) {
  typename O::Acc acc = O::init();
  if (red.ndim == 1 && red.strides[0] == 1) {
    for_each_contig(row, b, e, t, nt, [&](T v, int64_t) { acc = O::step(acc, v); });
  } else if (red.ndim == 1) {
    const int64_t st = red.strides[0];
    for (int64_t j = b + t; j < e; j += nt) acc = O::step(acc, row[j * st]);
  } else {
    for (int64_t j = b + t; j < e; j += nt) acc = O::step(acc, row[red_offset(j, red)]);
  }
  return acc;
}

/// One warp per output row (kRowThreads / 32 rows per block); no splits.
template <typename T, typename O>
__global__ void __launch_bounds__(kRowThreads)
    reduce_warp_rows(const T* x, Layout kept, Layout red, int64_t n_out, int64_t n_red, void* out,
                     Dtype od) {
  const int lane = threadIdx.x & 31;
  constexpr int kRows = kRowThreads / 32;
  for (int64_t o = int64_t(blockIdx.x) * kRows + (threadIdx.x >> 5); o < n_out;
       o += int64_t(gridDim.x) * kRows) {
    const T* row = x + elem_offset(o, kept);
    auto acc = warp_reduce(accumulate_row<T, O>(row, red, 0, n_red, lane, 32), Merge<O>{});
    if (lane == 0) store_as(out, o, od, O::out(acc));
  }
}

/// One block per (output row, chunk); with splits > 1 the chunk's partial goes to
/// partial[chunk * n_out + row].
template <typename T, typename O>
__global__ void __launch_bounds__(kRowThreads)
    reduce_block_rows(const T* x, Layout kept, Layout red, int64_t n_out, int64_t n_red, int splits,
                      void* out, Dtype od, typename O::Acc* partial) {
  __shared__ typename O::Acc smem[32];
  for (int64_t u = blockIdx.x; u < n_out * splits; u += gridDim.x) {
    const int64_t o = u / splits, s = u % splits;
    const int64_t b = n_red * s / splits, e = n_red * (s + 1) / splits;
    const T* row = x + elem_offset(o, kept);
    auto acc = accumulate_row<T, O>(row, red, b, e, threadIdx.x, blockDim.x);
    acc = block_reduce(acc, Merge<O>{}, smem);
    if (threadIdx.x == 0) {
      if (splits == 1)
        store_as(out, o, od, O::out(acc));
      else
        partial[s * n_out + o] = acc;
    }
  }
}

/// 32 adjacent outputs per block (threadIdx.x & 31), 8 threads down each column; blockIdx.y
/// selects the chunk of the reduced range when split.
template <typename T, typename O>
__global__ void __launch_bounds__(32 * kColThreadsY)
    reduce_cols(const T* x, Layout kept, Layout red, int64_t n_out, int64_t n_red, int splits,
                void* out, Dtype od, typename O::Acc* partial) {
  using Acc = typename O::Acc;
  __shared__ Acc sm[kColThreadsY][33];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t s = blockIdx.y;
  const int64_t b = n_red * s / splits, e = n_red * (s + 1) / splits;
  for (int64_t tile = blockIdx.x; tile * 32 < n_out; tile += gridDim.x) {
    const int64_t o = tile * 32 + tx;
    Acc acc = O::init();
    if (o < n_out) {
      const T* base = x + elem_offset(o, kept);
      if (red.ndim == 1) {
        const int64_t st = red.strides[0];
#pragma unroll 4
        for (int64_t j = b + ty; j < e; j += kColThreadsY) acc = O::step(acc, base[j * st]);
      } else {
        for (int64_t j = b + ty; j < e; j += kColThreadsY)
          acc = O::step(acc, base[red_offset(j, red)]);
      }
    }
    __syncthreads();  // the previous tile's readers of sm are done
    sm[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && o < n_out) {
      for (int i = 1; i < kColThreadsY; ++i) acc = O::merge(acc, sm[i][tx]);
      if (splits == 1)
        store_as(out, o, od, O::out(acc));
      else
        partial[s * n_out + o] = acc;
    }
  }
}

/// Combines the partials of each output in chunk order.
template <typename O>
__global__ void reduce_finish(const typename O::Acc* partial, int64_t n_out, int splits, void* out,
                              Dtype od) {
  INGOT_CUDA_KERNEL_LOOP(o, n_out) {
    auto acc = partial[o];
    for (int s = 1; s < splits; ++s) acc = O::merge(acc, partial[s * n_out + o]);
    store_as(out, o, od, O::out(acc));
  }
}

/// Empty reductions: every output is the identity (as the CPU; max/min of empty axes are
/// rejected by the ops).
template <typename O>
__global__ void reduce_fill(int64_t n_out, void* out, Dtype od) {
  INGOT_CUDA_KERNEL_LOOP(o, n_out) {
    store_as(out, o, od, O::out(O::init()));
  }
}

template <typename T, typename O>
void run_reduce(const T* x, const RowPlan& p, void* out, Dtype od, const ReduceConfig& cfg,
                void* scratch, cudaStream_t s) {
  using Acc = typename O::Acc;
  Acc* partial = static_cast<Acc*>(scratch);
  const int64_t n_out = p.n_out, n_red = p.n_red;
  switch (cfg.kernel) {
    case ReduceConfig::Kernel::fill:
      reduce_fill<O><<<grid_for(n_out, 256), 256, 0, s>>>(n_out, out, od);
      return check_launch("reduce_fill");
    case ReduceConfig::Kernel::warp_rows: {
      int64_t blocks = (n_out + kRowThreads / 32 - 1) / (kRowThreads / 32);
      if (blocks > kMaxBlocks) blocks = kMaxBlocks;
      reduce_warp_rows<T, O><<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(
          x, p.kept[0], p.red[0], n_out, n_red, out, od);
      check_launch("reduce_warp_rows");
      break;
    }
    case ReduceConfig::Kernel::block_rows: {
      int64_t blocks = n_out * cfg.splits;
      if (blocks > kMaxBlocks) blocks = kMaxBlocks;
      reduce_block_rows<T, O><<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(
          x, p.kept[0], p.red[0], n_out, n_red, cfg.splits, out, od, partial);
      check_launch("reduce_block_rows");
      break;
    }
    case ReduceConfig::Kernel::cols: {
      int64_t tiles = (n_out + 31) / 32;
      if (tiles > kMaxBlocks) tiles = kMaxBlocks;
      dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(cfg.splits));
      reduce_cols<T, O><<<grid, 32 * kColThreadsY, 0, s>>>(x, p.kept[0], p.red[0], n_out, n_red,
                                                           cfg.splits, out, od, partial);
      check_launch("reduce_cols");
      break;
    }
  }
  if (cfg.splits > 1) {
    reduce_finish<O><<<grid_for(n_out, 256), 256, 0, s>>>(partial, n_out, cfg.splits, out, od);
    check_launch("reduce_finish");
  }
}

template <RedKind K>
void dispatch_reduce(const void* in, Dtype in_type, const RowPlan& p, void* out, Dtype out_type,
                     const ReduceConfig& cfg, void* scratch, cudaStream_t s) {
  dispatch_cuda_dtype(in_type, [&](auto tag) {
    using T = decltype(tag);
    run_reduce<T, Op<T, K>>(static_cast<const T*>(in), p, out, out_type, cfg, scratch, s);
  });
}

// ---- ArgReduce ----

/// Best value so far and its index (i < 0: nothing seen yet).
template <typename L>
struct ArgState {
  L v;
  long long i;
};

template <typename L>
__device__ __forceinline__ ArgState<L> shfl_xor(ArgState<L> a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.i, o)};
}

/// True when v beats b strictly (NaN beats every number; NaN never loses).
template <bool kMax, typename L>
__device__ __forceinline__ bool beats(L v, L b) {
  if constexpr (std::is_floating_point_v<L>) {
    if (b != b) return false;
    if (v != v) return true;
  }
  return kMax ? v > b : v < b;
}

/// The better of two states; equal values keep the lower index (first occurrence).
template <bool kMax>
struct ArgMerge {
  template <typename L>
  __device__ ArgState<L> operator()(ArgState<L> a, ArgState<L> b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    if (beats<kMax>(b.v, a.v)) return b;
    if (beats<kMax>(a.v, b.v)) return a;
    return b.i < a.i ? b : a;
  }
};

/// One warp (kWarp) or one block per row; the axis has stride `st`.
template <typename T, bool kMax, bool kWarp>
__global__ void __launch_bounds__(kRowThreads)
    arg_reduce_rows(const T* x, Layout kept, int64_t n, int64_t st, int64_t n_out, uint32_t* out) {
  pdl_prologue();
  using L = wide_t<T>;
  __shared__ ArgState<L> smem[32];
  const int t = kWarp ? (threadIdx.x & 31) : threadIdx.x;
  const int nt = kWarp ? 32 : blockDim.x;
  const int per_block = kWarp ? kRowThreads / 32 : 1;
  const int64_t first = int64_t(blockIdx.x) * per_block + (kWarp ? (threadIdx.x >> 5) : 0);
  for (int64_t o = first; o < n_out; o += int64_t(gridDim.x) * per_block) {
    const T* row = x + elem_offset(o, kept);
    ArgState<L> best{L(0), -1};
    auto visit = [&](T v, int64_t j) {
      const L lv = static_cast<L>(load_val(v));
      if (best.i < 0 || beats<kMax>(lv, best.v)) best = {lv, j};
    };
    if (st == 1)
      for_each_contig(row, 0, n, t, nt, visit);
    else
      for (int64_t j = t; j < n; j += nt) visit(row[j * st], j);
    best = kWarp ? warp_reduce(best, ArgMerge<kMax>{}) : block_reduce(best, ArgMerge<kMax>{}, smem);
    if (t == 0) out[o] = static_cast<uint32_t>(best.i);
  }
}

/// One thread per output (the axis is strided; adjacent outputs read adjacent elements).
template <typename T, bool kMax>
__global__ void arg_reduce_cols(const T* x, Layout kept, int64_t n, int64_t st, int64_t n_out,
                                uint32_t* out) {
  using L = wide_t<T>;
  INGOT_CUDA_KERNEL_LOOP(o, n_out) {
    const T* row = x + elem_offset(o, kept);
    L best = static_cast<L>(load_val(row[0]));
    int64_t bi = 0;
    for (int64_t j = 1; j < n; ++j) {
      const L v = static_cast<L>(load_val(row[j * st]));
      if (beats<kMax>(v, best)) best = v, bi = j;
    }
    out[o] = static_cast<uint32_t>(bi);
  }
}

/// Bytes of one chunk's partial of a split ArgReduce (an ArgState<wide_t<T>>, at most 16).
constexpr size_t kArgPartialBytes = 16;

/// One block per (output row, chunk) of contiguous rows: the chunk's best into
/// partial[row * splits + chunk] (index < 0: an empty chunk).
template <typename T, bool kMax>
__global__ void __launch_bounds__(kRowThreads)
    arg_reduce_chunks(const T* x, Layout kept, int64_t n, int64_t n_out, int splits,
                      ArgState<wide_t<T>>* partial) {
  pdl_prologue();
  using L = wide_t<T>;
  static_assert(sizeof(ArgState<L>) <= kArgPartialBytes);
  __shared__ ArgState<L> smem[32];
  for (int64_t u = blockIdx.x; u < n_out * splits; u += gridDim.x) {
    const int64_t o = u / splits, c = u % splits;
    const int64_t b = n * c / splits, e = n * (c + 1) / splits;
    ArgState<L> best{L(0), -1};
    for_each_contig(x + elem_offset(o, kept), b, e, int(threadIdx.x), int(blockDim.x),
                    [&](T v, int64_t j) {
                      const L lv = static_cast<L>(load_val(v));
                      if (best.i < 0 || beats<kMax>(lv, best.v)) best = {lv, j};
                    });
    best = block_reduce(best, ArgMerge<kMax>{}, smem);
    if (threadIdx.x == 0) partial[u] = best;
  }
}

/// One warp per output row: the best of its chunks' partials (ArgMerge is order-free: the
/// extreme value, NaN first, the lowest index among equals).
template <typename T, bool kMax>
__global__ void __launch_bounds__(kRowThreads)
    arg_reduce_finish(const ArgState<wide_t<T>>* partial, int64_t n_out, int splits,
                      uint32_t* out) {
  pdl_prologue();
  using L = wide_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t(blockIdx.x) * (kRowThreads / 32) + (threadIdx.x >> 5);
  if (o >= n_out) return;
  ArgState<L> best{L(0), -1};
  for (int c = lane; c < splits; c += 32) best = ArgMerge<kMax>{}(best, partial[o * splits + c]);
  best = warp_reduce(best, ArgMerge<kMax>{});
  if (lane == 0) out[o] = static_cast<uint32_t>(best.i);
}

template <typename T, bool kMax>
void run_arg_reduce(const T* x, const RowPlan& p, uint32_t* out, int splits, void* scratch,
                    cudaStream_t s) {
  const int64_t n = p.n_red, n_out = p.n_out;
  const int64_t st = p.red[0].strides[0];
  if (splits > 1) {
    auto* partial = static_cast<ArgState<wide_t<T>>*>(scratch);
    const int64_t blocks = std::min(n_out * splits, kMaxBlocks);
    launch_pdl(arg_reduce_chunks<T, kMax>, static_cast<unsigned>(blocks), kRowThreads, 0, s, x,
               p.kept[0], n, n_out, splits, partial);
    check_launch("arg_reduce_chunks");
    const int64_t rows_per_block = kRowThreads / 32;
    launch_pdl(arg_reduce_finish<T, kMax>,
               static_cast<unsigned>((n_out + rows_per_block - 1) / rows_per_block), kRowThreads, 0,
               s, static_cast<const ArgState<wide_t<T>>*>(partial), n_out, splits, out);
    return check_launch("arg_reduce_finish");
  }
  if (st != 1 && n_out >= 2048) {
    arg_reduce_cols<T, kMax><<<grid_for(n_out, 256), 256, 0, s>>>(x, p.kept[0], n, st, n_out, out);
    return check_launch("arg_reduce_cols");
  }
  if (n <= 1024) {
    int64_t blocks = (n_out + kRowThreads / 32 - 1) / (kRowThreads / 32);
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    launch_pdl(arg_reduce_rows<T, kMax, true>, static_cast<unsigned>(blocks), kRowThreads, 0, s, x,
               p.kept[0], n, st, n_out, out);
  } else {
    const int64_t blocks = n_out > kMaxBlocks ? kMaxBlocks : n_out;
    launch_pdl(arg_reduce_rows<T, kMax, false>, static_cast<unsigned>(blocks), kRowThreads, 0, s, x,
               p.kept[0], n, st, n_out, out);
  }
  check_launch("arg_reduce_rows");
}

}  // namespace

ReduceConfig reduce_config(const RowPlan& p, int sms) {
  ReduceConfig c;
  const Layout& red = p.red[0];
  const Layout& kept = p.kept[0];
  if (p.n_red == 0) {
    c.kernel = ReduceConfig::Kernel::fill;
    return c;
  }
  const bool rows = red.strides[red.ndim - 1] == 1 && red.shape[red.ndim - 1] > 1;
  if (!rows && kept.strides[kept.ndim - 1] == 1 && p.n_out > 1) {
    c.kernel = ReduceConfig::Kernel::cols;
    c.splits = row_splits((p.n_out + 31) / 32, p.n_red, sms, 256, 65535);
  } else if (p.n_red <= 2048) {
    c.kernel = ReduceConfig::Kernel::warp_rows;
  } else {
    c.kernel = ReduceConfig::Kernel::block_rows;
    c.splits = row_splits(p.n_out, p.n_red, sms, 4096, 4096);
  }
  if (c.splits > 1) c.scratch_bytes = static_cast<size_t>(c.splits) * p.n_out * 8;
  return c;
}

void launch_reduce(RedKind kind, const void* in, Dtype in_type, const RowPlan& p, void* out,
                   Dtype out_type, const ReduceConfig& cfg, void* scratch, cudaStream_t s) {
  if (p.n_out == 0) return;
  switch (kind) {
    case RedKind::sum:
      return dispatch_reduce<RedKind::sum>(in, in_type, p, out, out_type, cfg, scratch, s);
    case RedKind::prod:
      return dispatch_reduce<RedKind::prod>(in, in_type, p, out, out_type, cfg, scratch, s);
    case RedKind::max:
      return dispatch_reduce<RedKind::max>(in, in_type, p, out, out_type, cfg, scratch, s);
    case RedKind::min:
      return dispatch_reduce<RedKind::min>(in, in_type, p, out, out_type, cfg, scratch, s);
    case RedKind::all:
      return dispatch_reduce<RedKind::all>(in, in_type, p, out, out_type, cfg, scratch, s);
    case RedKind::any:
      return dispatch_reduce<RedKind::any>(in, in_type, p, out, out_type, cfg, scratch, s);
  }
}

int arg_reduce_splits(const RowPlan& p, int sms) {
  // Contiguous rows only (the chunk kernel walks them with 16-byte loads); a chunk of at least
  // 4096 elements, at most 256 chunks a row.
  if (p.n_out == 0 || p.n_red == 0 || p.red[0].strides[0] != 1) return 1;
  return row_splits(p.n_out, p.n_red, sms, 4096, 256);
}

size_t arg_reduce_scratch(const RowPlan& p, int splits) {
  return splits > 1 ? static_cast<size_t>(splits) * static_cast<size_t>(p.n_out) * kArgPartialBytes
                    : 0;
}

void launch_arg_reduce(bool is_max, const void* in, Dtype in_type, const RowPlan& p, uint32_t* out,
                       int splits, void* scratch, cudaStream_t s) {
  if (p.n_out == 0 || p.n_red == 0) return;
  dispatch_cuda_dtype(in_type, [&](auto tag) {
    using T = decltype(tag);
    if (is_max)
      run_arg_reduce<T, true>(static_cast<const T*>(in), p, out, splits, scratch, s);
    else
      run_arg_reduce<T, false>(static_cast<const T*>(in), p, out, splits, scratch, s);
  });
}

}  // namespace ingot::cu
