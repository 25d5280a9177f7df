// eval_cuda of the indexing primitives: each op becomes a row gather (contiguous inner block) or
// an indexed elementwise map over one shape with three stride sets, built here on the host.
// Device indices are never read on the host: gathers clamp out-of-range indices, writes skip them,
// and the first one is recorded (cu::fault_site) and raised at the next synchronisation.
#include <optional>
#include <string>

#include "backend/common/utils.h"
#include "backend/cuda/indexing_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/indexing.h"

namespace ingot {

namespace {

/// With an empty axis every index is out of range; that much is known without reading them.
void check_axis(const char* op, int axis, int64_t n, int64_t num_indices) {
  if (n == 0 && num_indices > 0)
    raise("[{}] {} indices are out of range for axis {} of size 0", op, num_indices, axis);
}

template <typename V>
V concat3(const V& a, const V& b, const V& c) {
  V r = a;
  r.insert(r.end(), b.begin(), b.end());
  r.insert(r.end(), c.begin(), c.end());
  return r;
}

Strides part(const Strides& s, size_t b, size_t e) {
  return Strides(s.begin() + static_cast<ptrdiff_t>(b), s.begin() + static_cast<ptrdiff_t>(e));
}

/// s without entry `axis`.
Strides drop(Strides s, int axis) {
  s.erase(s.begin() + axis);
  return s;
}

void check_dims(size_t ndim, const Shape& shape, const char* op) {
  if (ndim > static_cast<size_t>(cu::kMaxDims))
    raise<Unsupported>("[{}] cuda: {} non-mergeable axes (shape {}) exceed the limit of {}", op,
                       ndim, shape_str(shape), cu::kMaxDims);
}

cu::Layout collapsed_layout(const Shape& shape, const Strides& strides, const char* op) {
  auto [sh, st] = backend::collapse_contiguous_dims(shape, {strides});
  check_dims(sh.size(), shape, op);
  return cu::make_layout(sh, st[0]);
}

/// The map over `shape` with its dense, index and indexed strides, axes merged where all three
/// are contiguous.
cu::IndexMap make_map(const Shape& shape, const Strides& dense, const Strides& index,
                      const Strides& indexed, const char* op) {
  auto [sh, st] = backend::collapse_contiguous_dims(shape, {dense, index, indexed});
  check_dims(sh.size(), shape, op);
  cu::IndexMap m;
  m.ndim = static_cast<int>(sh.size());
  for (int d = 0; d < m.ndim; ++d) {
    m.shape[d] = sh[d];
    m.dense[d] = st[0][d];
    m.index[d] = st[1][d];
    m.indexed[d] = st[2][d];
  }
  return m;
}

void set_operands(cu::IndexMap& m, const void* src, void* dst, const Array& idx, Dtype t) {
  m.src = src;
  m.dst = dst;
  m.idx = idx.raw_ptr();
  m.idx_type = idx.dtype();
  m.dtype = t;
}

/// out[o, j, k] = a[o, idx[j], k] with a viewed as [O, N, K] through its strides.
void take_cuda(const Array& a, const Array& idx, int axis, Array& out, const char* op, int op_code,
               cudaStream_t s) {
  cu::alloc(out);
  const int64_t n = a.shape()[axis];
  check_axis(op, axis, n, idx.size());
  if (out.size() == 0) return;
  const Shape& sh = a.shape();
  const Strides& st = a.strides();
  const size_t ax = static_cast<size_t>(axis);
  const Shape outer(sh.begin(), sh.begin() + axis), inner(sh.begin() + axis + 1, sh.end());
  const Strides outer_st = part(st, 0, ax), inner_st = part(st, ax + 1, st.size());
  auto [ish, ist] = backend::collapse_contiguous_dims(inner, {inner_st});
  if (ish.size() == 1 && (ish[0] == 1 || ist[0][0] == 1)) {
    cu::TakeRows p;
    p.src = a.raw_ptr();
    p.dst = out.raw_ptr();
    p.elem_size = static_cast<int>(a.itemsize());
    p.outer = collapsed_layout(outer, outer_st, op);
    p.outer_count = shape_size(outer);
    p.axis_size = n;
    p.axis_stride = st[ax];
    p.inner = shape_size(inner);
    p.idx = idx.raw_ptr();
    p.idx_type = idx.dtype();
    p.idx_layout = collapsed_layout(idx.shape(), idx.strides(), op);
    p.idx_count = idx.size();
    p.site = cu::fault_site(out.device(), op_code, axis);
    cu::launch_take_rows(p, s);
    return;
  }
  const Shape full = concat3(outer, idx.shape(), inner);
  const Strides none_o(outer.size(), 0), none_i(inner.size(), 0), none_j(idx.shape().size(), 0);
  cu::IndexMap m = make_map(full, row_major_strides(full), concat3(none_o, idx.strides(), none_i),
                            concat3(outer_st, none_j, inner_st), op);
  set_operands(m, a.raw_ptr(), out.raw_ptr(), idx, a.dtype());
  m.axis_size = n;
  m.axis_stride = st[ax];
  m.site = cu::fault_site(out.device(), op_code, axis);
  cu::launch_gather(m, s);
}

/// out = a plus the map's updates (m: lines over dense = updates, indexed = out's row-major
/// strides with the axis left out). 16-bit floats and 8-bit integers accumulate in a 32-bit
/// scratch.
void scatter_add_cuda(const Array& a, const Array& idx, const Array& upd, cu::IndexMap m,
                      Array& out, cudaStream_t s, const void* upd_ptr = nullptr,
                      const void* idx_ptr = nullptr) {
  const Dtype t = a.dtype();
  const Dtype acc_type = cu::scatter_acc_type(t);
  if (idx.size() == 0 || a.size() == 0 || acc_type == t) {
    cu::copy_or_donate(a, out, s);
    if (idx.size() == 0 || a.size() == 0) return;
    set_operands(m, upd_ptr ? upd_ptr : upd.raw_ptr(), out.raw_ptr(), idx, t);
    if (idx_ptr) m.idx = idx_ptr;
    cu::launch_scatter_add(m, s);
    return;
  }
  cu::Scratch acc(out.device(), static_cast<size_t>(a.size()) * size_of(acc_type));
  cu::launch_to_acc(a.raw_ptr(), t, collapsed_layout(a.shape(), a.strides(), "scatter_add"),
                    acc.ptr(), a.size(), s);
  set_operands(m, upd_ptr ? upd_ptr : upd.raw_ptr(), acc.ptr(), idx, t);
  if (idx_ptr) m.idx = idx_ptr;
  cu::launch_scatter_add(m, s);
  cu::alloc(out);
  cu::launch_from_acc(acc.ptr(), t, out.raw_ptr(), a.size(), s);
}

}  // namespace

void Take::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  take_cuda(inputs[0], inputs[1], axis_, out, "take", cu::kTake, cu::stream(stream()));
}

