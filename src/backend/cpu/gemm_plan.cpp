// Batch planning for matmul (see gemm_plan.h).
#include "backend/cpu/gemm_plan.h"

#include "backend/common/utils.h"

namespace ingot::cpu {
namespace {

/// Element offsets of every position of `shape` (row-major order) under `strides`.
std::vector<int64_t> batch_offsets(const Shape& shape, const Strides& st) {
  const int64_t n = shape_size(shape);
  const int nd = static_cast<int>(shape.size());
  std::vector<int64_t> off(static_cast<size_t>(n));
  std::vector<int64_t> idx(shape.size(), 0);
  int64_t cur = 0;
  for (int64_t i = 0; i < n; ++i) {
    off[i] = cur;
    for (int d = nd - 1; d >= 0; --d) {
      cur += st[d];
      if (++idx[d] < shape[d]) break;
      cur -= idx[d] * st[d];
      idx[d] = 0;
    }
  }
  return off;
}

/// Strides of x's leading (batch) dims broadcast to `batch` (0 where broadcast).
Strides batch_strides(const Array& x, int mat_dims, const Shape& batch) {
  const int nb = static_cast<int>(batch.size());
  const int xb = x.ndim() - mat_dims;
  Strides st(batch.size(), 0);
  for (int d = 0; d < xb; ++d) {
    const int o = nb - xb + d;
    st[o] = x.shape()[d] == 1 ? 0 : x.strides()[d];
  }
  return st;
}

/// True when off[i] == off[0] + i * step for all i.
bool evenly_spaced(const std::vector<int64_t>& off, int64_t step) {
  for (size_t i = 1; i < off.size(); ++i)
    if (off[i] != off[0] + static_cast<int64_t>(i) * step) return false;
  return true;
}

void fold_batch(MatmulPlan& p, bool has_c) {
  if (p.batch <= 1) return;
  for (int64_t v : p.b_off)
    if (v != p.b_off[0]) return;
  const int64_t ra = p.M > 1 ? p.sa_m : p.a_off[1] - p.a_off[0];
  if (!evenly_spaced(p.a_off, p.M * ra)) return;
  int64_t rc = 0;
  if (has_c) {
    rc = p.M > 1 ? p.sc_m : p.c_off[1] - p.c_off[0];
    if (!evenly_spaced(p.c_off, p.M * rc)) return;
  }
  p.sa_m = ra;
  p.sc_m = rc;
  p.M *= p.batch;
  p.batch = 1;
  p.a_off.resize(1);
  p.b_off.resize(1);
  p.c_off.resize(1);
}

}  // namespace

MatmulPlan make_matmul_plan(const Array& a, const Array& b, const Array* c, const Array& out) {
  MatmulPlan p;
  const int da = a.ndim() >= 2 ? 2 : 1, db = b.ndim() >= 2 ? 2 : 1;
  const int nb = out.ndim() - (da - 1) - (db - 1);
  const Shape batch(out.shape().begin(), out.shape().begin() + nb);
  p.K = a.shape().back();
  p.sa_k = a.strides().back();
  if (da == 2) {
    p.M = a.shape()[a.ndim() - 2];
    p.sa_m = a.strides()[a.ndim() - 2];
  }
  if (db == 2) {
    p.N = b.shape().back();
    p.sb_n = b.strides().back();
    p.sb_k = b.strides()[b.ndim() - 2];
  } else {
    p.sb_k = b.strides()[0];
  }
  p.batch = shape_size(batch);
  p.a_off = batch_offsets(batch, batch_strides(a, da, batch));
  p.b_off = batch_offsets(batch, batch_strides(b, db, batch));
  if (c) {
    Strides st = backend::broadcast_strides(*c, out.shape());
    p.c_off = batch_offsets(batch, Strides(st.begin(), st.begin() + nb));
    if (da == 2) p.sc_m = st[nb];
    if (db == 2) p.sc_n = st.back();
  }
  fold_batch(p, c != nullptr);
  return p;
}

}  // namespace ingot::cpu
