// Shape ops that copy: slice_update, concatenate, stack, split, pad, tile, repeat, and the
// vjp/jvp of their primitives. (The view ops are in shape_views.cpp.)
#include <algorithm>
#include <numeric>

#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/primitives/creation.h"
#include "core/primitives/shape.h"

namespace ingot {

namespace {

std::string ints_str(const Shape& v) {
  return shape_str(v);
}

Dtype promote_all(const std::vector<Array>& arrays) {
  Dtype t = arrays[0].dtype();
  for (size_t i = 1; i < arrays.size(); ++i) t = promote_types(t, arrays[i].dtype());
  return t;
}

}  // namespace

bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  const size_t off = to.size() - from.size();
  for (size_t d = 0; d < from.size(); ++d)
    if (from[d] != 1 && from[d] != to[off + d]) return false;
  return true;
}

SliceSpec normalize_slice(const Shape& shape, const Shape& start, const Shape& stop,
                          const Shape& strides) {
  SliceSpec r;
  const size_t nd = shape.size();
  r.start.resize(nd);
  r.step.resize(nd);
  r.count.resize(nd);
  for (size_t d = 0; d < nd; ++d) {
    const int64_t n = shape[d], st = strides[d];
    int64_t b = start[d], e = stop[d];
    if (b < 0) b += n;
    if (e < 0) e += n;
    if (st > 0) {
      b = std::clamp<int64_t>(b, 0, n);
      e = std::clamp<int64_t>(e, 0, n);
      r.count[d] = e > b ? (e - b + st - 1) / st : 0;
    } else {
      b = std::clamp<int64_t>(b, -1, n - 1);
      e = std::clamp<int64_t>(e, -1, n - 1);
      r.count[d] = b > e ? (b - e + (-st) - 1) / (-st) : 0;
    }
    r.start[d] = b;
    r.step[d] = st;
  }
  return r;
}

// ---- slice_update ----

Array slice_update(const Array& a, const Array& update, Shape start, Shape stop, Shape strides,
                   StreamOrDevice s) {
  const size_t nd = a.shape().size();
  if (start.size() != nd || stop.size() != nd || strides.size() != nd)
    raise(
        "[slice_update] start, stop and strides need one entry per axis of a {}: got {}, {} "
        "and {}",
        shape_str(a.shape()), start.size(), stop.size(), strides.size());
  for (size_t d = 0; d < nd; ++d)
    if (strides[d] == 0)
      raise("[slice_update] stride 0 on axis {} (strides {})", d, ints_str(strides));
  Shape slice_shape = normalize_slice(a.shape(), start, stop, strides).count;
  if (!broadcasts_to(update.shape(), slice_shape))
    raise("[slice_update] update of shape {} cannot be broadcast to the slice shape {} of a {}",
          shape_str(update.shape()), shape_str(slice_shape), shape_str(a.shape()));
  if (shape_size(slice_shape) == 0) return a;
  Array u = update.dtype() == a.dtype() ? update : astype(update, a.dtype(), s);
  if (u.shape() != slice_shape) u = broadcast_to(u, slice_shape, s);
  return Array(a.shape(), a.dtype(),
               std::make_shared<SliceUpdate>(resolve_stream(s, {&a, &update}), std::move(start),
                                             std::move(stop), std::move(strides)),
               {a, u});
}

Array slice_update(const Array& a, const Array& update, Shape start, Shape stop, StreamOrDevice s) {
  Shape strides(a.shape().size(), 1);
  return slice_update(a, update, std::move(start), std::move(stop), std::move(strides), s);
}

std::optional<std::vector<Array>> zero_padded(const Array& a) {
  std::vector<Array> regions;
  for (Array cur = a;;) {
    if (!cur.has_primitive()) return std::nullopt;
    const Primitive& p = cur.primitive();
    if (const auto* f = dynamic_cast<const Full*>(&p))
      return f->zero_ ? std::optional(std::move(regions)) : std::nullopt;
    const auto* u = dynamic_cast<const SliceUpdate*>(&p);
    if (!u) return std::nullopt;
    for (int64_t st : u->strides_)
      if (st != 1) return std::nullopt;
    regions.push_back(cur);
    cur = cur.inputs()[0];
  }
}