void Gather::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  take_cuda(inputs[0], inputs[1], 0, out, "gather", cu::kGather, cu::stream(stream()));
}

void TakeAlongAxis::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& idx = inputs[1];
  cudaStream_t s = cu::stream(stream());
  cu::alloc(out);
  check_axis("take_along_axis", axis_, a.shape()[axis_], idx.size());
  if (out.size() == 0) return;
  Strides ast = a.strides();
  const int64_t as = ast[axis_];
  ast[axis_] = 0;
  cu::IndexMap m =
      make_map(out.shape(), row_major_strides(out.shape()), idx.strides(), ast, "take_along_axis");
  set_operands(m, a.raw_ptr(), out.raw_ptr(), idx, a.dtype());
  m.axis_size = a.shape()[axis_];
  m.axis_stride = as;
  m.site = cu::fault_site(out.device(), cu::kTakeAlongAxis, axis_);
  cu::launch_gather(m, s);
}

void PutAlongAxis::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& idx = inputs[1];
  const Array& vals = inputs[2];
  cudaStream_t s = cu::stream(stream());
  const int64_t n = a.shape()[axis_];
  check_axis("put_along_axis", axis_, n, idx.size());
  cu::copy_or_donate(a, out, s);
  if (idx.size() == 0) return;
  // One thread per line along the axis, writing in index order: the last duplicate wins.
  const Strides ost = row_major_strides(a.shape());
  Shape lines = idx.shape();
  lines.erase(lines.begin() + axis_);
  cu::IndexMap m = make_map(lines, drop(vals.strides(), axis_), drop(idx.strides(), axis_),
                            drop(ost, axis_), "put_along_axis");
  set_operands(m, vals.raw_ptr(), out.raw_ptr(), idx, out.dtype());
  m.axis_size = n;
  m.axis_stride = ost[axis_];
  m.line_len = idx.shape()[axis_];
  m.dense_line_stride = vals.strides()[axis_];
  m.index_line_stride = idx.strides()[axis_];
  m.site = cu::fault_site(out.device(), cu::kPutAlongAxis, axis_);
  cu::launch_put_lines(m, s);
}

