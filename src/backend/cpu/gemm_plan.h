// Batch planning for matmul: per-batch element offsets of a, b and c after NumPy broadcasting,
// the matrix strides, and folding of a broadcast-b batch into the M dimension.
#pragma once

#include <cstdint>
#include <vector>

#include "core/array.h"

namespace ingot::cpu {

/// out[bi, m, n] = sum_k a[a_off[bi] + m*sa_m + k*sa_k] * b[b_off[bi] + k*sb_k + n*sb_n]
/// (+ c[c_off[bi] + m*sc_m + n*sc_n]); out is row-contiguous [batch, M, N].
struct MatmulPlan {
  int64_t M = 1, N = 1, K = 0, batch = 1;
  int64_t sa_m = 0, sa_k = 0, sb_k = 0, sb_n = 0, sc_m = 0, sc_n = 0;
  std::vector<int64_t> a_off, b_off, c_off;
};

/// Plan for out = a @ b (+ c): a is [K] or [..., M, K], b is [K] or [..., K, N], c (may be
/// null) broadcasts to out. Folds the batch into M when b is shared by every batch element and
/// the rows of a, c and out are evenly spaced.
MatmulPlan make_matmul_plan(const Array& a, const Array& b, const Array* c, const Array& out);

}  // namespace ingot::cpu
