// Reduction, softmax, scan and sort ops (validation, dtype rules, graph nodes) and the VJPs of
// their primitives.
//
// Output dtypes (NumPy/MLX): sum/prod/cumsum of bool and int8 give int32, of uint8 uint32, of
// other types the input dtype; max/min keep the input dtype; all/any give bool; mean/var/
// stddev/logsumexp/softmax of integers give float32, of floats the input dtype (16-bit floats
// are accumulated in float32 and rounded once); argmax/argmin/argsort/argpartition/
// topk_indices give uint32.
#include "core/ops/reduce.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <string>

#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/indexing.h"
#include "core/ops/shape.h"
#include "core/primitives/reduce.h"

namespace ingot {

namespace {

std::string axes_str(const std::vector<int>& axes) {
  std::string r = "[";
  for (size_t i = 0; i < axes.size(); ++i) r += (i ? ", " : "") + std::to_string(axes[i]);
  return r + "]";
}

/// Normalised, sorted axes; throws on out-of-range or repeated axes.
std::vector<int> check_axes(const Array& a, const std::vector<int>& axes, const char* op) {
  std::vector<int> r;
  const int nd = a.ndim();
  for (int ax : axes) {
    int n = ax < 0 ? ax + nd : ax;
    if (n < 0 || n >= nd)
      raise("[{}] axis {} is out of range for an array of shape {}", op, ax, shape_str(a.shape()));
    if (std::find(r.begin(), r.end(), n) != r.end())
      raise("[{}] repeated axis in axes {} for an array of shape {}", op, axes_str(axes),
            shape_str(a.shape()));
    r.push_back(n);
  }
  std::sort(r.begin(), r.end());
  return r;
}

int check_axis(const Array& a, int axis, const char* op) {
  return check_axes(a, {axis}, op)[0];
}

std::vector<int> all_axes(const Array& a) {
  std::vector<int> r(a.ndim());
  std::iota(r.begin(), r.end(), 0);
  return r;
}

Shape reduced_shape(const Shape& s, const std::vector<int>& axes, bool keepdims) {
  Shape r;
  for (int d = 0; d < static_cast<int>(s.size()); ++d) {
    bool red = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!red)
      r.push_back(s[d]);
    else if (keepdims)
      r.push_back(1);
  }
  return r;
}

int64_t reduced_count(const Shape& s, const std::vector<int>& axes) {
  int64_t n = 1;
  for (int ax : axes) n *= s[ax];
  return n;
}

/// dtype of sum/prod/cumsum.
Dtype sum_dtype(Dtype t) {
  if (t == bool_ || t == int8) return int32;
  if (t == uint8) return uint32;
  return t;
}

/// dtype of mean/var/logsumexp/softmax.
Dtype float_dtype(Dtype t) {
  return is_floating(t) ? t : float32;
}

void check_nonempty(const Array& a, const std::vector<int>& axes, const char* op) {
  for (int ax : axes)
    if (a.shape()[ax] == 0)
      raise("[{}] cannot reduce an empty axis: axis {} of shape {}", op, ax, shape_str(a.shape()));
}

Array make_reduce(const Array& a, ReduceType t, std::vector<int> axes, bool keepdims, Dtype out,
                  Stream st) {
  Shape shape = reduced_shape(a.shape(), axes, keepdims);
  return Array(std::move(shape), out, std::make_shared<Reduce>(st, t, std::move(axes), keepdims),
               {a});
}

Array reduce_op(const Array& a, const std::vector<int>& axes, bool keepdims, ReduceType t,
                StreamOrDevice s) {
  const char* op = reduce_type_name(t);
  auto ax = check_axes(a, axes, op);
  Dtype out = a.dtype();
  if (t == ReduceType::sum || t == ReduceType::prod) out = sum_dtype(a.dtype());
  if (t == ReduceType::all || t == ReduceType::any) out = bool_;
  if (t == ReduceType::max || t == ReduceType::min) check_nonempty(a, ax, op);
  return make_reduce(a, t, std::move(ax), keepdims, out, resolve_stream(s, {&a}));
}

/// Cumulative product (internal: used by Reduce prod's VJP).
Array cumprod(const Array& a, int axis, bool reverse, bool inclusive, Stream st) {
  return Array(a.shape(), sum_dtype(a.dtype()),
               std::make_shared<Scan>(st, Scan::Type::prod, axis, reverse, inclusive), {a});
}

/// The keepdims version of a reduced array (for broadcasting it back).
Array keepdims_view(const Array& r, const Shape& in_shape, const std::vector<int>& axes,
                    bool keepdims, Stream st) {
  if (keepdims) return r;
  return reshape(r, reduced_shape(in_shape, axes, true), st);
}

void check_sortable(const Array& a, const char* op) {
  if (a.ndim() == 0) raise("[{}] needs an array of at least one dimension, got a scalar", op);
}

}  // namespace

