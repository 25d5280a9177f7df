// CPU evaluation of the view primitives: share the input buffer with new strides, or copy
// when a reshape cannot be expressed with strides.
#include "core/primitives/views.h"
#include "backend/common/utils.h"

namespace ingot {
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

void Reshape::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (in.flags().row_contiguous) {
    Strides st = row_major_strides(out.shape());
    out.copy_shared_buffer(in, st, backend::compute_flags(out.shape(), st), in.data_size());
    return;
  }
  Strides st;
  if (reshape_strides(in, out.shape(), st)) {
    Flags f = backend::compute_flags(out.shape(), st);
    out.copy_shared_buffer(in, st, f, in.data_size());
    return;
  }
  backend::alloc_cpu(out);
  copy_to_row_major(in, out.raw_ptr());
}

void Transpose::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  Strides st(axes_.size());
  for (size_t i = 0; i < axes_.size(); ++i) st[i] = in.strides()[axes_[i]];
  Flags f = backend::compute_flags(out.shape(), st);
  if (!in.flags().contiguous) f.contiguous = f.row_contiguous = f.col_contiguous = false;
  out.copy_shared_buffer(in, st, f, in.data_size());
}

void Broadcast::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  Strides st = backend::broadcast_strides(in, out.shape());
  Flags f = backend::compute_flags(out.shape(), st);
  out.copy_shared_buffer(in, st, f, in.data_size());
}

void Slice::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  if (out.size() == 0) {
    backend::alloc_cpu(out);
    return;
  }
  int64_t offset = 0;
  Strides st(in.ndim());
  for (int d = 0; d < in.ndim(); ++d) {
    offset += start_[d] * in.strides()[d];
    st[d] = in.strides()[d] * strides_[d];
  }
  Flags f = backend::compute_flags(out.shape(), st);
  // data_size: elements from the first to one past the last element reached.
  int64_t hi = 0, lo = 0;
  for (int d = 0; d < in.ndim(); ++d) {
    int64_t ext = (out.shape()[d] - 1) * st[d];
    (ext > 0 ? hi : lo) += ext;
  }
  out.copy_shared_buffer(in, st, f, hi - lo + 1, offset);
}

}  // namespace ingot