bool disjoint(const Shape& shape, const SliceUpdate& a, const SliceUpdate& b) {
  const SliceSpec x = normalize_slice(shape, a.start_, a.stop_, a.strides_);
  const SliceSpec y = normalize_slice(shape, b.start_, b.stop_, b.strides_);
  for (size_t d = 0; d < shape.size(); ++d)
    if (x.start[d] + x.count[d] <= y.start[d] || y.start[d] + y.count[d] <= x.start[d]) return true;
  return false;
}

std::vector<Shape> SliceUpdate::output_shapes(const std::vector<Array>& inputs) {
  return {inputs[0].shape()};
}

std::vector<Array> SliceUpdate::vjp(const std::vector<Array>& primals,
                                    const std::vector<Array>& cotangents,
                                    const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array& ct = cotangents[0];
  std::vector<Array> r;
  for (int arg : argnums) {
    if (arg == 0)
      r.push_back(slice_update(ct, zeros_like(primals[1]), start_, stop_, strides_, stream()));
    else
      r.push_back(slice(ct, start_, stop_, strides_, stream()));
  }
  return r;
}

std::vector<Array> SliceUpdate::jvp(const std::vector<Array>& primals,
                                    const std::vector<Array>& tangents,
                                    const std::vector<int>& argnums) {
  Array ta = zeros_like(primals[0], stream()), tu = zeros_like(primals[1], stream());
  for (size_t i = 0; i < argnums.size(); ++i) (argnums[i] == 0 ? ta : tu) = tangents[i];
  return {slice_update(ta, tu, start_, stop_, strides_, stream())};
}

// ---- concatenate / stack / split ----

Array concatenate(const std::vector<Array>& arrays, int axis, StreamOrDevice s) {
  if (arrays.empty()) raise("[concatenate] needs at least one array");
  const Array& a0 = arrays[0];
  if (a0.ndim() == 0) raise("[concatenate] cannot concatenate 0-d arrays");
  const int ax = normalize_axis(axis, a0.ndim(), "concatenate");
  Shape out_shape = a0.shape();
  for (size_t i = 1; i < arrays.size(); ++i) {
    const Shape& si = arrays[i].shape();
    if (si.size() != out_shape.size())
      raise("[concatenate] all arrays need the same number of dimensions: got shapes {} and {}",
            shape_str(a0.shape()), shape_str(si));
    for (int d = 0; d < a0.ndim(); ++d)
      if (d != ax && si[d] != a0.shape()[d])
        raise("[concatenate] shapes {} and {} differ outside axis {}", shape_str(a0.shape()),
              shape_str(si), ax);
    out_shape[ax] += si[ax];
  }
  Dtype t = promote_all(arrays);
  if (arrays.size() == 1) return a0.dtype() == t ? a0 : astype(a0, t, s);
  return Array(std::move(out_shape), t,
               std::make_shared<Concatenate>(resolve_stream(s, arrays), ax), arrays);
}

std::vector<Shape> Concatenate::output_shapes(const std::vector<Array>& inputs) {
  Shape sh = inputs[0].shape();
  for (size_t i = 1; i < inputs.size(); ++i) sh[axis_] += inputs[i].shape()[axis_];
  return {sh};
}

std::vector<Array> Concatenate::vjp(const std::vector<Array>& primals,
                                    const std::vector<Array>& cotangents,
                                    const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<int64_t> offsets(primals.size() + 1, 0);
  for (size_t i = 0; i < primals.size(); ++i)
    offsets[i + 1] = offsets[i] + primals[i].shape()[axis_];
  std::vector<Array> r;
  for (int arg : argnums) {
    Array g = slice_axis(cotangents[0], axis_, offsets[arg], offsets[arg + 1], 1, stream());
    r.push_back(astype(g, primals[arg].dtype(), stream()));
  }
  return r;
}

