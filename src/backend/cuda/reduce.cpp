// eval_cuda of Reduce and ArgReduce, and the row planning (kept vs reduced axes, collapsed)
// that the CUDA reduction, softmax, scan and sort families share.
#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <optional>

#include "backend/cuda/reduce_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/reduce.h"

namespace ingot {

namespace cu {

namespace {

/// Merges adjacent axes that are contiguous for every stride set and drops size-1 axes;
/// at least one axis remains ([1] with zero strides when nothing is left).
void collapse(Shape& shape, std::vector<Strides>& st) {
  Shape s2;
  std::vector<Strides> t2(st.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !s2.empty();
    for (size_t k = 0; k < st.size() && merge; ++k) merge = t2[k].back() == st[k][d] * shape[d];
    if (merge) {
      s2.back() *= shape[d];
      for (size_t k = 0; k < st.size(); ++k) t2[k].back() = st[k][d];
    } else {
      s2.push_back(shape[d]);
      for (size_t k = 0; k < st.size(); ++k) t2[k].push_back(st[k][d]);
    }
  }
  if (s2.empty()) {
    s2.push_back(1);
    for (auto& t : t2) t.push_back(0);
  }
  shape = std::move(s2);
  st = std::move(t2);
}

Layout to_layout(const Shape& shape, const Strides& st) {
  if (shape.size() > static_cast<size_t>(kMaxDims))
    raise<Unsupported>("[cuda] reductions index at most {} axes after collapsing, got shape {}",
                       kMaxDims, shape_str(shape));
  Layout l;
  l.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < l.ndim; ++d) l.shape[d] = shape[d], l.strides[d] = st[d];
  return l;
}

}  // namespace

RowPlan plan_rows(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                  const std::vector<int>& axes, bool same_shape_out) {
  const int nd = static_cast<int>(shape.size());
  const Strides out_st = row_major_strides(shape);
  const size_t nsets = same_shape_out ? 2 : 1;
  Shape ks, rs;
  std::vector<Strides> kst(nsets), rst(nsets);
  for (int d = 0; d < nd; ++d) {
    const bool red = std::find(axes.begin(), axes.end(), d) != axes.end();
    (red ? rs : ks).push_back(shape[d]);
    auto& st = red ? rst : kst;
    st[0].push_back(strides[d]);
    if (same_shape_out) st[1].push_back(out_st[d]);
  }
  if (!same_shape_out) {
    // The order of reduced elements is free: smallest stride innermost, so that transposed
    // inputs still reduce contiguous runs.
    std::vector<size_t> order(rs.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return std::abs(rst[0][a]) > std::abs(rst[0][b]); });
    Shape rs2;
    Strides st2;
    for (size_t i : order) rs2.push_back(rs[i]), st2.push_back(rst[0][i]);
    rs = std::move(rs2);
    rst[0] = std::move(st2);
  }
  RowPlan p;
  p.n_out = shape_size(ks);
  p.n_red = shape_size(rs);
  collapse(ks, kst);
  collapse(rs, rst);
  for (size_t k = 0; k < nsets; ++k) {
    p.kept[k] = to_layout(ks, kst[k]);
    p.red[k] = to_layout(rs, rst[k]);
  }
  if (!same_shape_out) p.kept[1] = p.kept[0], p.red[1] = p.red[0];
  return p;
}

}  // namespace cu

namespace {

cu::RedKind red_kind(ReduceType t) {
  switch (t) {
    case ReduceType::sum:
      return cu::RedKind::sum;
    case ReduceType::prod:
      return cu::RedKind::prod;
    case ReduceType::max:
      return cu::RedKind::max;
    case ReduceType::min:
      return cu::RedKind::min;
    case ReduceType::all:
      return cu::RedKind::all;
    case ReduceType::any:
      return cu::RedKind::any;
  }
  return cu::RedKind::sum;
}

}  // namespace

void Reduce::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  cu::alloc(out);
  if (out.size() == 0) return;
  cudaStream_t s = cu::stream(stream());
  const cu::RowPlan p = cu::plan_rows(in.shape(), in.strides(), axes_, false);
  const int sms = cu::props(out.device().index).multiProcessorCount;
  const cu::ReduceConfig cfg = cu::reduce_config(p, sms);
  std::optional<cu::Scratch> scratch;
  if (cfg.scratch_bytes > 0) scratch.emplace(out.device(), cfg.scratch_bytes);
  cu::launch_reduce(red_kind(type_), in.raw_ptr(), in.dtype(), p, out.raw_ptr(), out.dtype(), cfg,
                    scratch ? scratch->ptr() : nullptr, s);
}

void ArgReduce::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  cu::alloc(out);
  if (out.size() == 0) return;
  cudaStream_t s = cu::stream(stream());
  const cu::RowPlan p = cu::plan_rows(in.shape(), in.strides(), {axis_}, false);
  const int splits = cu::arg_reduce_splits(p, cu::props(out.device().index).multiProcessorCount);
  std::optional<cu::Scratch> scratch;
  if (splits > 1) scratch.emplace(out.device(), cu::arg_reduce_scratch(p, splits));
  cu::launch_arg_reduce(type_ == Type::argmax, in.raw_ptr(), in.dtype(), p, out.raw_ptr<uint32_t>(),
                        splits, scratch ? scratch->ptr() : nullptr, s);
}

}  // namespace ingot
