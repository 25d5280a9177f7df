// Shared backend helpers (see utils.h).
#include "backend/common/utils.h"

#include <algorithm>

namespace ingot::backend {

void alloc_cpu(Array& out) {
  out.set_data(std::make_shared<Data>(allocator(cpu_device).malloc(out.nbytes()), cpu_device));
}

std::pair<Shape, std::vector<Strides>> collapse_contiguous_dims(
    const Shape& shape, const std::vector<Strides>& strides) {
  const size_t na = strides.size();
  Shape out_shape;
  std::vector<Strides> out_strides(na);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !out_shape.empty();
    for (size_t k = 0; merge && k < na; ++k)
      merge = out_strides[k].back() == strides[k][d] * shape[d];
    if (merge) {
      out_shape.back() *= shape[d];
      for (size_t k = 0; k < na; ++k) out_strides[k].back() = strides[k][d];
    } else {
      out_shape.push_back(shape[d]);
      for (size_t k = 0; k < na; ++k) out_strides[k].push_back(strides[k][d]);
    }
  }
  if (out_shape.empty()) {
    out_shape.push_back(1);
    for (size_t k = 0; k < na; ++k) out_strides[k].push_back(0);
  }
  return {out_shape, out_strides};
}

Strides broadcast_strides(const Array& a, const Shape& shape) {
  Strides st(shape.size(), 0);
  const int off = static_cast<int>(shape.size()) - a.ndim();
  for (int d = 0; d < a.ndim(); ++d)
    st[off + d] = (a.shape()[d] == 1 && shape[off + d] != 1) ? 0 : a.strides()[d];
  return st;
}

StridedRuns::StridedRuns(Shape shape, std::vector<Strides> strides) {
  auto [s, st] = collapse_contiguous_dims(shape, strides);
  shape_ = std::move(s);
  strides_ = std::move(st);
  for (auto& v : strides_) inner_.push_back(v.back());
  num_runs_ = 1;
  for (size_t d = 0; d + 1 < shape_.size(); ++d) num_runs_ *= shape_[d];
  if (shape_size(shape) == 0) num_runs_ = 0;
}

}  // namespace ingot::backend

namespace ingot::backend {

Flags compute_flags(const Shape& shape, const Strides& strides) {
  Flags f{true, true, true};
  if (shape_size(shape) <= 1) return f;
  int64_t acc = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (strides[d] != acc) f.row_contiguous = false;
    acc *= shape[d];
  }
  acc = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (strides[d] != acc) f.col_contiguous = false;
    acc *= shape[d];
  }
  if (f.row_contiguous || f.col_contiguous) return f;
  // Dense in some axis order: sort the non-trivial axes by stride and check the products.
  std::vector<std::pair<int64_t, int64_t>> ax;  // (stride, size)
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] != 1) ax.push_back({strides[d], shape[d]});
  std::sort(ax.begin(), ax.end());
  acc = 1;
  for (auto& [st, sz] : ax) {
    if (st != acc) {
      f.contiguous = false;
      break;
    }
    acc *= sz;
  }
  return f;
}

}  // namespace ingot::backend