std::vector<Array> Concatenate::jvp(const std::vector<Array>& primals,
                                    const std::vector<Array>& tangents,
                                    const std::vector<int>& argnums) {
  Dtype t = promote_all(primals);
  std::vector<Array> parts;
  for (size_t i = 0; i < primals.size(); ++i) {
    auto it = std::find(argnums.begin(), argnums.end(), static_cast<int>(i));
    parts.push_back(it == argnums.end() ? zeros(primals[i].shape(), t, stream())
                                        : tangents[it - argnums.begin()]);
  }
  return {concatenate(parts, axis_, stream())};
}

Array stack(const std::vector<Array>& arrays, int axis, StreamOrDevice s) {
  if (arrays.empty()) raise("[stack] needs at least one array");
  for (size_t i = 1; i < arrays.size(); ++i)
    if (arrays[i].shape() != arrays[0].shape())
      raise("[stack] all arrays need the same shape: got {} and {}", shape_str(arrays[0].shape()),
            shape_str(arrays[i].shape()));
  const int ax = normalize_axis(axis, arrays[0].ndim() + 1, "stack");
  std::vector<Array> parts;
  parts.reserve(arrays.size());
  for (const Array& a : arrays) parts.push_back(expand_dims(a, ax, s));
  return concatenate(parts, ax, s);
}

std::vector<Array> split(const Array& a, int num, int axis, StreamOrDevice s) {
  if (a.ndim() == 0) raise("[split] cannot split a 0-d array");
  const int ax = normalize_axis(axis, a.ndim(), "split");
  if (num <= 0) raise("[split] number of parts must be positive, got {}", num);
  const int64_t n = a.shape()[ax];
  if (n % num != 0)
    raise("[split] axis {} of size {} (shape {}) cannot be split into {} equal parts", ax, n,
          shape_str(a.shape()), num);
  std::vector<int64_t> idx;
  for (int i = 1; i < num; ++i) idx.push_back(i * (n / num));
  return split(a, idx, ax, s);
}

std::vector<Array> split(const Array& a, const std::vector<int64_t>& indices, int axis,
                         StreamOrDevice s) {
  if (a.ndim() == 0) raise("[split] cannot split a 0-d array");
  const int ax = normalize_axis(axis, a.ndim(), "split");
  const int64_t n = a.shape()[ax];
  // Python slicing: part i is a[b:e] with negative bounds counting from the end and clamping.
  std::vector<Array> parts;
  int64_t prev = 0;
  for (size_t i = 0; i <= indices.size(); ++i) {
    int64_t e = i < indices.size() ? indices[i] : n;
    parts.push_back(slice_axis(a, ax, prev, e, 1, s));
    prev = e;
  }
  return parts;
}

// ---- pad ----

Array pad(const Array& a, const std::vector<int>& axes, const Shape& low_pad, const Shape& high_pad,
          const Array& value, StreamOrDevice s) {
  if (axes.size() != low_pad.size() || axes.size() != high_pad.size())
    raise("[pad] axes, low_pad and high_pad need the same length: got {}, {} and {}", axes.size(),
          low_pad.size(), high_pad.size());
  if (value.size() != 1)
    raise("[pad] value must be a single element, got shape {}", shape_str(value.shape()));
  const int nd = a.ndim();
  Shape low(nd, 0), high(nd, 0);
  std::vector<bool> seen(nd, false);
  for (size_t i = 0; i < axes.size(); ++i) {
    const int ax = normalize_axis(axes[i], nd, "pad");
    if (seen[ax]) raise("[pad] axis {} given twice (shape {})", ax, shape_str(a.shape()));
    seen[ax] = true;
    if (low_pad[i] < 0 || high_pad[i] < 0)
      raise("[pad] negative padding ({}, {}) on axis {} of shape {}", low_pad[i], high_pad[i], ax,
            shape_str(a.shape()));
    low[ax] = low_pad[i];
    high[ax] = high_pad[i];
  }
  bool any = false;
  Shape out_shape = a.shape();
  for (int d = 0; d < nd; ++d) {
    out_shape[d] += low[d] + high[d];
    any = any || low[d] > 0 || high[d] > 0;
  }
  if (!any) return a;
  Array v = value.ndim() == 0 ? value : reshape(value, {}, s);
  if (v.dtype() != a.dtype()) v = astype(v, a.dtype(), s);
  return Array(std::move(out_shape), a.dtype(),
               std::make_shared<Pad>(resolve_stream(s, {&a}), std::move(low), std::move(high)),
               {a, v});
}

