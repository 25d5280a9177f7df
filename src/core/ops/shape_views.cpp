// View ops of shape.h: reshape, flatten, transpose, swapaxes, moveaxis, expand_dims, squeeze,
// broadcast_to, broadcast_arrays, slice, slice_axis.
#include <algorithm>
#include <numeric>

#include "core/ops/shape.h"
#include "core/primitives/views.h"

namespace ingot {

Array reshape(const Array& a, Shape shape, StreamOrDevice s) {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) raise("[reshape] more than one -1 in target shape {}", shape_str(shape));
      infer = static_cast<int>(i);
    } else if (shape[i] < 0) {
      raise("[reshape] negative dimension in target shape {}", shape_str(shape));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || a.size() % known != 0)
      raise("[reshape] cannot reshape {} ({} elements) to {}", shape_str(a.shape()), a.size(),
            shape_str(shape));
    shape[infer] = a.size() / known;
  }
  if (shape_size(shape) != a.size())
    raise("[reshape] cannot reshape {} ({} elements) to {} ({} elements)", shape_str(a.shape()),
          a.size(), shape_str(shape), shape_size(shape));
  if (shape == a.shape()) return a;
  Shape out = shape;
  return Array(std::move(out), a.dtype(), std::make_shared<Reshape>(resolve_stream(s, {&a}), shape),
               {a});
}

Array flatten(const Array& a, int start_axis, int end_axis, StreamOrDevice s) {
  if (a.ndim() == 0) return reshape(a, {1}, s);
  int b = normalize_axis(start_axis, a.ndim(), "flatten");
  int e = normalize_axis(end_axis, a.ndim(), "flatten");
  if (b > e)
    raise("[flatten] start_axis {} is after end_axis {} for shape {}", start_axis, end_axis,
          shape_str(a.shape()));
  Shape ns(a.shape().begin(), a.shape().begin() + b);
  int64_t m = 1;
  for (int i = b; i <= e; ++i) m *= a.shape()[i];
  ns.push_back(m);
  ns.insert(ns.end(), a.shape().begin() + e + 1, a.shape().end());
  return reshape(a, ns, s);
}

Array transpose(const Array& a, const std::vector<int>& axes, StreamOrDevice s) {
  const int nd = a.ndim();
  if (static_cast<int>(axes.size()) != nd)
    raise("[transpose] {} axes given for an array of {} dimensions (shape {})", axes.size(), nd,
          shape_str(a.shape()));
  std::vector<int> ax(nd);
  std::vector<bool> seen(nd, false);
  for (int i = 0; i < nd; ++i) {
    ax[i] = normalize_axis(axes[i], nd, "transpose");
    if (seen[ax[i]]) raise("[transpose] repeated axis {} in permutation", axes[i]);
    seen[ax[i]] = true;
  }
  bool identity = true;
  for (int i = 0; i < nd; ++i) identity &= ax[i] == i;
  if (identity) return a;
  Shape out(nd);
  for (int i = 0; i < nd; ++i) out[i] = a.shape()[ax[i]];
  return Array(std::move(out), a.dtype(), std::make_shared<Transpose>(resolve_stream(s, {&a}), ax),
               {a});
}

Array transpose(const Array& a, StreamOrDevice s) {
  std::vector<int> ax(a.ndim());
  std::iota(ax.rbegin(), ax.rend(), 0);
  return transpose(a, ax, s);
}

Array swapaxes(const Array& a, int axis1, int axis2, StreamOrDevice s) {
  int x = normalize_axis(axis1, a.ndim(), "swapaxes");
  int y = normalize_axis(axis2, a.ndim(), "swapaxes");
  std::vector<int> ax(a.ndim());
  std::iota(ax.begin(), ax.end(), 0);
  std::swap(ax[x], ax[y]);
  return transpose(a, ax, s);
}

Array moveaxis(const Array& a, int source, int destination, StreamOrDevice s) {
  int src = normalize_axis(source, a.ndim(), "moveaxis");
  int dst = normalize_axis(destination, a.ndim(), "moveaxis");
  std::vector<int> ax;
  for (int i = 0; i < a.ndim(); ++i)
    if (i != src) ax.push_back(i);
  ax.insert(ax.begin() + dst, src);
  return transpose(a, ax, s);
}

Array expand_dims(const Array& a, const std::vector<int>& axes, StreamOrDevice s) {
  const int out_nd = a.ndim() + static_cast<int>(axes.size());
  std::vector<bool> is_new(out_nd, false);
  for (int ax : axes) {
    int n = normalize_axis(ax, out_nd, "expand_dims");
    if (is_new[n]) raise("[expand_dims] repeated axis {}", ax);
    is_new[n] = true;
  }
  Shape out;
  int k = 0;
  for (int i = 0; i < out_nd; ++i) out.push_back(is_new[i] ? 1 : a.shape()[k++]);
  return reshape(a, out, s);
}

Array expand_dims(const Array& a, int axis, StreamOrDevice s) {
  return expand_dims(a, std::vector<int>{axis}, s);
}