const char* reduce_type_name(ReduceType t) {
  switch (t) {
    case ReduceType::sum:
      return "sum";
    case ReduceType::prod:
      return "prod";
    case ReduceType::max:
      return "max";
    case ReduceType::min:
      return "min";
    case ReduceType::all:
      return "all";
    case ReduceType::any:
      return "any";
  }
  return "reduce";
}

// ---- sum, prod, max, min, all, any ----

Array sum(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  return reduce_op(a, axes, keepdims, ReduceType::sum, s);
}
Array sum(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return sum(a, std::vector<int>{axis}, keepdims, s);
}
Array sum(const Array& a, bool keepdims, StreamOrDevice s) {
  return sum(a, all_axes(a), keepdims, s);
}
Array prod(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  return reduce_op(a, axes, keepdims, ReduceType::prod, s);
}
Array prod(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return prod(a, std::vector<int>{axis}, keepdims, s);
}
Array prod(const Array& a, bool keepdims, StreamOrDevice s) {
  return prod(a, all_axes(a), keepdims, s);
}
Array max(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  return reduce_op(a, axes, keepdims, ReduceType::max, s);
}
Array max(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return max(a, std::vector<int>{axis}, keepdims, s);
}
Array max(const Array& a, bool keepdims, StreamOrDevice s) {
  return max(a, all_axes(a), keepdims, s);
}
Array min(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  return reduce_op(a, axes, keepdims, ReduceType::min, s);
}
Array min(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return min(a, std::vector<int>{axis}, keepdims, s);
}
Array min(const Array& a, bool keepdims, StreamOrDevice s) {
  return min(a, all_axes(a), keepdims, s);
}
Array all(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  return reduce_op(a, axes, keepdims, ReduceType::all, s);
}
Array all(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return all(a, std::vector<int>{axis}, keepdims, s);
}
Array all(const Array& a, bool keepdims, StreamOrDevice s) {
  return all(a, all_axes(a), keepdims, s);
}
Array any(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  return reduce_op(a, axes, keepdims, ReduceType::any, s);
}
Array any(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return any(a, std::vector<int>{axis}, keepdims, s);
}
Array any(const Array& a, bool keepdims, StreamOrDevice s) {
  return any(a, all_axes(a), keepdims, s);
}

// ---- mean, var, stddev ----

Array mean(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  auto ax = check_axes(a, axes, "mean");
  Stream st = resolve_stream(s, {&a});
  Dtype out = float_dtype(a.dtype());
  Dtype acc = out == float64 ? float64 : float32;
  const int64_t n = reduced_count(a.shape(), ax);
  Array total = make_reduce(a, ReduceType::sum, ax, keepdims, acc, st);
  // An empty reduction gives 0/0 = NaN, as NumPy does.
  Array m = divide(total, Array(static_cast<double>(n), acc), st);
  return out == acc ? m : astype(m, out, st);
}
Array mean(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return mean(a, std::vector<int>{axis}, keepdims, s);
}
Array mean(const Array& a, bool keepdims, StreamOrDevice s) {
  return mean(a, all_axes(a), keepdims, s);
}