Array pad(const Array& a, const std::vector<std::pair<int64_t, int64_t>>& pad_width,
          const Array& value, StreamOrDevice s) {
  const size_t nd = a.shape().size();
  if (pad_width.size() != nd && pad_width.size() != 1)
    raise("[pad] pad_width needs one (low, high) pair per axis of {} (or a single pair), got {}",
          shape_str(a.shape()), pad_width.size());
  std::vector<int> axes(nd);
  Shape low(nd), high(nd);
  for (size_t d = 0; d < nd; ++d) {
    const auto& p = pad_width.size() == 1 ? pad_width[0] : pad_width[d];
    axes[d] = static_cast<int>(d);
    low[d] = p.first;
    high[d] = p.second;
  }
  return pad(a, axes, low, high, value, s);
}

std::vector<Shape> Pad::output_shapes(const std::vector<Array>& inputs) {
  Shape sh = inputs[0].shape();
  for (size_t d = 0; d < sh.size(); ++d) sh[d] += low_[d] + high_[d];
  return {sh};
}

std::vector<Array> Pad::vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                            const std::vector<int>& argnums, const std::vector<Array>&) {
  const Array& ct = cotangents[0];
  Shape stop = low_;
  for (size_t d = 0; d < stop.size(); ++d) stop[d] += primals[0].shape()[d];
  Array inner = slice(ct, low_, stop, stream());
  std::vector<Array> r;
  for (int arg : argnums) {
    if (arg == 0)
      r.push_back(inner);
    else
      r.push_back(astype(subtract(sum(ct, false, stream()), sum(inner, false, stream()), stream()),
                         primals[1].dtype(), stream()));
  }
  return r;
}

std::vector<Array> Pad::jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                            const std::vector<int>& argnums) {
  Array ta = zeros_like(primals[0], stream()), tv = zeros_like(primals[1], stream());
  for (size_t i = 0; i < argnums.size(); ++i) (argnums[i] == 0 ? ta : tv) = tangents[i];
  std::vector<int> axes(low_.size());
  std::iota(axes.begin(), axes.end(), 0);
  return {pad(ta, axes, low_, high_, tv, stream())};
}

// ---- tile / repeat (compositions of views; the final reshape copies) ----

Array tile(const Array& a, const Shape& reps, StreamOrDevice s) {
  for (int64_t r : reps)
    if (r < 0) raise("[tile] repetitions must be non-negative, got {}", ints_str(reps));
  const size_t nd = std::max(reps.size(), a.shape().size());
  Shape shape(nd, 1), rep(nd, 1);
  std::copy(a.shape().begin(), a.shape().end(), shape.end() - a.ndim());
  std::copy(reps.begin(), reps.end(), rep.end() - reps.size());
  Shape interleaved, expanded, out_shape;
  for (size_t d = 0; d < nd; ++d) {
    interleaved.insert(interleaved.end(), {1, shape[d]});
    expanded.insert(expanded.end(), {rep[d], shape[d]});
    out_shape.push_back(rep[d] * shape[d]);
  }
  if (std::all_of(rep.begin(), rep.end(), [](int64_t r) { return r == 1; }))
    return shape == a.shape() ? a : reshape(a, shape, s);
  Array x = broadcast_to(reshape(a, interleaved, s), expanded, s);
  return reshape(x, out_shape, s);
}

Array repeat(const Array& a, int repeats, int axis, StreamOrDevice s) {
  if (repeats < 0) raise("[repeat] repeats must be non-negative, got {}", repeats);
  if (a.ndim() == 0) raise("[repeat] cannot repeat a 0-d array along an axis");
  const int ax = normalize_axis(axis, a.ndim(), "repeat");
  if (repeats == 1) return a;
  Shape expanded = a.shape(), out_shape = a.shape();
  expanded.insert(expanded.begin() + ax + 1, repeats);
  out_shape[ax] *= repeats;
  Array x = broadcast_to(expand_dims(a, ax + 1, s), expanded, s);
  return reshape(x, out_shape, s);
}

}  // namespace ingot
