// CPU evaluation of the elementwise primitives: the layout driver ew_eval (flat fast path,
// strided runs, threads, buffer donation) and each primitive's eval_cpu.
#include <algorithm>
#include <cstdlib>

#include "backend/common/utils.h"
#include "backend/cpu/elementwise_kernels.h"
#include "util/thread_pool.h"

namespace ingot::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elements before splitting across threads
constexpr int64_t kGrain = 1 << 15;        // minimum elements per thread chunk
constexpr int64_t kTile = 32;              // tile edge of the transposed-input path
constexpr int64_t kFarStride = 16;         // inner strides at least this long take tiles

bool all_zero(const Strides& st, const Shape& shape) {
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] > 1 && st[d] != 0) return false;
  return true;
}

bool row_major(const Strides& st, const Shape& shape) {
  int64_t expect = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (st[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

/// Walks the last two collapsed axes in kTile x kTile tiles, so that an input read across its
/// rows (a transpose) touches only kTile cache lines per tile instead of one per element.
void eval_tiled(EwKernel k, const char* const* base, const int64_t* isz, size_t na, char* o,
                int64_t osz, const Shape& shape, const std::vector<Strides>& st) {
  const size_t nd = shape.size();
  const int64_t rows = shape[nd - 2], cols = shape[nd - 1];
  const int64_t rt = (rows + kTile - 1) / kTile, ct = (cols + kTile - 1) / kTile;
  int64_t batch = 1;
  for (size_t d = 0; d + 2 < nd; ++d) batch *= shape[d];
  auto work = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t b = t / (rt * ct), r0 = (t / ct % rt) * kTile, c0 = (t % ct) * kTile;
      int64_t off[4] = {0, 0, 0, 0};
      for (int d = static_cast<int>(nd) - 3; d >= 0; --d) {
        const int64_t idx = b % shape[d];
        b /= shape[d];
        for (size_t i = 0; i <= na; ++i) off[i] += idx * st[i][d];
      }
      const int64_t len = std::min(kTile, cols - c0);
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r) {
        EwArg a[3];
        for (size_t i = 0; i < na; ++i)
          a[i] = {base[i] + (off[i] + r * st[i][nd - 2] + c0 * st[i][nd - 1]) * isz[i],
                  st[i][nd - 1]};
        k(a, o + (off[na] + r * st[na][nd - 2] + c0) * osz, len);
      }
    }
  };
  const int64_t tiles = batch * rt * ct;
  if (batch * rows * cols >= kParallelMin)
    parallel_for(tiles, std::max<int64_t>(1, kGrain / (kTile * kTile)), work);
  else
    work(0, tiles);
}

}  // namespace

void ew_eval(EwKernel k, const std::vector<Array>& inputs, Array& out, bool donate) {
  const int64_t n = out.size();
  const size_t na = inputs.size();
  INGOT_ASSERT(na >= 1 && na <= 3);
  std::vector<Strides> st(na);
  const char* base[3];
  int64_t isz[3], flat_stride[3];
  bool flat = true;
  int donor = -1;
  for (size_t i = 0; i < na; ++i) {
    const Array& in = inputs[i];
    st[i] = backend::broadcast_strides(in, out.shape());
    base[i] = static_cast<const char*>(in.raw_ptr());
    isz[i] = static_cast<int64_t>(in.itemsize());
    const bool scalar = all_zero(st[i], out.shape());
    const bool contig = !scalar && in.size() == n && row_major(st[i], out.shape());
    flat_stride[i] = scalar ? 0 : 1;
    flat = flat && (scalar || contig);
    if (donate && donor < 0 && contig && in.dtype() == out.dtype() && in.is_donatable())
      donor = static_cast<int>(i);
  }
  if (donor >= 0)
    out.move_shared_buffer(inputs[donor]);
  else
    backend::alloc_cpu(out);
  if (n == 0) return;
  char* o = static_cast<char*>(out.raw_ptr());
  const int64_t osz = static_cast<int64_t>(out.itemsize());

  if (flat) {
    auto run = [&](int64_t b, int64_t e) {
      EwArg a[3];
      for (size_t i = 0; i < na; ++i)
        a[i] = {base[i] + b * flat_stride[i] * isz[i], flat_stride[i]};
      k(a, o + b * osz, e - b);
    };
    if (n >= kParallelMin)
      parallel_for(n, kGrain, run);
    else
      run(0, n);
    return;
  }
  std::vector<Strides> all = st;
  all.push_back(out.strides());
  auto [cshape, cst] = backend::collapse_contiguous_dims(out.shape(), all);
  const size_t cnd = cshape.size();
  bool far = false;  // an input jumps far along the output's rows (e.g. a transpose)
  for (size_t i = 0; i < na; ++i) far = far || std::llabs(cst[i][cnd - 1]) >= kFarStride;
  if (cnd >= 2 && far && cshape[cnd - 1] >= kTile) {
    eval_tiled(k, base, isz, na, o, osz, cshape, cst);
    return;
  }
  backend::StridedRuns runs(out.shape(), std::move(all));
  const auto& inner = runs.inner_strides();
  INGOT_ASSERT(inner[na] == 1 || runs.run_length() == 1);
  auto run = [&](int64_t rb, int64_t re) {
    runs.for_runs(rb, re, [&](const int64_t* off, int64_t len) {
      EwArg a[3];
      for (size_t i = 0; i < na; ++i) a[i] = {base[i] + off[i] * isz[i], inner[i]};
      k(a, o + off[na] * osz, len);
    });
  };
  if (n >= kParallelMin)
    parallel_for(runs.num_runs(), std::max<int64_t>(1, kGrain / runs.run_length()), run);
  else
    run(0, runs.num_runs());
}

}  // namespace ingot::cpu

namespace ingot {

#define INGOT_EW_EVAL(NAME)                                                                \
  void NAME::eval_cpu(const std::vector<Array>& inputs, Array& out) {                      \
    cpu::ew_eval(cpu::ew_kernel(EwOp::NAME, inputs[0].dtype(), out.dtype()), inputs, out); \
  }
INGOT_EW_UNARY_OPS(INGOT_EW_EVAL)
INGOT_EW_BINARY_OPS(INGOT_EW_EVAL)
INGOT_EW_EVAL(AsType)
#undef INGOT_EW_EVAL

void Where::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  cpu::ew_eval(cpu::ew_kernel(EwOp::Where, inputs[1].dtype(), out.dtype()), inputs, out);
}

}  // namespace ingot