Array var(const Array& a, const std::vector<int>& axes, bool keepdims, int ddof, StreamOrDevice s) {
  auto ax = check_axes(a, axes, "var");
  if (ddof < 0) raise("[var] ddof must be non-negative, got {}", ddof);
  Stream st = resolve_stream(s, {&a});
  Dtype out = float_dtype(a.dtype());
  Dtype acc = out == float64 ? float64 : float32;
  Array x = a.dtype() == acc ? a : astype(a, acc, st);
  Array m = mean(x, ax, true, st);
  Array d = subtract(x, m, st);
  Array ss = make_reduce(square(d, st), ReduceType::sum, ax, keepdims, acc, st);
  const int64_t n = reduced_count(a.shape(), ax) - ddof;
  Array v = divide(ss, Array(static_cast<double>(std::max<int64_t>(n, 0)), acc), st);
  return out == acc ? v : astype(v, out, st);
}
Array var(const Array& a, int axis, bool keepdims, int ddof, StreamOrDevice s) {
  return var(a, std::vector<int>{axis}, keepdims, ddof, s);
}
Array stddev(const Array& a, const std::vector<int>& axes, bool keepdims, int ddof,
             StreamOrDevice s) {
  Stream st = resolve_stream(s, {&a});
  Dtype out = float_dtype(a.dtype());
  if (out == float64 || out == float32) return sqrt(var(a, axes, keepdims, ddof, st), st);
  // 16-bit floats: take the root in float32, round once.
  Array v = var(astype(a, float32, st), axes, keepdims, ddof, st);
  return astype(sqrt(v, st), out, st);
}

// ---- argmax, argmin ----

static Array arg_reduce(const Array& a, int axis, bool keepdims, ArgReduce::Type t,
                        StreamOrDevice s) {
  const char* op = t == ArgReduce::Type::argmax ? "argmax" : "argmin";
  int ax = check_axis(a, axis, op);
  check_nonempty(a, {ax}, op);
  Shape shape = reduced_shape(a.shape(), {ax}, keepdims);
  return Array(std::move(shape), uint32,
               std::make_shared<ArgReduce>(resolve_stream(s, {&a}), t, ax, keepdims), {a});
}
Array argmax(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return arg_reduce(a, axis, keepdims, ArgReduce::Type::argmax, s);
}
Array argmin(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return arg_reduce(a, axis, keepdims, ArgReduce::Type::argmin, s);
}

// ---- logsumexp, softmax ----

Array logsumexp(const Array& a, const std::vector<int>& axes, bool keepdims, StreamOrDevice s) {
  auto ax = check_axes(a, axes, "logsumexp");
  Shape shape = reduced_shape(a.shape(), ax, keepdims);
  return Array(std::move(shape), float_dtype(a.dtype()),
               std::make_shared<LogSumExp>(resolve_stream(s, {&a}), std::move(ax), keepdims), {a});
}
Array logsumexp(const Array& a, int axis, bool keepdims, StreamOrDevice s) {
  return logsumexp(a, std::vector<int>{axis}, keepdims, s);
}

Array softmax(const Array& a, const std::vector<int>& axes, StreamOrDevice s) {
  auto ax = check_axes(a, axes, "softmax");
  return Array(a.shape(), float_dtype(a.dtype()),
               std::make_shared<Softmax>(resolve_stream(s, {&a}), std::move(ax), false), {a});
}
Array softmax(const Array& a, int axis, StreamOrDevice s) {
  return softmax(a, std::vector<int>{axis}, s);
}
Array log_softmax(const Array& a, int axis, StreamOrDevice s) {
  auto ax = check_axes(a, {axis}, "log_softmax");
  return Array(a.shape(), float_dtype(a.dtype()),
               std::make_shared<Softmax>(resolve_stream(s, {&a}), std::move(ax), true), {a});
}

// ---- softmax_cross_entropy ----

Array softmax_cross_entropy(const Array& logits, const Array& targets, StreamOrDevice s) {
  if (!is_floating(logits.dtype()))
    raise("[cross_entropy] logits must be floating point, got {}", dtype_name(logits.dtype()));
  if (logits.ndim() != targets.ndim() + 1)
    raise("[cross_entropy] logits {} must have one more axis than targets {}",
          shape_str(logits.shape()), shape_str(targets.shape()));
  for (int i = 0; i < targets.ndim(); ++i)
    if (logits.shape(i) != targets.shape(i))
      raise("[cross_entropy] logits {} and targets {} disagree on axis {}",
            shape_str(logits.shape()), shape_str(targets.shape()), i);
  if (!is_integral(targets.dtype()) || targets.dtype() == bool_)
    raise("[cross_entropy] targets must be integers, got {}", dtype_name(targets.dtype()));
  if (logits.shape(-1) == 0 && targets.size() > 0)
    raise("[cross_entropy] logits {} have no classes", shape_str(logits.shape()));
  const Stream st = resolve_stream(s, {&logits, &targets});
  // The kernels read int32 or int64 targets; other integer types are widened to int64.
  const Array t =
      targets.dtype() == int32 || targets.dtype() == int64 ? targets : astype(targets, int64, st);
  const Dtype out = logits.dtype() == float64 ? float64 : float32;
  return Array(targets.shape(), out, std::make_shared<CrossEntropy>(st), {logits, t});
}

