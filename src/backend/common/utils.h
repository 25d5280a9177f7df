// Helpers shared by backends: output allocation, stride collapsing and strided iteration.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/array.h"

namespace ingot::backend {

/// Gives `out` fresh row-contiguous storage on the CPU.
void alloc_cpu(Array& out);

/// Shape and per-array strides after merging adjacent axes that are contiguous for every
/// array (and dropping size-1 axes). Result has at least one axis.
std::pair<Shape, std::vector<Strides>> collapse_contiguous_dims(
    const Shape& shape, const std::vector<Strides>& strides);

/// Strides of `a` broadcast to `shape` (0 on broadcast axes), `a.ndim() <= shape.size()`.
Strides broadcast_strides(const Array& a, const Shape& shape);

/// Calls f(offsets, inner_count) for every run along the last (collapsed) axis, where
/// offsets[k] is the element offset of array k at the start of the run; each array advances
/// by its last-axis stride inside the run (`inner_strides()` gives them).
/// `begin`/`end` select a range of runs (for parallel splitting), in units of runs.
class StridedRuns {
 public:
  StridedRuns(Shape shape, std::vector<Strides> strides);
  int64_t num_runs() const { return num_runs_; }
  int64_t run_length() const { return shape_.empty() ? 1 : shape_.back(); }
  const std::vector<int64_t>& inner_strides() const { return inner_; }
  template <typename F>
  void for_runs(int64_t begin, int64_t end, F&& f) const {
    const int nd = static_cast<int>(shape_.size());
    const size_t na = strides_.size();
    std::vector<int64_t> idx(nd > 0 ? nd - 1 : 0, 0);
    std::vector<int64_t> off(na, 0);
    // Position the multi-index at run `begin`.
    int64_t r = begin;
    for (int d = nd - 2; d >= 0; --d) {
      idx[d] = r % shape_[d];
      r /= shape_[d];
    }
    for (size_t k = 0; k < na; ++k)
      for (int d = 0; d < nd - 1; ++d) off[k] += idx[d] * strides_[k][d];
    for (int64_t run = begin; run < end; ++run) {
      f(off.data(), run_length());
      for (int d = nd - 2; d >= 0; --d) {
        for (size_t k = 0; k < na; ++k) off[k] += strides_[k][d];
        if (++idx[d] < shape_[d]) break;
        for (size_t k = 0; k < na; ++k) off[k] -= idx[d] * strides_[k][d];
        idx[d] = 0;
      }
    }
  }

 private:
  Shape shape_;
  std::vector<Strides> strides_;
  std::vector<int64_t> inner_;
  int64_t num_runs_ = 1;
};

}  // namespace ingot::backend

namespace ingot::backend {

/// Layout flags of an array with these shape and strides.
Flags compute_flags(const Shape& shape, const Strides& strides);

}  // namespace ingot::backend