Array squeeze(const Array& a, const std::vector<int>& axes, StreamOrDevice s) {
  std::vector<bool> drop(a.ndim(), false);
  for (int ax : axes) {
    int n = normalize_axis(ax, a.ndim(), "squeeze");
    if (a.shape()[n] != 1)
      raise("[squeeze] axis {} has size {} (not 1) in shape {}", ax, a.shape()[n],
            shape_str(a.shape()));
    drop[n] = true;
  }
  Shape out;
  for (int i = 0; i < a.ndim(); ++i)
    if (!drop[i]) out.push_back(a.shape()[i]);
  return reshape(a, out, s);
}

Array squeeze(const Array& a, StreamOrDevice s) {
  std::vector<int> axes;
  for (int i = 0; i < a.ndim(); ++i)
    if (a.shape()[i] == 1) axes.push_back(i);
  return squeeze(a, axes, s);
}

Array squeeze(const Array& a, int axis, StreamOrDevice s) {
  return squeeze(a, std::vector<int>{axis}, s);
}

Array broadcast_to(const Array& a, const Shape& shape, StreamOrDevice s) {
  if (a.shape() == shape) return a;
  bool ok = static_cast<int>(shape.size()) >= a.ndim();
  for (int i = 0; ok && i < a.ndim(); ++i) {
    int64_t d = a.shape()[a.ndim() - 1 - i], t = shape[shape.size() - 1 - i];
    ok = d == t || d == 1;
  }
  for (auto d : shape) ok = ok && d >= 0;
  if (!ok)
    raise("[broadcast_to] cannot broadcast {} to {}", shape_str(a.shape()), shape_str(shape));
  return Array(shape, a.dtype(), std::make_shared<Broadcast>(resolve_stream(s, {&a}), shape), {a});
}

std::vector<Array> broadcast_arrays(const std::vector<Array>& arrays, StreamOrDevice s) {
  Shape out;
  for (auto& a : arrays) {
    const Shape& b = a.shape();
    Shape r(std::max(out.size(), b.size()));
    for (size_t i = 0; i < r.size(); ++i) {
      int64_t x = i < out.size() ? out[out.size() - 1 - i] : 1;
      int64_t y = i < b.size() ? b[b.size() - 1 - i] : 1;
      if (x != y && x != 1 && y != 1)
        raise("[broadcast_arrays] cannot broadcast {} and {}", shape_str(out), shape_str(b));
      r[r.size() - 1 - i] = x == 1 ? y : x;
    }
    out = std::move(r);
  }
  std::vector<Array> r;
  for (auto& a : arrays) r.push_back(broadcast_to(a, out, s));
  return r;
}

Array slice(const Array& a, Shape start, Shape stop, Shape strides, StreamOrDevice s) {
  const int nd = a.ndim();
  if (static_cast<int>(start.size()) != nd || static_cast<int>(stop.size()) != nd ||
      static_cast<int>(strides.size()) != nd)
    raise("[slice] start/stop/strides have {}/{}/{} entries for an array of {} dimensions",
          start.size(), stop.size(), strides.size(), nd);
  Shape out(nd);
  bool identity = true;
  for (int i = 0; i < nd; ++i) {
    const int64_t n = a.shape()[i], st = strides[i];
    if (st == 0) raise("[slice] step of axis {} is 0", i);
    int64_t b = start[i], e = stop[i];
    if (st > 0) {
      b = b < 0 ? std::max<int64_t>(b + n, 0) : std::min(b, n);
      e = e < 0 ? std::max<int64_t>(e + n, 0) : std::min(e, n);
      out[i] = e > b ? (e - b + st - 1) / st : 0;
    } else {
      b = b < 0 ? std::max<int64_t>(b + n, -1) : std::min(b, n - 1);
      e = e < 0 ? std::max<int64_t>(e + n, -1) : std::min(e, n - 1);
      out[i] = b > e ? (b - e - st - 1) / (-st) : 0;
      if (e == -1) e = -n - 1;  // keep "before the first element" when re-applied
    }
    if (out[i] == 0) b = 0;
    start[i] = b;
    stop[i] = e;
    identity &= (b == 0 && st == 1 && out[i] == n);
  }
  if (identity) return a;
  Shape o = out;
  return Array(std::move(o), a.dtype(),
               std::make_shared<Slice>(resolve_stream(s, {&a}), std::move(start), std::move(stop),
                                       std::move(strides), std::move(out)),
               {a});
}

Array slice(const Array& a, Shape start, Shape stop, StreamOrDevice s) {
  return slice(a, std::move(start), std::move(stop), Shape(a.ndim(), 1), s);
}

Array slice_axis(const Array& a, int axis, int64_t start, int64_t stop, int64_t step,
                 StreamOrDevice s) {
  int ax = normalize_axis(axis, a.ndim(), "slice_axis");
  Shape b(a.ndim(), 0), e = a.shape(), st(a.ndim(), 1);
  b[ax] = start;
  e[ax] = stop;
  st[ax] = step;
  return slice(a, b, e, st, s);
}

}  // namespace ingot