std::vector<Shape> CrossEntropy::output_shapes(const std::vector<Array>& in) {
  return {in[1].shape()};
}
std::vector<Array> CrossEntropy::vjp(const std::vector<Array>& primals,
                                     const std::vector<Array>& cotangents,
                                     const std::vector<int>& argnums, const std::vector<Array>&) {
  const Dtype loss = primals[0].dtype() == float64 ? float64 : float32;
  std::vector<Array> r;
  for (int a : argnums) {
    if (a == 0)
      r.push_back(Array(primals[0].shape(), primals[0].dtype(),
                        std::make_shared<CrossEntropyGrad>(stream()),
                        {primals[0], primals[1], astype(cotangents[0], loss, stream())}));
    else
      r.push_back(zeros_like(primals[a], stream()));
  }
  return r;
}

std::vector<Shape> CrossEntropyGrad::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
// y = (p - onehot) * g with p = softmax(x): dy/dx applied to ct is g * p * (ct - sum(p * ct));
// dy/dg applied to ct is sum((p - onehot) * ct) over the row. Written with public ops (so
// grad-of-grad works) in the compute dtype.
std::vector<Array> CrossEntropyGrad::vjp(const std::vector<Array>& primals,
                                         const std::vector<Array>& cotangents,
                                         const std::vector<int>& argnums,
                                         const std::vector<Array>&) {
  const Stream st = stream();
  const Array& x = primals[0];
  const Dtype ct = x.dtype() == float64 ? float64 : float32;
  Array p = softmax(astype(x, ct, st), -1, st);
  Array c = astype(cotangents[0], ct, st);
  Array g = expand_dims(astype(primals[2], ct, st), -1, st);
  std::vector<Array> r;
  for (int a : argnums) {
    if (a == 0) {
      Array pc = multiply(p, c, st);
      Array d = multiply(g, subtract(pc, multiply(p, sum(pc, -1, true, st), st), st), st);
      r.push_back(astype(d, x.dtype(), st));
    } else if (a == 2) {
      Array picked = squeeze(take_along_axis(c, expand_dims(primals[1], -1, st), -1, st), -1, st);
      Array d = subtract(sum(multiply(p, c, st), -1, false, st), picked, st);
      r.push_back(astype(d, primals[2].dtype(), st));
    } else {
      r.push_back(zeros_like(primals[a], st));
    }
  }
  return r;
}

// ---- cumsum ----

Array cumsum(const Array& a, int axis, bool reverse, bool inclusive, StreamOrDevice s) {
  check_sortable(a, "cumsum");
  int ax = check_axis(a, axis, "cumsum");
  return Array(
      a.shape(), sum_dtype(a.dtype()),
      std::make_shared<Scan>(resolve_stream(s, {&a}), Scan::Type::sum, ax, reverse, inclusive),
      {a});
}

// ---- sort, argsort, topk, partition ----

Array sort(const Array& a, int axis, StreamOrDevice s) {
  check_sortable(a, "sort");
  int ax = check_axis(a, axis, "sort");
  return Array(a.shape(), a.dtype(), std::make_shared<Sort>(resolve_stream(s, {&a}), ax), {a});
}
Array argsort(const Array& a, int axis, StreamOrDevice s) {
  check_sortable(a, "argsort");
  int ax = check_axis(a, axis, "argsort");
  return Array(a.shape(), uint32, std::make_shared<ArgSort>(resolve_stream(s, {&a}), ax), {a});
}

static Array topk_op(const Array& a, int k, int axis, bool indices, const char* op,
                     StreamOrDevice s) {
  check_sortable(a, op);
  int ax = check_axis(a, axis, op);
  const int64_t n = a.shape()[ax];
  if (k < 0 || k > n) raise("[{}] k={} is out of range for axis of size {}", op, k, n);
  Shape shape = a.shape();
  shape[ax] = k;
  return Array(std::move(shape), indices ? uint32 : a.dtype(),
               std::make_shared<TopK>(resolve_stream(s, {&a}), k, ax, indices), {a});
}
Array topk(const Array& a, int k, int axis, StreamOrDevice s) {
  return topk_op(a, k, axis, false, "topk", s);
}
Array topk_indices(const Array& a, int k, int axis, StreamOrDevice s) {
  return topk_op(a, k, axis, true, "topk_indices", s);
}

