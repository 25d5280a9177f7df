// CUDA kernels of CrossEntropy and CrossEntropyGrad: the softmax rows' running (max, sum of exp)
// merged per warp or block (device/row_softmax.cuh), then the row's loss, or a second read of
// the row that writes its gradient. No float32 copy of the logits is made.
#include <cuda_runtime.h>

#include <limits>

#include "backend/cuda/cross_entropy_kernels.h"
#include "backend/cuda/device/indexing.cuh"
#include "backend/cuda/device/row_softmax.cuh"

namespace ingot::cu {

namespace {

using namespace rowsm;

constexpr int64_t kMaxBlocks = int64_t(1) << 20;

__device__ __forceinline__ int64_t target_of(const CeRows& r, int64_t o) {
  const int64_t off = elem_offset(o, r.targets_layout);
  return r.targets64 ? static_cast<const int64_t*>(r.targets)[off]
                     : static_cast<const int32_t*>(r.targets)[off];
}

/// Loss (kGrad false) or gradient of each row, a warp (kWarp) or a block per row.
template <typename T, bool kWarp, bool kGrad>
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_rows(const T* x, RowPlan p, CeRows r, void* out, Dtype od) {
  using C = comp_t<T>;
  __shared__ MS<C> smem[32];
  const RowThreads<kWarp> rt;
  const int t = rt.t, nt = rt.nt;
  const int64_t n = p.n_red;
  for (int64_t o = rt.first; o < p.n_out; o += rt.step) {
    const T* row = x + elem_offset(o, p.kept[0]);
    auto st = row_stats(row, p.red[0], 0, n, t, nt);
    st = kWarp ? warp_reduce(st, MSMerge{}) : block_reduce(st, MSMerge{}, smem);
    const int64_t tg = target_of(r, o);
    const bool ok = tg >= 0 && tg < n;
    if (!ok && t == 0) {
      const FaultSite site = r.site;
      record_fault(site, tg, n);
    }
    const C nan = std::numeric_limits<C>::quiet_NaN();
    if constexpr (!kGrad) {
      if (t == 0) store_as(out, o, od, ok ? lse_of(st) - to_c(row[red_offset(tg, p.red[0])]) : nan);
    } else {
      const C g = ok ? static_cast<const C*>(r.g)[elem_offset(o, r.g_layout)] : nan;
      const RowOut<C> f(st, false);
      const int64_t ob = elem_offset(o, p.kept[1]);
      auto value = [&](T v, int64_t j) {
        C y = f(to_c(v)) * g;
        if (j == tg) y -= g;
        return y;
      };
      if (contiguous(p.red[0]) && contiguous(p.red[1]))
        for_each_contig(row, 0, n, t, nt,
                        [&](T v, int64_t j) { store_as(out, ob + j, od, value(v, j)); });
      else
        for (int64_t j = t; j < n; j += nt)
          store_as(out, ob + red_offset(j, p.red[1]), od, value(row[red_offset(j, p.red[0])], j));
    }
  }
}

template <typename T, bool kGrad>
void run(const T* x, const RowPlan& p, const CeRows& r, void* out, Dtype od, cudaStream_t s) {
  if (p.n_red <= 1024) {
    int64_t blocks = (p.n_out + kRowThreads / 32 - 1) / (kRowThreads / 32);
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    cross_entropy_rows<T, true, kGrad>
        <<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(x, p, r, out, od);
  } else {
    const int64_t blocks = p.n_out > kMaxBlocks ? kMaxBlocks : p.n_out;
    cross_entropy_rows<T, false, kGrad>
        <<<static_cast<unsigned>(blocks), kRowThreads, 0, s>>>(x, p, r, out, od);
  }
  check_launch(kGrad ? "cross_entropy_grad" : "cross_entropy");
}

}  // namespace

void launch_cross_entropy(bool grad, const void* in, Dtype in_type, const RowPlan& p,
                          const CeRows& rows, void* out, Dtype out_type, cudaStream_t s) {
  if (p.n_out == 0 || p.n_red == 0) return;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    if (grad)
      run<T, true>(static_cast<const T*>(in), p, rows, out, out_type, s);
    else
      run<T, false>(static_cast<const T*>(in), p, rows, out, out_type, s);
  };
  switch (in_type) {
    case Dtype::float32:
      return go(float{});
    case Dtype::float64:
      return go(double{});
    case Dtype::bfloat16:
      return go(__nv_bfloat16{});
    case Dtype::float16:
      return go(__half{});
    default:
      return;
  }
}

}  // namespace ingot::cu