void ScatterAddAlongAxis::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& idx = inputs[1];
  const Array& vals = inputs[2];
  cudaStream_t s = cu::stream(stream());
  check_axis("scatter_add_along_axis", axis_, a.shape()[axis_], idx.size());
  // One line per position off the axis, summed along it in index order (as put_along_axis).
  const Strides ost = row_major_strides(a.shape());
  Shape lines = idx.shape();
  lines.erase(lines.begin() + axis_);
  cu::IndexMap m = make_map(lines, drop(vals.strides(), axis_), drop(idx.strides(), axis_),
                            drop(ost, axis_), "scatter_add_along_axis");
  m.axis_size = a.shape()[axis_];
  m.axis_stride = ost[axis_];
  m.line_len = idx.shape()[axis_];
  m.dense_line_stride = vals.strides()[axis_];
  m.index_line_stride = idx.strides()[axis_];
  m.site = cu::fault_site(out.device(), cu::kScatterAddAlongAxis, axis_);
  scatter_add_cuda(a, idx, vals, m, out, s);
}

void ScatterAdd::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& idx = inputs[1];
  const Array& upd = inputs[2];
  cudaStream_t s = cu::stream(stream());
  check_axis("scatter_add", axis_, a.shape()[axis_], idx.size());
  // upd is [outer, J, inner] for idx of shape J: one line per (outer, inner) position, walking
  // every index of J in row-major order. J must read as one strided run in idx and upd; when it
  // does not, both are copied row-major first.
  const size_t ax = static_cast<size_t>(axis_);
  const size_t nj = static_cast<size_t>(idx.ndim());
  const Strides ost = row_major_strides(a.shape());
  const Shape ush = upd.shape();
  const Shape outer(ush.begin(), ush.begin() + axis_);
  const Shape inner(ush.begin() + static_cast<ptrdiff_t>(ax + nj), ush.end());
  auto [jsh, jst] = backend::collapse_contiguous_dims(
      idx.shape(), {idx.strides(), part(upd.strides(), ax, ax + nj)});
  std::optional<cu::Scratch> idx_copy, upd_copy;
  Strides ust = upd.strides();
  const void* upd_ptr = upd.raw_ptr();
  const void* idx_ptr = idx.raw_ptr();
  int64_t idx_step = jsh.empty() ? 0 : jst[0][0];
  int64_t upd_step = jsh.empty() ? 0 : jst[1][0];
  if (jsh.size() > 1 && idx.size() > 0) {
    idx_copy.emplace(out.device(), static_cast<size_t>(idx.nbytes()));
    upd_copy.emplace(out.device(), static_cast<size_t>(upd.nbytes()));
    cu::copy_to_row_major_device(idx, idx_copy->ptr(), s);
    cu::copy_to_row_major_device(upd, upd_copy->ptr(), s);
    idx_ptr = idx_copy->ptr();
    upd_ptr = upd_copy->ptr();
    ust = row_major_strides(ush);
    idx_step = 1;
    upd_step = ust[ax + nj - 1];
  }
  cu::IndexMap m =
      make_map(concat3(outer, Shape{}, inner),
               concat3(part(ust, 0, ax), Strides{}, part(ust, ax + nj, ust.size())),
               Strides(outer.size() + inner.size(), 0),
               concat3(part(ost, 0, ax), Strides{}, part(ost, ax + 1, ost.size())), "scatter_add");
  m.axis_size = a.shape()[axis_];
  m.axis_stride = ost[ax];
  m.line_len = idx.size();
  m.dense_line_stride = upd_step;
  m.index_line_stride = idx_step;
  m.site = cu::fault_site(out.device(), cu::kScatterAdd, axis_);
  scatter_add_cuda(a, idx, upd, m, out, s, upd_ptr, idx_ptr);
}

}  // namespace ingot