static int check_kth(const Array& a, int kth, int ax, const char* op) {
  const int64_t n = a.shape()[ax];
  int64_t k = kth < 0 ? kth + n : kth;
  if (k < 0 || k >= n) raise("[{}] kth={} is out of range for axis of size {}", op, kth, n);
  return static_cast<int>(k);
}
Array argpartition(const Array& a, int kth, int axis, StreamOrDevice s) {
  check_sortable(a, "argpartition");
  int ax = check_axis(a, axis, "argpartition");
  int k = check_kth(a, kth, ax, "argpartition");
  return Array(a.shape(), uint32, std::make_shared<ArgPartition>(resolve_stream(s, {&a}), k, ax),
               {a});
}
Array partition(const Array& a, int kth, int axis, StreamOrDevice s) {
  check_sortable(a, "partition");
  int ax = check_axis(a, axis, "partition");
  int k = check_kth(a, kth, ax, "partition");
  return Array(a.shape(), a.dtype(), std::make_shared<Partition>(resolve_stream(s, {&a}), k, ax),
               {a});
}

// ---- primitive methods: output shapes, printing, VJPs (written with public ops) ----

std::vector<Shape> Reduce::output_shapes(const std::vector<Array>& in) {
  return {reduced_shape(in[0].shape(), axes_, keepdims_)};
}
void Reduce::print(std::ostream& os) const {
  os << "Reduce(" << reduce_type_name(type_) << ", axes=" << axes_str(axes_) << ")";
}

std::vector<Array> Reduce::vjp(const std::vector<Array>& primals,
                               const std::vector<Array>& cotangents, const std::vector<int>&,
                               const std::vector<Array>& outputs) {
  const Array& x = primals[0];
  Stream st = stream();
  Array g = keepdims_view(cotangents[0], x.shape(), axes_, keepdims_, st);
  switch (type_) {
    case ReduceType::sum:
      return {broadcast_to(g, x.shape(), st)};
    case ReduceType::max:
    case ReduceType::min: {
      Array out = keepdims_view(outputs[0], x.shape(), axes_, keepdims_, st);
      Array mask = astype(equal(x, out, st), g.dtype(), st);
      Array count = sum(mask, axes_, true, st);
      return {multiply(mask, divide(g, count, st), st)};
    }
    case ReduceType::prod: {
      // Product of all other elements: exclusive cumprods from both sides over the reduced
      // axes flattened into one trailing axis (exact with zeros, unlike out / x).
      std::vector<int> perm;
      for (int d = 0; d < x.ndim(); ++d)
        if (std::find(axes_.begin(), axes_.end(), d) == axes_.end()) perm.push_back(d);
      perm.insert(perm.end(), axes_.begin(), axes_.end());
      Array xt = transpose(x, perm, st);
      Shape flat = reduced_shape(x.shape(), axes_, false);
      flat.push_back(reduced_count(x.shape(), axes_));
      Array xf = reshape(xt, flat, st);
      const int last = static_cast<int>(flat.size()) - 1;
      Array others =
          multiply(cumprod(xf, last, false, false, st), cumprod(xf, last, true, false, st), st);
      Shape gk = flat;
      gk.back() = 1;
      Array gf = multiply(others, reshape(g, gk, st), st);
      std::vector<int> inv(perm.size());
      for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int>(i);
      return {transpose(reshape(gf, xt.shape(), st), inv, st)};
    }
    case ReduceType::all:
    case ReduceType::any:
      return {zeros_like(x, st)};
  }
  return {zeros_like(x, st)};
}

std::vector<Array> Reduce::jvp(const std::vector<Array>& primals,
                               const std::vector<Array>& tangents, const std::vector<int>&) {
  if (type_ != ReduceType::sum)
    raise<Unsupported>("[Reduce] jvp is only available for sum, not {}", reduce_type_name(type_));
  return {
      make_reduce(tangents[0], type_, axes_, keepdims_, sum_dtype(tangents[0].dtype()), stream())};
}

