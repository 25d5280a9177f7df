// Naive float64 references for the reduction family tests: which input elements each output
// of a reduction reads, and integer wrapping as the kernels' output dtypes define it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "test_util.h"

namespace ingot::test {

/// For each output position (row-major over the kept axes) the flat input indices it reduces,
/// in row-major order over the reduced axes.
inline std::vector<std::vector<int64_t>> reduce_groups(const Shape& shape,
                                                       const std::vector<int>& axes) {
  const int nd = static_cast<int>(shape.size());
  std::vector<bool> red(nd, false);
  for (int a : axes) red[a < 0 ? a + nd : a] = true;
  int64_t n_out = 1;
  for (int d = 0; d < nd; ++d)
    if (!red[d]) n_out *= shape[d];
  std::vector<std::vector<int64_t>> g(static_cast<size_t>(n_out));
  const int64_t n = shape_size(shape);
  std::vector<int64_t> idx(nd, 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t o = 0;
    for (int d = 0; d < nd; ++d)
      if (!red[d]) o = o * shape[d] + idx[d];
    g[o].push_back(k);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return g;
}

/// Output shape of a reduction.
inline Shape reduce_shape(const Shape& shape, const std::vector<int>& axes, bool keepdims) {
  const int nd = static_cast<int>(shape.size());
  Shape r;
  for (int d = 0; d < nd; ++d) {
    bool is_red =
        std::any_of(axes.begin(), axes.end(), [&](int a) { return (a < 0 ? a + nd : a) == d; });
    if (!is_red)
      r.push_back(shape[d]);
    else if (keepdims)
      r.push_back(1);
  }
  return r;
}

/// An integer result wrapped to what dtype t holds (two's complement), as a double.
inline double wrap_to(uint64_t v, Dtype t) {
  switch (t) {
    case Dtype::int32:
      return static_cast<double>(static_cast<int32_t>(v));
    case Dtype::uint32:
      return static_cast<double>(static_cast<uint32_t>(v));
    case Dtype::int64:
      return static_cast<double>(static_cast<int64_t>(v));
    default:
      return static_cast<double>(v);
  }
}

/// dtype of sum/prod/cumsum for an input dtype (NumPy/MLX rules).
inline Dtype sum_dtype_of(Dtype t) {
  if (t == bool_ || t == int8) return int32;
  if (t == uint8) return uint32;
  return t;
}

}  // namespace ingot::test
