// View layouts shared by the backends: outputs share the input's buffer with new shape,
// strides and offset; only a Reshape that strides cannot express needs a copy.
#include "backend/common/views.h"

#include "backend/common/utils.h"

namespace ingot::backend {
namespace {
// Strides that let a buffer laid out as `in` be read with shape `out` in row-major element
// order, if such strides exist.
bool reshape_strides(const Array& in, const Shape& out, Strides& result) {
  // Merge the input into maximal blocks that are row-contiguous among themselves, then
  // split each block over the output dims it covers.
  Shape ish;
  Strides ist;
  for (int d = 0; d < in.ndim(); ++d) {
    if (in.shape()[d] == 1) continue;
    if (!ish.empty() && ist.back() == in.strides()[d] * in.shape()[d]) {
      ish.back() *= in.shape()[d];
      ist.back() = in.strides()[d];
    } else {
      ish.push_back(in.shape()[d]);
      ist.push_back(in.strides()[d]);
    }
  }
  result.assign(out.size(), 0);
  size_t blk = 0;
  int64_t remaining = ish.empty() ? 1 : ish[0];
  for (size_t o = 0; o < out.size(); ++o) {
    if (out[o] == 1) continue;
    if (blk >= ish.size()) return false;
    if (remaining % out[o] != 0) return false;
    remaining /= out[o];
    result[o] = ist[blk] * remaining;
    if (remaining == 1) {
      ++blk;
      remaining = blk < ish.size() ? ish[blk] : 1;
    }
  }
  return true;
}

}  // namespace

bool reshape_view(const Array& in, Array& out) {
  if (in.flags().row_contiguous) {
    Strides st = row_major_strides(out.shape());
    out.copy_shared_buffer(in, st, compute_flags(out.shape(), st), in.data_size());
    return true;
  }
  Strides st;
  if (reshape_strides(in, out.shape(), st)) {
    out.copy_shared_buffer(in, st, compute_flags(out.shape(), st), in.data_size());
    return true;
  }
  return false;
}

void transpose_view(const Array& in, Array& out, const std::vector<int>& axes) {
  Strides st(axes.size());
  for (size_t i = 0; i < axes.size(); ++i) st[i] = in.strides()[axes[i]];
  Flags f = compute_flags(out.shape(), st);
  if (!in.flags().contiguous) f.contiguous = f.row_contiguous = f.col_contiguous = false;
  out.copy_shared_buffer(in, st, f, in.data_size());
}

void broadcast_view(const Array& in, Array& out) {
  Strides st = broadcast_strides(in, out.shape());
  out.copy_shared_buffer(in, st, compute_flags(out.shape(), st), in.data_size());
}

void slice_view(const Array& in, Array& out, const Shape& start, const Shape& steps) {
  int64_t offset = 0;
  Strides st(in.ndim());
  for (int d = 0; d < in.ndim(); ++d) {
    offset += start[d] * in.strides()[d];
    st[d] = in.strides()[d] * steps[d];
  }
  Flags f = compute_flags(out.shape(), st);
  // data_size: elements from the first to one past the last element reached.
  int64_t hi = 0, lo = 0;
  for (int d = 0; d < in.ndim(); ++d) {
    int64_t ext = (out.shape()[d] - 1) * st[d];
    (ext > 0 ? hi : lo) += ext;
  }
  out.copy_shared_buffer(in, st, f, hi - lo + 1, offset);
}

}  // namespace ingot::backend