std::vector<Shape> ArgReduce::output_shapes(const std::vector<Array>& in) {
  return {reduced_shape(in[0].shape(), {axis_}, keepdims_)};
}

std::vector<Shape> LogSumExp::output_shapes(const std::vector<Array>& in) {
  return {reduced_shape(in[0].shape(), axes_, keepdims_)};
}
std::vector<Array> LogSumExp::vjp(const std::vector<Array>& primals,
                                  const std::vector<Array>& cotangents, const std::vector<int>&,
                                  const std::vector<Array>& outputs) {
  const Array& x = primals[0];
  Stream st = stream();
  Array g = keepdims_view(cotangents[0], x.shape(), axes_, keepdims_, st);
  Array out = keepdims_view(outputs[0], x.shape(), axes_, keepdims_, st);
  return {multiply(g, exp(subtract(x, out, st), st), st)};
}

std::vector<Shape> Softmax::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
std::vector<Array> Softmax::vjp(const std::vector<Array>&, const std::vector<Array>& cotangents,
                                const std::vector<int>&, const std::vector<Array>& outputs) {
  Stream st = stream();
  const Array& g = cotangents[0];
  const Array& y = outputs[0];
  if (log_) {
    // d/dx (x - lse(x)) applied to g: g - softmax(x) * sum(g)
    return {subtract(g, multiply(exp(y, st), sum(g, axes_, true, st), st), st)};
  }
  Array gy = multiply(g, y, st);
  return {subtract(gy, multiply(y, sum(gy, axes_, true, st), st), st)};
}
std::vector<Array> Softmax::jvp(const std::vector<Array>& primals,
                                const std::vector<Array>& tangents, const std::vector<int>&) {
  Stream st = stream();
  Array y = softmax(primals[0], axes_, st);
  const Array& t = tangents[0];
  Array syt = sum(multiply(y, t, st), axes_, true, st);
  if (log_) return {subtract(t, syt, st)};
  return {multiply(y, subtract(t, syt, st), st)};
}

std::vector<Shape> Scan::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
std::vector<Array> Scan::vjp(const std::vector<Array>&, const std::vector<Array>& cotangents,
                             const std::vector<int>&, const std::vector<Array>&) {
  if (type_ != Scan::Type::sum) raise<Unsupported>("[Scan] the cumulative product has no vjp");
  return {cumsum(cotangents[0], axis_, !reverse_, inclusive_, stream())};
}
std::vector<Array> Scan::jvp(const std::vector<Array>&, const std::vector<Array>& tangents,
                             const std::vector<int>&) {
  if (type_ != Scan::Type::sum) raise<Unsupported>("[Scan] the cumulative product has no jvp");
  return {cumsum(tangents[0], axis_, reverse_, inclusive_, stream())};
}

std::vector<Shape> Sort::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
std::vector<Array> Sort::vjp(const std::vector<Array>& primals,
                             const std::vector<Array>& cotangents, const std::vector<int>&,
                             const std::vector<Array>&) {
  Stream st = stream();
  const Array& x = primals[0];
  Array idx = argsort(x, axis_, st);
  return {put_along_axis(zeros_like(cotangents[0], st), idx, cotangents[0], axis_, st)};
}

std::vector<Shape> ArgSort::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}

std::vector<Shape> Partition::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
std::vector<Array> Partition::vjp(const std::vector<Array>& primals,
                                  const std::vector<Array>& cotangents, const std::vector<int>&,
                                  const std::vector<Array>&) {
  Stream st = stream();
  Array idx = argpartition(primals[0], kth_, axis_, st);
  return {put_along_axis(zeros_like(cotangents[0], st), idx, cotangents[0], axis_, st)};
}

std::vector<Shape> ArgPartition::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}

std::vector<Shape> TopK::output_shapes(const std::vector<Array>& in) {
  Shape s = in[0].shape();
  s[axis_] = k_;
  return {s};
}
std::vector<Array> TopK::vjp(const std::vector<Array>& primals,
                             const std::vector<Array>& cotangents, const std::vector<int>&,
                             const std::vector<Array>&) {
  Stream st = stream();
  const Array& x = primals[0];
  if (indices_) return {zeros_like(x, st)};
  Array idx = topk_indices(x, k_, axis_, st);
  return {put_along_axis(zeros_like(x, st), idx, cotangents[0], axis_, st)};
}

}  // namespace ingot
