// CUDA kernels of Softmax, log-softmax and LogSumExp: running (max, sum of exp) per thread,
// merged per warp or block, then a second read writes the row; few long rows are split into
// chunks whose partials merge in a fixed order (deterministic).
#include <cuda_runtime.h>

#include <limits>
#include <type_traits>

#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/layout.h"
#include "backend/cuda/device/row_softmax.cuh"
#include "backend/cuda/device/types.cuh"
#include "backend/cuda/reduce_kernels.h"
#include "backend/cuda/softmax_kernels.h"

namespace ingot::cu {

namespace {

using namespace rowsm;

constexpr int64_t kMaxBlocks = int64_t(1) << 20;

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
  const RowThreads<kWarp> rt;
  const int t = rt.t, nt = rt.nt;
  for (int64_t o = rt.first; o < p.n_out; o += rt.step) {
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
