// CUDA kernels of Softmax, log-softmax and LogSumExp: running (max, sum of exp) per thread,
// merged per warp or block, then a second read writes the row; few long rows are split into
// chunks whose partials merge in a fixed order (deterministic).
#include <cuda_runtime.h>

#include <limits>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/reduce_kernels.h"
#include "backend/cuda/softmax_kernels.h"

namespace ingot::cu {

namespace {

constexpr int64_t kMaxBlocks = int64_t(1) << 20;

template <typename T>
using comp_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__device__ __forceinline__ comp_t<T> to_c(T v) {
  if constexpr (is_half_v<T>)
    return to_float(v);
  else
    return static_cast<comp_t<T>>(v);
}

__device__ __forceinline__ float c_exp(float v) {
  return expf(v);
}
__device__ __forceinline__ double c_exp(double v) {
  return exp(v);
}
__device__ __forceinline__ float c_log(float v) {
  return logf(v);
}
__device__ __forceinline__ double c_log(double v) {
  return log(v);
}

template <typename C>
__device__ __forceinline__ bool finite(C v) {
  return v > -std::numeric_limits<C>::infinity() && v < std::numeric_limits<C>::infinity();
}

/// Running max m (NaN once any NaN was seen) and s = sum of exp(x - m); s only matters
/// while m is finite.
template <typename C>
struct MS {
  C m;
  C s;
};

template <typename C>
__device__ __forceinline__ MS<C> ms_init() {
  return {-std::numeric_limits<C>::infinity(), C(0)};
}

template <typename C>
__device__ __forceinline__ MS<C> shfl_xor(MS<C> a, int o) {
  return {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
}

template <typename C>
__device__ __forceinline__ void ms_step(MS<C>& st, C x) {
  if (x != x) {
    st.m = x;
  } else if (x > st.m) {  // false once m is NaN or +inf: those rows are decided
    st.s = st.s * c_exp(st.m - x) + C(1);
    st.m = x;
  } else if (x > -std::numeric_limits<C>::infinity() && st.m < std::numeric_limits<C>::infinity()) {
    st.s += c_exp(x - st.m);
  }
}

struct MSMerge {
  template <typename C>
  __device__ MS<C> operator()(MS<C> a, MS<C> b) const {
    if (a.m != a.m) return a;
    if (b.m != b.m) return b;
    const C m = a.m > b.m ? a.m : b.m;
    if (!finite(m)) return {m, C(0)};
    return {m, a.s * c_exp(a.m - m) + b.s * c_exp(b.m - m)};
  }
};

/// logsumexp of a merged row: the max itself when it is not finite (all -inf or empty, +inf,
/// NaN), as the CPU.
template <typename C>
__device__ __forceinline__ C lse_of(MS<C> t) {
  return finite(t.m) ? t.m + c_log(t.s) : t.m;
}

/// Output value of x given the row's merged state: NaN for rows whose max is not finite
/// (the CPU's exp(x - m) of inf - inf).
template <typename C>
struct RowOut {
  C m, inv, lse;
  bool bad, log;
  __device__ RowOut(MS<C> t, bool lg) : m(t.m), inv(C(1) / t.s), lse(lse_of(t)), log(lg) {
    bad = !finite(t.m);
  }
  __device__ C operator()(C x) const {
    if (bad) return std::numeric_limits<C>::quiet_NaN();
    return log ? x - lse : c_exp(x - m) * inv;
  }
};

__device__ __forceinline__ bool contiguous(const Layout& l) {
  return l.ndim == 1 && l.strides[0] == 1;
}

/// The running state of elements [b, e) of a row that thread t of nt owns.
template <typename T>
__device__ __forceinline__ MS<comp_t<T>> row_stats(const T* row, const Layout& red, int64_t b,
                                                   int64_t e, int t, int nt) {
  auto st = ms_init<comp_t<T>>();
  if (contiguous(red))
    for_each_contig(row, b, e, t, nt, [&](T v, int64_t) { ms_step(st, to_c(v)); });
  else
    for (int64_t j = b + t; j < e; j += nt) ms_step(st, to_c(row[red_offset(j, red)]));
  return st;
}

/// Writes softmax / log-softmax of elements [b, e) of a row (thread t of nt).
template <typename T>
__device__ __forceinline__ void row_write(const RowOut<comp_t<T>>& f, const T* row,
                                          const Layout& red_in, void* out, int64_t obase,
                                          const Layout& red_out, Dtype od, int64_t b, int64_t e,
                                          int t, int nt) {
  if (contiguous(red_in) && contiguous(red_out)) {
    for_each_contig(row, b, e, t, nt,
                    [&](T v, int64_t j) { store_as(out, obase + j, od, f(to_c(v))); });
  } else {
    for (int64_t j = b + t; j < e; j += nt)
      store_as(out, obase + red_offset(j, red_out), od, f(to_c(row[red_offset(j, red_in)])));
  }
}

/// A warp (kWarp) or a block per whole row.
template <typename T, bool kWarp>
__global__ void __launch_bounds__(kRowThreads)
    softmax_rows(SoftmaxMode mode, const T* x, RowPlan p, void* out, Dtype od) {
  using C = comp_t<T>;
  __shared__ MS<C> smem[32];
  const int t = kWarp ? (threadIdx.x & 31) : threadIdx.x;
  const int nt = kWarp ? 32 : blockDim.x;
  const int per_block = kWarp ? kRowThreads / 32 : 1;
  const int64_t first = int64_t(blockIdx.x) * per_block + (kWarp ? (threadIdx.x >> 5) : 0);
  for (int64_t o = first; o < p.n_out; o += int64_t(gridDim.x) * per_block) {
    const T* row = x + elem_offset(o, p.kept[0]);
    auto st = row_stats(row, p.red[0], 0, p.n_red, t, nt);
    st = kWarp ? warp_reduce(st, MSMerge{}) : block_reduce(st, MSMerge{}, smem);
    if (mode == SoftmaxMode::logsumexp) {
      if (t == 0) store_as(out, o, od, lse_of(st));
    } else {
      const RowOut<C> f(st, mode == SoftmaxMode::log_softmax);
      row_write(f, row, p.red[0], out, elem_offset(o, p.kept[1]), p.red[1], od, 0, p.n_red, t, nt);
    }
  }
}

/// Split rows, first pass: the state of chunk s of row o goes to partial[o * splits + s].
template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    softmax_partials(const T* x, RowPlan p, int splits, MS<comp_t<T>>* partial) {
  __shared__ MS<comp_t<T>> smem[32];
  for (int64_t u = blockIdx.x; u < p.n_out * splits; u += gridDim.x) {
    const int64_t o = u / splits, s = u % splits;
    const int64_t b = p.n_red * s / splits, e = p.n_red * (s + 1) / splits;
    auto st = row_stats(x + elem_offset(o, p.kept[0]), p.red[0], b, e, threadIdx.x, blockDim.x);
    st = block_reduce(st, MSMerge{}, smem);
    if (threadIdx.x == 0) partial[u] = st;
  }
}

/// Split logsumexp, second pass: one thread per row merges its partials in order.
template <typename C>
__global__ void logsumexp_finish(const MS<C>* partial, int64_t n_out, int splits, void* out,
                                 Dtype od) {
  INGOT_CUDA_KERNEL_LOOP(o, n_out) {
    MS<C> st = partial[o * splits];
    for (int s = 1; s < splits; ++s) st = MSMerge{}(st, partial[o * splits + s]);
    store_as(out, o, od, lse_of(st));
  }
}

/// Split softmax, second pass: block (o, s) merges row o's partials (the same fixed tree in
/// every block of the row) and writes chunk s.
template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    softmax_apply(bool log, const T* x, RowPlan p, int splits, const MS<comp_t<T>>* partial,
                  void* out, Dtype od) {
  using C = comp_t<T>;
  __shared__ MS<C> smem[32];
  for (int64_t u = blockIdx.x; u < p.n_out * splits; u += gridDim.x) {
    const int64_t o = u / splits, s = u % splits;
    auto st = ms_init<C>();
    for (int i = threadIdx.x; i < splits; i += blockDim.x)
      st = MSMerge{}(st, partial[o * splits + i]);
    st = block_reduce(st, MSMerge{}, smem);
    const int64_t b = p.n_red * s / splits, e = p.n_red * (s + 1) / splits;
    const RowOut<C> f(st, log);
    row_write(f, x + elem_offset(o, p.kept[0]), p.red[0], out, elem_offset(o, p.kept[1]), p.red[1],
              od, b, e, threadIdx.x, blockDim.x);
  }
}

/// One thread per row: the reduced axis is strided and adjacent rows are adjacent in memory.
template <typename T>
__global__ void softmax_cols(SoftmaxMode mode, const T* x, RowPlan p, void* out, Dtype od) {
  using C = comp_t<T>;
  const int64_t n = p.n_red, sx = p.red[0].strides[0], so = p.red[1].strides[0];
  INGOT_CUDA_KERNEL_LOOP(o, p.n_out) {
    const T* row = x + elem_offset(o, p.kept[0]);
    auto st = ms_init<C>();
    for (int64_t j = 0; j < n; ++j) ms_step(st, to_c(row[j * sx]));
    if (mode == SoftmaxMode::logsumexp) {
      store_as(out, o, od, lse_of(st));
    } else {
      const RowOut<C> f(st, mode == SoftmaxMode::log_softmax);
      const int64_t ob = elem_offset(o, p.kept[1]);
      for (int64_t j = 0; j < n; ++j) store_as(out, ob + j * so, od, f(to_c(row[j * sx])));
    }
  }
}

template <typename T>
void run_softmax(SoftmaxMode mode, const T* x, const RowPlan& p, void* out, Dtype od,
                 const SoftmaxConfig& cfg, void* scratch, cudaStream_t s) {
  using C = comp_t<T>;
  if (cfg.kernel == SoftmaxConfig::Kernel::cols) {
    softmax_cols<T><<<grid_for(p.n_out, 128), 128, 0, s>>>(mode, x, p, out, od);
    return check_launch("softmax_cols");
  }
  if (cfg.kernel == SoftmaxConfig::Kernel::warp_rows) {
    int64_t blocks = (p.n_out + kRowThreads / 32 - 1) / (kRowThreads / 32);
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    softmax_rows<T, true>
        <<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(mode, x, p, out, od);
    return check_launch("softmax_rows");
  }
  if (cfg.splits == 1) {
    const int64_t blocks = p.n_out > kMaxBlocks ? kMaxBlocks : p.n_out;
    softmax_rows<T, false>
        <<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(mode, x, p, out, od);
    return check_launch("softmax_rows");
  }
  MS<C>* partial = static_cast<MS<C>*>(scratch);
  int64_t blocks = p.n_out * cfg.splits;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  softmax_partials<T>
      <<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(x, p, cfg.splits, partial);
  check_launch("softmax_partials");
  if (mode == SoftmaxMode::logsumexp) {
    logsumexp_finish<C>
        <<<grid_for(p.n_out, 128), 128, 0, s>>>(partial, p.n_out, cfg.splits, out, od);
    return check_launch("logsumexp_finish");
  }
  softmax_apply<T><<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(
      mode == SoftmaxMode::log_softmax, x, p, cfg.splits, partial, out, od);
  check_launch("softmax_apply");
}

}  // namespace

SoftmaxConfig softmax_config(const RowPlan& p, Dtype in_type, int sms) {
  SoftmaxConfig c;
  const Layout& red = p.red[0];
  const Layout& kept = p.kept[0];
  if (red.ndim == 1 && red.strides[0] != 1 && red.shape[0] > 1 &&
      kept.strides[kept.ndim - 1] == 1 && p.n_out >= 1024) {
    c.kernel = SoftmaxConfig::Kernel::cols;
  } else if (p.n_red <= 1024) {
    c.kernel = SoftmaxConfig::Kernel::warp_rows;
  } else {
    c.kernel = SoftmaxConfig::Kernel::block_rows;
    c.splits = row_splits(p.n_out, p.n_red, sms, 4096, 1024);
    const size_t state = in_type == Dtype::float64 ? 16 : 8;
    if (c.splits > 1) c.scratch_bytes = static_cast<size_t>(c.splits) * p.n_out * state;
  }
  return c;
}

void launch_softmax(SoftmaxMode mode, const void* in, Dtype in_type, const RowPlan& p, void* out,
                    Dtype out_type, const SoftmaxConfig& cfg, void* scratch, cudaStream_t s) {
  if (p.n_out == 0) return;
  if (p.n_red == 0 && mode != SoftmaxMode::logsumexp) return;
  dispatch_cuda_dtype(in_type, [&](auto tag) {
    using T = decltype(tag);
    run_softmax<T>(mode, static_cast<const T*>(in), p, out, out_type, cfg, scratch, s);
  });
}

}  // namespace ingot::cu
